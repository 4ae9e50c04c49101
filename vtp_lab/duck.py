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
from pathlib import Path

import duckdb

__all__ = ["compute", "connect"]


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
