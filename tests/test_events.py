"""One event in Python: event types, ids, rules and the JSON round trip."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import polars as pl
import pytest
from conftest import COURSE, REC, USER
from hypothesis import given, settings
from hypothesis import strategies as st

from vtp_lab.errors import EventValidationError
from vtp_lab.events import (
    NAMESPACE,
    REASONS,
    Event,
    EventType,
    canonical_metadata,
    events_from_json,
    events_to_json,
    parse_event_type,
    parse_timestamp,
    parse_uuid,
    playback_session_id,
    uuid5_series,
)

T0 = datetime(2026, 9, 1, 10, tzinfo=UTC)


def make(**kw: object) -> Event:
    base: dict[str, object] = {
        "event_type": "playback_started",
        "recording_id": REC,
        "user_id": USER,
        "session_id": "s1",
        "event_timestamp": T0,
        "metadata": {"position": 0, "quality": "720p"},
    }
    base.update(kw)
    return Event(**base)  # type: ignore[arg-type]


def reason_of(**kw: object) -> tuple[str, str | None]:
    with pytest.raises(EventValidationError) as info:
        make(**kw)
    return info.value.reason, info.value.field


@pytest.mark.parametrize("event_type", list(EventType))
def test_every_spelling_of_every_type(event_type):
    pascal = "".join(w.title() for w in event_type.value.split("_"))
    for spelling in (
        event_type.value,
        pascal,
        f"Event{pascal}",
        event_type.value.upper(),
        pascal.lower(),
        f" {pascal} ",
    ):
        assert parse_event_type(spelling) is event_type, spelling
        assert make(event_type=spelling).event_type is event_type


def test_namespace_is_uuid5_of_the_url():
    import uuid

    assert uuid.uuid5(uuid.NAMESPACE_URL, "vtp-lab:analytics") == NAMESPACE


def test_known_input_gives_known_event_id():
    assert make().id == "af34ae8b-8133-51cd-8a22-ed89d12d169a"
    assert playback_session_id("s1", REC, USER) == "1db59d68-4e78-56ac-8317-a6ffe7685423"


def test_derived_id_ignores_metadata_key_order_and_timestamp_form():
    a = make(metadata={"quality": "720p", "position": 0})
    b = make(metadata='{"position":0,"quality":"720p"}', event_timestamp="2026-09-01 12:00:00+02")
    assert a.id == b.id == make().id


def test_given_id_is_kept_canonical():
    assert make(id=REC.upper()).id == REC


def test_uuid5_series_matches_python():
    names = pl.Series(["a", "session|s|r|u", "ü|é", ""])
    import uuid

    assert uuid5_series(names).to_list() == [str(uuid.uuid5(NAMESPACE, n)) for n in names]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.none() | st.text(st.characters(exclude_categories=("Cs",)), max_size=300), max_size=50))
def test_uuid5_series_matches_python_on_any_text(names):
    """Any Unicode (hashed as UTF-8), long names across SHA-1 blocks, empty and null."""
    import uuid

    got = uuid5_series(pl.Series(names, dtype=pl.String)).to_list()
    assert got == [None if n is None else str(uuid.uuid5(NAMESPACE, n)) for n in names]


@pytest.mark.parametrize(
    ("kw", "expected"),
    [
        ({"event_type": None}, ("missing_field", "event_type")),
        ({"recording_id": None}, ("missing_field", "recording_id")),
        ({"user_id": ""}, ("missing_field", "user_id")),
        ({"session_id": None}, ("missing_field", "session_id")),
        ({"event_timestamp": None}, ("missing_field", "event_timestamp")),
        ({"event_type": "playback_exploded"}, ("unknown_event_type", "event_type")),
        ({"id": "nope"}, ("invalid_uuid", "id")),
        ({"recording_id": "123"}, ("invalid_uuid", "recording_id")),
        ({"user_id": "g" * 32}, ("invalid_uuid", "user_id")),
        ({"recording_id": "0" * 32}, ("nil_uuid", "recording_id")),
        ({"user_id": "00000000-0000-0000-0000-000000000000"}, ("nil_uuid", "user_id")),
        ({"session_id": "   "}, ("empty_session_id", "session_id")),
        ({"session_id": "x" * 256}, ("empty_session_id", "session_id")),
        ({"event_timestamp": "last tuesday"}, ("invalid_timestamp", "event_timestamp")),
        ({"event_timestamp": datetime(2999, 1, 1, tzinfo=UTC)}, ("future_timestamp", "event_timestamp")),
        ({"metadata": "[1]"}, ("invalid_metadata", "metadata")),
        ({"metadata": "{not json"}, ("invalid_metadata", "metadata")),
        ({"metadata": {"position": -1}}, ("invalid_metadata", "metadata.position")),
        ({"metadata": {"duration": float("inf")}}, ("invalid_metadata", "metadata.duration")),
        ({"metadata": {"from_position": "3"}}, ("invalid_metadata", "metadata.from_position")),
        ({"metadata": {"to_position": True}}, ("invalid_metadata", "metadata.to_position")),
        ({"metadata": {"playback_rate": 0}}, ("invalid_metadata", "metadata.playback_rate")),
        ({"metadata": {"old_bitrate": 2.5}}, ("invalid_metadata", "metadata.old_bitrate")),
        ({"metadata": {"new_bitrate": -1}}, ("invalid_metadata", "metadata.new_bitrate")),
        ({"metadata": {"bitrate": "2800"}}, ("invalid_metadata", "metadata.bitrate")),
        ({"metadata": {"fatal": 1}}, ("invalid_metadata", "metadata.fatal")),
        ({"metadata": {"course_id": "c-1"}}, ("invalid_metadata", "metadata.course_id")),
    ],
)
def test_each_rule_names_reason_and_field(kw, expected):
    assert reason_of(**kw) == expected


def test_error_message_names_value_and_rule():
    with pytest.raises(EventValidationError) as info:
        make(metadata={"playback_rate": -2})
    assert str(info.value) == "invalid_metadata: metadata.playback_rate=-2 breaks the rule: a finite number > 0"
    assert info.value.value == -2


def test_all_reasons_are_the_spec_set():
    assert REASONS == (
        "malformed",
        "missing_field",
        "unknown_event_type",
        "invalid_uuid",
        "nil_uuid",
        "empty_session_id",
        "invalid_timestamp",
        "future_timestamp",
        "invalid_metadata",
        "conflicting_duplicate",
    )


def test_first_broken_rule_wins():
    assert reason_of(event_type="bogus", recording_id="bad", session_id=" ") == ("unknown_event_type", "event_type")


def test_valid_metadata_values_and_unknown_keys_pass():
    meta = {
        "position": 0,
        "duration": 1.5,
        "playback_rate": 0.5,
        "bitrate": 2800.0,
        "fatal": False,
        "course_id": COURSE.upper(),
        "anything": [1, {"x": None}],
        "position_note": -1,
    }
    assert make(metadata=meta).metadata == meta
    assert make(metadata={"position": None}).metadata == {"position": None}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-09-01T10:00:00Z", T0),
        ("2026-09-01T12:00:00+02:00", T0),
        ("2026-09-01T10:00:00", T0),
        ("2026-09-01 10:00:00+00", T0),
        ("2026-09-01 10:00:00.5+00", T0 + timedelta(milliseconds=500)),
        ("2026-09-01T10:00:00.1234567Z", T0 + timedelta(microseconds=123456)),
        (T0.timestamp(), T0),
        (int(T0.timestamp() * 1000), T0),
        (int(T0.timestamp() * 1_000_000), T0),
        (str(int(T0.timestamp())), T0),
        (datetime(2026, 9, 1, 10), T0),
        (datetime(2026, 9, 1, 12, tzinfo=timezone(timedelta(hours=2))), T0),
    ],
)
def test_every_timestamp_form(value, expected):
    assert parse_timestamp(value) == expected
    assert make(event_timestamp=value).event_timestamp == expected


@pytest.mark.parametrize("value", ["urn:uuid:" + REC, "{" + REC + "}", REC.replace("-", ""), REC.upper()])
def test_uuid_forms(value):
    assert parse_uuid(value) == REC


def test_go_serializer_keys_and_aliases():
    go = {
        "ID": REC,
        "EventType": "EventBufferStart",
        "RecordingID": REC,
        "UserID": USER,
        "SessionID": "s",
        "EventTime": "2026-09-01T10:00:00Z",
        "Metadata": {"position": 3},
    }
    alias = {
        "event_type": "buffer_start",
        "recording_id": REC,
        "user_id": USER,
        "session_id": "s",
        "timestamp": 1788256800,
        "metadata": {"position": 3},
        "id": REC,
    }
    assert Event.from_dict(go) == Event.from_dict(alias)
    assert Event.from_dict({**alias, "timestamp": None, "event_time": "2026-09-01T10:00:00Z"}).event_timestamp == T0


def test_from_json_malformed():
    with pytest.raises(EventValidationError, match="malformed"):
        Event.from_json('{"event_type": ')
    with pytest.raises(EventValidationError, match="malformed"):
        events_from_json('{"a": 1}')


def texts(size: int) -> st.SearchStrategy[str]:
    """Text PostgreSQL holds (no NUL character)."""
    return st.text(max_size=size).filter(lambda s: "\x00" not in s)


metadata_values = st.recursive(
    st.none() | st.booleans() | st.integers(0, 10**6) | st.floats(0, 1e6) | texts(5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts(4), inner, max_size=3),
    max_leaves=6,
)


@given(
    event_type=st.sampled_from(list(EventType)),
    session=st.text(min_size=1, max_size=20).filter(lambda s: s.strip() == s and s and "\x00" not in s),
    micros=st.integers(0, 1_760_000_000_000_000),
    meta=st.none() | st.dictionaries(st.sampled_from(["quality", "note", "extra"]), metadata_values, max_size=3),
)
def test_json_round_trip_is_exact(event_type, session, micros, meta):
    ts = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros)
    e = make(event_type=event_type, session_id=session, event_timestamp=ts, metadata=meta)
    back = Event.from_json(e.to_json())
    assert back == e
    assert back.to_json() == e.to_json()
    assert events_from_json(events_to_json([e, e])) == [e, e]


@given(
    meta=st.dictionaries(
        st.text(max_size=4),
        metadata_values | st.floats() | st.integers() | st.text(alphabet='é\u2028"\\ü\x00', max_size=4),
        max_size=5,
    )
)
def test_canonical_metadata_is_sorted_compact_json_as_the_spec_says(meta):
    """The encoder built once gives what ``json.dumps`` gives; derived ids depend on it."""
    assert canonical_metadata(meta) == json.dumps(meta, sort_keys=True, separators=(",", ":"))
