"""Exports: hive-partitioned Parquet for analysis tools, CSV for PostgreSQL's COPY.

- :func:`export_parquet` writes ``DIR/analytics_events/event_date=YYYY-MM-DD/*.parquet``
  (zstd; polars, DuckDB, pyarrow and Spark read the folder as is, with ``event_date``
  from the path; an empty events table is one ``data.parquet``) and ``DIR/<table>/data.parquet``
  for the other tables.
- :func:`publish` upserts the derived tables into a PostgreSQL server's schema-005 tables.
- :func:`export_csv` writes ``DIR/<table>.csv`` in the column order of
  ``schema/postgres/005_analytics_schema.sql``, as ``COPY <table> FROM ... CSV HEADER``
  takes it: timestamps as PostgreSQL text, JSON as text, UUID arrays as ``{a,b}``,
  NULL as an unquoted empty field and every string quoted (so an empty string stays one).

An export never removes what it did not write: ``DIR/.vtp-lab-export.json`` lists the
files exports wrote there, and a table's file or folder holding anything else is refused.

Example:
    >>> import tempfile
    >>> from vtp_lab.store import open_store
    >>> written = export_csv(open_store(":memory:"), tempfile.mkdtemp())
    >>> sorted(p.name for p in written)[:2]
    ['analytics_events.csv', 'course_statistics.csv']
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final

import polars as pl
import pyarrow.dataset as pa_ds

from vtp_lab.errors import InputFormatError
from vtp_lab.postgres import upsert
from vtp_lab.store import Store
from vtp_lab.tables import ANALYTICS_EVENTS, ANALYTICS_TABLES, DERIVED_TABLES, TABLES, Table

__all__ = ["PUBLISHED", "export_csv", "export_parquet", "publish"]

PUBLISHED: Final = tuple(t.name for t in DERIVED_TABLES)
"""The tables :func:`publish` writes by default: the five derived from the events."""


def _names(names: str | Sequence[str]) -> list[str]:
    """A name, or a sequence of names, as a list: ``"recordings"`` is one table, not eleven."""
    return [names] if isinstance(names, str) else list(names)


def _tables(names: str | Sequence[str] | None, default: Sequence[str]) -> list[str]:
    chosen = _names(names) if names else list(default)
    unknown = [n for n in chosen if n not in TABLES]
    if unknown:
        raise InputFormatError(f"no table {unknown[0]!r}; the tables are {', '.join(TABLES)}")
    return chosen


_MANIFEST: Final = ".vtp-lab-export.json"
"""The file, in an export folder, listing what vtp_lab wrote there: only those files are ever replaced."""


def _folder(directory: str | Path) -> Path:
    """``directory`` as a path to write tables under: anything but an existing file."""
    root = Path(directory)
    if root.exists() and not root.is_dir():
        raise InputFormatError(f"{root} is a file; export writes a folder of tables: give a folder's path")
    return root


def _written(root: Path) -> set[str]:
    """The paths (relative to ``root``) that earlier exports wrote there, from the manifest."""
    manifest = root / _MANIFEST
    if not manifest.is_file():
        return set()
    try:
        return set(json.loads(manifest.read_text(encoding="utf-8"))["files"])
    except (ValueError, KeyError, TypeError):
        return set()


def _claim(root: Path, targets: Sequence[Path]) -> None:
    """Refuse, before anything is written, to replace any file at ``targets`` that vtp_lab did not write there.

    A target is a table's file or folder; every file in it must be listed in the folder's
    manifest (written by an earlier export), else the export stops and names them.
    """
    ours = _written(root)
    theirs = [
        path
        for target in targets
        for path in ([target] if target.is_file() else sorted(target.rglob("*")) if target.is_dir() else [])
        if path.is_file() and str(path.relative_to(root)) not in ours
    ]
    if theirs:
        shown = ", ".join(str(p) for p in theirs[:5]) + (f" and {len(theirs) - 5} more" if len(theirs) > 5 else "")
        raise InputFormatError(
            f"{root} holds files that vtp_lab did not write where the export goes: {shown}. Nothing was written; "
            "export to an empty or new folder (or move those files)"
        )


def _record(root: Path, written: Sequence[Path]) -> None:
    """Add the files under ``written`` to the folder's manifest."""
    files = _written(root) | {
        str(p.relative_to(root)) for target in written for p in ([target] if target.is_file() else target.rglob("*"))
    }
    (root / _MANIFEST).write_text(json.dumps({"files": sorted(files)}, indent=1), encoding="utf-8")


def _read(store: Store, name: str, fresh: Mapping[str, pl.DataFrame] | None) -> pl.DataFrame:
    return fresh[name] if fresh and name in fresh else store.read(name)


def export_parquet(
    store: Store,
    directory: str | Path,
    *,
    tables: str | Sequence[str] | None = None,
    partition_by: str | Sequence[str] = ("event_date",),
    fresh: Mapping[str, pl.DataFrame] | None = None,
) -> list[Path]:
    """Write tables as Parquet under ``directory``; events hive-partitioned by ``partition_by``.

    ``fresh`` holds tables to write instead of the store's (derived tables computed anew).

    ``partition_by`` names columns of ``analytics_events``, or ``event_date`` (the UTC date
    of ``event_timestamp``); one name or several. A table's folder that an export wrote is
    replaced whole; one holding any file vtp_lab did not write is refused before anything is written.

    Example:
        >>> import tempfile
        >>> from vtp_lab.store import open_store
        >>> export_parquet(open_store(":memory:"), tempfile.mkdtemp(), partition_by=["week"])  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        vtp_lab.errors.InputFormatError: cannot partition by 'week'; use event_date or columns of analytics_events: ...
    """
    valid = {"event_date", *ANALYTICS_EVENTS.column_names}
    partition_by = _names(partition_by)
    for column in partition_by:
        if column not in valid:
            raise InputFormatError(
                f"cannot partition by {column!r}; use event_date or columns of analytics_events: "
                f"{', '.join(ANALYTICS_EVENTS.column_names)}"
            )
    root = _folder(directory)
    names = _tables(tables, list(TABLES))
    _claim(root, [root / name for name in names])
    written = []
    for name in names:
        frame = _read(store, name, fresh)
        target = root / name
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        if name == "analytics_events" and partition_by and frame.height:
            frame = frame.with_columns(pl.col("event_timestamp").dt.date().cast(pl.String).alias("event_date"))
            pa_ds.write_dataset(
                frame.to_arrow(),
                target,
                format="parquet",
                partitioning=list(partition_by),
                partitioning_flavor="hive",
                basename_template="part-{i}.parquet",
                existing_data_behavior="delete_matching",
                file_options=pa_ds.ParquetFileFormat().make_write_options(compression="zstd"),
            )
        else:  # an empty events table too: a folder with no partitions would hold no file to read
            frame.write_parquet(target / "data.parquet", compression="zstd")
        written.append(target)
        _record(root, [target])
    return written


def _postgres_text(frame: pl.DataFrame, table: Table) -> pl.DataFrame:
    """Columns as PostgreSQL's CSV input reads them."""
    frame = table.mirror_text(frame)
    exprs = []
    for name, dtype in frame.schema.items():
        col = pl.col(name)
        if isinstance(dtype, pl.Datetime):
            exprs.append(col.dt.strftime("%Y-%m-%d %H:%M:%S%.6f+00").alias(name))
        elif isinstance(dtype, pl.List):
            exprs.append(pl.concat_str([pl.lit("{"), col.list.join(","), pl.lit("}")]).alias(name))
        else:
            exprs.append(col)
    return frame.select(exprs)


def export_csv(
    store: Store,
    directory: str | Path,
    *,
    tables: str | Sequence[str] | None = None,
    fresh: Mapping[str, pl.DataFrame] | None = None,
) -> list[Path]:
    """Write tables as CSV files that PostgreSQL's ``COPY ... FROM ... CSV HEADER`` loads as is.

    By default the six tables of ``schema/postgres/``; ``fresh`` as for :func:`export_parquet`.

    Example:
        >>> import tempfile
        >>> from vtp_lab.store import open_store
        >>> export_csv(open_store(":memory:"), tempfile.mkdtemp(), tables=["events"])  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        vtp_lab.errors.InputFormatError: no table 'events'; the tables are analytics_events, ...
    """
    root = _folder(directory)
    paths = [root / f"{name}.csv" for name in _tables(tables, [t.name for t in ANALYTICS_TABLES])]
    _claim(root, paths)
    root.mkdir(parents=True, exist_ok=True)
    for path in paths:
        text = _postgres_text(_read(store, path.stem, fresh), TABLES[path.stem])
        text.write_csv(path, quote_style="non_numeric", null_value="")
        _record(root, [path])
    return paths


def publish(
    store: Store,
    url: str,
    *,
    tables: str | Sequence[str] | None = None,
    schema: str | None = None,
    fresh: Mapping[str, pl.DataFrame] | None = None,
) -> dict[str, int]:
    """Upsert the derived tables (default :data:`PUBLISHED`) into a server's schema-005 tables; rows written per table.

    One transaction for them all: publishing twice leaves one copy of each row, and a
    publish that fails (or is killed) midway leaves the server's tables as they were
    (:func:`vtp_lab.postgres.upsert`). ``schema`` names the server's schema holding them
    (default: the connection's search path); ``fresh`` as for :func:`export_parquet`.

    Example:
        >>> from vtp_lab.store import open_store
        >>> publish(open_store(":memory:"), "postgresql:///x", tables=["events"])  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        vtp_lab.errors.InputFormatError: no table 'events'; ...
    """
    names = _tables(tables, PUBLISHED)
    return upsert(url, {name: _read(store, name, fresh) for name in names}, schema=schema)
