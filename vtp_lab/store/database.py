"""The tables in one embedded DuckDB file: :class:`DuckDBStore`.

One transaction per batch; de-duplication is an anti-join. DuckDB allows one process at
a time: a second writer gets :class:`~vtp_lab.errors.StoreLockedError`, and a reader
(``read_only=True``) reads a snapshot copied as of its opening.

Example:
    >>> DuckDBStore().count("analytics_events")
    0
"""

from __future__ import annotations

import contextlib
import re
import shutil
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Final

import duckdb
import polars as pl
import pyarrow as pa

from vtp_lab.duck import ROW_GROUP_ROWS, arrow, connect
from vtp_lab.errors import StoreError, StoreLockedError
from vtp_lab.store import base
from vtp_lab.store.base import AppendResult, Filter, Rows, Store
from vtp_lab.tables import ANALYTICS_EVENTS, DERIVED_TABLES, TABLES

__all__ = ["DuckDBStore"]

_LOCK_HOLDER: Final = re.compile(r"Conflicting lock is held in (.*?) \(PID (\d+)\)")


def _appended(hashes: pl.Series, more: pl.Series) -> pl.Series:
    """``hashes`` with ``more`` after them, in at most 16 chunks (a probe over many small chunks is slower)."""
    joined = pl.concat([hashes, more])
    return joined.rechunk() if joined.n_chunks() > 16 else joined


_UUID_COLUMNS: Final = frozenset(c.name for t in TABLES.values() for c in t.columns if c.kind == "uuid")


def _for_insert(frame: pl.DataFrame) -> pa.Table:
    """``frame`` for DuckDB to insert: whole row groups (see :func:`arrow`), UUID columns binary where they can be.

    Example:
        >>> _for_insert(pl.DataFrame({"recording_id": ["6ba7b811-9dad-11d1-80b4-00c04fd430c8"]})).schema.types
        [UuidType(extension<arrow.uuid>)]
    """
    return arrow(frame, batch_rows=ROW_GROUP_ROWS, uuids=_UUID_COLUMNS)


_APPEND_MEMORY: Final = 64 * 1024 * 1024
"""DuckDB's memory limit while a file store appends: the blocks written need no cache, which grows with the load."""

_AFTER_SPILL_MEMORY: Final = 64 * 1024 * 1024
"""DuckDB's memory limit for an instant after a spill, which lets go of the stored blocks the spill read.

DuckDB would keep them cached up to its limit while the parts are derived, on top of the
parts' own memory (docs/design-measurements.md).
"""

_STATE: Final = "vtp_lab_state"
"""DuckDB's table of vtp_lab's own state (not a table of the mirror): the derived tables' data version."""


class DuckDBStore(Store):
    """The tables in one DuckDB database file (or in memory with ``":memory:"``).

    ``memory_limit`` bounds DuckDB's cache of the file (it spills beyond it); an append
    lowers it to :data:`_APPEND_MEMORY` while it runs, so a long load's memory does not
    grow with what it has written.

    Example:
        >>> s = DuckDBStore(":memory:")
        >>> s.read("recordings").columns[:2]
        ['recording_id', 'course_id']
    """

    def __init__(self, path: str | Path = ":memory:", *, read_only: bool = False, memory_limit: str = "1GB") -> None:
        self.path = str(path)
        self.read_only = read_only
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._snapshot: tempfile.TemporaryDirectory[str] | None = None
        try:
            self.con = connect(self.path, read_only=read_only)
        except duckdb.IOException as exc:
            match = _LOCK_HOLDER.search(str(exc))
            if not match:
                raise StoreError(f"cannot open the DuckDB store {self.path}: {exc}") from None
            if not read_only:
                raise StoreLockedError(path=self.path, holder=f"{match[1]} (PID {match[2]})") from None
            self._snapshot = tempfile.TemporaryDirectory(prefix="vtp-lab-snapshot-")
            self.con = connect(_snapshot(Path(self.path), Path(self._snapshot.name)), read_only=True)
        self.con.execute("SET preserve_insertion_order = false")  # stored row order carries no meaning
        if self.path != ":memory:":
            self.con.execute(f"SET memory_limit = '{memory_limit}'")  # DuckDB caches blocks up to this, then spills
        self._lock = threading.RLock()
        self._outer = False  # inside all_or_nothing()
        self._id_hashes: pl.Series | None = None  # see _stored_id_hashes
        if not read_only:
            self._create_tables()

    def _create_tables(self) -> None:
        """Create the tables a new store lacks; give a store made by an older vtp_lab the columns added since.

        Derived tables of another layout (:data:`~vtp_lab.store.base.DERIVED_LAYOUT`) are made
        anew, empty: their data version no longer matches, so the next read recomputes them.
        """
        self.con.execute(f"CREATE TABLE IF NOT EXISTS {_STATE} (key VARCHAR PRIMARY KEY, value VARCHAR)")
        layout = self.con.execute(f"SELECT value FROM {_STATE} WHERE key = 'derived_layout'").fetchall()
        if layout != [(base.DERIVED_LAYOUT,)]:
            for table in DERIVED_TABLES:
                self.con.execute(f"DROP TABLE IF EXISTS {table.name}")
            self.con.execute(f"DELETE FROM {_STATE} WHERE key = 'derived_version'")
            self.con.execute(f"INSERT OR REPLACE INTO {_STATE} VALUES ('derived_layout', ?)", [base.DERIVED_LAYOUT])
        found = self.con.execute(
            "SELECT table_name, list(column_name) FROM duckdb_columns() WHERE schema_name = 'main' GROUP BY table_name"
        ).fetchall()
        existing = {name: set(columns) for name, columns in found}
        for table in TABLES.values():
            self.con.execute(table.duckdb_ddl())
            for column in table.columns:
                if table.name in existing and column.name not in existing[table.name]:
                    self.con.execute(f"ALTER TABLE {table.name} ADD COLUMN {column.name} {column.duckdb_type}")

    @contextlib.contextmanager
    def _registered(self, **frames: pl.DataFrame | pa.Table) -> Iterator[None]:
        for name, frame in frames.items():
            self.con.register(name, frame if isinstance(frame, pa.Table) else _for_insert(frame))
        try:
            yield
        finally:
            for name in frames:
                self.con.unregister(name)

    @contextlib.contextmanager
    def _transaction(self, **frames: pl.DataFrame | pa.Table) -> Iterator[None]:
        """The lock held, ``frames`` registered by name, one transaction: committed whole or rolled back.

        Inside :meth:`all_or_nothing` it is part of that one transaction.
        """
        with self._lock, self._registered(**frames):
            if self._outer:
                yield
                return
            self.con.execute("BEGIN TRANSACTION")
            try:
                yield
                self.con.execute("COMMIT")
            except BaseException:
                self.con.execute("ROLLBACK")
                raise

    @contextlib.contextmanager
    def all_or_nothing(self) -> Iterator[None]:
        """Everything written inside is committed together at the end, or (on an error) not at all.

        Example:
            >>> from vtp_lab.synth import semester
            >>> s = DuckDBStore()
            >>> try:
            ...     with s.all_or_nothing():
            ...         _ = s.append(semester(courses=1, lectures_per_course=1, students=2).events)
            ...         raise RuntimeError("changed my mind")
            ... except RuntimeError:
            ...     pass
            >>> s.count("analytics_events")
            0
        """
        with self._lock:
            self.con.execute("BEGIN TRANSACTION")
            self._outer = True
            try:
                yield
                self.con.execute("COMMIT")
            except BaseException:
                self.con.execute("ROLLBACK")
                self._id_hashes = None
                raise
            finally:
                self._outer = False

    def _append(self, batch: base._Batch) -> AppendResult:
        """Insert a batch in one transaction; duplicates are counted, not stored, and conflicts quarantined."""
        own, events, rej = batch.own, batch.own.events, batch.rejected
        columns = ", ".join("id::VARCHAR AS id" if c == "id" else c for c in ANALYTICS_EVENTS.column_names)
        as_uuid = ", ".join("id::UUID AS id" if c == "id" else c for c in ANALYTICS_EVENTS.column_names)
        table = _for_insert(own.batch)
        canonical = table.schema.field("id").type == pa.uuid()  # every id was in the stored spelling
        probe = own.hashes if canonical else None  # only hashes of ids in the stored spelling are comparable
        memory = _APPEND_MEMORY if self.path != ":memory:" else None  # an in-memory store's blocks are its data
        with self._lock, base._memory_limit(self.con, memory):  # lock held until the hashes include this batch
            stored = self._stored_id_hashes()
            kept = None
            insert = f"INSERT INTO analytics_events SELECT * FROM (SELECT {as_uuid} FROM batch) b"
            if probe is None or stored.is_in(probe.implode()).any():  # some id may be stored: look each up
                with self._registered(batch=table):
                    kept = self.con.sql(
                        f"SELECT {columns} FROM analytics_events WHERE id IN (SELECT id::UUID FROM batch)"
                    ).pl()
                kept = ANALYTICS_EVENTS.conform(kept)
                insert += " WHERE NOT EXISTS (SELECT 1 FROM analytics_events e WHERE e.id = b.id)"
            rej, conflicts = own.quarantined(kept, rej, batch.origins, batch.source)
            quarantined = {"rej": rej} if rej.height else {}  # registering an empty table costs time too
            with self._transaction(batch=table, **quarantined):
                ids = self.con.sql(f"{insert} RETURNING id::VARCHAR AS id").pl()["id"] if batch.return_ids else None
                inserted = len(ids) if ids is not None else int(self.con.execute(insert).fetchall()[0][0])
                quarantine = (
                    "INSERT INTO rejected_events SELECT * FROM rej r WHERE NOT EXISTS (SELECT 1 FROM rejected_events"
                    " q WHERE q.source = r.source AND q.row_number = r.row_number AND q.raw = r.raw)"
                )
                reasons = self.con.sql(f"{quarantine} RETURNING reason").pl()["reason"] if rej.height else rej["reason"]
            self._id_hashes = None if probe is None else _appended(stored, probe)
        return AppendResult(
            inserted=inserted,
            duplicates=events.height + rej.height - conflicts.len() - inserted - reasons.len(),
            rejected=reasons.len(),
            rejected_by_reason=base._by_reason(reasons),
            inserted_ids=ids,
            conflicts=base._positioned(rej, conflicts),
        )

    def _stored_id_hashes(self) -> pl.Series:
        """The stored event ids' hashes (:data:`base._ID_HASH`), read once, then kept up to date by append.

        An append whose ids all hash to none of these stores its batch without looking
        up each id in the table; DuckDB's anti-join reads every stored id, and its cost
        grows with the store, while this probe is a small fraction of it. Any other change to the events
        forgets the hashes, and a hash shared by two ids only sends a batch the slow way.
        """
        if self._id_hashes is None:
            reader = self.con.sql("SELECT id::VARCHAR AS id FROM analytics_events").arrow()
            parts = [pl.DataFrame(part).select(base._ID_HASH).to_series() for part in reader]
            self._id_hashes = pl.concat(parts).rechunk() if parts else pl.Series(dtype=pl.UInt64)
        return self._id_hashes

    def read(self, table: str, filters: Sequence[Filter] = (), *, columns: Sequence[str] | None = None) -> pl.DataFrame:
        """Rows of ``table`` matching every filter, only ``columns`` if given (both pushed down into DuckDB).

        Example:
            >>> DuckDBStore().read("analytics_events", [Filter(column="user_id", op="==", value="u")]).height
            0
            >>> DuckDBStore().read("analytics_events", columns=["event_timestamp"]).columns
            ['event_timestamp']
        """
        spec = base._table(table)
        wanted = base._columns(spec, columns)
        clauses, params = zip(*(f.sql() for f in filters), strict=True) if filters else ((), ())
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        sql = f"SELECT {', '.join(wanted)} FROM {spec.name}{where}"
        with self._lock:
            frame = self.con.sql(sql, params=[p for ps in params for p in ps]).pl()
        return spec.conform(frame).select(wanted)

    def sql(
        self, query: str, params: base.Params = None, *, frames: Mapping[str, pl.DataFrame] | None = None
    ) -> pl.DataFrame:
        """One read-only ``SELECT`` over the tables (see :meth:`Store.sql`), on a cursor of the store's database.

        Example:
            >>> DuckDBStore().sql("SELECT count(*) AS n FROM analytics_events WHERE user_id = ?", ["u"])["n"].item()
            0
        """
        with self._lock:
            cursor = self.con.cursor()
            try:
                return base._select(cursor, query, params, frames or {})
            finally:
                cursor.close()

    def count(self, table: str) -> int:
        """Rows in ``table``.

        Example:
            >>> DuckDBStore().count("analytics_events")
            0
        """
        spec = base._table(table)
        with self._lock:
            return int(self.con.execute(f"SELECT count(*) FROM {spec.name}").fetchall()[0][0])

    def append_rows(self, table: str, frame: pl.DataFrame) -> None:
        """Append rows to a small table (the load ledger) as they are.

        Example:
            >>> from vtp_lab.tables import LOADS
            >>> DuckDBStore().append_rows("loads", LOADS.empty())
        """
        spec = base._table(table)
        with self._lock, self._registered(rows=spec.conform(frame)):
            self.con.execute(f"INSERT INTO {spec.name} SELECT * FROM rows")

    def replace_tables(self, frames: Mapping[str, Rows], *, version: str | None = None) -> None:
        """Replace whole tables, from frames or Parquet files, in one transaction (``version``: :func:`data_version`).

        Example:
            >>> from vtp_lab.tables import RECORDINGS
            >>> DuckDBStore().replace_tables({"recordings": RECORDINGS.empty()})
        """
        conformed = {
            f"new_{name}": base._table(name).conform(rows)
            for name, rows in frames.items()
            if isinstance(rows, pl.DataFrame)
        }
        with self._transaction(**conformed):
            self._id_hashes = None  # read again if the events change
            for name, rows in frames.items():
                self.con.execute(f"DELETE FROM {name}")
                if isinstance(rows, pl.DataFrame):
                    self.con.execute(f"INSERT INTO {name} SELECT * FROM new_{name}")
                elif rows:
                    self.con.execute(f"INSERT INTO {name} SELECT * FROM read_parquet(?)", [[str(p) for p in rows]])
            self._record_version(version)

    def replace_rows(
        self, changes: dict[str, tuple[str, list[str], pl.DataFrame]], *, version: str | None = None
    ) -> None:
        """For each table, replace the rows whose ``column`` is in ``values`` by ``frame``; one transaction.

        Example:
            >>> from vtp_lab.tables import LECTURE_STATISTICS
            >>> DuckDBStore().replace_rows({"lecture_statistics": ("recording_id", ["r"], LECTURE_STATISTICS.empty())})
        """
        conformed = {f"new_{name}": base._table(name).conform(frame) for name, (_, _, frame) in changes.items()}
        with self._transaction(**conformed):
            self._id_hashes = None  # read again if the events change
            for name, (column, values, _) in changes.items():
                if values:
                    marks = ", ".join("?" * len(values))
                    self.con.execute(f"DELETE FROM {name} WHERE {column} IN ({marks})", values)
                self.con.execute(f"INSERT INTO {name} SELECT * FROM new_{name}")
            self._record_version(version)

    def spill(self, table: str, *, by: str, parts: int, folder: Path, memory: int | None = None) -> list[Path]:
        """Write ``table`` into ``folder`` cut into ``parts`` by the hash of ``by`` (see :meth:`Store.spill`).

        Example:
            >>> import tempfile
            >>> DuckDBStore().spill("analytics_events", by="recording_id", parts=4, folder=Path(tempfile.mkdtemp()))
            []
        """
        with self._lock:
            with base._spilling(self.con, memory, parts):
                self.con.execute(base._spill_sql(base._table(table).name, table, by=by, parts=parts, folder=folder))
            if self.path != ":memory:":  # an in-memory store's blocks are its data
                with base._memory_limit(self.con, _AFTER_SPILL_MEMORY):
                    pass  # setting the lower limit evicts the cached blocks; leaving sets the limit back
        return base._parts(folder)

    def _record_version(self, version: str | None) -> None:
        if version is not None:
            self.con.execute(f"INSERT OR REPLACE INTO {_STATE} VALUES ('derived_version', ?)", [version])

    def derived_version(self) -> str | None:
        """The data version the derived tables were last computed from (see :func:`data_version`).

        Example:
            >>> DuckDBStore().derived_version() is None
            True
        """
        with self._lock:
            try:
                rows = self.con.execute(f"SELECT value FROM {_STATE} WHERE key = 'derived_version'").fetchall()
            except duckdb.CatalogException:  # a store written before versions were kept
                return None
        return str(rows[0][0]) if rows else None

    def write_recordings(self, recordings: pl.DataFrame) -> None:
        """Replace the catalogue in one transaction.

        Example:
            >>> from vtp_lab.tables import RECORDINGS
            >>> DuckDBStore().write_recordings(RECORDINGS.empty())
        """
        self.replace_tables({"recordings": recordings})

    def close(self) -> None:
        """Close the connection (releasing DuckDB's file lock).

        Example:
            >>> DuckDBStore().close()
        """
        with self._lock:
            self.con.close()
            if self._snapshot is not None:
                self._snapshot.cleanup()


def _snapshot(path: Path, into: Path, *, tries: int = 5) -> Path:
    """A copy of the DuckDB file ``path`` (and its write-ahead log) that another process is writing, as of now.

    DuckDB lets no other process open a file that one holds for writing, not even to read.
    Between checkpoints the writer only appends to the write-ahead log, so the file copied,
    then its log, is the store as a crash at that moment would leave it, which is what
    DuckDB recovers from on opening. A copy during which the file changed (a checkpoint)
    is made again.
    """
    wal = Path(f"{path}.wal")
    for _ in range(tries):
        before = path.stat()
        copy = into / path.name
        shutil.copyfile(path, copy)
        if wal.exists():
            shutil.copyfile(wal, f"{copy}.wal")
        after = path.stat()
        if (before.st_size, before.st_mtime_ns) == (after.st_size, after.st_mtime_ns):
            return copy
    raise StoreError(f"could not copy {path} while its writer kept changing it; try again, or stop the writer")
