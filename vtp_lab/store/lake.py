"""The tables as a Parquet lake: :class:`ParquetLake`.

``analytics_events/event_date=YYYY-MM-DD/`` holds hive-partitioned zstd Parquet; the other
tables have folders of their own. A batch is written into ``_staging/`` (outside the
table folders), its footers checked and synced, recorded in ``_ledger/``, and only then
renamed into its table folders under a name derived from its content. So a table folder
holds only committed files, and any engine (polars, DuckDB, pyarrow, Spark) reading it
as a plain hive-partitioned dataset gets exactly the committed rows; a replaced table's
old files are removed once the new ones are in place. Opening for writing takes
``_writer.lock`` and finishes what a crashed writer left: the renames of a recorded
batch are completed from staging, an open all-or-nothing is undone.

Example:
    >>> import tempfile
    >>> ParquetLake(tempfile.mkdtemp()).count("analytics_events")
    0
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import polars as pl
import pyarrow.parquet as pq

from vtp_lab.duck import literal, over
from vtp_lab.errors import StoreError, StoreLockedError
from vtp_lab.store import base
from vtp_lab.store.base import AppendResult, Filter, Rows, Store
from vtp_lab.tables import ANALYTICS_EVENTS, TABLES

__all__ = ["ParquetLake"]

_OPEN: Final = "_all_or_nothing.json"
"""In a lake, while an all-or-nothing is open: the ledger entries before it (a crash leaves it for recovery)."""


def _staged(root: Path, final: Path) -> Path:
    """Where a file of the lake is staged before its rename to ``final`` (outside the table folders)."""
    return root / "_staging" / final.name.replace(".parquet", f"-{final.parent.name}.parquet")


def _scan(files: list[str]) -> str:
    """SQL reading a table's committed files (the folders' names are not columns; files of older schemas fit)."""
    return f"read_parquet([{', '.join(literal(f) for f in files)}], hive_partitioning = false, union_by_name = true)"


class ParquetLake(Store):
    """The tables as Parquet files in a directory, hive-partitioned by event date.

    Example:
        >>> import tempfile
        >>> lake = ParquetLake(tempfile.mkdtemp())
        >>> lake.read("analytics_events").height
        0
        >>> lake.close()
    """

    def __init__(self, path: str | Path, *, read_only: bool = False) -> None:
        self.root = Path(path)
        self.path = str(path)
        self.read_only = read_only
        self._lock = threading.Lock()
        self._lock_file: Any = None
        self._keys: dict[str, pl.DataFrame] = {}
        if read_only:
            if not (self.root / "_ledger").is_dir():
                raise StoreError(f"{self.root} is not a vtp_lab Parquet lake (no _ledger folder)")
            return
        if self.root.exists() and not self.root.is_dir():
            raise StoreError(f"{self.root} is a file; a Parquet lake is a directory (or name a .duckdb file)")
        (self.root / "_ledger").mkdir(parents=True, exist_ok=True)
        self._take_writer_lock()
        self._recover()

    def _take_writer_lock(self) -> None:
        handle = open(self.root / "_writer.lock", "a+")  # noqa: SIM115 - held open for the store's life
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise StoreLockedError(path=self.path, holder=holder) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"python (PID {os.getpid()})")
        handle.flush()
        self._lock_file = handle

    def _ledger(self) -> list[dict[str, Any]]:
        entries = []
        for entry in sorted((self.root / "_ledger").glob("*.json")):
            entries.append(json.loads(entry.read_text()))
        return entries

    def _recorded(self, table: str) -> list[Path]:
        """The files the ledger gives ``table``: appended by batches, or replaced whole (the last replace wins)."""
        files: list[Path] = []
        for entry in self._ledger():
            mine = [self.root / f for f in entry["files"] if f.startswith(f"{table}/")]
            files = mine if mine and entry.get("mode") == "replace" else files + mine
        return files

    def _files(self, table: str) -> list[Path]:
        """The committed files of ``table`` that are in place: what a plain read of its folder finds too.

        A recorded file is missing only between its ledger entry and its rename, or after a
        crash there (opening for writing completes the rename from staging).
        """
        return [f for f in self._recorded(table) if f.is_file()]

    def _recover(self) -> None:
        """Finish what a crashed writer left: undo an open all-or-nothing, complete recorded renames, tidy up.

        Then staging is cleared, a replaced table's old files are removed, and so is any
        file in a table folder that no ledger entry records.
        """
        if (self.root / _OPEN).is_file():
            self._undo(set(json.loads((self.root / _OPEN).read_text())["before"]))
        for name in TABLES:
            for final in self._recorded(name):
                staged = _staged(self.root, final)
                if not final.is_file() and staged.is_file():
                    final.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(staged, final)
        shutil.rmtree(self.root / "_staging", ignore_errors=True)
        self._drop_unrecorded()

    def _drop_unrecorded(self, tables: Iterable[str] = TABLES) -> None:
        """Remove the files in ``tables``' folders that the ledger does not give them: replaced, or unrecorded."""
        names = list(tables)
        current = {str(p) for name in names for p in self._recorded(name)}
        for name in names:
            for path in (self.root / name).rglob("*.parquet"):
                if str(path) not in current:
                    path.unlink()

    def _stored_keys(self, table: str) -> pl.DataFrame:
        """The stored rows' keys with their 64-bit hashes (loaded once, kept up to date by append)."""
        if table not in self._keys:
            columns = base._KEYS[table]
            files = self._files(table)
            keys = (
                pl.scan_parquet(files, hive_partitioning=False, glob=False).select(columns).collect()
                if files
                else TABLES[table].empty().select(columns)
            )
            self._keys[table] = keys.with_columns(base._key_hash(columns).alias("_h"))
        return self._keys[table]

    def _new_rows(
        self, table: str, batch: pl.DataFrame, hashes: pl.Series | None = None
    ) -> tuple[pl.DataFrame, pl.Series]:
        """Rows whose key is not stored, with their key hashes (computed unless given).

        The stored hashes are probed for any of the batch's (the cheap direction), and only
        when some match is each row checked: a hash probe, then an exact check of the hits.
        """
        columns = base._KEYS[table]
        stored = self._stored_keys(table)
        if hashes is None:
            hashes = batch.select(base._key_hash(columns)).to_series()
        if not stored["_h"].is_in(hashes.implode()).any():
            return batch, hashes
        hit = hashes.is_in(stored["_h"].implode())
        candidates = stored.filter(pl.col("_h").is_in(hashes.filter(hit).implode())).select(columns)
        fresh = batch.with_columns(hashes.alias("_h")).join(candidates, on=columns, how="anti", maintain_order="left")
        return fresh.drop("_h"), fresh["_h"]

    def _remember(self, table: str, rows: pl.DataFrame, hashes: pl.Series) -> None:
        fresh = rows.select(base._KEYS[table]).with_columns(hashes.alias("_h"))
        self._keys[table] = pl.concat([self._stored_keys(table), fresh])

    @staticmethod
    def _sync_dir(path: Path) -> None:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _stage(self, rows: pl.DataFrame | Path, final: Path) -> tuple[Path, Path]:
        """Write ``rows`` (or move a Parquet file of them) into staging, fsync it, check its footer; (staged, final)."""
        tmp = _staged(self.root, final)
        if isinstance(rows, Path):
            expected = pq.read_metadata(rows).num_rows
            shutil.move(rows, tmp)
        else:
            expected = rows.height
            rows.write_parquet(tmp, compression="zstd", compression_level=1)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        if pq.read_metadata(tmp).num_rows != expected:
            raise StoreError(f"the Parquet file {tmp} did not read back whole; nothing was committed")
        return tmp, final

    def _publish(self, parts: Sequence[tuple[pl.DataFrame | Path, Path]], entry: dict[str, Any], name: str) -> None:
        """Stage every file (two at a time), record them in the ledger as ``entry``, then rename each into place.

        The ledger entry comes first, so a table folder never holds a file the ledger does
        not record; a crash before the renames are done leaves them to :meth:`_recover`.
        """
        (self.root / "_staging").mkdir(exist_ok=True)
        with ThreadPoolExecutor(max_workers=2) as pool:
            staged = list(pool.map(lambda part: self._stage(*part), parts))
        files = [str(final.relative_to(self.root)) for _, final in staged]
        self._write_durably(self.root / "_ledger" / f"{name}.json", json.dumps({**entry, "files": files}))
        for tmp, final in staged:
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, final)
        for folder in {final.parent for _, final in staged}:
            self._sync_dir(folder)

    def _write_durably(self, path: Path, text: str) -> None:
        """Write ``path`` whole or not at all: staged, synced, renamed, its folder synced."""
        staging = self.root / "_staging"
        staging.mkdir(exist_ok=True)
        tmp = staging / path.name
        tmp.write_text(text)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        self._sync_dir(path.parent)

    def _next_name(self, digest: str) -> str:
        return f"{len(list((self.root / '_ledger').glob('*.json'))):012d}-{digest}"

    @contextlib.contextmanager
    def all_or_nothing(self) -> Iterator[None]:
        """Everything committed inside stays only if no error comes out; else its ledger entries and files are removed.

        While it is open, ``_all_or_nothing.json`` lists the ledger before it, so that a
        writer killed inside leaves what opening the lake undoes.

        Example:
            >>> import tempfile
            >>> from vtp_lab.tables import LOADS
            >>> lake = ParquetLake(tempfile.mkdtemp())
            >>> with lake.all_or_nothing():
            ...     lake.append_rows("loads", LOADS.empty())
            >>> (lake.root / "_all_or_nothing.json").exists()
            False
        """
        with self._lock:
            before = sorted(p.name for p in (self.root / "_ledger").glob("*.json"))
            self._write_durably(self.root / _OPEN, json.dumps({"before": before}))
        try:
            yield
        except BaseException:
            self._undo(set(before))
            raise
        (self.root / _OPEN).unlink()
        self._sync_dir(self.root)
        with self._lock:
            self._drop_unrecorded()  # what a replace inside superseded: kept until now for an undo

    def _undo(self, before: set[str]) -> None:
        """Remove the ledger entries not in ``before``, newest first, then their files (an all-or-nothing undone)."""
        with self._lock:
            for entry in sorted((self.root / "_ledger").glob("*.json"), reverse=True):
                if entry.name not in before:
                    for name in json.loads(entry.read_text())["files"]:
                        (self.root / name).unlink(missing_ok=True)  # files first: folders never hold unrecorded ones
                        _staged(self.root, self.root / name).unlink(missing_ok=True)
                    entry.unlink()
                    self._sync_dir(self.root / "_ledger")
            self._keys.clear()
            (self.root / _OPEN).unlink(missing_ok=True)

    def _append(self, batch: base._Batch) -> AppendResult:
        """Write a batch: staged files, footers checked, renamed, then one ledger entry."""
        if self.read_only:
            raise StoreError(f"the lake {self.root} was opened read-only; open it without read_only=True to write")
        own, events, rej = batch.own, batch.own.events, batch.rejected
        given = rej.height
        with self._lock:
            new, new_hashes = self._new_rows("analytics_events", own.batch, own.hashes)
            kept = None
            if new.height < own.batch.height:
                clashing = own.batch["id"].filter(~own.batch["id"].is_in(new["id"].implode())).implode()
                scan = pl.scan_parquet(
                    self._files("analytics_events"),
                    hive_partitioning=False,
                    glob=False,
                    schema=ANALYTICS_EVENTS.polars_schema,
                )
                kept = ANALYTICS_EVENTS.conform(scan.filter(pl.col("id").is_in(clashing)).collect())
            rej, conflicts = own.quarantined(kept, rej, batch.origins, batch.source)
            rej_new, rej_hashes = self._new_rows(
                "rejected_events", rej.unique(base._KEYS["rejected_events"], maintain_order=True)
            )
            duplicates = events.height + given - new.height - rej_new.height
            ids = new["id"] if batch.return_ids else None
            if new.height == 0 and rej_new.height == 0:
                return AppendResult(
                    inserted=0,
                    duplicates=duplicates,
                    rejected=0,
                    inserted_ids=ids,
                    conflicts=base._positioned(rej, conflicts),
                )
            digest = base._digest(new["id"], rej_new["raw"], rej_new["source"], rej_new["row_number"])
            by_date = new.with_columns(pl.col("event_timestamp").dt.date().alias("_d")).partition_by("_d", as_dict=True)
            parts = [
                (part.drop("_d"), self.root / "analytics_events" / f"event_date={day}" / f"part-{digest}.parquet")
                for (day,), part in sorted(by_date.items())
            ]
            if rej_new.height:
                parts.append((rej_new, self.root / "rejected_events" / f"part-{digest}.parquet"))
            entry = {
                "table": "batch",
                "inserted": new.height,
                "rejected": rej_new.height,
                "committed_at": datetime.now(UTC).isoformat(),
            }
            self._publish(parts, entry, self._next_name(digest))
            self._remember("analytics_events", new, new_hashes)
            self._remember("rejected_events", rej_new, rej_hashes)
        return AppendResult(
            inserted=new.height,
            duplicates=duplicates,
            rejected=rej_new.height,
            rejected_by_reason=base._by_reason(rej_new["reason"]),
            inserted_ids=ids,
            conflicts=base._positioned(rej, conflicts),
        )

    def read(self, table: str, filters: Sequence[Filter] = (), *, columns: Sequence[str] | None = None) -> pl.DataFrame:
        """Rows of ``table`` matching every filter, only ``columns`` if given; only committed files are read.

        Example:
            >>> import tempfile
            >>> ParquetLake(tempfile.mkdtemp()).read("rejected_events").columns[-1]
            'rejected_at'
        """
        spec = base._table(table)
        wanted = base._columns(spec, columns)
        files = self._files(spec.name)
        if not files:
            return spec.empty().select(wanted)
        scan = pl.scan_parquet(
            files, hive_partitioning=False, glob=False, schema=spec.polars_schema, missing_columns="insert"
        )
        for f in filters:
            scan = scan.filter(f.expr())
        return spec.conform(scan.select(wanted).collect()).select(wanted)

    def sql(
        self, query: str, params: base.Params = None, *, frames: Mapping[str, pl.DataFrame] | None = None
    ) -> pl.DataFrame:
        """One read-only ``SELECT`` over the tables (see :meth:`Store.sql`): each a view of its committed files.

        Example:
            >>> import tempfile
            >>> ParquetLake(tempfile.mkdtemp()).sql("SELECT count(*) AS n FROM loads")["n"].item()
            0
        """
        empty = {}
        with over() as con:
            for name, spec in TABLES.items():
                files = [str(f) for f in self._files(name)]
                if files:
                    con.execute(f"CREATE TEMP VIEW {name} AS SELECT * FROM {_scan(files)}")
                else:
                    empty[name] = spec.empty()
            return base._select(con, query, params, {**empty, **(frames or {})})

    def count(self, table: str) -> int:
        """Rows in ``table``, from the committed files' footers.

        Example:
            >>> import tempfile
            >>> ParquetLake(tempfile.mkdtemp()).count("analytics_events")
            0
        """
        return sum(pq.read_metadata(f).num_rows for f in self._files(base._table(table).name))

    def append_rows(self, table: str, frame: pl.DataFrame) -> None:
        """Append rows to a small table (the load ledger): one file and one ledger entry.

        Example:
            >>> import tempfile
            >>> from vtp_lab.tables import LOADS
            >>> ParquetLake(tempfile.mkdtemp()).append_rows("loads", LOADS.empty())
        """
        spec = base._table(table)
        rows = spec.conform(frame)
        if rows.height == 0:
            return
        digest = base._digest(*(rows[c] for c in rows.columns))
        with self._lock:
            name = self._next_name(digest)
            self._publish([(rows, self.root / spec.name / f"part-{name}.parquet")], {"table": spec.name}, name)

    def replace_tables(self, frames: Mapping[str, Rows], *, version: str | None = None) -> None:
        """Replace whole tables: new files (written, or the Parquet files given, moved in), one ledger entry.

        The entry supersedes the tables' old files and records ``version``.

        Example:
            >>> import tempfile
            >>> from vtp_lab.tables import RECORDINGS
            >>> ParquetLake(tempfile.mkdtemp()).replace_tables({"recordings": RECORDINGS.empty()})
        """
        digest = base._digest(pl.Series([*frames, datetime.now(UTC).isoformat()]))
        with self._lock:
            name = self._next_name(digest)
            parts: list[tuple[pl.DataFrame | Path, Path]] = []
            for table, rows in frames.items():
                if isinstance(rows, pl.DataFrame):
                    parts.append((base._table(table).conform(rows), self.root / table / f"part-{name}.parquet"))
                else:
                    parts += [(Path(f), self.root / table / f"part-{name}-{i}.parquet") for i, f in enumerate(rows)]
            entry = {"table": ",".join(frames), "mode": "replace"}
            self._publish(parts, entry if version is None else {**entry, "version": version}, name)
            if not (self.root / _OPEN).is_file():
                self._drop_unrecorded(frames)  # the replaced files: a plain read of the folder now finds only the new

    def spill(self, table: str, *, by: str, parts: int, folder: Path, memory: int | None = None) -> list[Path]:
        """Write ``table`` into ``folder`` cut into ``parts`` by the hash of ``by`` (see :meth:`Store.spill`).

        Example:
            >>> import tempfile
            >>> lake = ParquetLake(tempfile.mkdtemp())
            >>> lake.spill("analytics_events", by="recording_id", parts=4, folder=lake.root / "_spill")
            []
        """
        files = [str(f) for f in self._files(base._table(table).name)]
        if not files:
            return []
        with over() as con, base._spilling(con, memory, parts):
            con.execute(base._spill_sql(_scan(files), table, by=by, parts=parts, folder=folder))
        return base._parts(folder)

    def derived_version(self) -> str | None:
        """The data version the derived tables were last computed from (see :func:`data_version`).

        Example:
            >>> import tempfile
            >>> ParquetLake(tempfile.mkdtemp()).derived_version() is None
            True
        """
        return next((e["version"] for e in reversed(self._ledger()) if "version" in e), None)

    def replace_rows(
        self, changes: dict[str, tuple[str, list[str], pl.DataFrame]], *, version: str | None = None
    ) -> None:
        """For each table, replace the rows whose ``column`` is in ``values`` by ``frame``.

        The tables are rewritten whole and committed in one ledger entry (with ``version``).

        Example:
            >>> import tempfile
            >>> from vtp_lab.tables import LECTURE_STATISTICS
            >>> change = {"lecture_statistics": ("recording_id", ["r"], LECTURE_STATISTICS.empty())}
            >>> ParquetLake(tempfile.mkdtemp()).replace_rows(change)
        """
        frames = {}
        for name, (column, values, frame) in changes.items():
            kept = self.read(name).filter(~pl.col(column).is_in(values))
            frames[name] = pl.concat([kept, base._table(name).conform(frame)])
        self.replace_tables(frames, version=version)

    def write_recordings(self, recordings: pl.DataFrame) -> None:
        """Replace the catalogue: a new file, then a ledger entry that supersedes the last.

        Example:
            >>> import tempfile
            >>> from vtp_lab.tables import RECORDINGS
            >>> ParquetLake(tempfile.mkdtemp()).write_recordings(RECORDINGS.empty())
        """
        self.replace_tables({"recordings": recordings})

    def close(self) -> None:
        """Release the writer lock.

        Example:
            >>> import tempfile
            >>> ParquetLake(tempfile.mkdtemp()).close()
        """
        if self._lock_file is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._lock_file, fcntl.LOCK_UN)
            self._lock_file.close()
            self._lock_file = None
