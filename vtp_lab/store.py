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

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal, Protocol

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from vtp_lab.duck import ROW_GROUP_ROWS, arrow, connect
from vtp_lab.errors import StoreError, StoreLockedError
from vtp_lab.tables import ANALYTICS_EVENTS, REJECTED_EVENTS, TABLES, Table

__all__ = ["AppendResult", "DuckDBStore", "Filter", "Origins", "ParquetLake", "Store", "data_version", "open_store"]

Op = Literal["==", ">=", "<", "in"]
_LOCK_HOLDER: Final = re.compile(r"Conflicting lock is held in (.*?) \(PID (\d+)\)")


@dataclass(frozen=True, kw_only=True)
class Filter:
    """One condition on a column, pushed down to the store.

    Example:
        >>> Filter(column="user_id", op="==", value="u").expr().meta.output_name()
        'user_id'
    """

    column: str
    op: Op
    value: Any

    def expr(self) -> pl.Expr:
        """The condition as a polars expression."""
        col = pl.col(self.column)
        if self.op == "in":
            return col.is_in(list(self.value))
        if self.op == ">=":
            return col >= self.value
        if self.op == "<":
            return col < self.value
        return col == self.value

    def sql(self) -> tuple[str, list[Any]]:
        """The condition as SQL with its parameters."""
        if self.op == "in":
            values = list(self.value)
            return f"{self.column} IN ({', '.join('?' * len(values)) or 'NULL'})", values
        return f"{self.column} {'=' if self.op == '==' else self.op} ?", [self.value]


@dataclass(frozen=True)
class AppendResult:
    """What one :meth:`Store.append` did; ``inserted_ids`` when asked with ``return_ids=True``.

    ``rejected_by_reason`` counts the rows quarantined now, per reason code (a rejected
    row already in the quarantine is a duplicate, not counted here).

    Example:
        >>> r = AppendResult(inserted=3, duplicates=1, rejected=2, rejected_by_reason={"malformed": 2})
        >>> r.rows, sum(r.rejected_by_reason.values()) == r.rejected
        (6, True)
    """

    inserted: int
    duplicates: int
    rejected: int
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    inserted_ids: pl.Series | None = field(default=None, repr=False, compare=False)
    conflicts: pl.DataFrame | None = field(default=None, repr=False, compare=False)
    """The ``conflicting_duplicate`` rows the store quarantined, with ``position``: where each was in the batch."""

    @property
    def rows(self) -> int:
        """Rows handed in: inserted + duplicates + rejected."""
        return self.inserted + self.duplicates + self.rejected


class Store(Protocol):
    """What both stores offer.

    Example:
        >>> isinstance(open_store(":memory:"), DuckDBStore)
        True
    """

    path: str
    read_only: bool

    def append(
        self,
        events: pl.DataFrame,
        rejected: pl.DataFrame | None = None,
        *,
        return_ids: bool = False,
        origins: Origins | None = None,
        source: str = "append",
    ) -> AppendResult:
        """Store a batch of accepted events and rejected rows, whole or not at all."""
        ...

    def read(self, table: str, filters: Sequence[Filter] = (), *, columns: Sequence[str] | None = None) -> pl.DataFrame:
        """A table (or the rows matching ``filters``) as a polars frame, with only ``columns`` if given."""
        ...

    def write_recordings(self, recordings: pl.DataFrame) -> None:
        """Replace the recordings catalogue."""
        ...

    def append_rows(self, table: str, frame: pl.DataFrame) -> None:
        """Append rows to a small table as they are."""
        ...

    def count(self, table: str) -> int:
        """Rows in ``table``."""
        ...

    def replace_rows(
        self, changes: dict[str, tuple[str, list[str], pl.DataFrame]], *, version: str | None = None
    ) -> None:
        """Replace some rows of some tables at once; ``version`` as with :meth:`replace_tables`."""
        ...

    def replace_tables(self, frames: dict[str, pl.DataFrame], *, version: str | None = None) -> None:
        """Replace whole tables at once; ``version`` (see :func:`data_version`) is recorded with them."""
        ...

    def derived_version(self) -> str | None:
        """The ``version`` recorded with the last replace that gave one (None: never)."""
        ...

    def all_or_nothing(self) -> contextlib.AbstractContextManager[None]:
        """A context in which every write is kept together, or none is (on an error)."""
        ...

    def close(self) -> None:
        """Release the store (and its writer lock)."""
        ...


def _table(name: str) -> Table:
    try:
        return TABLES[name]
    except KeyError:
        raise StoreError(f"no table {name!r}; the tables are {', '.join(TABLES)}") from None


def _columns(spec: Table, columns: Sequence[str] | None) -> list[str]:
    """The columns to read: all of the table's, or ``columns`` once each is checked to be one."""
    if columns is None:
        return list(spec.column_names)
    unknown = [c for c in columns if c not in spec.column_names]
    if unknown:
        raise StoreError(f"{spec.name} has no column {unknown[0]!r}; its columns are {', '.join(spec.column_names)}")
    return list(columns)


_KEYS: Final[dict[str, list[str]]] = {
    "analytics_events": ["id"],
    "rejected_events": ["source", "row_number", "raw"],
}
"""What makes a row a duplicate of a stored one, per table."""


def _key_hash(columns: list[str]) -> pl.Expr:
    return pl.col(columns[0]).hash() if len(columns) == 1 else pl.struct(columns).hash()


_ID_HASH: Final = _key_hash(_KEYS["analytics_events"])
"""An event id's 64-bit hash, the same in both stores."""


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


def _by_reason(reasons: pl.Series) -> dict[str, int]:
    """Counts of each reason code, most frequent first."""
    return dict(reasons.value_counts(sort=True).iter_rows())


Origins = Callable[[pl.Series], pl.DataFrame]
"""Given positions in an appended batch, those rows' ``raw`` text, ``source`` and ``row_number`` (for the quarantine)."""

_CONTENT: Final = tuple(c for c in ANALYTICS_EVENTS.column_names if c not in ("id", "metadata"))


def _first_per_id(events: pl.DataFrame) -> tuple[pl.DataFrame, pl.Series, pl.Series]:
    """The first event of each id, with the ids' hashes (:data:`_ID_HASH`), and the positions of the repeats.

    Distinct hashes mean distinct ids, so the usual batch is returned as it is: counting
    64-bit hashes is five times cheaper than counting the id texts.
    """
    hashes = events.select(_ID_HASH).to_series()
    if hashes.n_unique() == events.height:
        return events, hashes, pl.Series(dtype=pl.UInt32)
    first = events.select(pl.col("id").is_first_distinct()).to_series()
    return events.filter(first), hashes.filter(first), (~first).arg_true()


def _same_metadata(a: pl.Series, b: pl.Series) -> pl.Series:
    """Whether two metadata columns hold the same JSON, field for field: texts compared, then the few that differ parsed."""
    same = a.eq_missing(b)
    if same.all():
        return same
    at = (~same).arg_true()
    equal = [
        x is not None and y is not None and json.loads(x) == json.loads(y)
        for x, y in zip(a.gather(at).to_list(), b.gather(at).to_list(), strict=True)
    ]
    return same.scatter(at, pl.Series(equal, dtype=pl.Boolean))


def _conflicts(rows: pl.DataFrame, positions: pl.Series, kept: pl.DataFrame) -> pl.Series:
    """The positions (from ``positions``, one per row) of ``rows`` whose id is in ``kept`` with other content.

    Example:
        >>> from vtp_lab.synth import semester
        >>> ev = semester(courses=1, lectures_per_course=1, students=1).events.head(2)
        >>> changed = ev.with_columns(pl.lit("other").alias("session_id"))
        >>> _conflicts(pl.concat([ev, changed]), pl.Series([0, 1, 2, 3]), ev).to_list()
        [2, 3]
    """
    pairs = rows.with_columns(positions.alias("_at")).join(kept, on="id", how="inner", suffix="_kept")
    same = pairs.select(pl.all_horizontal(pl.col(c).eq_missing(pl.col(f"{c}_kept")) for c in _CONTENT)).to_series()
    same = same & _same_metadata(pairs["metadata"], pairs["metadata_kept"])
    return pairs["_at"].filter(~same).sort()


def _conflict_rows(events: pl.DataFrame, at: pl.Series, origins: Origins | None, source: str) -> pl.DataFrame:
    """Quarantine rows (``conflicting_duplicate``) for the events at positions ``at``, with their raw text."""
    if origins is not None:
        found = origins(at)
    else:
        rows = events[at].with_columns(pl.col(pl.Datetime).dt.strftime("%Y-%m-%dT%H:%M:%S%.6fZ"))
        found = pl.DataFrame(
            {
                "raw": rows.select(pl.struct(rows.columns).struct.json_encode()).to_series(),
                "source": pl.repeat(source, at.len(), eager=True, dtype=pl.String),
                "row_number": (at.cast(pl.Int64) + 1),
            }
        )
    return REJECTED_EVENTS.conform(
        found.with_columns(
            pl.lit("conflicting_duplicate").alias("reason"),
            pl.lit("id").alias("field"),
            pl.lit(datetime.now(UTC), pl.Datetime("us", "UTC")).alias("rejected_at"),
        )
    )


def _positioned(rejected: pl.DataFrame, conflicts: pl.Series) -> pl.DataFrame:
    """The conflict rows at the end of ``rejected``, with their positions in the batch."""
    return rejected.tail(conflicts.len()).with_columns(conflicts.cast(pl.UInt32).alias("position"))


@dataclass(frozen=True)
class _Sorted:
    """A batch sorted out: the first row per id (``batch``, with ``hashes``), and where its repeats are.

    A row conflicts when its id is stored with other content, or, for an id not stored,
    when an earlier row of the batch has it with other content.
    """

    events: pl.DataFrame
    batch: pl.DataFrame
    hashes: pl.Series
    repeats: pl.Series

    def conflicts(self, stored: pl.DataFrame | None = None) -> pl.Series:
        """Positions of the conflicting rows, given the stored rows of the batch's ids (None: none stored)."""
        found = []
        if self.repeats.len():
            at = self.repeats
            if stored is not None:
                at = at.filter(~self.events["id"].gather(at).is_in(stored["id"].implode()))
            found.append(_conflicts(self.events[at], at, self.batch))
        if stored is not None and stored.height:
            hit = self.events["id"].is_in(stored["id"].implode())
            every = pl.int_range(self.events.height, dtype=pl.UInt32, eager=True)
            found.append(_conflicts(self.events.filter(hit), every.filter(hit), stored))
        return pl.concat(found).sort() if found else pl.Series(dtype=pl.UInt32)


def _sorted(events: pl.DataFrame) -> _Sorted:
    return _Sorted(events, *_first_per_id(events))


_STATE: Final = "vtp_lab_state"
"""DuckDB's table of vtp_lab's own state (not a table of the mirror): the derived tables' data version."""


def data_version(store: Store) -> str:
    """What the derived tables depend on, as text: the stored events (append-only, so their count) and the catalogue.

    Example:
        >>> data_version(DuckDBStore())
        '0:...'
    """
    recordings = store.read("recordings")
    return f"{store.count('analytics_events')}:{_digest(*recordings.get_columns())}"


class DuckDBStore:
    """The tables in one DuckDB database file (or in memory with ``":memory:"``).

    ``memory_limit`` bounds DuckDB's cache of the file (it spills beyond it), so long
    loads stay in bounded memory.

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
            for table in TABLES.values():
                self.con.execute(table.duckdb_ddl())
            self.con.execute(f"CREATE TABLE IF NOT EXISTS {_STATE} (key VARCHAR PRIMARY KEY, value VARCHAR)")

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

    def append(
        self,
        events: pl.DataFrame,
        rejected: pl.DataFrame | None = None,
        *,
        return_ids: bool = False,
        origins: Origins | None = None,
        source: str = "append",
    ) -> AppendResult:
        """Insert a batch in one transaction; duplicates are counted, not stored, and conflicts quarantined.

        An event is a duplicate when its id is stored or repeated in the batch with the same
        content, field for field; with other content it is a ``conflicting_duplicate``,
        quarantined with its raw text (from ``origins``, else the event as JSON under
        ``source``). A rejected row is a duplicate when the same (source, row number, raw
        text) is already quarantined.

        Example:
            >>> from vtp_lab.synth import semester
            >>> s, ev = DuckDBStore(), semester(courses=1, lectures_per_course=1, students=2).events
            >>> s.append(ev).inserted == ev.height, s.append(ev).duplicates == ev.height
            (True, True)
            >>> s.append(ev.head(1).with_columns(pl.lit("changed").alias("session_id"))).rejected_by_reason
            {'conflicting_duplicate': 1}
        """
        events = ANALYTICS_EVENTS.conform(events)
        own = _sorted(events)
        rej = REJECTED_EVENTS.conform(rejected) if rejected is not None else REJECTED_EVENTS.empty()
        columns = ", ".join("id::VARCHAR AS id" if c == "id" else c for c in ANALYTICS_EVENTS.column_names)
        as_uuid = ", ".join("id::UUID AS id" if c == "id" else c for c in ANALYTICS_EVENTS.column_names)
        table = _for_insert(own.batch)
        canonical = table.schema.field("id").type == pa.uuid()  # every id was in the stored spelling
        probe = own.hashes if canonical else None  # only hashes of ids in the stored spelling are comparable
        with self._lock:  # held until the hashes include this batch (re-entered by the transaction)
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
            conflicts = own.conflicts(kept)
            if conflicts.len():
                rej = pl.concat([rej, _conflict_rows(events, conflicts, origins, source)])
            quarantined = {"rej": rej} if rej.height else {}  # registering a table costs about 0.5 ms
            with self._transaction(batch=table, **quarantined):
                ids = self.con.sql(f"{insert} RETURNING id::VARCHAR AS id").pl()["id"] if return_ids else None
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
            rejected_by_reason=_by_reason(reasons),
            inserted_ids=ids,
            conflicts=_positioned(rej, conflicts),
        )

    def _stored_id_hashes(self) -> pl.Series:
        """The stored event ids' hashes (:data:`_ID_HASH`), read once, then kept up to date by append.

        An append whose ids all hash to none of these stores its batch without looking
        up each id in the table; DuckDB's anti-join reads every stored id, and its cost
        grows with the store (about 140 ms of a 250,000-row append at 750,000 stored),
        while this probe costs 4 ms per million stored. Any other change to the events
        forgets the hashes, and a hash shared by two ids only sends a batch the slow way.
        """
        if self._id_hashes is None:
            reader = self.con.sql("SELECT id::VARCHAR AS id FROM analytics_events").arrow()
            parts = [pl.DataFrame(part).select(_ID_HASH).to_series() for part in reader]
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
        spec = _table(table)
        wanted = _columns(spec, columns)
        clauses, params = zip(*(f.sql() for f in filters), strict=True) if filters else ((), ())
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        sql = f"SELECT {', '.join(wanted)} FROM {spec.name}{where}"
        with self._lock:
            frame = self.con.sql(sql, params=[p for ps in params for p in ps]).pl()
        return spec.conform(frame).select(wanted)

    def count(self, table: str) -> int:
        """Rows in ``table``.

        Example:
            >>> DuckDBStore().count("analytics_events")
            0
        """
        spec = _table(table)
        with self._lock:
            return int(self.con.execute(f"SELECT count(*) FROM {spec.name}").fetchall()[0][0])

    def append_rows(self, table: str, frame: pl.DataFrame) -> None:
        """Append rows to a small table (the load ledger) as they are.

        Example:
            >>> from vtp_lab.tables import LOADS
            >>> DuckDBStore().append_rows("loads", LOADS.empty())
        """
        spec = _table(table)
        with self._lock, self._registered(rows=spec.conform(frame)):
            self.con.execute(f"INSERT INTO {spec.name} SELECT * FROM rows")

    def replace_tables(self, frames: dict[str, pl.DataFrame], *, version: str | None = None) -> None:
        """Replace whole tables, all in one transaction (with ``version``, see :func:`data_version`).

        Example:
            >>> from vtp_lab.tables import RECORDINGS
            >>> DuckDBStore().replace_tables({"recordings": RECORDINGS.empty()})
        """
        conformed = {f"new_{name}": _table(name).conform(frame) for name, frame in frames.items()}
        with self._transaction(**conformed):
            self._id_hashes = None  # read again if the events change
            for name in frames:
                self.con.execute(f"DELETE FROM {name}")
                self.con.execute(f"INSERT INTO {name} SELECT * FROM new_{name}")
            self._record_version(version)

    def replace_rows(
        self, changes: dict[str, tuple[str, list[str], pl.DataFrame]], *, version: str | None = None
    ) -> None:
        """For each table, replace the rows whose ``column`` is in ``values`` by ``frame``; one transaction.

        Example:
            >>> from vtp_lab.tables import LECTURE_STATISTICS
            >>> DuckDBStore().replace_rows({"lecture_statistics": ("recording_id", ["r"], LECTURE_STATISTICS.empty())})
        """
        conformed = {f"new_{name}": _table(name).conform(frame) for name, (_, _, frame) in changes.items()}
        with self._transaction(**conformed):
            self._id_hashes = None  # read again if the events change
            for name, (column, values, _) in changes.items():
                if values:
                    marks = ", ".join("?" * len(values))
                    self.con.execute(f"DELETE FROM {name} WHERE {column} IN ({marks})", values)
                self.con.execute(f"INSERT INTO {name} SELECT * FROM new_{name}")
            self._record_version(version)

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


def _digest(*parts: pl.Series) -> str:
    """A short content hash of some columns: the deterministic name of a batch's files."""
    h = hashlib.sha1(usedforsecurity=False)
    for part in parts:
        array = part.cast(pl.String).fill_null("").rechunk().to_arrow()
        for buffer in array.buffers()[1:]:
            if buffer is not None:
                h.update(buffer)
    return h.hexdigest()[:20]


_OPEN: Final = "_all_or_nothing.json"
"""In a lake, while an all-or-nothing is open: the ledger entries before it (a crash leaves it for recovery)."""


class ParquetLake:
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

    def _files(self, table: str) -> list[Path]:
        """The committed files of ``table``: appended by batches, or replaced whole (recordings)."""
        files: list[Path] = []
        for entry in self._ledger():
            mine = [self.root / f for f in entry["files"] if f.startswith(f"{table}/")]
            files = mine if mine and entry.get("mode") == "replace" else files + mine
        return files

    def _recover(self) -> None:
        """Undo an all-or-nothing a crashed writer left open, clear staging, remove files never recorded."""
        if (self.root / _OPEN).is_file():
            self._undo(set(json.loads((self.root / _OPEN).read_text())["before"]))
        shutil.rmtree(self.root / "_staging", ignore_errors=True)
        committed = {str(p) for name in TABLES for p in self._files(name)}
        for name in TABLES:
            for path in (self.root / name).rglob("*.parquet"):
                if str(path) not in committed:
                    path.unlink()

    def _stored_keys(self, table: str) -> pl.DataFrame:
        """The stored rows' keys with their 64-bit hashes (loaded once, kept up to date by append)."""
        if table not in self._keys:
            columns = _KEYS[table]
            files = self._files(table)
            keys = (
                pl.scan_parquet(files, hive_partitioning=False, glob=False).select(columns).collect()
                if files
                else TABLES[table].empty().select(columns)
            )
            self._keys[table] = keys.with_columns(_key_hash(columns).alias("_h"))
        return self._keys[table]

    def _new_rows(
        self, table: str, batch: pl.DataFrame, hashes: pl.Series | None = None
    ) -> tuple[pl.DataFrame, pl.Series]:
        """Rows whose key is not stored, with their key hashes (computed unless given).

        The stored hashes are probed for any of the batch's (the cheap direction), and only
        when some match is each row checked: a hash probe, then an exact check of the hits.
        """
        columns = _KEYS[table]
        stored = self._stored_keys(table)
        if hashes is None:
            hashes = batch.select(_key_hash(columns)).to_series()
        if not stored["_h"].is_in(hashes.implode()).any():
            return batch, hashes
        hit = hashes.is_in(stored["_h"].implode())
        candidates = stored.filter(pl.col("_h").is_in(hashes.filter(hit).implode())).select(columns)
        fresh = batch.with_columns(hashes.alias("_h")).join(candidates, on=columns, how="anti", maintain_order="left")
        return fresh.drop("_h"), fresh["_h"]

    def _remember(self, table: str, rows: pl.DataFrame, hashes: pl.Series) -> None:
        fresh = rows.select(_KEYS[table]).with_columns(hashes.alias("_h"))
        self._keys[table] = pl.concat([self._stored_keys(table), fresh])

    @staticmethod
    def _sync_dir(path: Path) -> None:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _stage(self, frame: pl.DataFrame, final: Path) -> tuple[Path, Path]:
        """Write ``frame`` into staging, fsync it and check its footer; return (staged, final)."""
        tmp = self.root / "_staging" / final.name.replace(".parquet", f"-{final.parent.name}.parquet")
        frame.write_parquet(tmp, compression="zstd", compression_level=1)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        if pq.read_metadata(tmp).num_rows != frame.height:
            raise StoreError(f"the Parquet file {tmp} did not read back whole; nothing was committed")
        return tmp, final

    def _publish(self, parts: list[tuple[pl.DataFrame, Path]]) -> list[str]:
        """Stage every file (two at a time), then rename each into place; return relative paths."""
        (self.root / "_staging").mkdir(exist_ok=True)
        with ThreadPoolExecutor(max_workers=2) as pool:
            staged = list(pool.map(lambda part: self._stage(*part), parts))
        for tmp, final in staged:
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, final)
        for folder in {final.parent for _, final in staged}:
            self._sync_dir(folder)
        return [str(final.relative_to(self.root)) for _, final in staged]

    def _commit(self, entry: dict[str, Any], name: str) -> None:
        self._write_durably(self.root / "_ledger" / f"{name}.json", json.dumps(entry))

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

        Example:
            >>> import tempfile
            >>> from vtp_lab.synth import semester
            >>> lake = ParquetLake(tempfile.mkdtemp())
            >>> try:
            ...     with lake.all_or_nothing():
            ...         _ = lake.append(semester(courses=1, lectures_per_course=1, students=2).events)
            ...         raise RuntimeError("changed my mind")
            ... except RuntimeError:
            ...     pass
            >>> lake.count("analytics_events")
            0
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

    def _undo(self, before: set[str]) -> None:
        """Remove the ledger entries not in ``before``, newest first, then their files (an all-or-nothing undone)."""
        with self._lock:
            for entry in sorted((self.root / "_ledger").glob("*.json"), reverse=True):
                if entry.name not in before:
                    files = json.loads(entry.read_text())["files"]
                    entry.unlink()  # uncommitted first: a crash here leaves files that _recover removes
                    self._sync_dir(self.root / "_ledger")
                    for name in files:
                        (self.root / name).unlink(missing_ok=True)
            self._keys.clear()
            (self.root / _OPEN).unlink(missing_ok=True)

    def append(
        self,
        events: pl.DataFrame,
        rejected: pl.DataFrame | None = None,
        *,
        return_ids: bool = False,
        origins: Origins | None = None,
        source: str = "append",
    ) -> AppendResult:
        """Write a batch: staged files, footers checked, renamed, then one ledger entry.

        Duplicates and conflicts are sorted out as :meth:`DuckDBStore.append` does.

        Example:
            >>> import tempfile
            >>> from vtp_lab.synth import semester
            >>> lake, ev = ParquetLake(tempfile.mkdtemp()), semester(courses=1, lectures_per_course=1, students=2).events
            >>> lake.append(ev).inserted == ev.height, lake.append(ev).inserted
            (True, 0)
        """
        if self.read_only:
            raise StoreError(f"the lake {self.root} was opened read-only; open it without read_only=True to write")
        events = ANALYTICS_EVENTS.conform(events)
        own = _sorted(events)
        rej = REJECTED_EVENTS.conform(rejected) if rejected is not None else REJECTED_EVENTS.empty()
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
            conflicts = own.conflicts(kept)
            if conflicts.len():
                rej = pl.concat([rej, _conflict_rows(events, conflicts, origins, source)])
            rej_new, rej_hashes = self._new_rows(
                "rejected_events", rej.unique(_KEYS["rejected_events"], maintain_order=True)
            )
            duplicates = events.height + given - new.height - rej_new.height
            ids = new["id"] if return_ids else None
            if new.height == 0 and rej_new.height == 0:
                return AppendResult(
                    inserted=0,
                    duplicates=duplicates,
                    rejected=0,
                    inserted_ids=ids,
                    conflicts=_positioned(rej, conflicts),
                )
            digest = _digest(new["id"], rej_new["raw"], rej_new["source"], rej_new["row_number"])
            by_date = new.with_columns(pl.col("event_timestamp").dt.date().alias("_d")).partition_by("_d", as_dict=True)
            parts = [
                (part.drop("_d"), self.root / "analytics_events" / f"event_date={day}" / f"part-{digest}.parquet")
                for (day,), part in sorted(by_date.items())
            ]
            if rej_new.height:
                parts.append((rej_new, self.root / "rejected_events" / f"part-{digest}.parquet"))
            files = self._publish(parts)
            entry = {
                "table": "batch",
                "files": files,
                "inserted": new.height,
                "rejected": rej_new.height,
                "committed_at": datetime.now(UTC).isoformat(),
            }
            self._commit(entry, self._next_name(digest))
            self._remember("analytics_events", new, new_hashes)
            self._remember("rejected_events", rej_new, rej_hashes)
        return AppendResult(
            inserted=new.height,
            duplicates=duplicates,
            rejected=rej_new.height,
            rejected_by_reason=_by_reason(rej_new["reason"]),
            inserted_ids=ids,
            conflicts=_positioned(rej, conflicts),
        )

    def read(self, table: str, filters: Sequence[Filter] = (), *, columns: Sequence[str] | None = None) -> pl.DataFrame:
        """Rows of ``table`` matching every filter, only ``columns`` if given; only committed files are read.

        Example:
            >>> import tempfile
            >>> ParquetLake(tempfile.mkdtemp()).read("rejected_events").columns[-1]
            'rejected_at'
        """
        spec = _table(table)
        wanted = _columns(spec, columns)
        files = self._files(spec.name)
        if not files:
            return spec.empty().select(wanted)
        scan = pl.scan_parquet(files, hive_partitioning=False, glob=False, schema=spec.polars_schema)
        for f in filters:
            scan = scan.filter(f.expr())
        return spec.conform(scan.select(wanted).collect()).select(wanted)

    def count(self, table: str) -> int:
        """Rows in ``table``, from the committed files' footers.

        Example:
            >>> import tempfile
            >>> ParquetLake(tempfile.mkdtemp()).count("analytics_events")
            0
        """
        return sum(pq.read_metadata(f).num_rows for f in self._files(_table(table).name))

    def append_rows(self, table: str, frame: pl.DataFrame) -> None:
        """Append rows to a small table (the load ledger): one file and one ledger entry.

        Example:
            >>> import tempfile
            >>> from vtp_lab.tables import LOADS
            >>> ParquetLake(tempfile.mkdtemp()).append_rows("loads", LOADS.empty())
        """
        spec = _table(table)
        rows = spec.conform(frame)
        if rows.height == 0:
            return
        digest = _digest(*(rows[c] for c in rows.columns))
        with self._lock:
            name = self._next_name(digest)
            files = self._publish([(rows, self.root / spec.name / f"part-{name}.parquet")])
            self._commit({"table": spec.name, "mode": "append", "files": files}, name)

    def replace_tables(self, frames: dict[str, pl.DataFrame], *, version: str | None = None) -> None:
        """Replace whole tables: new files, then one ledger entry that supersedes the old ones (with ``version``).

        Example:
            >>> import tempfile
            >>> from vtp_lab.tables import RECORDINGS
            >>> ParquetLake(tempfile.mkdtemp()).replace_tables({"recordings": RECORDINGS.empty()})
        """
        conformed = {name: _table(name).conform(frame) for name, frame in frames.items()}
        digest = _digest(
            *(pl.Series([name, str(frame.height)]) for name, frame in conformed.items()),
            pl.Series([datetime.now(UTC).isoformat()]),
        )
        with self._lock:
            name = self._next_name(digest)
            files = self._publish(
                [(frame, self.root / table / f"part-{name}.parquet") for table, frame in conformed.items()]
            )
            entry = {"table": ",".join(conformed), "mode": "replace", "files": files}
            self._commit(entry if version is None else {**entry, "version": version}, name)

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
            >>> ParquetLake(tempfile.mkdtemp()).replace_rows({"lecture_statistics": ("recording_id", ["r"], LECTURE_STATISTICS.empty())})
        """
        frames = {}
        for name, (column, values, frame) in changes.items():
            kept = self.read(name).filter(~pl.col(column).is_in(values))
            frames[name] = pl.concat([kept, _table(name).conform(frame)])
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


def open_store(path: str | Path, *, read_only: bool = False) -> DuckDBStore | ParquetLake:
    """The store a path names: ``*.duckdb`` or ``":memory:"`` is DuckDB, anything else a lake directory.

    Example:
        >>> type(open_store(":memory:")).__name__
        'DuckDBStore'
    """
    text = str(path)
    if text == ":memory:" or text.endswith(".duckdb"):
        return DuckDBStore(text, read_only=read_only)
    return ParquetLake(path, read_only=read_only)
