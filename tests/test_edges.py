"""Trust at the edges: nothing the contract accepts breaks a later step, nothing the user owns is lost.

One test (or a few) per defect of the trust issue, each failing on the code before its
fix; the whole chain under hostile input is in ``test_chain.py``.
"""

from __future__ import annotations

import gzip
import json
import re
import subprocess
import sys
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard
from conftest import REC, USER

from vtp_lab import Lab
from vtp_lab.errors import EventValidationError, InputFormatError, RejectionLimitError
from vtp_lab.events import Event
from vtp_lab.io import read_documents, write_events
from vtp_lab.load import load_files
from vtp_lab.store import open_store
from vtp_lab.synth import semester

STORES = ["lab.duckdb", "lake"]
EVENT = f'"recording_id":"{REC}","user_id":"{USER}","session_id":"s1"'


def line(event_type: str = "playback_started", second: int = 0, **fields: object) -> str:
    """One NDJSON event; ``fields`` go in as JSON values (``metadata`` may be a dict or raw JSON text)."""
    extra = "".join(
        f',"{k}":{v if isinstance(v, str) and k == "metadata" else json.dumps(v)}' for k, v in fields.items()
    )
    return f'{{{EVENT},"event_type":"{event_type}","event_timestamp":"2026-09-01T10:00:{second:02d}Z"{extra}}}'


def fields(**overrides: object) -> dict[str, object]:
    """One event's fields for :class:`Event`, with ``overrides``."""
    return {
        "event_type": "playback_started",
        "recording_id": REC,
        "user_id": USER,
        "session_id": "s",
        "event_timestamp": 0,
        **overrides,
    }


def load_lines(tmp_path: Path, lines: list[str], store: str = ":memory:") -> tuple[Lab, object]:
    path = tmp_path / "d.ndjson"
    path.write_text("\n".join(lines) + "\n")
    lab = Lab(store if store == ":memory:" else tmp_path / store)
    return lab, lab.load(path, progress=False)


@pytest.fixture(scope="module")
def sem():
    return semester(courses=1, lectures_per_course=3, students=12, seed=4)


# 1. An export never removes what it did not write.
@pytest.mark.parametrize("store", STORES)
@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_export_refuses_a_folder_holding_the_users_files_and_replaces_its_own(tmp_path, sem, store, fmt):
    lab = Lab(tmp_path / store)
    lab.append(sem.events)
    target = tmp_path / "proj"
    mine = target / "recordings" / "lecture01.mp4" if fmt == "parquet" else target / "playback_sessions.csv"
    mine.parent.mkdir(parents=True, exist_ok=True)
    mine.write_text("video")
    export = lab.export_parquet if fmt == "parquet" else lab.export_csv
    with pytest.raises(InputFormatError, match="did not write") as info:
        export(target)
    assert str(mine) in str(info.value)
    assert mine.read_text() == "video"
    assert sorted(p.name for p in target.rglob("*")) == sorted([mine.name, *([mine.parent.name] * (fmt == "parquet"))])
    fresh = tmp_path / "fresh"
    first = export(fresh)
    again = export(fresh)  # a folder an export wrote is replaced
    assert first == again and all(p.exists() for p in again)


def test_cli_export_keeps_a_video_named_like_a_table(tmp_path, sem):
    Lab(tmp_path / "lab.duckdb").append(sem.events)
    video = tmp_path / "proj" / "recordings" / "lecture01.mp4"
    video.parent.mkdir(parents=True)
    video.write_text("video")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "vtp_lab.cli",
            "export",
            "--to",
            str(tmp_path / "proj"),
            "--store",
            str(tmp_path / "lab.duckdb"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 1 and "lecture01.mp4" in out.stderr and video.read_text() == "video"


# 2. A cut or corrupt compressed stream fails its file, keeping what came before.
@pytest.mark.parametrize("suffix", [".gz", ".zst"])
@pytest.mark.parametrize("damage", ["cut", "garbage", "corrupt"])
def test_a_damaged_compressed_file_fails_with_where_it_stopped(tmp_path, sem, suffix, damage):
    text = write_events(sem.events, tmp_path / "x.ndjson").read_bytes()
    data = gzip.compress(text) if suffix == ".gz" else zstandard.ZstdCompressor().compress(text)
    if damage == "cut":
        data = data[: len(data) // 2]
    elif damage == "garbage":
        data += b"trailing garbage"
    else:  # gzip has a CRC; zstd only when written with a checksum, as the zstd tool writes it
        if suffix == ".zst":
            data = zstandard.ZstdCompressor(write_checksum=True).compress(text)
        data = data[:100] + bytes(b ^ 0xFF for b in data[100:140]) + data[140:]
    path = tmp_path / f"d.ndjson{suffix}"
    path.write_bytes(data)
    lab = Lab(":memory:")
    report = lab.load(path, progress=False)
    (file,) = report.files
    kind = "gzip" if suffix == ".gz" else "zstd"
    assert file.error is not None and f"the {kind} stream" in file.error and "at byte" in file.error
    assert str(path) in file.error and "EOFError" not in file.error
    assert file.balanced and lab.events().height == file.accepted
    if damage == "garbage":  # everything before the garbage was whole
        assert file.accepted == sem.events.height
    else:
        assert file.rows_read < sem.events.height


def test_the_cli_exits_non_zero_for_a_cut_zst(tmp_path, sem):
    data = zstandard.ZstdCompressor().compress(write_events(sem.events, tmp_path / "x.ndjson").read_bytes())
    (tmp_path / "cut.ndjson.zst").write_bytes(data[: len(data) // 2])
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "vtp_lab.cli",
            "load",
            str(tmp_path / "cut.ndjson.zst"),
            "--store",
            str(tmp_path / "s.duckdb"),
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 1 and "cut short" in out.stderr and "cut.ndjson.zst" in out.stderr


def test_concatenated_gzip_members_are_one_file(tmp_path, sem):
    text = write_events(sem.events, tmp_path / "x.ndjson").read_bytes()
    half = text.index(b"\n", len(text) // 2) + 1
    (tmp_path / "two.ndjson.gz").write_bytes(gzip.compress(text[:half]) + gzip.compress(text[half:]))
    report = Lab(":memory:").load(tmp_path / "two.ndjson.gz", progress=False)
    assert (report.accepted, report.errors) == (sem.events.height, [])


# 3. The same id with other content is a conflict, quarantined with its raw text.
@pytest.mark.parametrize("store", [":memory:", *STORES])
def test_a_conflicting_duplicate_is_quarantined_and_a_true_repeat_counted(tmp_path, store):
    ident = '"id":"11111111-2222-3333-4444-555555555555",'
    first = "{" + ident + line(metadata='{"position":1,"quality":"720p"}')[1:]
    same_fields = "{" + ident + line(metadata='{"quality": "720p", "position": 1.0}')[1:]
    other = "{" + ident + line(metadata='{"position":2,"quality":"720p"}')[1:]
    lab, report = load_lines(tmp_path, [first, first, same_fields, other], store)
    assert (report.accepted, report.duplicates, report.rejected) == (1, 2, 1)
    quarantined = lab.rejected_events()
    assert quarantined.select("reason", "field", "row_number", "raw").row(0) == (
        "conflicting_duplicate",
        "id",
        4,
        other,
    )
    (tmp_path / "again.ndjson").write_text(f"{other}\n{first}\n")
    again = lab.load(tmp_path / "again.ndjson", progress=False)
    assert (again.accepted, again.duplicates, again.rejected) == (0, 1, 1)
    assert again.rejected_by_reason == {"conflicting_duplicate": 1}
    assert lab.events()["metadata"].to_list() == ['{"position":1,"quality":"720p"}']


def test_a_conflict_posted_to_a_collector_is_in_its_receipt(tmp_path):
    lab = Lab(":memory:")
    ident = '"id":"11111111-2222-3333-4444-555555555555",'
    with lab.collector(on_invalid="quarantine") as c:
        assert c.submit("{" + ident + line()[1:]).result().accepted == 1
        receipt = c.submit("{" + ident + line(second=5)[1:]).result()
    assert (receipt.accepted, receipt.duplicates) == (0, 0)
    assert receipt.rejected.select("row_number", "reason").rows() == [(1, "conflicting_duplicate")]
    assert lab.rejected_events()["reason"].to_list() == ["conflicting_duplicate"]


# 4. CSV per RFC 4180, and export -> reload exact.
def test_csv_quoted_line_breaks_null_markers_and_quoted_empty_strings(tmp_path):
    head = "event_type,recording_id,user_id,session_id,event_timestamp,metadata"
    rows = [
        f'playback_started,{REC},{USER},"line\none",2026-09-01 10:00:00+00,"{{""position"": 0}}"',
        f"playback_paused,{REC},{USER},s2,2026-09-01 10:00:01+00,\\N",
        f'playback_paused,{REC},{USER},"\\N",2026-09-01 10:00:02+00,',
        f'playback_paused,{REC},{USER},"",2026-09-01 10:00:03+00,',
        f"playback_paused,{REC},{USER},\\N,2026-09-01 10:00:04+00,",
        f'playback_paused,{REC},{USER},"a ""quoted""\n\nthree-line",2026-09-01 10:00:05+00,',
    ]
    (tmp_path / "e.csv").write_text("\n".join([head, *rows]) + "\n")
    lab = Lab(":memory:")
    report = lab.load(tmp_path / "e.csv", progress=False)
    assert (report.rows_read, report.accepted, report.rejected) == (6, 4, 2)
    assert sorted(lab.events()["session_id"].to_list()) == sorted(
        ["line\none", "s2", "\\N", 'a "quoted"\n\nthree-line']
    )
    assert lab.events().filter(pl.col("session_id") == "s2")["metadata"].to_list() == [None]
    assert lab.rejected_events().select("row_number", "reason").sort("row_number").rows() == [
        (6, "empty_session_id"),
        (7, "missing_field"),
    ]


def test_a_stray_quote_costs_one_line_not_the_rest_of_the_file(tmp_path, sem):
    lines = write_events(sem.events.head(50), tmp_path / "x.csv").read_text().splitlines()
    lines.insert(10, 'a stray " quote,that is not a record')
    (tmp_path / "stray.csv").write_text("\n".join(lines) + "\n")
    report = Lab(":memory:").load(tmp_path / "stray.csv", progress=False)
    assert (report.rows_read, report.accepted, report.rejected) == (51, 50, 1)


@pytest.mark.parametrize("store", STORES)
@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_export_then_reload_is_exact_with_line_breaks_and_quotes(tmp_path, store, fmt):
    lab = Lab(tmp_path / store)
    odd = ["multi\nline", 'quote " inside', "comma, inside", "\\N", "trailing space "]
    frame = pl.DataFrame(
        {
            "event_type": ["playback_started"] * len(odd),
            "recording_id": [REC] * len(odd),
            "user_id": [USER] * len(odd),
            "session_id": odd,
            "event_timestamp": [f"2026-09-01T10:00:0{i}Z" for i in range(len(odd))],
            "metadata": ['{"note":"a\\nb \\"c\\""}', None, "{}", '{"x":[1,{"y":null}]}', '{"position":1.5}'],
        }
    )
    assert lab.append(frame).inserted == len(odd)
    out = tmp_path / "out"
    if fmt == "csv":
        lab.export_csv(out)
        path = out / "analytics_events.csv"
    else:
        lab.export_parquet(out)
        path = out / "analytics_events"
    again = Lab(":memory:")
    report = again.load(path, progress=False)
    assert (report.accepted, report.rejected) == (len(odd), 0)
    assert again.events().sort("id").equals(lab.events().sort("id"))


# 5, 7. Numbers the mirror cannot hold are rejected; large positions survive.
def test_integers_beyond_postgresql_integer_are_invalid_metadata(tmp_path):
    lab, report = load_lines(
        tmp_path,
        [
            line("quality_changed", metadata={"new_bitrate": 2**64}),
            line("quality_changed", 1, metadata={"old_bitrate": 2_147_483_648}),
            line("recording_started", 2, metadata={"duration": 3e9}),
            line("quality_changed", 3, metadata={"new_bitrate": 2_147_483_647, "position": 3e9}),
        ],
    )
    assert report.rejected_by_reason == {"invalid_metadata": 3}
    assert lab.rejected_events()["field"].to_list() == [
        "metadata.new_bitrate",
        "metadata.old_bitrate",
        "metadata.duration",
    ]
    assert lab.quality_events()["new_bitrate"].to_list() == [2_147_483_647]
    with pytest.raises(EventValidationError, match=r"metadata\.bitrate"):
        Event(**fields(metadata={"bitrate": 2**40}))


def test_a_position_beyond_integer_seconds_keeps_every_later_step_working(tmp_path):
    lab, report = load_lines(
        tmp_path,
        [line(metadata={"position": 0}), line("playback_paused", 30, metadata={"position": 3_000_000_000})],
        "lab.duckdb",
    )
    assert report.accepted == 2
    assert lab.refresh()["playback_sessions"] == 1
    assert lab.playback_sessions()["watched_seconds"].to_list() == [2_147_483_647]
    assert lab.session_details().height == 1
    for kind in ("engagement", "quality", "attendance", "performance", "compliance"):
        lab.report(kind).to_html(tmp_path / f"{kind}.html")
    _, again = load_lines(tmp_path, [line("session_ended", 40)], "lab.duckdb")
    assert again.accepted == 1


# 6. A load over its limit stores nothing.
@pytest.mark.parametrize("store", STORES)
def test_a_load_over_max_rejected_stores_nothing_not_even_its_ledger_entry(tmp_path, store):
    lab = Lab(tmp_path / store)
    good = semester(courses=1, lectures_per_course=1, students=3, seed=2).events
    lab.append(good)
    before = (lab.events().height, lab.rejected_events().height, lab.loads().height)
    bad = semester(courses=1, lectures_per_course=2, students=8, seed=3, bad_rows=0.2).events
    write_events(bad.head(300), tmp_path / "a.ndjson")
    write_events(bad.tail(300), tmp_path / "b.ndjson")
    with pytest.raises(RejectionLimitError, match="nothing of this load was stored") as info:
        lab.load(tmp_path / "a.ndjson", tmp_path / "b.ndjson", progress=False, max_rejected=3)
    assert info.value.rejected > 3 and sum(info.value.by_reason.values()) == info.value.rejected
    assert (lab.events().height, lab.rejected_events().height, lab.loads().height) == before
    lab.close()
    reopened = Lab(tmp_path / store)
    assert reopened.events().height == before[0]
    within = reopened.load(tmp_path / "a.ndjson", progress=False, max_rejected=10_000)
    assert within.accepted > 0 and reopened.loads().height == before[2] + 1


# 8, 9, 10. What PostgreSQL, DuckDB and Python cannot all hold is rejected up front.
def test_timestamps_outside_years_1_to_9999_or_with_large_offsets_are_invalid(tmp_path):
    stamps = [
        "0000-01-01T00:00:00Z",
        "-0044-03-15T00:00:00Z",
        "2026-01-01T10:00:00+25:00",
        "2026-01-01 10:00:00+16",
        "0001-01-01T00:00:00+01:00",
        "infinity",
        "2026-01-01T10:00:00+15:59",
        -1e12,
    ]
    rows = [line().replace('"2026-09-01T10:00:00Z"', json.dumps(s)) for s in stamps]
    rows = [r.replace('"session_id":"s1"', f'"session_id":"s{i}"') for i, r in enumerate(rows)]
    lab, report = load_lines(tmp_path, rows)
    assert report.rejected_by_reason == {"invalid_timestamp": 6} and report.accepted == 2
    lab.events()  # every later read works
    lab.session_details()
    for stamp in stamps[:6]:
        with pytest.raises(EventValidationError, match="invalid_timestamp"):
            Event(**fields(event_timestamp=stamp))


def test_what_jsonb_and_text_cannot_hold_is_rejected(tmp_path):
    _, report = load_lines(
        tmp_path,
        [
            line(metadata='{"x": NaN}'),
            line(second=1, metadata='{"x": [1, Infinity]}'),
            line(second=2, metadata='{"x": "a\\u0000b"}'),
            line(second=3).replace('"session_id":"s1"', '"session_id":"a\\u0000b"'),
            line(second=4, metadata='{"x": "fine", "nested": {"NaN": "as a key is text"}}'),
        ],
    )
    assert report.rejected_by_reason == {"invalid_metadata": 3, "empty_session_id": 1}
    assert report.accepted == 1
    with pytest.raises(EventValidationError, match="invalid_metadata"):
        Event(**fields(metadata={"x": float("nan")}))
    with pytest.raises(EventValidationError, match="empty_session_id"):
        Event(**fields(session_id="a\x00b"))


def test_metadata_that_duckdb_reads_but_json_does_not_is_rejected_as_one_event_is(tmp_path):
    """A comma before a closing bracket, and inf or nan in any case: not JSON, nor anything PostgreSQL's COPY takes."""
    bad = ['{"x": 1,}', '{"x": [1, 2,]}', '{"x": inf}', '{"x": -Infinity}', '{"x": nan}', '{"x": [1, INF ]}']
    fine = ['{"x": "a,}", "y": "[b,]"}', '{"x": "1:inf", "y": ", nan"}', '{"x": "Finance", "y": "information"}']
    lab, report = load_lines(tmp_path, [line(second=i, metadata=json.dumps(text)) for i, text in enumerate(bad + fine)])
    assert (report.rejected_by_reason, report.accepted) == ({"invalid_metadata": len(bad)}, len(fine))
    assert sorted(lab.rejected_events()["field"].to_list()) == ["metadata"] * len(bad)
    assert sorted(lab.events()["metadata"].to_list()) == sorted(fine)
    for text in bad:
        with pytest.raises(EventValidationError, match="invalid_metadata"):
            Event.from_dict({**fields(), "metadata": text})


def test_a_repeated_metadata_key_means_its_last_value_everywhere(tmp_path):
    lab, report = load_lines(
        tmp_path,
        [
            line(metadata='{"position": 5, "position": -1}'),
            line(second=1, metadata='{"position": -1, "position": 7, "quality": "720p"}'),
            line(second=2, metadata=json.dumps('{"position": 1, "position": -3}')),
        ],
    )
    assert (report.accepted, report.rejected_by_reason) == (1, {"invalid_metadata": 2})
    assert lab.events()["metadata"].to_list() == ['{"position":7,"quality":"720p"}']
    assert json.loads('{"position": 5, "position": -1}')["position"] == -1  # Python's reading, as PostgreSQL's


# 11. Derived tables reflect every stored event, whoever reads them.
def test_derived_tables_reflect_events_that_arrived_through_a_collector(tmp_path, sem):
    path = tmp_path / "lab.duckdb"
    lab = Lab(path)
    lab.append(sem.events)
    lab.refresh()
    sessions = lab.store.count("playback_sessions")
    with lab.collector() as c:
        c.record("playback_started", REC, USER, "late-session", {"position": 0}, event_timestamp="2026-09-01T10:00:00Z")
        c.record("session_ended", REC, USER, "late-session", {"position": 60}, event_timestamp="2026-09-01T10:01:00Z")
    lab.close()
    with Lab(path, read_only=True) as reader:
        assert reader.count("playback_sessions") == sessions + 1
        written = reader.export_csv(tmp_path / "csv", tables="playback_sessions")
        assert pl.read_csv(written[0]).height == sessions + 1
        assert reader.playback_sessions().height == sessions + 1
    info = subprocess.run(
        [sys.executable, "-m", "vtp_lab.cli", "info", "--store", str(path)], capture_output=True, text=True, check=True
    ).stdout
    assert re.search(rf"playback_sessions\s+{sessions + 1:,}\n", info)


# 12. Readers while a writer runs: test_faults.test_second_writer_gets_a_clear_error_and_readers_read_meanwhile.


# 13, 14, 15. Files as researchers hold them.
def test_a_folder_skips_what_is_not_an_event_dump_and_says_why(tmp_path, sem):
    write_events(sem.events, tmp_path / "events.ndjson")
    (tmp_path / "README.txt").write_text("these are my notes\nabout the dumps\n")
    sem.recordings.write_csv(tmp_path / "recordings.csv")
    sem.recordings.write_parquet(tmp_path / "recordings.parquet")
    report = Lab(":memory:").load(tmp_path, progress=False)
    assert report.errors == [] and report.accepted == sem.events.height
    skipped = {Path(s.split(":")[0]).name for s in report.skipped}
    assert skipped == {"README.txt", "recordings.csv", "recordings.parquet"}
    assert any("load_recordings" in s for s in report.skipped)


def test_parquet_with_binary_uuids_and_map_metadata_loads(tmp_path, sem):
    import uuid

    ev = sem.events.head(20)
    table = pa.table(
        {
            "id": pa.array([uuid.UUID(i).bytes for i in ev["id"]], pa.binary(16)),
            "event_type": ev["event_type"].to_list(),
            "recording_id": pa.array([uuid.UUID(i).bytes for i in ev["recording_id"]], pa.binary(16)),
            "user_id": pa.array([uuid.UUID(i).bytes for i in ev["user_id"]], pa.uuid()),
            "session_id": ev["session_id"].to_list(),
            "event_timestamp": ev["event_timestamp"].to_arrow(),
            "metadata": pa.array(
                [
                    None if m is None else [(k, str(v)) for k, v in json.loads(m).items() if isinstance(v, str)]
                    for m in ev["metadata"]
                ],
                pa.map_(pa.string(), pa.string()),
            ),
        }
    )
    pq.write_table(table, tmp_path / "spark.parquet")
    lab = Lab(":memory:")
    report = lab.load(tmp_path / "spark.parquet", progress=False)
    assert (report.accepted, report.errors) == (20, [])
    assert sorted(lab.events()["id"]) == sorted(ev["id"])


def test_old_mac_line_endings_are_named(tmp_path):
    (tmp_path / "mac.ndjson").write_bytes((line() + "\r" + line(second=1) + "\r").encode())
    report = Lab(":memory:").load(tmp_path / "mac.ndjson", progress=False)
    assert "carriage return alone" in report.errors[0] and report.rows_read == 0


def test_blank_lines_are_skipped_alike_in_files_and_posted_bodies(tmp_path):
    body = f"{line()}\n\t\r\n\u00a0\n{line(second=1)}\n"
    (tmp_path / "b.ndjson").write_text(body)
    from_file = load_files(open_store(":memory:"), [tmp_path / "b.ndjson"], progress=False)
    posted, _ = read_documents(pl.DataFrame({"_doc": [body], "_source": ["api"], "_ndjson": [True]}))
    assert from_file.rows_read == posted.rows_read == 2
