"""The platform's PostgreSQL, both ways: its events table read as raw batches, derived tables upserted into it.

Needs the ``postgres`` extra, ADBC's PostgreSQL driver: ``pip install "vtp-lab[postgres]"``.
A server is named by a ``postgresql://`` URI; what the URI leaves out (user, host, port,
database, password) comes from the standard ``PG*`` variables and ``~/.pgpass``, as in
``psql``. A password never appears in a report, the ledger or an error: vtp_lab names a
server by :func:`redacted`.

Reading streams Arrow batches (the driver reads the result by binary ``COPY``), typed as
the server holds them and validated as a Parquet file's rows are, each numbered by its
place in the table (``ctid``: block * 65536 + item), so a row quarantined twice is kept
once. Publishing stages each table with the driver's bulk ingestion (binary ``COPY``) and
upserts it on the table's key, every table in one transaction.

Example:
    >>> redacted("postgresql://ana:s3cret@db.example.org:5432/vtp?sslmode=require")
    'postgresql://ana@db.example.org:5432/vtp?sslmode=require'
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import polars as pl
import pyarrow as pa

from vtp_lab.errors import PostgresError
from vtp_lab.io import RawBatch, typed_rows
from vtp_lab.tables import TABLES, Table

__all__ = [
    "DEFAULT_OVERLAP",
    "INSTALL",
    "PostgresSource",
    "is_postgres",
    "quoted",
    "read_table",
    "redacted",
    "server_state",
    "upsert",
]

_SCHEMES: Final = ("postgresql://", "postgres://")

INSTALL: Final = 'PostgreSQL needs ADBC\'s driver: pip install "vtp-lab[postgres]"'
"""The one-line hint given where the driver is missing."""

DEFAULT_OVERLAP: Final = timedelta(days=1)
"""How far before the last load's watermark a later load of the same table reads again (late events)."""


def is_postgres(path: object) -> bool:
    """Whether ``path`` names a PostgreSQL server (a ``postgresql://`` URI) rather than a file.

    Example:
        >>> is_postgres("postgresql:///vtp"), is_postgres("events.ndjson")
        (True, False)
    """
    return isinstance(path, str) and path.startswith(_SCHEMES)


def redacted(url: str) -> str:
    """``url`` without its password (in the user part or as a ``password`` parameter).

    Example:
        >>> redacted("postgresql://ana:pw@localhost/vtp?password=pw&application_name=x")
        'postgresql://ana@localhost/vtp?application_name=x'
    """
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)
    if len(netloc) == 2:
        netloc = [netloc[0].split(":", 1)[0], netloc[1]]
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query) if k != "password"])
    return urlunsplit(parts._replace(netloc="@".join(netloc), query=query))


def _secrets(url: str) -> list[str]:
    """The passwords ``url`` and the environment hold, as given and percent-decoded."""
    parts = urlsplit(url)
    found = [parts.password or "", *(v for k, v in parse_qsl(parts.query) if k == "password")]
    found.append(os.environ.get("PGPASSWORD", ""))
    return sorted({s for raw in found if raw for s in (raw, unquote(raw))}, key=len, reverse=True)


def _message(exc: BaseException, url: str) -> str:
    """The driver's message on one line, without the URL's or the environment's password."""
    text = " ".join(str(exc).split()).removeprefix("IO: ").removeprefix("[libpq] ").removeprefix("Failed to connect: ")
    for secret in _secrets(url):
        text = text.replace(secret, "***")
    return text


def quoted(name: str) -> str:
    """A table name (``table`` or ``schema.table``) as quoted SQL identifiers.

    Example:
        >>> print(quoted('vtp.my "x" events'))
        "vtp"."my ""x"" events"
    """
    return ".".join('"' + part.replace('"', '""') + '"' for part in name.split("."))


@contextmanager
def _connected(url: str) -> Iterator[Any]:
    """A connection (ADBC, not autocommit) to ``url``'s server, closed afterwards; errors as :class:`PostgresError`."""
    try:
        import adbc_driver_manager
        import adbc_driver_postgresql.dbapi as adbc
    except ImportError:
        raise PostgresError(INSTALL) from None
    try:
        con = adbc.connect(url)
    except adbc_driver_manager.Error as exc:
        raise PostgresError(
            f"cannot connect to {redacted(url)}: {_message(exc, url)}. Check the URI, the PG* variables and ~/.pgpass"
        ) from None
    try:
        yield con
    except adbc_driver_manager.Error as exc:
        raise PostgresError(f"{redacted(url)}: {_message(exc, url)}") from None
    finally:
        con.close()


@dataclass(frozen=True, kw_only=True)
class PostgresSource:
    """A table of a server to load events from, and the event time to read from (None: every row).

    Example:
        >>> PostgresSource(url="postgresql://ana:pw@db/vtp").name
        'postgresql://ana@db/vtp#analytics_events'
    """

    url: str
    table: str = "analytics_events"
    since: datetime | None = None

    @property
    def name(self) -> str:
        """How reports, the ledger and the quarantine name it: the URI without its password, then ``#table``."""
        return f"{redacted(self.url)}#{self.table}"


def server_state(source: PostgresSource) -> tuple[datetime, int]:
    """The server's clock now (the load's watermark) and the table's size in bytes (for the progress bar).

    Raises :class:`PostgresError` if the server cannot be reached or has no such table.

    Example:
        >>> server_state(PostgresSource(url="postgresql://nobody@127.0.0.1:1/none"))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        vtp_lab.errors.PostgresError: cannot connect to postgresql://nobody@127.0.0.1:1/none: ...
    """
    with _connected(source.url) as con, con.cursor() as cur:
        query = "SELECT now(), to_regclass($1)::text, pg_total_relation_size(to_regclass($1))"
        cur.execute(query, (quoted(source.table),))
        now, found, size = cur.fetchone()
        con.rollback()
    if found is None:
        raise PostgresError(
            f"{redacted(source.url)} has no table {source.table!r}; name the events table with table= (--table)"
        )
    return now, int(size or 0)


_CTID: Final = "_vtp_lab_ctid"
"""The name the row's ``ctid`` (its place in the table) is read under."""


def read_table(source: PostgresSource) -> Iterator[RawBatch]:
    """The table's rows (with ``event_timestamp`` at or after ``since``) as raw batches, streamed.

    The columns come as the server types them (UUIDs, ``TIMESTAMPTZ``, ``JSONB`` as its
    text) and are validated as a Parquet file's are; a row's number is its place in the
    table, from its ``ctid``: ``block * 65536 + item``. The batches are the driver's.

    Example:
        >>> next(read_table(PostgresSource(url="postgresql://nobody@127.0.0.1:1/none")))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        vtp_lab.errors.PostgresError: cannot connect to ...
    """
    query = f"SELECT t.*, t.ctid::text AS {_CTID} FROM {quoted(source.table)} AS t"
    params: tuple[Any, ...] = ()
    if source.since is not None:
        query, params = query + " WHERE t.event_timestamp >= $1", (source.since,)
    read = 0
    with _connected(source.url) as con, con.cursor() as cur:
        cur.execute(query, params or None)
        for batch in cur.fetch_record_batch():
            read += batch.nbytes
            place = pl.Series(batch.column(_CTID)).str.extract_groups(r"^\((\d+),(\d+)\)$").struct
            rows = place.field("1").cast(pl.Int64) * 65536 + place.field("2").cast(pl.Int64)
            yield typed_rows(batch.drop_columns([_CTID]), rows, source=source.name, bytes_read=read)
        con.rollback()


def _staged(frame: pl.DataFrame, table: Table) -> pa.Table:
    """``frame``'s columns of ``table`` for the driver's ingestion: text where PostgreSQL casts (UUID, JSONB)."""
    return table.mirror_text(frame.select(c.name for c in table.columns)).to_arrow(compat_level=pl.CompatLevel.oldest())


def _key(table: Table) -> tuple[str, ...]:
    """The columns an upsert matches rows on: the table's unique index, else its id."""
    return next((ix.columns for ix in table.indexes if ix.unique), ("id",))


def upsert(url: str, frames: Mapping[str, pl.DataFrame], *, schema: str | None = None) -> dict[str, int]:
    """Insert or update the rows of each frame into the server's table of its name, all in one transaction.

    A row matches a stored one on the table's key (its unique index, else ``id``) and
    replaces its columns, the stored ``id`` kept; publishing twice leaves one copy of each
    row. Each table is staged by the driver's bulk ingestion into a temporary table, then
    upserted by one statement; an error (or the end of the process) before the commit
    leaves every table as it was. Returns the rows written per table.

    Example:
        >>> upsert("postgresql://nobody@127.0.0.1:1/none", {})  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        vtp_lab.errors.PostgresError: cannot connect to ...
    """
    written = {}
    with _connected(url) as con, con.cursor() as cur:
        for name, frame in frames.items():
            table = TABLES[name]
            target = quoted(f"{schema}.{name}" if schema else name)
            staging = f"vtp_lab_{name}"
            cur.adbc_ingest(staging, _staged(frame, table), mode="replace", temporary=True)
            columns = ", ".join(c.name for c in table.columns)
            values = ", ".join(f"{c.name}::{c.postgres_type}" for c in table.columns)
            key = _key(table)
            updates = ", ".join(f"{c.name} = EXCLUDED.{c.name}" for c in table.columns if c.name not in {*key, "id"})
            cur.execute(
                f"INSERT INTO {target} ({columns}) SELECT {values} FROM pg_temp.{staging} "
                f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates}"
            )
            written[name] = frame.height
            cur.execute(f"DROP TABLE pg_temp.{staging}")
        con.commit()
    return written
