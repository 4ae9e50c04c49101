"""Source adapters: Open edX tracking logs, xAPI statements and Caliper media events through the same contract.

Hand-written records test each mapping rule, skip and rejection; a synthetic semester
written in each source format loads back to the sessions of the platform events it was
made from; the peer fixtures (Open edX Insights, Open edX Aspects) are compared with
vtp_lab's numbers where the definitions agree, and every difference is accounted for.
"""

from __future__ import annotations

import gzip
import json
import os
import random
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import vtp_lab as vl
from vtp_lab import io as vl_io
from vtp_lab.cli import main
from vtp_lab.duck import compute, literal
from vtp_lab.events import NAMESPACE, NO_SESSION
from vtp_lab.io import detect_format, write_events
from vtp_lab.metrics import retention
from vtp_lab.sessions import cut_sessions, sessionize
from vtp_lab.sources import mapping, sniff
from vtp_lab.sources.writers import as_source, expressible
from vtp_lab.sources.xapi import PROFILE
from vtp_lab.stats import derive
from vtp_lab.synth import semester

ROOT = Path(__file__).resolve().parents[1]
PEERS = Path(os.environ.get("VTP_LAB_PEERS", ROOT.parent / "shared" / "peers"))
T0 = "2026-09-01T10:00:00+00:00"
EXT = f"{PROFILE}/extensions"


def peer(path: str) -> Path:
    """A peer fixture's path, or skip (with the reason) when the peers folder is absent."""
    found = PEERS / path
    if not found.exists():
        pytest.skip(f"peer fixture {found} is absent (the folder ../shared/peers, or $VTP_LAB_PEERS)")
    return found


def source_id(source: str, kind: str, identifier: str) -> str:
    return str(uuid.uuid5(NAMESPACE, f"{source}|{kind}|{identifier}"))


def edx(name: str, event: dict[str, object] | None, *, string: bool = True, at: str = T0, **top: object) -> str:
    record: dict[str, object] = {
        "username": "ana",
        "event_type": name,
        "event_source": "browser",
        "session": "s1",
        "time": at,
        "context": {"course_id": "course-v1:Org+C1+2026", "user_id": 7, "path": "/event"},
        "event": json.dumps(event) if string and event is not None else event,
    }
    record.update(top)
    return json.dumps(record)


def statement(verb: str, *, time: float | None = None, at: str = T0, **extra: object) -> dict[str, object]:
    result = {f"{EXT}/{k}": v for k, v in (("time", time), *extra.pop("result", {}).items()) if v is not None}
    context = {f"{EXT}/{k}": v for k, v in {"length": 600, "session-id": "x1", **extra.pop("context", {})}.items()}
    return {
        "id": extra.pop("id", str(uuid.uuid4())),
        "actor": extra.pop("actor", {"account": {"homePage": "https://lms.example", "name": "learner-1"}}),
        "verb": {"id": verb if "/" in verb else f"{PROFILE}/verbs/{verb}"},
        "object": {"id": "https://lms.example/video/1", "definition": {"type": f"{PROFILE}/activity-type/video"}},
        "result": {"extensions": result},
        "context": {"contextActivities": {"parent": [{"id": "https://lms.example/course/1"}]}, "extensions": context},
        "timestamp": at,
        **extra,
    }


def caliper(action: str, *, current: str | None = "PT10S", **extra: object) -> dict[str, object]:
    event: dict[str, object] = {
        "@context": "http://purl.imsglobal.org/ctx/caliper/v1p2",
        "id": f"urn:uuid:{uuid.uuid4()}",
        "type": "MediaEvent",
        "actor": {"id": "https://lms.example/users/9", "type": "Person"},
        "action": action,
        "object": {"id": "https://lms.example/video/2", "type": "VideoObject", "duration": "PT1H", "name": "Week 1"},
        "eventTime": "2026-09-01T10:00:00.000Z",
        "group": {"id": "https://lms.example/courses/7", "type": "CourseSection"},
        "session": {"id": "https://lms.example/sessions/3", "type": "Session"},
    }
    if current is not None:
        event["target"] = {"id": "https://lms.example/video/2#t", "type": "MediaLocation", "currentTime": current}
    event.update(extra)
    return event


def load(tmp_path: Path, name: str, text: str, **kw: object) -> tuple[vl.LoadReport, pl.DataFrame, vl.Lab]:
    path = tmp_path / name
    path.write_text(text)
    lab = vl.Lab(":memory:", **kw)
    report = lab.load(path, progress=False)
    assert report.files[0].balanced, report
    return report, lab.events().sort("event_timestamp", "event_type"), lab


def meta(events: pl.DataFrame) -> list[dict[str, object]]:
    return [json.loads(m) for m in events["metadata"]]


# Open edX


def test_edx_browser_events_map_field_by_field(tmp_path):
    lines = [
        edx("load_video", {"id": "v1", "duration": 600.5}),
        edx("play_video", {"id": "v1", "currentTime": 0, "code": "yt"}, at="2026-09-01T10:00:01+00:00"),
        edx("seek_video", {"id": "v1", "old_time": 30, "new_time": 12.5}, string=False, at="2026-09-01T10:00:31Z"),
        edx(
            "speed_change_video",
            {"id": "v1", "current_time": 20, "new_speed": "1.50", "old_speed": "1.0"},
            at="2026-09-01T10:00:40Z",
        ),
        edx("pause_video", {"id": "v1", "currentTime": 44.4}, at="2026-09-01T10:00:50Z"),
        edx("stop_video", {"id": "v1", "currentTime": 44.4}, at="2026-09-01T10:00:51Z"),
        edx("complete_video", {"id": "v1"}, at="2026-09-01T10:00:52Z"),
    ]
    report, events, lab = load(tmp_path, "tracking.log", "\n".join(lines))
    assert (report.files[0].format, report.accepted, report.skipped_records) == ("edx", 7, 0)
    assert events["event_type"].to_list() == [
        "recording_started",
        "playback_started",
        "engagement_action",
        "engagement_action",
        "playback_paused",
        "session_ended",
        "playback_completed",
    ]
    course = source_id("edx", "course", "course-v1:Org+C1+2026")
    m = meta(events)
    assert m[0] == {"duration": 600.5, "course_id": course}
    assert m[1] == {"position": 0.0, "course_id": course}
    assert m[2] == {"from_position": 30.0, "to_position": 12.5, "action": "seek", "course_id": course}
    assert m[3] == {"position": 20.0, "playback_rate": 1.5, "action": "speed_change", "course_id": course}
    assert m[4]["position"] == 44.4
    assert set(events["recording_id"]) == {source_id("edx", "video", "course-v1:Org+C1+2026|v1")}
    assert set(events["user_id"]) == {source_id("edx", "user", "7")}
    assert set(events["session_id"]) == {"s1"}
    assert lab.derived().recordings.row(0, named=True)["course_id"] == course


def test_edx_mobile_names_current_time_and_username_fallback(tmp_path):
    mobile = edx(
        "edx.video.played",
        {"id": "block-v1:Org+C1+2026+type@video+block@abc", "current_time": 5},
        context={"course_id": "course-v1:Org+C1+2026"},
        session=None,
    )
    _, events, lab = load(tmp_path, "mobile.log", mobile + "\n")
    assert events.row(0, named=True)["session_id"] == NO_SESSION
    assert events["user_id"].item() == source_id("edx", "user", "ana")  # no context.user_id: the username
    assert meta(events)[0]["position"] == 5.0
    kinds = dict(lab.identities().select("kind", "identifier").iter_rows())
    assert kinds["user"] == "ana"
    assert kinds["video"] == "course-v1:Org+C1+2026|block-v1:Org+C1+2026+type@video+block@abc"


def test_edx_skips_other_events_by_type_and_rejects_what_cannot_be_mapped(tmp_path):
    lines = [
        "# a comment line, as in the Insights fixture",
        edx("problem_check", {"answers": {}}),
        edx("problem_check", {"answers": {}}),
        json.dumps({"event_type": "/courses/x/courseware", "context": {}, "event": "{}", "time": T0}),
        edx("play_video", {"id": "v1"}),  # no currentTime
        edx("seek_video", {"id": "v1", "old_time": 3}),  # no new_time
        edx("pause_video", {"id": "v1", "currentTime": "soon"}),  # not a number: invalid metadata
        edx("load_video", {"id": "v1", "duration": "PT1X"}),  # a broken duration
        "{not json",
        "",
    ]
    report, _, lab = load(tmp_path, "mixed.log", "\n".join(lines))
    f = report.files[0]
    assert (f.rows_read, f.accepted, f.rejected, f.skipped_records) == (9, 0, 5, 4)
    assert f.skipped_by_type == {"problem_check": 2, "# comment line": 1, "/courses/x/courseware": 1}
    rejected = lab.rejected_events().sort("row_number").select("row_number", "reason", "field").rows()
    assert rejected == [
        (5, "missing_field", "event.currentTime"),
        (6, "missing_field", "event.new_time"),
        (7, "invalid_metadata", "metadata.position"),
        (8, "invalid_metadata", "metadata.duration"),
        (9, "malformed", None),
    ]
    assert "skipped (not playback events): problem_check 2" in str(report)
    ledger = lab.loads().row(0, named=True)
    assert ledger["skipped_records"] == 4 and json.loads(ledger["skipped_by_type"])["problem_check"] == 2


def test_a_gzip_rotated_log_folder_loads_and_twice_stores_each_event_once(tmp_path):
    folder = tmp_path / "logs"
    folder.mkdir()
    day = [edx("play_video", {"id": "v1", "currentTime": 0}), edx("pause_video", {"id": "v1", "currentTime": 9})]
    (folder / "tracking.log-20260901.gz").write_bytes(gzip.compress(("\n".join(day) + "\n").encode()))
    (folder / "tracking.log").write_text(edx("play_video", {"id": "v2", "currentTime": 1}) + "\n")
    with vl.Lab(":memory:") as lab:
        first = lab.load(folder, progress=False)
        again = lab.load(folder, progress=False)
        assert (first.accepted, again.accepted, again.duplicates) == (3, 0, 3)
        assert lab.identities().height == 2 + 1 + 1  # two videos, one user, one course: stored once


# xAPI


def test_xapi_statements_map_verbs_and_extensions(tmp_path):
    sid = str(uuid.uuid4())
    statements = [
        statement(
            "http://adlnet.gov/expapi/verbs/initialized",
            object={
                "id": "https://lms.example/video/1",
                "definition": {"type": f"{PROFILE}/activity-type/video", "name": {"en-US": "Intro"}},
            },
        ),
        statement("played", time=0, id=sid, context={"speed": "1.25x", "quality": "720p"}, at="2026-09-01T10:00:01Z"),
        statement("seeked", result={"time-from": 30, "time-to": "PT1M5S"}, at="2026-09-01T10:00:30Z"),
        statement("paused", time="PT1M20.5S", at="2026-09-01T10:00:50Z"),
        statement("http://adlnet.gov/expapi/verbs/interacted", context={"speed": "2x"}, at="2026-09-01T10:00:51Z"),
        statement("http://adlnet.gov/expapi/verbs/interacted", at="2026-09-01T10:00:52Z"),
        statement("http://adlnet.gov/expapi/verbs/completed", time=600, at="2026-09-01T10:01:00Z"),
        statement("http://adlnet.gov/expapi/verbs/terminated", time=600, at="2026-09-01T10:01:01Z"),
    ]
    report, events, lab = load(tmp_path, "statements.json", json.dumps(statements, indent=1))
    assert (report.files[0].format, report.accepted) == ("xapi", 8)
    by_type = events["event_type"].to_list()
    assert by_type == [
        "recording_started",
        "playback_started",
        "engagement_action",
        "playback_paused",
        "engagement_action",
        "engagement_action",
        "playback_completed",
        "session_ended",
    ]
    m = meta(events)
    course = source_id("xapi", "course", "https://lms.example/course/1")
    assert m[0] == {"duration": 600.0, "title": "Intro", "course_id": course}
    assert m[1] == {"position": 0.0, "playback_rate": 1.25, "duration": 600.0, "quality": "720p", "course_id": course}
    assert (m[2]["from_position"], m[2]["to_position"], m[2]["action"]) == (30.0, 65.0, "seek")
    assert m[3]["position"] == 80.5
    assert (m[4]["action"], m[4]["playback_rate"], m[5]["action"]) == ("speed_change", 2.0, "interacted")
    assert sid in events["id"].to_list()  # the statement id is the event id
    assert set(events["session_id"]) == {"x1"}
    assert events["user_id"].unique().to_list() == [source_id("xapi", "user", "learner-1")]
    assert lab.derived().recordings.select("title", "duration_seconds").row(0) == ("Intro", 600.0)


def _layouts(texts: list[str]) -> dict[str, str]:
    """One array written six ways: an element a line (two ways), pretty-printed, on one line, mixed, and split.

    Split has one element over two lines that each end with a comma, as an element a line
    does: only a JSON parse tells.
    """
    half = len(texts) // 2
    pretty = json.dumps(json.loads(texts[half]), indent=2)
    cut = texts[half].index(",") + 1
    split = texts[half][:cut] + "\n" + texts[half][cut:]
    return {
        "a line each": "[" + ",\n".join(texts) + "]\n",
        "brackets alone": "[\n" + ",\n".join(f"  {t}" for t in texts) + "\n]\n\n",
        "pretty": json.dumps([json.loads(t) for t in texts], indent=2),
        "one line": "[" + ", ".join(texts) + "]",
        "mixed": "[" + ",\n".join([*texts[:half], pretty, *texts[half + 1 :]]) + "]\n",
        "split": "[" + ",\n".join([*texts[:half], split, *texts[half + 1 :]]) + "]",
    }


def test_an_array_written_an_element_a_line_is_read_as_lines_and_loads_as_streamed(tmp_path, monkeypatch):
    """Lines where each holds an element; else, from the first chunk that does not, DuckDB's stream, past those.

    The lines' texts are parsed once, by the mapping: only where one is not JSON are the
    chunks checked, to find where the stream takes over.
    """
    streamed: list[int] = []
    checked: list[int] = []
    stream, all_json = vl_io._array_elements, vl_io._all_json
    monkeypatch.setattr(vl_io, "_array_elements", lambda path: streamed.append(1) or stream(path))
    monkeypatch.setattr(vl_io, "_all_json", lambda texts: checked.append(1) or all_json(texts))
    monkeypatch.setattr(vl_io, "_CHUNK_BYTES", 2048)  # a chunk of a few lines: the mixed file changes part way
    texts = [json.dumps(statement("played", time=i, at=f"2026-09-01T10:{i:02d}:00Z")) for i in range(40)]
    texts[7] = "5"  # not an object: a malformed row, numbered by its place
    got = {}
    for layout, text in _layouts(texts).items():
        streamed.clear()
        checked.clear()
        path = tmp_path / f"{layout}.json"
        path.write_text(text)
        with vl.Lab(":memory:") as lab:
            report = lab.load(path, progress=False, format="xapi")
            rejected = lab.store.read("rejected_events").select("row_number", "reason").rows()
            got[layout] = (report.rows_read, report.accepted, rejected, lab.events().sort("id").rows())
        assert bool(streamed) == (layout in ("pretty", "one line", "mixed", "split")), layout
        assert bool(checked) == (layout == "split"), layout  # the others' lines show their layout
    assert got["a line each"][:3] == (40, 39, [(8, "malformed")])
    assert all(g == got["a line each"] for g in got.values())


def test_a_mapping_that_fails_on_texts_that_are_all_json_is_not_taken_for_a_layout(tmp_path, monkeypatch):
    """Only a text that is not JSON sends an array's lines to DuckDB's stream; any other failure is the mapping's."""
    import duckdb

    def failing(*args: object, **kwargs: object) -> None:
        raise duckdb.InvalidInputException("something else")

    path = tmp_path / "a.json"
    path.write_text(_layouts([json.dumps(statement("played", time=i)) for i in range(4)])["a line each"])
    monkeypatch.setattr(vl_io, "apply", failing)
    with pytest.raises(duckdb.InvalidInputException, match="something else"):
        list(vl_io.read_events(path, format="xapi"))


@pytest.mark.parametrize("layout", ["a line each", "pretty"])
def test_a_source_array_broken_part_way_says_where_and_keeps_what_was_read(tmp_path, monkeypatch, layout):
    monkeypatch.setattr(vl_io, "_CHUNK_BYTES", 2048)
    texts = [json.dumps(statement("played", time=i, at=f"2026-09-01T10:{i:02d}:00Z")) for i in range(40)]
    text = _layouts(texts)[layout]
    at = text.index(f'"{json.loads(texts[30])["id"]}"')  # the 31st statement's id
    path = tmp_path / "broken.json"
    path.write_text(text[:at] + "@" + text[at:])  # "id": @"..."
    with vl.Lab(":memory:") as lab:
        report = lab.load(path, progress=False, format="xapi")
        error = report.files[0].error or ""
        assert "broken.json is not a JSON array that can be read to its end" in error and "NDJSON" in error
        assert report.files[0].rows_read == report.accepted == lab.store.count("analytics_events")
        assert (0 < report.accepted <= 30) if layout == "a line each" else report.accepted == 0


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=60, deadline=None)
@given(
    elements=st.lists(_JSON, max_size=12),
    indent=st.sampled_from([None, 1]),
    lone_brackets=st.booleans(),
    chunk=st.integers(64, 512),
)
def test_every_layout_of_an_array_reads_as_its_elements_in_order(
    tmp_path_factory, elements, indent, lone_brackets, chunk
):
    """As ``json.loads`` reads the file: an element a line (brackets alone or not) or pretty-printed, any chunk."""
    texts = [json.dumps(e, indent=indent) for e in elements]
    text = ("[\n" + ",\n".join(texts) + "\n]\n") if lone_brackets else ("[" + ",\n".join(texts) + "]\n")
    path = tmp_path_factory.mktemp("array") / "a.json"
    path.write_text(text)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(vl_io, "_CHUNK_BYTES", chunk)
        frames = [f for f, _ in vl_io._array_records(path)]
    got = pl.concat(frames) if frames else pl.DataFrame({"_row": [], "_raw": []})
    assert [json.loads(t) for t in got["_raw"]] == json.loads(text)
    assert got["_row"].to_list() == list(range(1, len(elements) + 1))


def test_xapi_lrs_page_mbox_actors_skips_and_rejections(tmp_path):
    page = {
        "statements": [
            statement("played", time=5, actor={"mbox": "mailto:a@example.org"}),
            statement("paused", time=None),  # no time: rejected
            statement(
                "http://adlnet.gov/expapi/verbs/answered", object={"id": "https://lms.example/quiz/1"}, context={}
            ),
            statement("http://adlnet.gov/expapi/verbs/completed", object={"id": "https://lms.example/course/1"}),
        ],
        "more": "",
    }
    page["statements"][2]["context"] = {}
    page["statements"][3]["context"] = {}
    page["statements"][3]["result"] = {}
    report, events, lab = load(tmp_path, "page.json", json.dumps(page, indent=2))
    f = report.files[0]
    assert (f.rows_read, f.accepted, f.rejected, f.skipped_records) == (4, 1, 1, 2)
    assert f.skipped_by_type == {
        "http://adlnet.gov/expapi/verbs/answered": 1,
        "http://adlnet.gov/expapi/verbs/completed": 1,  # a course's completion, not a video's
    }
    assert events["user_id"].item() == source_id("xapi", "user", "mailto:a@example.org")
    assert lab.rejected_events().select("reason", "field").row(0) == ("missing_field", "result.extensions.time")


def test_only_records_that_name_the_envelope_are_looked_into_and_each_keeps_its_row_and_place():
    from vtp_lab.sources.mapping import apply
    from vtp_lab.sources.xapi import XAPI

    titled = statement("played", time=1)  # names "statements" as a value, not as the envelope
    titled["object"]["definition"]["name"] = {"en": "statements"}
    texts = [
        json.dumps(statement("played", time=2)),
        json.dumps({"statements": [statement("paused", time=3), statement("paused", time=4)]}),
        json.dumps(titled),
        json.dumps({"statements": 5}),  # the key, but no list: a record of its own, not a video one
        'not json "statements"',
    ]
    out = apply(XAPI, pl.DataFrame({"_raw": texts, "_row": [1, 2, 3, 4, 5]}), source="page")
    got = out.rows.select("_row", pl.col("metadata").str.json_path_match("$.position").cast(pl.Float64))
    assert got.rows() == [(1, 2.0), (2, 3.0), (2, 4.0), (3, 1.0)]  # an envelope's records in their order
    assert out.skipped == {"(none)": 1}
    assert out.rejected.select("row_number", "reason").rows() == [(5, "malformed")]


# Caliper


def test_caliper_media_events_and_envelopes(tmp_path):
    envelope = {
        "sensor": "https://lms.example/sensor",
        "sendTime": "2026-09-01T10:05:00.000Z",
        "dataVersion": "http://purl.imsglobal.org/ctx/caliper/v1p2",
        "data": [
            caliper("Started", current="PT0S"),
            caliper("JumpedTo", current="PT2M", eventTime="2026-09-01T10:00:10.000Z"),
            caliper("ChangedSpeed", extensions={"playbackRate": 1.5}, eventTime="2026-09-01T10:00:20.000Z"),
            caliper("ChangedSpeed", eventTime="2026-09-01T10:00:21.000Z"),
            caliper("Muted", eventTime="2026-09-01T10:00:22.000Z"),
            caliper("Paused", current="PT2M30S", eventTime="2026-09-01T10:00:40.000Z"),
            caliper("Resumed", current="PT2M30S", eventTime="2026-09-01T10:00:50.000Z"),
            caliper("Ended", current="PT1H", eventTime="2026-09-01T10:58:00.000Z"),
            {**caliper("NavigatedTo"), "type": "NavigationEvent"},
        ],
    }
    lines = [json.dumps(envelope), json.dumps(caliper("Paused", current="PT3Q"))]
    report, events, lab = load(tmp_path, "caliper.jsonl", "\n".join(lines))
    f = report.files[0]
    assert (f.format, f.rows_read, f.accepted, f.rejected, f.skipped_records) == ("caliper", 10, 8, 1, 1)
    assert f.skipped_by_type == {"NavigationEvent.NavigatedTo": 1}
    assert events["event_type"].to_list() == [
        "playback_started",
        "engagement_action",
        "engagement_action",
        "engagement_action",
        "engagement_action",
        "playback_paused",
        "playback_resumed",
        "playback_completed",
    ]
    m = meta(events)
    assert (m[1]["action"], m[1]["to_position"]) == ("seek", 120.0)
    assert (m[2]["action"], m[2]["playback_rate"]) == ("speed_change", 1.5)
    assert (m[3]["action"], m[4]["action"]) == ("changedSpeed", "muted")
    assert m[5]["position"] == 150.0 and m[0]["duration"] == 3600.0
    assert lab.rejected_events().select("reason", "field").row(0) == ("invalid_metadata", "metadata.position")
    catalogue = lab.derived().recordings.row(0, named=True)
    assert (catalogue["course_id"], catalogue["title"], catalogue["duration_seconds"]) == (
        source_id("caliper", "course", "https://lms.example/courses/7"),
        "Week 1",
        3600.0,
    )


# detection, identity, sessions


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("events.json", json.dumps([statement("played", time=1)], indent=2), "xapi"),
        ("x.ndjson", json.dumps(caliper("Started")) + "\n", "caliper"),
        ("dump", "# note\n" + edx("play_video", {"id": "v", "currentTime": 0}) + "\n", "edx"),
        ("events.ndjson", '{"event_type": "buffer_end", "recording_id": "r", "context": 1}\n', "ndjson"),
    ],
)
def test_formats_are_recognised_from_the_content(tmp_path, name, text, expected):
    path = tmp_path / name
    path.write_text(text)
    assert detect_format(path) == expected


def test_a_forced_format_wins_over_the_content(tmp_path):
    path = tmp_path / "log.ndjson"
    path.write_text(edx("play_video", {"id": "v", "currentTime": 0}) + "\n")
    with vl.Lab(":memory:") as lab:
        report = lab.load(path, format="ndjson", progress=False)
    assert report.rejected_by_reason == {"missing_field": 1}  # read as a platform dump: no recording_id


def test_sniff_ignores_platform_events_with_a_context_key():
    assert sniff('{"id": "x", "event_type": "buffer_end", "recording_id": "r", "context": {}}') is None


def test_sessions_are_cut_by_the_gap_and_the_gap_is_settable(tmp_path):
    minutes = [0, 10, 39, 41, 200]  # gaps 10, 29, 2, 159: the default 30 minutes cuts once
    stamps = [(datetime(2026, 9, 1, 10, tzinfo=UTC) + timedelta(minutes=m)).isoformat() for m in minutes]
    lines = [
        statement("played" if i % 2 == 0 else "paused", time=i * 10.0, at=t, context={"session-id": None})
        for i, t in enumerate(stamps)
    ]
    for s in lines:
        del s["context"]["extensions"][f"{EXT}/session-id"]
    text = "\n".join(json.dumps(s) for s in lines)
    _, events, lab = load(tmp_path, "s.ndjson", text)
    assert set(events["session_id"]) == {NO_SESSION}
    assert lab.playback_sessions()["session_id"].sort().to_list() == [
        "no-session@2026-09-01T10:00:00.000000Z",
        "no-session@2026-09-01T13:20:00.000000Z",
    ]
    _, _, short = load(tmp_path, "s2.ndjson", text, session_gap=timedelta(minutes=5))
    assert short.playback_sessions().height == 4
    with pytest.raises(ValueError, match="session_gap"):
        vl.Lab(":memory:", session_gap=timedelta(0))


def test_a_store_read_with_another_gap_is_derived_again(tmp_path):
    stamps = [datetime(2026, 9, 1, 10, tzinfo=UTC) + timedelta(minutes=m) for m in (0, 10, 20, 30)]
    lines = [
        statement("played" if i % 2 == 0 else "paused", time=float(i), at=t.isoformat()) for i, t in enumerate(stamps)
    ]
    for s in lines:
        del s["context"]["extensions"][f"{EXT}/session-id"]
    (tmp_path / "s.json").write_text(json.dumps(lines))
    with vl.Lab(tmp_path / "lab.duckdb") as lab:
        lab.load(tmp_path / "s.json", progress=False)
        assert lab.count("playback_sessions") == 1
    with vl.Lab(tmp_path / "lab.duckdb", session_gap=timedelta(minutes=5)) as lab:
        assert lab.count("playback_sessions") == 4
        assert lab.table("playback_sessions").height == 4
    with vl.Lab(tmp_path / "lab.duckdb") as lab:
        assert lab.count("playback_sessions") == 1


def test_a_gap_of_exactly_the_setting_keeps_the_session():
    t0 = datetime(2026, 9, 1, 10, tzinfo=UTC)
    ev = pl.DataFrame(
        {
            "user_id": ["u"] * 3,
            "recording_id": ["r"] * 3,
            "session_id": [NO_SESSION] * 3,
            "event_timestamp": [t0, t0 + timedelta(minutes=30), t0 + timedelta(minutes=60, microseconds=1)],
        }
    )
    assert cut_sessions(ev)["session_id"].n_unique() == 2


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=10_000), min_size=1, max_size=40), st.randoms())
def test_cut_sessions_does_not_depend_on_the_order_of_lines(minutes, rnd):
    t0 = datetime(2026, 9, 1, tzinfo=UTC)
    ev = pl.DataFrame(
        {
            "user_id": [f"u{m % 2}" for m in minutes],
            "recording_id": ["r"] * len(minutes),
            "session_id": [NO_SESSION] * len(minutes),
            "event_timestamp": [t0 + timedelta(minutes=m) for m in minutes],
            "row": range(len(minutes)),
        }
    )
    shuffled = ev.sample(fraction=1.0, shuffle=True, seed=rnd.randint(0, 2**31))
    a, b = cut_sessions(ev).sort("row"), cut_sessions(shuffled).sort("row")
    assert a.equals(b)
    reference = {}  # plain reference: walk each user's times in order
    for user in ("u0", "u1"):
        times = sorted(m for m in minutes if f"u{m % 2}" == user)
        start = None
        for i, m in enumerate(times):
            if i == 0 or m - times[i - 1] > 30:
                start = m
            reference[(user, m)] = start
    expected = [
        f"no-session@{(t0 + timedelta(minutes=reference[(f'u{m % 2}', m)])):%Y-%m-%dT%H:%M:%S}.000000Z" for m in minutes
    ]
    assert a["session_id"].to_list() == expected


def test_sessionless_statements_in_two_files_give_the_same_sessions_in_either_order(tmp_path):
    stamps = [datetime(2026, 9, 1, 10, tzinfo=UTC) + timedelta(minutes=m) for m in (0, 5, 20, 70, 75)]
    lines = [
        statement("played" if i % 2 == 0 else "paused", time=float(i), at=t.isoformat()) for i, t in enumerate(stamps)
    ]
    for s in lines:
        del s["context"]["extensions"][f"{EXT}/session-id"]
    (tmp_path / "a.json").write_text(json.dumps(lines[::2]))
    (tmp_path / "b.json").write_text(json.dumps(lines[1::2]))
    results = []
    for order in (["a.json", "b.json"], ["b.json", "a.json"]):
        with vl.Lab(":memory:") as lab:
            for name in order:
                lab.load(tmp_path / name, progress=False)
            results.append(lab.playback_sessions().drop("id").sort("started_at"))
    assert results[0].equals(results[1]) and results[0].height == 2


# round trips: a semester in each source format


@pytest.mark.parametrize("fmt", ["edx", "xapi", "caliper"])
def test_a_semester_written_in_a_source_format_loads_back_to_the_same_sessions(tmp_path, fmt):
    sem = semester(courses=2, lectures_per_course=3, students=10, seed=11)
    path = write_events(sem.events, tmp_path / f"semester.{fmt}", format=fmt)
    with vl.Lab(":memory:") as lab:
        report = lab.load(path, progress=False)
        got, ids = lab.playback_sessions(), lab.identities()
    assert report.files[0].format == fmt
    assert report.rejected == 0 and report.accepted == as_source(sem.events, fmt).len()
    original = ids.select("id", pl.col("identifier").str.extract(r"([0-9a-f-]{36})$").alias("original"))
    columns = [
        "watched_seconds",
        "completion_rate",
        "duration_seconds",
        "quality",
        "buffer_events",
        "started_at",
        "ended_at",
    ]
    back = (
        got.join(original.rename({"id": "recording_id", "original": "rec"}), on="recording_id")
        .join(original.rename({"id": "user_id", "original": "usr"}), on="user_id")
        .select(pl.col("rec").alias("recording_id"), pl.col("usr").alias("user_id"), *columns)
        .sort("recording_id", "user_id", "started_at")
    )
    reference = (
        derive(expressible(sem.events, fmt))
        .playback_sessions.select("recording_id", "user_id", *columns)
        .sort("recording_id", "user_id", "started_at")
    )
    assert back.height == reference.height > 0
    assert back.equals(reference)


def test_cli_synth_writes_each_source_format(tmp_path, capsys):
    out = tmp_path / "tracking.log"
    assert (
        main(["synth", "--format", "edx", "--students", "3", "--courses", "1", "--lectures", "1", "-o", str(out)]) == 0
    )
    assert "(edx)" in capsys.readouterr().out
    assert detect_format(out) == "edx"


# peer fixtures


def test_open_edx_insights_acceptance_log_and_its_video_timeline():
    log = peer("edx-analytics-pipeline/video_timeline.log")
    with vl.Lab(":memory:") as lab:
        report = lab.load(log, progress=False)
        events, ids = lab.events(), lab.identities()
    assert (report.accepted, report.rejected, report.skipped_by_type) == (18, 0, {"# comment line": 7})
    ours = (
        retention(sessionize(events).segments, bin_seconds=5)
        .join(ids.select(pl.col("id").alias("recording_id"), pl.col("identifier").alias("video")), on="recording_id")
        .select("video", pl.col("bin").alias("segment"), "unique_viewers", "views")
    )
    theirs = pl.read_csv(peer("edx-analytics-pipeline/acceptance_expected_video_timeline.csv")).rename(
        {"pipeline_video_id": "video"}
    )
    both = theirs.join(ours, on=["video", "segment"], how="full", coalesce=True)
    # where both count a segment, the same learners watched it
    shared = both.drop_nulls(["num_users", "unique_viewers"])
    assert shared.height == 9 and (shared["num_users"] == shared["unique_viewers"]).all()
    # Insights counts each play-to-pause viewing, vtp_lab each session: never more views here
    assert (shared["views"] <= shared["num_views"]).all()
    # the one segment only Insights has is where a viewing ends exactly on its start (20 s): Insights counts
    # the segment a viewing ends on, vtp_lab's bins are half-open
    only_theirs = both.filter(pl.col("unique_viewers").is_null()).select("video", "segment").rows()
    assert only_theirs == [("edX/DemoX/Demo_Course|i4x-edX-DemoX-video-8c0028eb2a724f48a074bc184cd8635f", 4)]
    assert both.filter(pl.col("num_users").is_null()).height == 0


def _aspects_statements(events: pl.DataFrame) -> pl.Series:
    """Aspects' parsed video events as xAPI statements; a session per play (their unit of pairing)."""
    verb, position = pl.col("verb_id"), pl.col("video_position").cast(pl.Float64)
    seek = verb.str.ends_with("/seeked")
    return events.select(
        pl.struct(
            pl.col("event_id").alias("id"),
            pl.struct(
                pl.struct(pl.lit("http://localhost:18000").alias("homePage"), pl.col("actor_id").alias("name")).alias(
                    "account"
                )
            ).alias("actor"),
            pl.struct(verb.alias("id")).alias("verb"),
            pl.struct(
                pl.col("object_id").alias("id"),
                pl.struct(pl.lit(f"{PROFILE}/activity-type/video").alias("type")).alias("definition"),
            ).alias("object"),
            pl.struct(
                pl.struct(
                    pl.when(~seek).then(position).alias(f"{EXT}/time"),
                    pl.when(seek).then(position).alias(f"{EXT}/time-from"),
                    pl.when(seek).then(position).alias(f"{EXT}/time-to"),  # Aspects keeps only the origin
                ).alias("extensions")
            ).alias("result"),
            pl.struct(
                pl.struct(pl.concat_list(pl.struct(pl.col("course_key").alias("id"))).alias("parent")).alias(
                    "contextActivities"
                ),
                pl.struct(
                    pl.col("video_duration").cast(pl.Float64).alias(f"{EXT}/length"),
                    pl.concat_str(pl.lit("play-"), pl.col("run").cast(pl.String)).alias(f"{EXT}/session-id"),
                ).alias("extensions"),
            ).alias("context"),
            (pl.col("emission_time").str.replace(" ", "T") + "Z").alias("timestamp"),
        ).struct.json_encode()
    ).to_series()


def test_open_edx_aspects_watched_seconds_agree_where_the_definitions_do(tmp_path):
    raw = pl.read_csv(peer("aspects-dbt/video_playback_events_expected.csv.gz"))
    expected = pl.read_csv(peer("aspects-dbt/fact_video_segments_expected.csv.gz"))
    key = ["actor_id", "object_id"]
    ev = raw.sort(*key, "emission_time", "event_id").with_columns(
        pl.col("verb_id").str.ends_with("/played").cast(pl.Int32).cum_sum().over(key).alias("run")
    )
    path = tmp_path / "aspects.json"
    path.write_text("[" + ",\n".join(_aspects_statements(ev)) + "]")
    with vl.Lab(":memory:") as lab:
        report = lab.load(path, progress=False)
        events, ids = lab.events(), lab.identities()
    assert (report.accepted, report.rejected, report.skipped_records) == (raw.height, 0, 0)

    def seconds(frame: pl.DataFrame, start: str, end: str) -> pl.DataFrame:
        """Aspects' way to count: integer seconds max(start, 1) .. end, both included."""
        return (
            frame.filter(pl.col(end) > pl.col(start))
            .select(
                *key,
                pl.int_ranges(
                    pl.max_horizontal(pl.col(start).ceil(), 1).cast(pl.Int64), pl.col(end).cast(pl.Int64) + 1
                ).alias("second"),
            )
            .explode("second")
            .drop_nulls()
            .unique()
            .group_by(key)
            .agg(pl.col("second").sort())
        )

    back = ids.select("id", "identifier")
    segments = (
        sessionize(events)
        .segments.join(back.rename({"id": "recording_id", "identifier": "object_id"}), on="recording_id")
        .join(back.rename({"id": "user_id", "identifier": "actor_id"}), on="user_id")
    )
    ours = seconds(segments, "start", "end")
    theirs = (
        expected.select(*key, "watched_segment").group_by(key).agg(pl.col("watched_segment").sort().alias("second"))
    )
    # Aspects' rule, written plainly: a play ends at the last pause, seek, completion or termination before the
    # next play. It gives their expected rows exactly, so the comparison below knows what it compares.
    runs = (
        ev.filter((pl.col("run") > 0) & ~pl.col("verb_id").str.ends_with("/initialized"))
        .group_by(*key, "run")
        .agg(
            pl.col("video_position").first().alias("start"),
            pl.col("video_position").last().alias("end"),
            pl.len().alias("events"),
            pl.col("verb_id").str.ends_with("/seeked").any().alias("seek"),
        )
    )
    assert seconds(runs.filter(pl.col("events") > 1), "start", "end").sort(key).equals(theirs.sort(key))
    # vtp_lab ends a play at the first event that stops it, and a seek plays on from its target: the two agree
    # on every learner and video where each play has one such event and no seek
    simple = runs.group_by(key).agg(((pl.col("events") <= 2) & ~pl.col("seek")).all().alias("simple"))
    compared = ours.join(theirs, on=key, how="full", coalesce=True, suffix="_aspects").join(simple, on=key, how="left")
    agree = (pl.col("second") == pl.col("second_aspects")).fill_null(False)
    assert compared.filter(pl.col("simple") & ~agree).height == 0
    assert compared.filter(pl.col("simple") & agree).height >= 90
    assert compared.filter(~agree & ~pl.col("simple")).height == compared.filter(~agree).height  # all explained


def test_sniffing_is_cheap_on_a_long_first_line():
    assert sniff("{" + '"a": 1, ' * 10_000 + '"verb": {}, "actor": {}}') == "xapi"


def test_random_records_never_lose_a_row(tmp_path):
    rnd = random.Random(5)
    kinds = ["play_video", "pause_video", "seek_video", "problem_check", "stop_video", "load_video"]
    lines = []
    for i in range(300):
        k = rnd.choice(kinds)
        event = {
            "id": f"v{rnd.randint(1, 3)}",
            "currentTime": rnd.choice([rnd.random() * 100, None, "x"]),
            "old_time": rnd.random() * 50,
            "new_time": rnd.choice([rnd.random() * 50, None]),
        }
        at = (datetime(2026, 9, 1, tzinfo=UTC) + timedelta(seconds=i)).isoformat()
        lines.append(edx(k, {k2: v for k2, v in event.items() if v is not None}, at=at) if i % 37 else "{oops")
    report, _, _ = load(tmp_path, "random.log", "\n".join(lines))
    f = report.files[0]
    assert f.rows_read == 300 == f.accepted + f.rejected + f.duplicates + f.skipped_records


@settings(max_examples=100, deadline=None)
@given(
    text=st.text(st.sampled_from([" ", "\t", "\n", "\u00a0", "\u3000", "{", "#", "x", "é"]), max_size=5),
    prefix=st.sampled_from(["{", "#"]),
)
def test_a_record_starts_with_a_prefix_after_whitespace_as_ltrim_reads_it(text, prefix):
    """The trim is skipped where a record starts with no whitespace: the answer is the same as trimming every one."""
    quoted = literal(prefix)
    sql = f"SELECT {mapping._starts(quoted)} = starts_with(ltrim(_raw), {quoted}) FROM (SELECT ? AS _raw)"
    assert compute().execute(sql, [text]).fetchall() == [(True,)]
