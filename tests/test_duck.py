"""Arrow tables for DuckDB: binary UUIDs from canonical texts, and only from those."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid

import polars as pl
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from vtp_lab.duck import arrow, connect, uuid_array, uuid_text
from vtp_lab.tables import UUID_PATTERN

_CANONICAL = st.uuids().map(str)
_CHARACTERS = "0123456789abcdef-ABCDEFg/:`@{} "  # the hex digits, a dash, and their neighbours in ASCII
_NEAR = st.text(alphabet=_CHARACTERS, min_size=35, max_size=37)
_ONE_CHANGED = st.builds(
    lambda u, at, c: u[:at] + c + u[at + 1 :],
    _CANONICAL,
    st.sampled_from([0, 7, 8, 9, 13, 18, 23, 24, 35]),  # the dashes and the digits next to them
    st.sampled_from(_CHARACTERS),
)
_SPELLINGS = st.one_of(
    _CANONICAL.map(str.upper), _CANONICAL.map(lambda u: u.replace("-", "")), _NEAR, _ONE_CHANGED, st.none()
)


@pytest.mark.parametrize("character", list("/09:`afg-AF{ "))
@pytest.mark.parametrize("at", [0, 8, 35])
def test_uuid_array_knows_the_edges_of_the_hex_digits_and_where_the_dashes_go(character, at):
    text = "6ba7b811-9dad-11d1-80b4-00c04fd430c8"
    changed = text[:at] + character + text[at + 1 :]
    assert (uuid_array(pa.array([changed])) is not None) == bool(re.fullmatch(UUID_PATTERN, changed))


_TYPES = {"string": pa.string(), "large": pa.large_string(), "view": pa.string_view()}


@given(st.one_of(_CANONICAL, _SPELLINGS), st.sampled_from(sorted(_TYPES)))
def test_uuid_array_takes_a_text_exactly_when_it_is_canonical_and_keeps_its_bytes(text, kind):
    binary = uuid_array(pa.array([text], _TYPES[kind]))
    assert (binary is not None) == bool(text is not None and re.fullmatch(UUID_PATTERN, text))
    if binary is not None:
        assert binary.type == pa.uuid()
        assert binary.storage.to_pylist() == [uuid.UUID(text).bytes]


@given(st.lists(st.one_of(_CANONICAL, _SPELLINGS), max_size=12))
def test_uuid_array_takes_a_column_only_when_every_text_is_canonical(texts):
    binary = uuid_array(pa.array(texts, pa.string()))
    canonical = all(t is not None and re.fullmatch(UUID_PATTERN, t) for t in texts)
    assert (binary is not None) == canonical
    if binary is not None:
        assert binary.storage.to_pylist() == [uuid.UUID(t).bytes for t in texts]


@given(st.lists(st.uuids(), max_size=12), st.sampled_from(["uuid", "fixed", "binary", "large_binary"]))
def test_uuid_text_is_the_canonical_text_of_each_uuid_of_16_bytes(uuids, kind):
    raw = [u.bytes for u in uuids]
    arrays = {
        "uuid": lambda: pa.ExtensionArray.from_storage(pa.uuid(), pa.array(raw, pa.binary(16))),
        "fixed": lambda: pa.array(raw, pa.binary(16)),
        "binary": lambda: pa.array(raw, pa.binary()),
        "large_binary": lambda: pa.array(raw, pa.large_binary()),
    }
    assert uuid_text(arrays[kind]()).to_pylist() == [str(u) for u in uuids]


def test_uuid_text_reads_slices_chunks_and_duckdbs_parquet_and_gives_null_for_what_is_not_16_bytes(tmp_path):
    uuids = [uuid.UUID(int=i * 7919 + 1) for i in range(150_000)]  # over two steps of 65,536 rows
    texts = [str(u) for u in uuids]
    binary = pa.array([u.bytes for u in uuids], pa.large_binary())
    assert uuid_text(binary.slice(3, 100_000)).to_pylist() == texts[3:100_003]
    assert uuid_text(pa.chunked_array([binary[:7], binary[7:]])).to_pylist() == texts
    con = connect()
    con.execute(
        f"COPY (SELECT CAST(t AS UUID) AS u FROM (SELECT unnest(?) AS t)) TO '{tmp_path / 'u.parquet'}'", [texts]
    )
    assert uuid_text(pl.read_parquet(tmp_path / "u.parquet")["u"].to_arrow()).to_pylist() == texts
    mixed = [uuids[0].bytes, b"short", None, b"", uuids[1].bytes, uuids[2].bytes + b"!"]
    for kind in (pa.binary(), pa.large_binary()):
        assert uuid_text(pa.array(mixed, kind).slice(0)).to_pylist() == [texts[0], None, None, None, texts[1], None]
    fixed = pa.array([uuids[0].bytes, None, uuids[1].bytes], pa.binary(16)).slice(1)
    assert uuid_text(fixed).to_pylist() == [None, texts[1]]
    with pytest.raises(TypeError, match="uuid_text takes binary values"):
        uuid_text(pa.array(["text"]))


def test_uuid_array_reads_slices_and_chunks_and_looks_at_every_row():
    texts = [str(uuid.UUID(int=i * 7919 + 1)) for i in range(20_000)]  # over two steps of 8,192 rows
    chunked = pa.chunked_array([texts[:5_000], texts[5_000:]])
    assert uuid_array(chunked).storage.to_pylist() == [uuid.UUID(t).bytes for t in texts]
    sliced = pa.array(texts).slice(3, 10_000)
    assert uuid_array(sliced).storage.to_pylist() == [uuid.UUID(t).bytes for t in texts[3:10_003]]
    assert uuid_array(pa.array([*texts[:-1], texts[-1][:-1] + "g"])) is None  # the last row of the last step
    assert uuid_array(pa.array([texts[0] + "0", texts[1][:-1]])) is None  # lengths differ, total is right
    assert uuid_array(pa.array([1, 2])) is None


@pytest.mark.parametrize("spelling", [str, str.upper])
def test_duckdb_stores_binary_and_text_uuids_alike(spelling):
    texts = [str(uuid.uuid4()) for _ in range(1_000)]
    table = arrow(pl.DataFrame({"id": [spelling(t) for t in texts]}), uuids=["id"])
    assert (table.schema.field("id").type == pa.uuid()) == (spelling is str)
    con = connect()
    con.execute("CREATE TABLE t (id UUID)")
    con.register("batch", table)
    con.execute("INSERT INTO t SELECT * FROM batch")
    assert [r[0] for r in con.execute("SELECT id::VARCHAR FROM t").fetchall()] == texts


_IN_NEW_YORK = """
import polars as pl
from vtp_lab.duck import compute, connect
from vtp_lab.validation import cast_timestamps
zone = "SELECT current_setting('TimeZone')"
print(compute().execute(zone).fetchone()[0], connect().cursor().execute(zone).fetchone()[0])
print(cast_timestamps(pl.Series(["2026-09-01 10:00:00"])).dt.hour().item())
"""


def test_every_connection_and_cursor_keeps_time_in_utc_whatever_the_machine_zone():
    out = subprocess.run(
        [sys.executable, "-c", _IN_NEW_YORK],
        env={**os.environ, "TZ": "America/New_York"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.split() == ["UTC", "UTC", "10"]  # a naive text is UTC, not 14:00 from New York


def test_no_query_prints_a_progress_bar(tmp_path):
    """DuckDB's own bar goes to the process's stdout (a JSON array's stream once printed ``16%`` into a load's output).

    In a process of its own: under pytest DuckDB finds no terminal and shows no bar anyway.
    """
    code = (
        "import sys; from vtp_lab.duck import connect; "
        "cons = (connect(), connect(sys.argv[1]), connect().cursor()); "
        "print([c.execute(\"SELECT current_setting('enable_progress_bar')\").fetchone()[0] for c in cons])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "store.duckdb")], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[False, False, False]"
