"""Whole frames: every rule, every spelling, nothing dropped, and agreement with the single-event path."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import polars as pl
import pytest
from conftest import COURSE, REC, USER, raw_event
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vtp_lab.errors import EventValidationError
from vtp_lab.events import Event
from vtp_lab.tables import ANALYTICS_EVENTS, REJECTED_EVENTS
from vtp_lab.validation import validate

T0 = datetime(2026, 9, 1, 10, tzinfo=UTC)
NOW = datetime(2026, 11, 1, tzinfo=UTC)


def one(**overrides: object) -> tuple[str, str | None] | None:
    """(reason, field) of a single raw row, or None when accepted."""
    v = validate(
        pl.DataFrame([raw_event(**overrides)], schema=dict.fromkeys(raw_event(**overrides), pl.String)), now=NOW
    )
    assert v.rows_read == 1
    return v.rejected.select("reason", "field").row(0) if v.rejected.height else None


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({}, None),
        ({"event_type": ...}, ("missing_field", "event_type")),
        ({"recording_id": None}, ("missing_field", "recording_id")),
        ({"user_id": "  "}, ("missing_field", "user_id")),
        ({"session_id": ...}, ("missing_field", "session_id")),
        ({"event_timestamp": ""}, ("missing_field", "event_timestamp")),
        ({"event_type": "PlaybackExploded"}, ("unknown_event_type", "event_type")),
        ({"id": "12345"}, ("invalid_uuid", "id")),
        ({"recording_id": REC + "0"}, ("invalid_uuid", "recording_id")),
        ({"user_id": "not-a-uuid"}, ("invalid_uuid", "user_id")),
        ({"recording_id": "00000000000000000000000000000000"}, ("nil_uuid", "recording_id")),
        ({"user_id": "{00000000-0000-0000-0000-000000000000}"}, ("nil_uuid", "user_id")),
        ({"session_id": "\t "}, ("empty_session_id", "session_id")),
        ({"session_id": "s" * 256}, ("empty_session_id", "session_id")),
        ({"event_timestamp": "2026-13-45T10:00:00Z"}, ("invalid_timestamp", "event_timestamp")),
        ({"event_timestamp": "2026-11-01T00:05:01Z"}, ("future_timestamp", "event_timestamp")),
        ({"event_timestamp": "2026-11-01T00:05:00Z"}, None),
        ({"metadata": '"a string"'}, ("invalid_metadata", "metadata")),
        ({"metadata": "{broken"}, ("invalid_metadata", "metadata")),
        ({"metadata": '{"position": -0.5}'}, ("invalid_metadata", "metadata.position")),
        ({"metadata": '{"duration": 1e400}'}, ("invalid_metadata", "metadata.duration")),
        ({"metadata": '{"from_position": "10"}'}, ("invalid_metadata", "metadata.from_position")),
        ({"metadata": '{"to_position": false}'}, ("invalid_metadata", "metadata.to_position")),
        ({"metadata": '{"playback_rate": 0}'}, ("invalid_metadata", "metadata.playback_rate")),
        ({"metadata": '{"old_bitrate": 1.5}'}, ("invalid_metadata", "metadata.old_bitrate")),
        ({"metadata": '{"new_bitrate": -2800}'}, ("invalid_metadata", "metadata.new_bitrate")),
        ({"metadata": '{"bitrate": "2800"}'}, ("invalid_metadata", "metadata.bitrate")),
        ({"metadata": '{"fatal": "yes"}'}, ("invalid_metadata", "metadata.fatal")),
        ({"metadata": '{"course_id": 5}'}, ("invalid_metadata", "metadata.course_id")),
        (
            {
                "metadata": f'{{"course_id": "{COURSE.upper()}", "bitrate": 2800.0, "fatal": true, '
                '"x": [-1], "position": null}'
            },
            None,
        ),
        ({"metadata": ""}, None),
        ({"event_type": "bogus", "user_id": "bad", "session_id": ""}, ("unknown_event_type", "event_type")),
    ],
)
def test_every_rule_with_its_reason_and_field(overrides, expected):
    assert one(**overrides) == expected


@pytest.mark.parametrize(
    "spelling",
    [
        "playback_started",
        "PlaybackStarted",
        "EventPlaybackStarted",
        "PLAYBACK_STARTED",
        "playbackstarted",
        " Playback-Started ",
    ],
)
def test_event_type_spellings(spelling):
    v = validate(pl.DataFrame([raw_event(event_type=spelling)]), now=NOW)
    assert v.accepted["event_type"].to_list() == ["playback_started"]


def test_go_serializer_keys_and_aliases_give_the_same_events():
    go = pl.DataFrame(
        {
            "ID": [REC],
            "EventType": ["EventBufferEnd"],
            "RecordingID": [REC.upper()],
            "UserID": [USER],
            "SessionID": ["s"],
            "EventTime": ["2026-09-01T10:00:00Z"],
            "Metadata": ['{"position": 1}'],
        }
    )
    aliased = pl.DataFrame(
        {
            "id": [REC],
            "event_type": ["buffer_end"],
            "recording_id": [REC],
            "user_id": [USER],
            "session_id": ["s"],
            "timestamp": [T0],
            "metadata": ['{"position": 1}'],
        }
    )
    assert validate(go, now=NOW).accepted.equals(validate(aliased, now=NOW).accepted)
    event_time = aliased.rename({"timestamp": "event_time"})
    assert validate(event_time, now=NOW).accepted.equals(validate(aliased, now=NOW).accepted)


@pytest.mark.parametrize(
    "column",
    [
        pl.Series(
            [
                "2026-09-01T10:00:00Z",
                "2026-09-01T12:00:00+02:00",
                "2026-09-01T10:00:00",
                "2026-09-01 10:00:00+00",
                "1788256800",
                "1788256800000",
                "1788256800000000",
            ]
        ),
        pl.Series([1788256800, 1788256800_000, 1788256800_000_000] * 2 + [1788256800]),
        pl.Series([1788256800.0] * 7),
        pl.Series([datetime(2026, 9, 1, 10)] * 7),
        pl.Series([T0] * 7),
        pl.Series([datetime(2026, 9, 1, 19)] * 7).dt.replace_time_zone("Asia/Tokyo"),
    ],
    ids=["text-forms", "epoch-int", "epoch-float", "naive-datetime", "utc-datetime", "tokyo-datetime"],
)
def test_timestamp_column_forms(column):
    frame = pl.DataFrame([raw_event()] * 7).with_columns(column.alias("event_timestamp"))
    v = validate(frame, now=NOW)
    assert v.rejected.height == 0
    assert v.accepted["event_timestamp"].to_list() == [T0] * 7
    assert v.accepted.schema["event_timestamp"] == pl.Datetime("us", "UTC")


def test_date_column_is_midnight_utc():
    frame = pl.DataFrame([raw_event()]).with_columns(pl.lit(date(2026, 9, 1)).alias("event_timestamp"))
    assert validate(frame, now=NOW).accepted["event_timestamp"].item() == datetime(2026, 9, 1, tzinfo=UTC)


def test_metadata_as_struct_string_or_absent():
    as_struct = pl.DataFrame([raw_event(metadata={"position": 5, "quality": "480p"})])
    assert isinstance(as_struct.schema["metadata"], pl.Struct)
    v = validate(as_struct, now=NOW)
    assert json.loads(v.accepted["metadata"].item()) == {"position": 5, "quality": "480p"}
    bad_struct = pl.DataFrame([raw_event(metadata={"position": -5})])
    assert validate(bad_struct, now=NOW).rejected["field"].to_list() == ["metadata.position"]
    absent = pl.DataFrame([raw_event(metadata=...)])
    assert validate(absent, now=NOW).accepted["metadata"].to_list() == [None]
    numbers = pl.DataFrame([raw_event()]).with_columns(pl.lit(3).alias("metadata"))
    assert validate(numbers, now=NOW).rejected["field"].to_list() == ["metadata"]


def test_derived_ids_match_the_single_event_path():
    rows = [
        raw_event(session_id=f"s{i}", metadata=json.dumps({"position": i, "b": 1, "a": [2, {"z": 1, "y": 0}]}))
        for i in range(5)
    ]
    rows.append(raw_event(metadata=...))
    v = validate(pl.DataFrame(rows), now=NOW)
    expected = [Event.from_dict(r).id for r in rows]
    assert v.accepted["id"].to_list() == expected


def test_rejected_rows_keep_raw_text_source_and_row_number():
    frame = pl.DataFrame([raw_event(), raw_event(user_id="nope"), raw_event()])
    v = validate(frame, source="dump.ndjson", now=NOW)
    row = v.rejected.row(0, named=True)
    assert row["source"] == "dump.ndjson"
    assert row["row_number"] == 2
    assert json.loads(row["raw"])["user_id"] == "nope"
    assert row["rejected_at"] == NOW
    assert v.rejected.schema == REJECTED_EVENTS.polars_schema
    assert v.accepted.schema == ANALYTICS_EVENTS.polars_schema
    given_raw = frame.with_columns(
        pl.Series("_raw", ["line a", "line b", "line c"]),
        pl.Series("_source", ["f"] * 3),
        pl.Series("_row", [10, 11, 12]),
    )
    assert validate(given_raw, now=NOW).rejected.select("raw", "source", "row_number").row(0) == ("line b", "f", 11)


def test_accepted_rows_keep_where_they_came_from_and_nothing_else_of_their_input():
    """A load's validated part waits to be stored with the origins of its rows, not with the whole parsed batch."""
    given_raw = pl.DataFrame([raw_event(), raw_event(user_id="nope"), raw_event()]).with_columns(
        pl.Series("_raw", ["line a", "line b", "line c"]),
        pl.Series("_source", ["f"] * 3),
        pl.Series("_row", [10, 11, 12]),
    )
    v = validate(given_raw, now=NOW)
    assert sorted(v.inputs.columns) == ["_raw", "_row", "_source"]
    assert v.origins(pl.Series([1], dtype=pl.UInt32)).rows() == [("line c", "f", 12)]
    plain = validate(given_raw.drop("_raw", "_source", "_row"), source="frame.ndjson", now=NOW)
    assert json.loads(plain.origins(pl.Series([0], dtype=pl.UInt32))["raw"].item())["session_id"] == "s1"


def test_empty_frame():
    v = validate(pl.DataFrame(schema=dict.fromkeys(raw_event(), pl.String)), now=NOW)
    assert v.rows_read == 0
    assert v.accepted.schema == ANALYTICS_EVENTS.polars_schema


# --- property: every row is accounted for, with the reason the single-event path gives ---

uuids = st.sampled_from([REC, USER, REC.upper(), "{" + USER + "}", REC.replace("-", "")])
bad_uuids = st.sampled_from(["", "xyz", "0" * 32, "00000000-0000-0000-0000-000000000000", REC[:-1]])
timestamps = st.sampled_from(
    [
        "2026-09-01T10:00:00Z",
        "2026-09-01T10:00:00.250+01:00",
        "2026-09-01 10:00:00+00",
        "2026-09-01T10:00:00",
        "1788256800",
        "1788256800.5",
        "1788256800123",
        " 2026-09-01T10:00:00Z\t",
        "\u00a02026-09-01 10:00:00+00\u2003",
        " 1788256800 ",
        "\u20091788256800.5",
    ]
)
bad_timestamps = st.sampled_from(["", " ", "soon", "2026-02-30T00:00:00Z", "2999-01-01T00:00:00Z", "17882568OO", "-"])
meta_values = st.sampled_from([0, 1.5, -1, 2800, 2.5, True, "x", None, COURSE, "1e400"])
metadata = st.one_of(
    st.none(),
    st.sampled_from(["", "[]", " [1] ", "{", '"{}"', "null", ' {"position": 3} ', "{}", '{"a": 1}{']),
    st.dictionaries(
        st.sampled_from(
            ["position", "duration", "playback_rate", "bitrate", "fatal", "course_id", "quality", "to_position"]
        ),
        meta_values,
        max_size=3,
    ).map(lambda d: json.dumps(d).replace('"1e400"', "1e400")),
)
rows = st.fixed_dictionaries(
    {
        "event_type": st.sampled_from(["playback_paused", "BufferStart", "EventSessionEnded", "bogus", "", None]),
        "recording_id": uuids | bad_uuids | st.none(),
        "user_id": uuids | bad_uuids,
        "session_id": st.sampled_from(["s1", " s2 ", "", "   ", "x" * 256, None]),
        "event_timestamp": timestamps | bad_timestamps | st.none(),
        "metadata": metadata,
        "id": st.none() | uuids | st.just("bad-id"),
    }
)


def oracle(row: dict[str, object]) -> tuple[str, str | None] | Event:
    try:
        return Event.from_dict(row)
    except EventValidationError as exc:
        return exc.reason, exc.field


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(rows, min_size=1, max_size=25))
def test_rows_in_equal_accepted_plus_rejected_with_the_right_reasons(batch):
    frame = pl.DataFrame(batch, schema=dict.fromkeys(batch[0], pl.String))
    v = validate(frame, now=datetime.now(UTC))
    assert v.accepted.height + v.rejected.height == len(batch)
    ANALYTICS_EVENTS.model.validate(v.accepted)  # validate checks only the schema; the rules imply the data
    expected = [oracle(r) for r in batch]
    want_rejected = [(i + 1, e) for i, e in enumerate(expected) if isinstance(e, tuple)]
    got_rejected = list(
        zip(v.rejected["row_number"], zip(v.rejected["reason"], v.rejected["field"], strict=True), strict=True)
    )
    assert got_rejected == want_rejected
    want_accepted = [e for e in expected if isinstance(e, Event)]
    got = v.accepted.to_dicts()
    assert [g["id"] for g in got] == [e.id for e in want_accepted]
    assert [g["event_timestamp"] for g in got] == [e.event_timestamp for e in want_accepted]
    assert [(g["event_type"], g["recording_id"], g["user_id"], g["session_id"]) for g in got] == [
        (e.event_type.value, e.recording_id, e.user_id, e.session_id) for e in want_accepted
    ]
    assert [json.loads(g["metadata"]) if g["metadata"] else None for g in got] == [e.metadata for e in want_accepted]


def test_future_limit_uses_the_configured_skew():
    frame = pl.DataFrame([raw_event(event_timestamp="2026-11-01T00:30:00Z")])
    assert validate(frame, now=NOW).rejected["reason"].to_list() == ["future_timestamp"]
    assert validate(frame, now=NOW, max_clock_skew=timedelta(hours=1)).rejected.height == 0
