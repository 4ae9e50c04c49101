"""Canonical JSON for a whole column: Python's json.dumps(sort_keys=True) text, without a Python call per row."""

from __future__ import annotations

import json

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from vtp_lab.canonical import canonical_json
from vtp_lab.events import canonical_metadata, derive_event_ids
from vtp_lab.validation import validate


def python(text: str | None) -> str | None:
    """The reference: what the spec's id derivation names (Python's json module)."""
    return None if text is None else json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"))


CASES = [
    '{"b": 1.50, "a": "caf\\u00e9", "b": 2}',
    '{"z": [1, {"b": 1e-5, "a": true}], "y": "\\n"}',
    "{}",
    '{"a":"\\ud83d\\ude00 \\u007f \\u0001 x/\\/"}',
    '{"n": -0, "m": -0.0, "big": 123456789012345678901234567890, "f": 1E400, "g": -1e400, "h": 9.99e-5, "i": 1e16}',
    '{"nested": {"b": {"d": [], "c": {}}, "a": null}}',
    '{"a": [[1,[2,"é"]],{"x":{"y":1}}], "a": 5}',
    '{"é": 1, "e": 2, "\\u00e8": 3, "Z": 4, "z": 5}',
    '{"title":"Vorlesung über Analysis", "position": 12.30}',
    '{"a\\"b": "x\\\\y", "t\\tab": "\\b\\f\\r"}',
    '{"n":[-0, 1.0e2, 5e-324, 0.0001, 1.7976931348623157e308]}',
    '{ "position" : 1.5 ,\n "quality" : "720p" }',
    '{"position": null, "quality": "720p"}',
    '{"course_id": "4e5a0000-0000-4000-8000-000000000000", "duration": 3060.0}',
    None,
]


def test_hand_checked_texts_match_python():
    assert canonical_json(pl.Series(CASES)).to_list() == [python(t) for t in CASES]


def test_values_other_than_objects_beside_objects_keep_their_own_text():
    texts = ['{"a": 1}', "[1, 2]", "3", '"x"', "[]", " [{}]", "true", '{"a": 2, "b": [3]}']
    assert canonical_json(pl.Series(texts)).to_list() == [python(t) for t in texts]


def test_a_column_of_nulls_stays_null():
    assert canonical_json(pl.Series([None, None], dtype=pl.String)).to_list() == [None, None]


scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(exclude_categories=("Cs",)), max_size=8)
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4),
    max_leaves=12,
)
objects = st.dictionaries(
    st.sampled_from(["position", "quality", "bitrate", "Position", "é", "a b", "x!"]) | st.text(max_size=5),
    values,
    max_size=6,
)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            objects, st.booleans(), st.booleans(), st.sampled_from([None, (",", ":"), (", ", ": "), (" ,", " : ")])
        ),
        min_size=1,
        max_size=30,
    )
)
def test_any_object_in_any_spelling_matches_python(rows):
    """Objects of any values, written with or without ASCII escapes, sorted or not, with any spacing."""
    texts = [
        json.dumps(obj, ensure_ascii=ascii_only, sort_keys=ordered, separators=seps)
        for obj, ascii_only, ordered, seps in rows
    ]
    assert canonical_json(pl.Series(texts, dtype=pl.String)).to_list() == [python(t) for t in texts]


def test_repeated_keys_keep_the_last_value_at_every_depth():
    texts = ['{"a": 1, "b": 2, "a": 3}', '{"o": {"k": 1, "k": [2]}, "o": {"k": 4, "j": 5, "k": 6}}']
    assert canonical_json(pl.Series(texts)).to_list() == ['{"a":3,"b":2}', '{"o":{"j":5,"k":6}}']


def test_validated_ids_are_the_spec_ids_without_a_python_loop():
    """Events without ids get the id the spec derives from Python's canonical text, whatever the metadata's spelling."""
    base = {
        "event_type": "playback_paused",
        "recording_id": "6ba7b810-9dad-11d1-80b4-00c04fd430c8",
        "user_id": "6ba7b811-9dad-11d1-80b4-00c04fd430c8",
        "session_id": "s-1",
        "event_timestamp": "2026-09-01T10:00:00.000001Z",
    }
    metadata = ['{"position": 12.50, "b": "é"}', '{"b":"\\u00e9","position":12.5}', None, '{"position": 1e-5}']
    frame = pl.DataFrame([{**base, "metadata": m} for m in metadata], schema_overrides={"metadata": pl.String})
    accepted = validate(frame).accepted
    canonical = pl.Series([canonical_metadata(json.loads(m)) if m else "" for m in metadata])
    expected = derive_event_ids(accepted, canonical=canonical)
    assert accepted["id"].to_list() == expected.to_list()
    assert accepted["id"][0] == accepted["id"][1]  # two spellings of one metadata: one id


def test_one_event_and_a_frame_derive_the_same_id_in_any_year():
    """The single-event path wrote years before 1000 without their zeros (strftime's %Y): another id than frames'."""
    from vtp_lab.events import Event

    base = {
        "event_type": "playback_paused",
        "recording_id": "6ba7b810-9dad-11d1-80b4-00c04fd430c8",
        "user_id": "6ba7b811-9dad-11d1-80b4-00c04fd430c8",
        "session_id": "s-1",
        "metadata": '{"position": 1.50, "nested": {"b": 1, "a": [2]}}',
    }
    times = ["0005-01-02T03:04:05.000006Z", "0999-12-31T23:59:59Z", "2026-09-01T10:00:00Z"]
    frame = pl.DataFrame([{**base, "event_timestamp": t} for t in times])
    accepted = validate(frame).accepted
    singles = [Event.from_dict({**base, "event_timestamp": t, "metadata": json.loads(base["metadata"])}) for t in times]
    assert accepted["id"].to_list() == [e.id for e in singles]


numbers = st.from_regex(r"\A-?(0|[1-9][0-9]{0,18})(\.[0-9]{1,18})?([eE][+-]?[0-9]{1,3})?\Z")
keys = st.sampled_from(["position", "quality", "a", "b", "B", "a:b", "é", "a\\b", "x y", ""])
flat = st.dictionaries(keys, numbers | st.sampled_from(['"720p"', '"a:1"', '"a,b"', "true", "null", '"\\u00e9"']))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(flat, st.booleans(), st.sampled_from([(",", ":"), (", ", ": ")])), min_size=1, max_size=20))
def test_raw_numbers_and_keys_in_any_order_match_python(rows):
    """Raw numbers of any spelling (trailing zeros, 16+ digits, -0, exponents, tiny), keys in any order."""
    texts = []
    for members, ordered, (comma, colon) in rows:
        pairs = sorted(members.items()) if ordered else list(members.items())
        texts.append("{" + comma.join(f"{json.dumps(k, ensure_ascii=False)}{colon}{v}" for k, v in pairs) + "}")
    assert canonical_json(pl.Series(texts, dtype=pl.String)).to_list() == [python(t) for t in texts]


EDGE_NUMBERS = ["0.0001", "0.00001", "0.00010", "1.50", "-0", "-0.0", "0.0", "3060.0", "-12.5", "0.1"]
EDGE_NUMBERS += ["123456789012345.0", "12345678901234.5", "1234567890123456", "9007199254740993"]
EDGE_NUMBERS += ["1.0000000000000001", "0.12345678901234567", "1234567890123456.7", "0.30000000000000004"]
EDGE_NUMBERS += ["8.439150008063609", "84391500080636.1", "0.8439150008063609", "0.0008439150008063609"]
EDGE_NUMBERS += ["0.843915000806361", "0.000843915000806361"]
PLAIN_EDGES = [f'{{"b":{n},"a":1}}' for n in EDGE_NUMBERS] + [
    '{"b":1,"a":2,"b":3}',
    '{"a":1,"a":2}',
    '{"x:y,z":"a,b:c}","$1":"${2}","{":"}","#~":true,"":null,"9":false}',
    '{ "b" : 1 ,\n\t"a" : "x , y : z" }',
    '{"b":"caf\\u00e9","a":1}',
    '{"b":"\\"","a":1}',
    '{"b":"x,","a":1,"c":",","d":"y"}',
    '{"a b":1,"a":2,"a!":3}',
    '{"b":{"c":1},"a":[1]}',
    "{}",
    '{"only":1}',
]


def test_flat_objects_at_the_edges_of_python_number_text_match_python():
    """Numbers at the 1e-4 and 15-digit bounds, keys with punctuation and ``$``, spaces, repeats and others."""
    assert canonical_json(pl.Series(PLAIN_EDGES)).to_list() == [python(t) for t in PLAIN_EDGES]


def test_the_platforms_metadata_is_written_without_duckdb(monkeypatch):
    """Flat objects of plain keys and values, in any key order and spacing: polars alone (the fast path)."""
    import vtp_lab.canonical

    def refuse(*args, **kwargs):
        raise AssertionError("a plain flat object went to DuckDB")

    monkeypatch.setattr(vtp_lab.canonical, "_struct_select", refuse)
    monkeypatch.setattr(vtp_lab.canonical, "_any_json", refuse)
    texts = [
        '{"position":12.5}',
        '{"position": 0.0, "quality": "720p", "bitrate": 2800, "playback_rate": 1.0, "duration": 3060.0}',
        '{"old_quality":"720p","new_quality":"480p","reason":"bandwidth_drop","position":125.716}',
        '{"code":"E42","message":"network: lost, retrying","fatal":false,"extra":null}',
        None,
    ]
    assert canonical_json(pl.Series(texts)).to_list() == [python(t) for t in texts]


def test_rows_beyond_the_orders_of_keys_a_batch_sorts_take_the_general_path():
    texts = [f'{{"k{i:03d}":{i},"a{i:03d}":"x","k{i:03d}":{i}.5}}' for i in range(40)]
    texts += [f'{{"z{i:03d}":{i},"a":{i}.25}}' for i in range(100)] * 2
    assert canonical_json(pl.Series(texts)).to_list() == [python(t) for t in texts]


plain_numbers = st.builds(
    lambda sign, whole, fraction, exponent: f"{sign}{whole}{fraction}{exponent}",
    st.sampled_from(["", "-"]),
    st.sampled_from(["0"]) | st.from_regex(r"[1-9][0-9]{0,19}", fullmatch=True),
    st.sampled_from([""]) | st.from_regex(r"\.[0-9]{1,19}", fullmatch=True),
    st.sampled_from(["", "", "", "e5", "E-7", "e+300"]),
)
plain_values = (
    plain_numbers
    | st.sampled_from(["true", "false", "null"])
    | st.text(st.characters(min_codepoint=32, max_codepoint=126, exclude_characters='"\\'), max_size=6).map(
        lambda t: f'"{t}"'
    )
)
plain_keys = st.text(st.characters(min_codepoint=32, max_codepoint=126, exclude_characters='"\\'), max_size=4)


@settings(max_examples=80, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.lists(st.tuples(plain_keys | st.sampled_from(["position", "a", "b"]), plain_values), max_size=6),
            st.sampled_from([(",", ":"), (", ", ": "), (" , ", " :\n")]),
        ),
        min_size=1,
        max_size=40,
    )
)
def test_flat_objects_written_by_hand_match_python(rows):
    """Flat objects whose numbers are any JSON spelling, keys in any order, repeated or not, with any spacing."""
    texts = ["{" + comma.join(f'"{k}"{colon}{v}' for k, v in pairs) + "}" for pairs, (comma, colon) in rows]
    assert canonical_json(pl.Series(texts, dtype=pl.String)).to_list() == [python(t) for t in texts]
