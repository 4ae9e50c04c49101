"""DuckDB connections that never reach the network.

Every DuckDB connection vtp_lab opens comes from :func:`connect`: extension
auto-install and auto-load are off (only the built-in parquet and json
extensions are used), the session time zone is UTC, and no query prints a
progress bar.

Example:
    >>> con = connect()
    >>> con.execute("SELECT current_setting('TimeZone')").fetchone()
    ('UTC',)
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa

__all__ = [
    "ROW_GROUP_ROWS",
    "JsonParse",
    "arrow",
    "compute",
    "connect",
    "fixed_rows",
    "json_query",
    "literal",
    "over",
    "text_of_rows",
    "uuid_array",
    "uuid_text",
    "uuid_texts",
]

JsonParse = Callable[[str, str], str]
"""``parse(text, struct)``: the SQL that parses the JSON column ``text`` into the struct type ``struct``."""

_SCAN_BATCH_ROWS: Final = 16_384
"""Rows per Arrow record batch handed to DuckDB to scan (see :func:`arrow`)."""
ROW_GROUP_ROWS: Final = 122_880
"""Rows in a DuckDB row group: an append of fewer goes through the write-ahead log, then again at the checkpoint."""


def literal(text: str | Path) -> str:
    """``text`` as a SQL string literal, its quotes doubled: for what DuckDB takes only as a literal (``COPY ... TO``).

    Example:
        >>> literal("/home/o'brien/lake")
        "'/home/o''brien/lake'"
    """
    return "'" + str(text).replace("'", "''") + "'"


def connect(
    path: str | Path = ":memory:", *, read_only: bool = False, threads: int | None = None
) -> duckdb.DuckDBPyConnection:
    """Open a DuckDB connection with extension downloads disabled and UTC time.

    Example:
        >>> connect().execute("SELECT 1").fetchone()
        (1,)
    """
    config: dict[str, str | bool | int | float | list[str]] = {
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": False,
    }
    if threads is not None:
        config["threads"] = threads
    con = duckdb.connect(str(path), read_only=read_only, config=config)
    con.execute("SET GLOBAL TimeZone = 'UTC'")  # its cursors inherit it
    con.execute("SET enable_progress_bar = false")  # a query's bar on stdout; its cursors have none already
    return con


_SHARED: list[duckdb.DuckDBPyConnection] = []
_SHARED_LOCK = threading.Lock()


def compute() -> duckdb.DuckDBPyConnection:
    """A fresh cursor on one shared in-memory database, for computing over frames.

    Opening a database costs far more than a cursor, which inherits the database's UTC
    time zone (setting it again on each cursor would cost more than the cursor). Each call
    returns its own cursor, so threads do not share one.

    Example:
        >>> compute().execute("SELECT 40 + 2").fetchone()
        (42,)
    """
    with _SHARED_LOCK:
        if not _SHARED:
            _SHARED.append(connect())
        return _SHARED[0].cursor()


@contextmanager
def over(**frames: pl.DataFrame) -> Iterator[duckdb.DuckDBPyConnection]:
    """A :func:`compute` cursor with each frame registered under its keyword's name, closed afterwards.

    Example:
        >>> with over(t=pl.DataFrame({"x": [1, 2]})) as con:
        ...     con.sql("SELECT max(x) AS s FROM t").pl()["s"].item()
        2
    """
    con = compute()
    try:
        for name, frame in frames.items():
            con.register(name, arrow(frame))
        yield con
    finally:
        con.close()


_DASHES: Final = np.isin(np.arange(36), (8, 13, 18, 23))
"""Where a canonical UUID text has its dashes."""
_HIGH_NIBBLES: Final = np.flatnonzero(~_DASHES)[::2]
"""Where the first hex digit of each of a UUID's 16 bytes is in its text."""
_UUID_ROWS_PER_STEP: Final = 8_192
"""Rows converted at a time: the step's arrays stay in the CPU's cache."""


def _uuid_bytes(text: np.ndarray) -> np.ndarray | None:
    """Rows of 36 characters, each a canonical UUID, as rows of its 16 bytes; None if one is not."""
    digit, letter = (text - ord("0")) < 10, (text - ord("a")) < 6  # uint8 wraps below "0" and "a"
    if not ((text[:, _DASHES] == ord("-")).all() and (digit | letter | _DASHES).all()):
        return None
    nibble = (text & 15) + (text >> 6) * 9  # "0".."9" to 0..9, "a".."f" to 10..15
    return (nibble[:, _HIGH_NIBBLES] << 4) | nibble[:, _HIGH_NIBBLES + 1]


def uuid_array(texts: pa.Array | pa.ChunkedArray) -> pa.ExtensionArray | None:
    """Canonical UUID texts as an Arrow ``arrow.uuid`` array (16 bytes each), or None if any is not one.

    DuckDB stores such an array in a ``UUID`` column as it is, while it parses text
    (more than ten times slower). The conversion is vectorised over the Arrow buffers and
    costs less than the parse it saves. A null, an upper-case digit or any other
    spelling gives None: the caller keeps the text for DuckDB to cast.

    Example:
        >>> uuid_array(pa.array(["6ba7b811-9dad-11d1-80b4-00c04fd430c8"])).storage[0].as_py().hex()
        '6ba7b8119dad11d180b400c04fd430c8'
        >>> uuid_array(pa.array(["6BA7B811-9DAD-11D1-80B4-00C04FD430C8"])) is None
        True
    """
    whole = texts.combine_chunks() if isinstance(texts, pa.ChunkedArray) else texts
    kind = whole.type
    if whole.null_count or not (pa.types.is_string(kind) or pa.types.is_large_string(kind) or kind == pa.string_view()):
        return None
    chars, spelled = fixed_rows(whole.cast(pa.large_string()), 36)
    if not spelled.all():
        return None
    n = len(chars)
    out = np.empty((n, 16), np.uint8)
    for start in range(0, n, _UUID_ROWS_PER_STEP):
        step = _uuid_bytes(chars[start : start + _UUID_ROWS_PER_STEP])
        if step is None:
            return None
        out[start : start + _UUID_ROWS_PER_STEP] = step
    storage = pa.FixedSizeBinaryArray.from_buffers(pa.binary(16), n, [None, pa.py_buffer(out)])
    return pa.ExtensionArray.from_storage(pa.uuid(), storage)


_HEX_PAIRS: Final = np.frombuffer(b"".join(f"{i:02x}".encode() for i in range(256)), np.uint16)
"""Each byte's two hex digits, as the two bytes of one ``uint16``."""
_TEXT_PIECES: Final = ((0, 8), (8, 12), (12, 16), (16, 20), (20, 32))
"""The hex digits of each dash-separated group of a UUID's text."""
_TEXT_ROWS_PER_STEP: Final = 65_536
"""UUIDs made text at a time (smaller steps were slower: docs/design-measurements.md)."""


def fixed_rows(array: pa.Array, width: int) -> tuple[np.ndarray, np.ndarray]:
    """The values of a binary or string Arrow array as rows of ``width`` bytes, and which rows are such a value.

    A row is a value when it is not null and has exactly ``width`` bytes; the other rows
    are zeros. When every value has that width the rows are a view of the array's
    buffer, not a copy. Takes fixed-size binary of ``width``, binary, large binary,
    string and large string.

    Example:
        >>> rows, ok = fixed_rows(pa.array(["ab", "abc", None, "cd"]), 2)
        >>> rows[ok].tobytes(), ok.tolist()
        (b'abcd', [True, False, False, True])
    """
    n, kind = len(array), array.type
    valid = np.ones(n, bool) if array.null_count == 0 else array.is_valid().to_numpy(zero_copy_only=False)
    if kind == pa.binary(width):
        return np.frombuffer(array.buffers()[1], np.uint8, width * n, array.offset * width).reshape(n, width), valid
    if kind not in (pa.binary(), pa.large_binary(), pa.string(), pa.large_string()):
        raise TypeError(f"fixed_rows takes binary or string values, not {kind}")
    size = 8 if kind in (pa.large_binary(), pa.large_string()) else 4
    offsets = np.frombuffer(array.buffers()[1], f"int{size * 8}", n + 1, array.offset * size).astype(np.int64)
    sized = np.diff(offsets) == width
    data = array.buffers()[2]
    values = np.frombuffer(data, np.uint8) if data is not None else np.zeros(0, np.uint8)
    if sized.all():  # every value of the width, one after the other
        return values[offsets[0] : offsets[-1]].reshape(n, width), valid
    rows = np.zeros((n, width), np.uint8)
    rows[sized] = values[offsets[:-1][sized, None] + np.arange(width)]
    return rows, valid & sized


def text_of_rows(rows: np.ndarray, valid: np.ndarray) -> pa.LargeStringArray:
    """Rows of bytes (a C-contiguous ``uint8`` matrix), each a text, as a large-string array; null where not ``valid``.

    Example:
        >>> text_of_rows(np.frombuffer(b"abcd", np.uint8).reshape(2, 2), np.array([True, False])).to_pylist()
        ['ab', None]
    """
    n, width = rows.shape
    offsets = np.arange(0, width * n + 1, width, dtype=np.int64)
    nulls = n - int(valid.sum())
    mask = pa.py_buffer(np.packbits(valid, bitorder="little")) if nulls else None
    return pa.LargeStringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(rows), mask, nulls)


def uuid_text(array: pa.Array | pa.ChunkedArray) -> pa.LargeStringArray:
    """Binary UUIDs (``arrow.uuid``, or binary values) as canonical UUID texts; a value not of 16 bytes is null.

    The inverse of :func:`uuid_array`, vectorised over the Arrow buffers: what a Parquet
    file of DuckDB's ``UUID`` columns gives back (polars reads them as binary), or a
    Spark or PostgreSQL id, as the contract's text.

    Example:
        >>> uuid_text(uuid_array(pa.array(["6ba7b811-9dad-11d1-80b4-00c04fd430c8"]))).to_pylist()
        ['6ba7b811-9dad-11d1-80b4-00c04fd430c8']
        >>> uuid_text(pa.array([b"short", None])).to_pylist()
        [None, None]
    """
    whole = array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array
    storage = whole.storage if isinstance(whole, pa.ExtensionArray) else whole
    if storage.type not in (pa.binary(16), pa.binary(), pa.large_binary()):
        raise TypeError(f"uuid_text takes binary values (arrow.uuid, fixed or variable size), not {storage.type}")
    raw, valid = fixed_rows(storage, 16)
    n = len(raw)
    out = np.empty((n, 36), np.uint8)
    out[:, _DASHES] = ord("-")
    for row in range(0, n, _TEXT_ROWS_PER_STEP):
        hexed = _HEX_PAIRS[raw[row : row + _TEXT_ROWS_PER_STEP]].view(np.uint8)
        step, at = out[row : row + _TEXT_ROWS_PER_STEP], 0
        for first, end in _TEXT_PIECES:
            step[:, at : at + end - first] = hexed[:, first:end]
            at += end - first + 1
    return text_of_rows(out, valid)


def uuid_texts(values: pl.Series, *, repeats: bool) -> pl.Series:
    """:func:`uuid_text` of a polars column; where values ``repeats`` (a key, not a row's id), each distinct one once.

    A part's user and recording ids are a few thousand values over a million rows: their
    texts made once each and looked up took 0.04 to 0.10 s a column of a 1M-event part,
    against 0.10 to 0.38 s a text a row (docs/design-measurements.md).

    Example:
        >>> uuid_texts(pl.Series("k", [bytes(16), None, bytes(16)]), repeats=True).to_list()
        ['00000000-0000-0000-0000-000000000000', None, '00000000-0000-0000-0000-000000000000']
    """
    if not repeats:
        return pl.Series(values.name, uuid_text(values.to_arrow()), pl.String)
    distinct = values.unique()
    return values.replace_strict(distinct, pl.Series(uuid_text(distinct.to_arrow()), dtype=pl.String))


def arrow(frame: pl.DataFrame, *, batch_rows: int = _SCAN_BATCH_ROWS, uuids: Collection[str] = ()) -> pa.Table:
    """``frame`` as an Arrow table for DuckDB in record batches of ``batch_rows`` rows; strings stay string views.

    DuckDB's Arrow scan gives each thread whole record batches, and polars makes one
    per chunk: a frame in one chunk would be parsed as JSON on one thread. So the table is
    cut into batches by slicing, counted from the first row.

    For an ``INSERT``, pass ``batch_rows=ROW_GROUP_ROWS``. DuckDB inserts batches in
    parallel, each thread into row groups of its own: batches of a whole row group fill
    whole row groups, and 1M events went in 5 appends in 0.81 to 0.89 s, against 0.97
    to 1.01 s from one batch each. Batches of any other size (a polars chunk each, as
    before) left part-filled row groups, which the checkpoint merged again: 0.22 to 0.23 s
    when the store closed after three of four 1M-event loads, 0.02 to 0.03 s without.

    The columns named in ``uuids`` that hold only canonical UUID texts become binary
    UUIDs (:func:`uuid_array`), for a ``UUID`` column to take without parsing.

    Example:
        >>> table = arrow(pl.DataFrame({"x": range(40_000)}))
        >>> [len(b) for b in table.to_batches()]
        [16384, 16384, 7232]
        >>> chunks = pl.concat([pl.DataFrame({"x": range(100_000)})] * 3, rechunk=False)
        >>> [len(b) for b in arrow(chunks, batch_rows=ROW_GROUP_ROWS).to_batches()]
        [122880, 122880, 54240]
        >>> arrow(pl.DataFrame({"id": ["6ba7b811-9dad-11d1-80b4-00c04fd430c8"]}), uuids=["id"]).schema.field("id").type
        UuidType(extension<arrow.uuid>)
    """
    table = frame.rechunk().to_arrow(compat_level=pl.CompatLevel.newest())
    for name in uuids:
        binary = uuid_array(table[name]) if name in table.column_names else None
        if binary is not None:
            table = table.set_column(table.column_names.index(name), pa.field(name, binary.type), binary)
    return pa.Table.from_batches(table.to_batches(max_chunksize=batch_rows), schema=table.schema)


def json_query(con: duckdb.DuckDBPyConnection, query: Callable[[JsonParse], str]) -> pl.DataFrame:
    """Run the SQL ``query(parse)``, whose JSON texts are parsed by ``parse``, as a polars frame.

    It runs first with plain ``from_json``, which raises on a text that is not JSON, and
    only then again with ``json_valid`` guarding each text (null where it is not JSON).
    Checking every text first costs CPU on every load, and ``try(from_json(...))``
    retries a whole vector row by row (docs/design-measurements.md has the figures).

    Example:
        >>> con = compute()
        >>> con.register("texts", arrow(pl.DataFrame({"x": ['{"a": 1}', "nope"]})))  # doctest: +ELLIPSIS
        <...>
        >>> struct = '{"a": "INTEGER"}'
        >>> json_query(con, lambda parse: "SELECT " + parse("x", struct) + " AS m FROM texts")["m"].to_list()
        [{'a': 1}, None]
    """

    def plain(text: str, struct: str) -> str:
        return f"from_json({text}, '{struct}')"

    def guarded(text: str, struct: str) -> str:
        return f"CASE WHEN json_valid({text}) THEN {plain(text, struct)} END"

    try:
        return con.sql(query(plain)).pl()
    except duckdb.InvalidInputException:
        return con.sql(query(guarded)).pl()
