"""Where events live: one embedded DuckDB file, or a Parquet lake.

Both stores hold the same tables with the same columns (:mod:`vtp_lab.tables`) and
offer the same small interface: :meth:`append` a batch of accepted events plus its
rejected rows (committed whole or not at all, events de-duplicated by id against
what is stored and within the batch), :meth:`read` a table as a polars frame with
simple filters, and :meth:`write_recordings`.

- :class:`DuckDBStore`: one transaction per batch; de-duplication is one anti-join.
  DuckDB allows one process at a time: a second writer gets :class:`StoreLockedError`,
  and a reader (``read_only=True``) reads a snapshot copied as of its opening.
- :class:`ParquetLake`: a directory. ``analytics_events/event_date=YYYY-MM-DD/`` holds
  hive-partitioned zstd Parquet; the other tables have folders of their own. A batch is
  written into ``_staging/``, its footers checked, renamed to a name derived from its
  content, then recorded in ``_ledger/``; readers see only files in the ledger. Opening
  for writing takes ``_writer.lock`` and clears what a crashed writer left behind.

Example:
    >>> store = open_store(":memory:")
    >>> store.read("analytics_events").height
    0
"""

from __future__ import annotations

from pathlib import Path

from vtp_lab.store.base import AppendResult, Filter, Origins, Store, data_version, read_spilled
from vtp_lab.store.database import DuckDBStore
from vtp_lab.store.lake import ParquetLake

__all__ = [
    "AppendResult",
    "DuckDBStore",
    "Filter",
    "Origins",
    "ParquetLake",
    "Store",
    "data_version",
    "open_store",
    "read_spilled",
]


def open_store(path: str | Path, *, read_only: bool = False) -> Store:
    """The store a path names: ``*.duckdb`` or ``":memory:"`` is DuckDB, anything else a lake directory.

    Example:
        >>> type(open_store(":memory:")).__name__
        'DuckDBStore'
    """
    text = str(path)
    if text == ":memory:" or text.endswith(".duckdb"):
        return DuckDBStore(text, read_only=read_only)
    return ParquetLake(path, read_only=read_only)
