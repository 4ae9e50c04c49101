"""The HTTP API, against a real ``vtp-lab serve`` subprocess on loopback."""

from __future__ import annotations

import gzip
import io
import json
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from conftest import ROOT, raw_event
from servers import VtpServer, running_vtp_server

from vtp_lab.lab import Lab
from vtp_lab.serve import create_app
from vtp_lab.synth import semester

TOKEN = "t0ken-for-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def call(
    server: VtpServer, path: str, *, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(
        server.url + path, data=body, headers=headers or {}, method="POST" if body is not None else "GET"
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def post(server: VtpServer, events: list[dict[str, object]] | str, **headers: str) -> tuple[int, dict[str, object]]:
    body = events if isinstance(events, str) else json.dumps(events)
    status, _, answer = call(server, "/v1/events", body=body.encode(), headers={**AUTH, **headers})
    return status, json.loads(answer)


def as_json(frame: pl.DataFrame) -> list[dict[str, object]]:
    return json.loads(frame.write_json())


def stored(server: VtpServer) -> int:
    status, _, body = call(server, "/healthz")
    assert status == 200
    return int(json.loads(body)["events"])


@pytest.fixture(scope="module")
def sem() -> pl.DataFrame:
    return semester(courses=1, lectures_per_course=3, students=6, seed=11).events


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VtpServer]:
    store = tmp_path_factory.mktemp("serve") / "lab.duckdb"
    with running_vtp_server(
        store, "--token", TOKEN, "--max-body", "200000", "--cors-origin", "http://player.test"
    ) as s:
        yield s


def event_rows(frame: pl.DataFrame) -> list[dict[str, object]]:
    return [json.loads(line) for line in frame.select(pl.struct(pl.all()).struct.json_encode()).to_series()]


def test_post_then_read_back_the_same_frames(server: VtpServer, sem: pl.DataFrame) -> None:
    status, answer = post(server, event_rows(sem))
    assert status == 200
    assert (answer["accepted"], answer["duplicates"], answer["rejected"]) == (sem.height, 0, 0)
    again = post(server, event_rows(sem.head(10)))[1]
    assert (again["accepted"], again["duplicates"]) == (0, 10)

    reference = Lab(":memory:")
    reference.append(sem)
    rec = sem["recording_id"][0]
    course = json.loads(sem.filter(pl.col("event_type") == "recording_started")["metadata"][0])["course_id"]
    user = sem.filter(pl.col("event_type") == "playback_started")["user_id"][0]
    pairs = [
        (f"/v1/recordings/{rec}/sessions", reference.playback_sessions(recording_id=rec)),
        (f"/v1/recordings/{rec}/statistics", reference.lecture_statistics(recording_id=rec)),
        (f"/v1/users/{user}/engagement", reference.engagement_metrics(user_id=user)),
        (f"/v1/courses/{course}/statistics", reference.course_statistics(course_id=course)),
    ]
    for path, expected in pairs:
        status, headers, body = call(server, path)
        assert status == 200 and headers["content-type"] == "application/json", path
        assert json.loads(body) == as_json(expected), path
        assert len(json.loads(body)) > 0, path
    path, expected = pairs[0]
    _, headers, body = call(server, path, headers={"Accept": "application/vnd.apache.arrow.stream"})
    assert headers["content-type"] == "application/vnd.apache.arrow.stream"
    assert pl.read_ipc_stream(io.BytesIO(body)).equals(expected)
    _, headers, body = call(server, path, headers={"Accept": "application/vnd.apache.parquet"})
    assert pl.read_parquet(io.BytesIO(body)).equals(expected)


def test_ndjson_and_gzip_bodies(server: VtpServer) -> None:
    events = [raw_event(session_id=f"nd-{i}", event_type="buffer_start", metadata={"position": i}) for i in range(3)]
    ndjson = "\n".join(json.dumps(e) for e in events) + "\n\n{not json\n"
    status, answer = post(server, ndjson, **{"Content-Type": "application/x-ndjson"})
    assert status == 200
    assert (answer["accepted"], answer["rejected"]) == (3, 1)
    assert answer["rejections"] == [{"index": 4, "reason": "malformed", "field": None}]

    zipped = gzip.compress(json.dumps([raw_event(session_id="gz-1")]).encode())
    status, _, body = call(
        server,
        "/v1/events",
        body=zipped,
        headers={**AUTH, "Content-Encoding": "gzip", "Content-Type": "application/json"},
    )
    assert status == 200 and json.loads(body)["accepted"] == 1


def test_rejected_rows_are_answered_and_quarantined(server: VtpServer) -> None:
    events = [raw_event(session_id="q-ok"), raw_event(event_type="rewind"), raw_event(user_id="nope"), 7]
    status, answer = post(server, events)
    assert status == 200
    assert answer["accepted"] == 1 and answer["rejected"] == 3
    assert sorted((r["index"], r["reason"], r["field"]) for r in answer["rejections"]) == [
        (1, "unknown_event_type", "event_type"),
        (2, "invalid_uuid", "user_id"),
        (3, "malformed", None),
    ]


@pytest.mark.parametrize(
    ("body", "headers", "status", "error"),
    [
        (b'[{"event_type": ', {}, 400, "malformed_json"),
        (b'"just a string"', {}, 400, "malformed_json"),
        (b"\xff\xfe[]", {}, 400, "bad_encoding"),
        (b"x" * 200_001, {}, 413, "body_too_large"),
        (gzip.compress(b"[" + b" " * 300_000 + b"]"), {"Content-Encoding": "gzip"}, 413, "body_too_large"),
        (b"not gzip", {"Content-Encoding": "gzip"}, 400, "bad_gzip"),
        (b"[]", {"Content-Encoding": "br"}, 415, "unsupported_encoding"),
    ],
    ids=["cut-json", "not-an-array", "not-utf8", "too-large", "gzip-bomb", "bad-gzip", "brotli"],
)
def test_bad_bodies_get_4xx_and_store_nothing(
    server: VtpServer, body: bytes, headers: dict[str, str], status: int, error: str
) -> None:
    before = stored(server)
    got, _, answer = call(server, "/v1/events", body=body, headers={**AUTH, **headers})
    assert got == status
    assert json.loads(answer)["error"] == error
    assert json.loads(answer)["message"]
    assert stored(server) == before


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic abc"}])
def test_wrong_or_missing_token_is_refused(server: VtpServer, headers: dict[str, str]) -> None:
    before = stored(server)
    status, answer_headers, body = call(server, "/v1/events", body=json.dumps([raw_event()]).encode(), headers=headers)
    assert status == 401
    assert answer_headers["www-authenticate"] == "Bearer"
    assert "bearer token" in json.loads(body)["message"]
    assert stored(server) == before


@pytest.mark.parametrize(
    "path",
    [
        "/v1/recordings/not-a-uuid/sessions",
        "/v1/users/1%27%20OR%201=1/engagement",
        "/v1/courses/123/statistics",
        "/v1/reports/engagement?course_id=nope",
        "/v1/reports/sideways",
        "/v1/realtime?minutes=-1",
    ],
)
def test_bad_ids_and_parameters_get_a_clear_json_error(server: VtpServer, path: str) -> None:
    status, _, body = call(server, path)
    assert status == 422
    answer = json.loads(body)
    assert answer["error"] == "invalid_request"
    assert "see /docs" in answer["message"]


def test_errors_are_json_everywhere(server: VtpServer) -> None:
    status, _, body = call(server, "/v2/nothing")
    assert status == 404 and json.loads(body)["error"] == "not_found"
    status, _, body = call(server, "/v1/reports/student?user_id=0ba7b812-9dad-11d1-80b4-00c04fd430c8")
    assert status == 404 and "no user" in json.loads(body)["message"]
    status, _, body = call(server, "/v1/reports/student")
    assert status == 400 and json.loads(body)["error"] == "missing_user_id"


def test_reports_as_json_and_html(server: VtpServer, sem: pl.DataFrame) -> None:
    post(server, event_rows(sem))
    status, headers, body = call(server, "/v1/reports/engagement")
    assert status == 200 and json.loads(body)["kind"] == "engagement"
    status, headers, body = call(server, "/v1/reports/engagement", headers={"Accept": "text/html"})
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert b"<html" in body and b"<script src=" not in body


def test_cors_allows_the_configured_origin_only(server: VtpServer) -> None:
    _, headers, _ = call(server, "/healthz", headers={"Origin": "http://player.test"})
    assert headers.get("access-control-allow-origin") == "http://player.test"
    _, headers, _ = call(server, "/healthz", headers={"Origin": "http://elsewhere.test"})
    assert "access-control-allow-origin" not in headers


def test_realtime_counts_recent_viewers(server: VtpServer) -> None:
    now = datetime.now(UTC)
    rec = "5ba7b811-9dad-11d1-80b4-00c04fd430c8"
    users = ["5ba7b812-9dad-11d1-80b4-00c04fd430c8", "5ba7b813-9dad-11d1-80b4-00c04fd430c8"]
    events = [
        raw_event(
            recording_id=rec,
            user_id=users[0],
            session_id="rt-1",
            event_timestamp=(now - timedelta(seconds=20)).isoformat(),
        ),
        raw_event(
            recording_id=rec,
            user_id=users[1],
            session_id="rt-2",
            event_timestamp=(now - timedelta(minutes=3)).isoformat(),
        ),
        raw_event(
            recording_id=rec,
            user_id=users[1],
            session_id="rt-3",
            event_timestamp=(now - timedelta(minutes=30)).isoformat(),
        ),
    ]
    assert post(server, events)[1]["accepted"] == 3
    status, _, body = call(server, "/v1/realtime?minutes=5")
    answer = json.loads(body)
    mine = [r for r in answer["recordings"] if r["recording_id"] == rec]
    assert status == 200 and mine[0]["active_viewers"] == 2
    status, _, body = call(server, "/v1/realtime?minutes=1")
    mine = [r for r in json.loads(body)["recordings"] if r["recording_id"] == rec]
    assert mine[0]["active_viewers"] == 1 and mine[0]["events_per_second"] == pytest.approx(1 / 60)


def test_openapi_document_is_committed_and_current() -> None:
    committed = json.loads((ROOT / "docs" / "openapi.json").read_text())
    assert committed == create_app(Lab(":memory:")).openapi(), "regenerate: python -m vtp_lab.serve > docs/openapi.json"


def test_second_server_on_the_same_store_gets_a_clear_error(server: VtpServer) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "vtp_lab.cli", "serve", "--store", str(server.store), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 1
    assert "open for writing" in out.stderr and "PID" in out.stderr and str(server.store) in out.stderr
    assert "Traceback" not in out.stderr


def _burst(url: str, docs: list[list[dict[str, object]]], acknowledged: list[str], stop: threading.Event) -> None:
    for doc in docs:
        if stop.is_set():
            return
        request = urllib.request.Request(
            url + "/v1/events",
            data=json.dumps(doc).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                answer = json.loads(response.read())
        except OSError:
            return  # the server went away: this request was not acknowledged
        assert answer["rejected"] == 0
        acknowledged.extend(str(e["id"]) for e in doc)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_a_signal_during_a_burst_keeps_every_acknowledged_event(tmp_path: Path, sig: signal.Signals) -> None:
    events = semester(courses=2, lectures_per_course=4, students=30, seed=5).events
    rows = event_rows(events)
    docs = [rows[i : i + 50] for i in range(0, len(rows), 50)]
    acknowledged: list[str] = []
    stop = threading.Event()
    with running_vtp_server(tmp_path / "lab.duckdb") as server:
        threads = [threading.Thread(target=_burst, args=(server.url, docs[k::4], acknowledged, stop)) for k in range(4)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 30
        while len(acknowledged) < 500 and time.monotonic() < deadline:
            time.sleep(0.01)
        server.proc.send_signal(sig)
        server.proc.wait(timeout=60)
        stop.set()
        for t in threads:
            t.join()
    assert 500 <= len(acknowledged) < len(rows)
    with Lab(tmp_path / "lab.duckdb", read_only=True) as lab:
        ids = set(lab.events()["id"].to_list())
    missing = set(acknowledged) - ids
    assert not missing, f"{len(missing)} acknowledged events lost after {sig.name}"


def test_quarantine_and_shutdown_after_the_module(tmp_path: Path) -> None:
    with running_vtp_server(tmp_path / "lab.duckdb") as server:
        _, answer = post(server, [raw_event(session_id="keep"), raw_event(event_type="rewind")])
        request_id = answer["request_id"]
    assert server.proc.returncode in (0, -15)  # uvicorn re-raises SIGTERM once it has shut down cleanly
    with Lab(tmp_path / "lab.duckdb", read_only=True) as lab:
        quarantined = lab.rejected_events()
        assert lab.events()["session_id"].to_list() == ["keep"]
    assert quarantined.select("source", "row_number", "reason").rows() == [
        (f"http:{request_id}", 2, "unknown_event_type")
    ]


def test_schemathesis_finds_no_server_error(server: VtpServer, tmp_path: Path) -> None:
    out = subprocess.run(
        [
            str(Path(sys.executable).with_name("schemathesis")),
            "run",
            f"{server.url}/openapi.json",
            "--checks",
            "not_a_server_error",
            "--max-examples",
            "20",
            "--seed",
            "1",
            "--header",
            f"Authorization: Bearer {TOKEN}",
            "--phases",
            "examples,coverage,fuzzing",
            "--report-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
        cwd=tmp_path,  # schemathesis keeps a cache in its working directory
    )
    assert out.returncode == 0, out.stdout[-3000:]


def test_the_token_can_come_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VTP_LAB_TOKEN", "from-env")
    with running_vtp_server(tmp_path / "lab.duckdb") as server:
        body = json.dumps([raw_event()]).encode()
        assert call(server, "/v1/events", body=body)[0] == 401
        assert call(server, "/v1/events", body=body, headers={"Authorization": "Bearer from-env"})[0] == 200


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--port", "70000"], "--port 70000 is not a port"),
        (["--max-body", "0"], "argument --max-body: 0 is too small; give 1 or more"),
    ],
)
def test_bad_serve_options_are_named(tmp_path: Path, args: list[str], message: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "vtp_lab.cli", "serve", "--store", str(tmp_path / "lab.duckdb"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode in (1, 2) and message in out.stderr and "Traceback" not in out.stderr


def test_a_lake_store_serves_the_same(tmp_path: Path, sem: pl.DataFrame) -> None:
    with running_vtp_server(tmp_path / "lake") as server:
        first = post(server, event_rows(sem))[1]
        again = post(server, event_rows(sem.head(5)))[1]
        rec = sem["recording_id"][0]
        status, _, body = call(server, f"/v1/recordings/{rec}/sessions")
    assert (first["accepted"], again["accepted"], again["duplicates"]) == (sem.height, 0, 5)
    reference = Lab(":memory:")
    reference.append(sem)
    assert status == 200 and json.loads(body) == as_json(reference.playback_sessions(recording_id=rec))


def test_docs_page_loads_nothing_from_elsewhere(server: VtpServer) -> None:
    status, headers, body = call(server, "/docs")
    page = body.decode()
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert "/docs/assets/swagger-ui-bundle.js" in page and "/openapi.json" in page
    assert not re.findall(r"""(?:src|href)=["']https?://""", page), "an asset from another site"
    status, headers, script = call(server, "/docs/assets/swagger-ui-bundle.js")
    assert status == 200 and len(script) > 100_000
