"""What both stores share: :class:`Store`, :class:`Filter`, :class:`AppendResult`, and how a batch is sorted out.

A batch's events are de-duplicated by id against themselves and the store: a repeat
with the same content is a duplicate, one with other content a ``conflicting_duplicate``
(:func:`_Sorted.conflicts`).

Example:
    >>> Filter(column="user_id", op="==", value="u").sql()
    ('user_id = ?', ['u'])
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal, Protocol

import duckdb
import polars as pl

from vtp_lab.duck import literal, uuid_texts
from vtp_lab.errors import InputFormatError, StoreError
from vtp_lab.tables import ANALYTICS_EVENTS, DERIVED_TABLES, REJECTED_EVENTS, TABLES, Table

__all__ = ["AppendResult", "Filter", "Origins", "Params", "Store", "data_version", "read_spilled"]

Op = Literal["==", ">=", "<", "in"]


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
        >>> from vtp_lab.store import open_store
        >>> sorted(n for n in ("append", "read", "all_or_nothing") if hasattr(open_store(":memory:"), n))
        ['all_or_nothing', 'append', 'read']
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
        """Store a batch of accepted events and rejected rows, whole or not at all.

        An event is a duplicate when its id is stored or repeated in the batch with the same
        content, field for field; with other content it is a ``conflicting_duplicate``,
        quarantined with its raw text (from ``origins``, else the event as JSON under
        ``source``). A rejected row is a duplicate when the same (source, row number, raw
        text) is already quarantined. Each store writes the sorted-out batch its own way
        (``_append``).

        Example:
            >>> from vtp_lab.store import DuckDBStore
            >>> from vtp_lab.synth import semester
            >>> s, ev = DuckDBStore(), semester(courses=1, lectures_per_course=1, students=2).events
            >>> s.append(ev).inserted == ev.height, s.append(ev).duplicates == ev.height
            (True, True)
            >>> s.append(ev.head(1).with_columns(pl.lit("changed").alias("session_id"))).rejected_by_reason
            {'conflicting_duplicate': 1}
        """
        rows = REJECTED_EVENTS.conform(rejected) if rejected is not None else REJECTED_EVENTS.empty()
        own = _sorted(ANALYTICS_EVENTS.conform(events))
        return self._append(_Batch(own=own, rejected=rows, origins=origins, source=source, return_ids=return_ids))

    def _append(self, batch: _Batch) -> AppendResult:
        """Write a batch :meth:`append` conformed and sorted out, whole or not at all."""
        ...

    def read(self, table: str, filters: Sequence[Filter] = (), *, columns: Sequence[str] | None = None) -> pl.DataFrame:
        """A table (or the rows matching ``filters``) as a polars frame, with only ``columns`` if given."""
        ...

    def write_recordings(self, recordings: pl.DataFrame) -> None:
        """Replace the recordings catalogue."""
        ...

    def sql(
        self, query: str, params: Params = None, *, frames: Mapping[str, pl.DataFrame] | None = None
    ) -> pl.DataFrame:
        """One read-only ``SELECT`` over the store's tables (each under its name), as a polars frame.

        ``params`` fill ``?`` (a sequence) or ``$name`` (a mapping) placeholders; ``frames``
        are read in place of the stored tables of their names (derived tables computed anew).
        """
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

    def replace_tables(self, frames: Mapping[str, Rows], *, version: str | None = None) -> None:
        """Replace whole tables at once, each from a frame or Parquet files of its columns; ``version`` recorded too.

        The files (see :func:`data_version` for ``version``) are read or moved, never held
        whole in memory: how a table larger than memory is written.
        """
        ...

    def spill(self, table: str, *, by: str, parts: int, folder: Path, memory: int | None = None) -> list[Path]:
        """Write ``table`` into ``folder`` as Parquet in ``parts`` parts by the hash of ``by``; return their folders.

        One streaming pass (DuckDB's partitioned ``COPY``): each part's folder holds the rows
        of the same values of ``by``, so a part is read at the cost of its own size, with
        :func:`read_spilled` (the files hold the columns as the store does: UUIDs may be 16
        bytes). DuckDB may use ``memory`` bytes for it (the more, the faster; default: its own limit).
        """
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


Rows = pl.DataFrame | Sequence[Path]
"""A table's new rows: a frame, or Parquet files of the table's columns (what does not fit in memory)."""


def _spill_sql(source: str, table: str, *, by: str, parts: int, folder: Path) -> str:
    """The ``COPY`` of :meth:`Store.spill`, from ``source`` (a table, or ``read_parquet`` of files).

    Columns are written as the store holds them (UUIDs as 16 bytes, not as text: with them
    as text the partitioned write took twice the time, docs/design-measurements.md); read a part
    with :func:`read_spilled`.
    """
    spec = _table(table)
    columns = ", ".join(f"CAST({c.name} AS VARCHAR) AS {c.name}" if c.kind == "json" else c.name for c in spec.columns)
    return (
        f"COPY (SELECT {columns}, hash({by}) % {parts} AS _part FROM {source}) TO {literal(folder)} "
        "(FORMAT parquet, PARTITION_BY (_part), COMPRESSION snappy, OVERWRITE_OR_IGNORE)"  # read once: fast over small
    )


def read_spilled(folder: Path, table: str = "analytics_events") -> pl.DataFrame:
    """The rows of one part that :meth:`Store.spill` wrote, with the table's polars types (UUIDs as text).

    Example:
        >>> import tempfile
        >>> from vtp_lab.store import open_store
        >>> from vtp_lab.synth import semester
        >>> store = open_store(":memory:")
        >>> _ = store.append(semester(courses=1, lectures_per_course=2, students=2, seed=1).events)
        >>> parts = store.spill("analytics_events", by="recording_id", parts=2, folder=Path(tempfile.mkdtemp()))
        >>> sum(read_spilled(part).height for part in parts) == store.count("analytics_events")
        True
    """
    spec = _table(table)
    rows = pl.read_parquet(folder / "*.parquet", hive_partitioning=False)
    uuids = [c for c in spec.columns if rows.schema[c.name] == pl.Binary]  # a DuckDB UUID column: 16 bytes
    return spec.conform(rows.with_columns(uuid_texts(rows[c.name], repeats=not c.primary_key) for c in uuids))


@contextlib.contextmanager
def _settings(con: Any, **values: object) -> Iterator[None]:
    """DuckDB settings of ``con``'s database set to ``values`` for a while (a value of None: left as it is)."""
    wanted = {name: value for name, value in values.items() if value is not None}
    before = {name: con.execute(f"SELECT current_setting('{name}')").fetchone()[0] for name in wanted}
    for name, value in wanted.items():
        con.execute(f"SET {name} = '{value}'")
    try:
        yield
    finally:
        for name, value in before.items():
            con.execute(f"SET {name} = '{value}'")


def _memory_limit(con: Any, memory: int | None, **settings: object) -> contextlib.AbstractContextManager[None]:
    """DuckDB's memory limit set to ``memory`` bytes (None: left as it is) and any other ``settings``, for a while."""
    return _settings(con, memory_limit=None if memory is None else f"{memory}B", **settings)


_SPILL_FLUSH_ROWS: Final = 32_768
"""Most rows a partitioned write buffers per part before writing them (DuckDB's default is 524,288).

DuckDB keeps a buffer per part; past the memory limit it spills its own buffers, which
made a spill into many parts several times slower (docs/design-measurements.md).
"""

_SPILL_BUFFER_ROW_BYTES: Final = 1_024
"""Bytes allowed per buffered row and part when :func:`_flush_rows` fits the buffers in the budget.

A buffered event row takes about 400 bytes, so the buffers of all parts stay under half the budget.
"""


def _flush_rows(memory: int | None, parts: int) -> int:
    """Rows per part a spill into ``parts`` buffers: :data:`_SPILL_FLUSH_ROWS`, fewer if the buffers pass ``memory``.

    Example:
        >>> _flush_rows(2 * 1024**3, 84), _flush_rows(2 * 1024**3, 840), _flush_rows(None, 840)
        (24966, 2496, 32768)
    """
    if memory is None:
        return _SPILL_FLUSH_ROWS
    return max(2_048, min(_SPILL_FLUSH_ROWS, memory // (max(parts, 1) * _SPILL_BUFFER_ROW_BYTES)))


def _spilling(con: Any, memory: int | None, parts: int) -> contextlib.AbstractContextManager[None]:
    """The settings of :meth:`Store.spill`'s partitioned write into ``parts``: the memory limit, and small flushes."""
    return _memory_limit(con, memory, partitioned_write_flush_threshold=_flush_rows(memory, parts))


Params = Sequence[Any] | Mapping[str, Any] | None
"""Values for a query's placeholders: a sequence for ``?``, a mapping for ``$name``."""


def _select(con: Any, query: str, params: Params, frames: Mapping[str, pl.DataFrame]) -> pl.DataFrame:
    """Run ``query`` on ``con`` if it is one ``SELECT``, ``frames`` registered over the tables of their names.

    Anything else (several statements, a write, DDL) is refused before it runs, with an
    :class:`InputFormatError` saying what it is; a query DuckDB cannot run raises one
    with DuckDB's message and the table names.
    """
    try:
        statements = con.extract_statements(query)
    except duckdb.Error as exc:
        raise InputFormatError(f"cannot read the query: {_first_line(exc)}") from None
    kinds = [s.type.name for s in statements]
    if kinds != ["SELECT"]:
        raise InputFormatError(
            f"sql() runs one SELECT and never writes; this is {' then '.join(kinds) or 'no statement'}. "
            "Load events with load() or a collector; the derived tables are computed for you"
        )
    for name, frame in frames.items():
        con.register(name, frame)
    try:
        return con.sql(query, params=params).pl()
    except duckdb.Error as exc:
        raise InputFormatError(f"{_first_line(exc)}; the tables are {', '.join(TABLES)}") from None


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _parts(folder: Path) -> list[Path]:
    """The part folders a spill wrote, in part order."""
    return sorted(folder.glob("_part=*"), key=lambda p: int(p.name.removeprefix("_part=")))


_KEYS: Final[dict[str, list[str]]] = {
    "analytics_events": ["id"],
    "rejected_events": ["source", "row_number", "raw"],
}
"""What makes a row a duplicate of a stored one, per table."""


def _key_hash(columns: list[str]) -> pl.Expr:
    return pl.col(columns[0]).hash() if len(columns) == 1 else pl.struct(columns).hash()


_ID_HASH: Final = _key_hash(_KEYS["analytics_events"])
"""An event id's 64-bit hash, the same in both stores."""


def _by_reason(reasons: pl.Series) -> dict[str, int]:
    """Counts of each reason code, most frequent first."""
    return dict(reasons.value_counts(sort=True).iter_rows())


Origins = Callable[[pl.Series], pl.DataFrame]
"""Given positions in an appended batch, those rows' ``raw`` text, ``source`` and ``row_number`` (quarantine)."""

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
    """Whether two metadata columns hold the same JSON, field for field: texts compared, the few that differ parsed."""
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

    def quarantined(
        self, stored: pl.DataFrame | None, rejected: pl.DataFrame, origins: Origins | None, source: str
    ) -> tuple[pl.DataFrame, pl.Series]:
        """``rejected`` with a ``conflicting_duplicate`` row added for each conflict, and the conflicts' positions."""
        conflicts = self.conflicts(stored)
        if conflicts.len():
            rejected = pl.concat([rejected, _conflict_rows(self.events, conflicts, origins, source)])
        return rejected, conflicts


def _sorted(events: pl.DataFrame) -> _Sorted:
    return _Sorted(events, *_first_per_id(events))


@dataclass(frozen=True, kw_only=True)
class _Batch:
    """What :meth:`Store.append` hands a store: the events sorted out, the rejected rows, and how to answer."""

    own: _Sorted
    rejected: pl.DataFrame
    origins: Origins | None
    source: str
    return_ids: bool


def _digest(*parts: pl.Series) -> str:
    """A short content hash of some columns: the deterministic name of a batch's files."""
    h = hashlib.sha1(usedforsecurity=False)
    for part in parts:
        array = part.cast(pl.String).fill_null("").rechunk().to_arrow()
        for buffer in array.buffers()[1:]:
            if buffer is not None:
                h.update(buffer)
    return h.hexdigest()[:20]


DERIVED_LAYOUT: Final = hashlib.sha1(
    "".join(t.duckdb_ddl() for t in DERIVED_TABLES).encode(), usedforsecurity=False
).hexdigest()[:12]
"""A hash of the derived tables' columns and types: derived tables of another layout are recomputed, not read."""


def data_version(store: Store) -> str:
    """What the derived tables depend on, as text: the stored events, the catalogue and the tables' layout.

    The events are append-only, so their count stands for them; the layout is :data:`DERIVED_LAYOUT`.

    Example:
        >>> from vtp_lab.store import DuckDBStore
        >>> data_version(DuckDBStore())
        '0:...'
    """
    recordings = store.read("recordings")
    return f"{store.count('analytics_events')}:{_digest(*recordings.get_columns())}:{DERIVED_LAYOUT}"
