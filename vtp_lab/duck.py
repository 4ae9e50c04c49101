"""DuckDB connections that never reach the network.

Every DuckDB connection vtp_lab opens comes from :func:`connect`: extension
auto-install and auto-load are off (only the built-in parquet and json
extensions are used), and the session time zone is UTC.

Example:
    >>> con = connect()
    >>> con.execute("SELECT current_setting('TimeZone')").fetchone()
    ('UTC',)
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Final

import duckdb
import polars as pl
import pyarrow as pa

__all__ = ["JsonParse", "arrow", "compute", "connect", "json_query"]

JsonParse = Callable[[str, str], str]
"""``parse(text, struct)``: the SQL that parses the JSON column ``text`` into the struct type ``struct``."""

_SCAN_BATCH_ROWS: Final = 16_384
"""Rows per Arrow record batch handed to DuckDB (see :func:`arrow`)."""


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
    con.execute("SET TimeZone = 'UTC'")
    return con


_SHARED: list[duckdb.DuckDBPyConnection] = []
_SHARED_LOCK = threading.Lock()


def compute() -> duckdb.DuckDBPyConnection:
    """A fresh cursor on one shared in-memory database, for computing over frames.

    Opening a database costs milliseconds; a cursor costs microseconds. Each call
    returns its own cursor, so threads do not share one.

    Example:
        >>> compute().execute("SELECT 40 + 2").fetchone()
        (42,)
    """
    with _SHARED_LOCK:
        if not _SHARED:
            _SHARED.append(connect())
        cursor = _SHARED[0].cursor()
    cursor.execute("SET TimeZone = 'UTC'")
    return cursor


def arrow(frame: pl.DataFrame, *, batch_rows: int | None = _SCAN_BATCH_ROWS) -> pa.Table:
    """``frame`` as an Arrow table for DuckDB, with no copy: strings stay Arrow string views.

    DuckDB's Arrow scan gives each thread whole record batches, and polars makes one
    per chunk: a frame of 100,000 lines in one chunk was parsed as JSON on one thread
    (1.0 s per 1M lines, against 0.5 s cut into batches of 16,384 rows). So the table is
    cut into batches of ``batch_rows`` rows by slicing. ``batch_rows=None`` makes one
    batch, for an ``INSERT``: DuckDB inserts several batches in parallel, each thread
    into row groups of its own, and the part-filled row groups this leaves are merged
    again at the next checkpoint. Loading 1M events in appends of two chunks each, the
    checkpoint when the store closed took 0.22 to 0.23 s in three runs of four; from
    one batch, 0.02 to 0.03 s in all four.

    Example:
        >>> table = arrow(pl.DataFrame({"x": range(40_000)}))
        >>> [len(b) for b in table.to_batches()]
        [16384, 16384, 7232]
        >>> len(arrow(pl.concat([pl.DataFrame({"x": [1]})] * 3, rechunk=False), batch_rows=None).to_batches())
        1
    """
    if batch_rows is None:
        return frame.rechunk().to_arrow(compat_level=pl.CompatLevel.newest())
    table = frame.to_arrow(compat_level=pl.CompatLevel.newest())
    return pa.Table.from_batches(table.to_batches(max_chunksize=batch_rows), schema=table.schema)


def json_query(con: duckdb.DuckDBPyConnection, query: Callable[[JsonParse], str]) -> pl.DataFrame:
    """Run the SQL ``query(parse)``, whose JSON texts are parsed by ``parse``, as a polars frame.

    It runs first with plain ``from_json``, which raises on a text that is not JSON, and
    only then again with ``json_valid`` guarding each text (null where it is not JSON).
    Checking every text first cost 0.19 s of CPU per 1M lines, and ``try(from_json(...))``
    retries a whole vector row by row: with 1% malformed lines, 7 times slower.

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
