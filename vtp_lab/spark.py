"""Apache Spark: the derived tables of more events than one machine holds, by the code of :func:`vtp_lab.stats.derive`.

Needs the ``spark`` extra and a Java 17 runtime: ``pip install "vtp-lab[spark]"``.

Stage 1 (:func:`vtp_lab.stats.derive_partition`) runs on the executors, one call per
partition of recordings (``groupBy(...).applyInArrow``): each returns its sessions,
quality events, engagement rows and lecture rows, far smaller than its events. Stage 2
(:func:`vtp_lab.stats.combine`) runs on the driver over those, and the five derived
tables come back as Spark DataFrames with the mirror's columns and types
(:data:`SPARK_TYPES`), or are written as Parquet (:func:`write`).

The executors must run the driver's Python with vtp_lab installed (on a cluster:
``spark-submit --conf spark.pyspark.python=...``; docs/scale.md).

Example:
    >>> SPARK_TYPES["timestamptz"]
    'timestamp'
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import fields
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import polars as pl
import pyarrow as pa

from vtp_lab.sessions import DEFAULT_SESSION_GAP
from vtp_lab.stats import (
    DEFAULT_ATTENDANCE_THRESHOLD,
    DEFAULT_SCORE,
    MATERIALISED,
    Partial,
    combine,
    derive_partition,
)
from vtp_lab.tables import ANALYTICS_EVENTS, RECORDINGS, TABLES, Table

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

__all__ = ["SPARK_TYPES", "derive", "main", "read_lake", "session", "write"]

SPARK_TYPES: Final[Mapping[str, str]] = {
    "uuid": "string",
    "varchar": "string",
    "text": "string",
    "json": "string",
    "quality_secs": "array<struct<quality:string,seconds:bigint>>",
    "timestamptz": "timestamp",
    "integer": "int",
    "bigint": "bigint",
    "double": "double",
    "uuid[]": "array<string>",
}
"""Each column kind of :mod:`vtp_lab.tables` as a Spark SQL type (``timestamp`` is UTC with the session in UTC)."""

_PARTS: Final = "table string, data binary"
"""What a stage-1 call returns: one row per :class:`~vtp_lab.stats.Partial` field, its frame as Arrow IPC."""

_INSTALL: Final = 'the Spark path needs pyspark 4: pip install "vtp-lab[spark]"'


def _java_hint() -> str | None:
    """Why no Java runtime can start, or None if one can."""
    home = os.environ.get("JAVA_HOME")
    if (home and (Path(home) / "bin" / "java").is_file()) or shutil.which("java"):
        return None
    return "Spark needs a Java 17 runtime: install one (Debian: apt install openjdk-17-jre-headless) or set JAVA_HOME"


def session(
    *, master: str = "local[*]", app_name: str = "vtp_lab", config: Mapping[str, str] | None = None
) -> SparkSession:
    """The active SparkSession, or a new one set as vtp_lab needs: UTC, the driver's Python, microsecond Parquet times.

    An existing session (a notebook's, ``spark-submit``'s) is returned as it is, once its
    time zone is UTC. ``config`` adds settings to a new one (``{"spark.driver.memory":
    "8g"}``). A missing pyspark or Java is an ``ImportError`` naming the install.

    Example:
        >>> session(master="local[2]").conf.get("spark.sql.session.timeZone")
        'UTC'
    """
    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:
        raise ImportError(_INSTALL) from exc
    active = SparkSession.getActiveSession()
    if active is not None:
        active.conf.set("spark.sql.session.timeZone", "UTC")
        return active
    hint = _java_hint()
    if hint is not None:
        raise ImportError(hint)
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # the workers run the driver's Python
    builder = SparkSession.builder.master(master).appName(app_name)
    settings = {
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.ui.showConsoleProgress": "false",
        **({"spark.driver.host": "127.0.0.1"} if master.startswith("local") else {}),
        **(config or {}),
    }
    for key, value in settings.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


def _ddl(table: Table) -> str:
    """``table``'s columns as a Spark DDL schema."""
    return ", ".join(f"`{c.name}` {SPARK_TYPES[c.kind]}" for c in table.columns)


def _ipc(frame: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.write_ipc_stream(buffer)
    return buffer.getvalue()


def _frame(data: bytes) -> pl.DataFrame:
    return pl.read_ipc_stream(io.BytesIO(data))


def _stage_one(catalogue: bytes, session_gap: timedelta) -> Callable[[pa.Table], pa.Table]:
    """The function each executor runs on one partition's events: :func:`derive_partition`, its frames as IPC."""

    def stage_one(table: pa.Table) -> pa.Table:
        events = pl.from_arrow(table)
        assert isinstance(events, pl.DataFrame)
        part = derive_partition(ANALYTICS_EVENTS.conform(events), recordings=_frame(catalogue), session_gap=session_gap)
        names = [f.name for f in fields(Partial)]
        return pa.table(
            {"table": names, "data": [_ipc(getattr(part, n)) for n in names]},
            schema=pa.schema([("table", pa.string()), ("data", pa.binary())]),
        )

    return stage_one


def _partials(rows: Iterator[Any]) -> list[Partial]:
    """The stage-1 rows collected on the driver, back into one :class:`Partial` per partition."""
    names = [f.name for f in fields(Partial)]
    found: dict[str, list[pl.DataFrame]] = {n: [] for n in names}
    for row in rows:
        found[row["table"]].append(_frame(row["data"]))
    return [Partial(**dict(zip(names, frames, strict=True))) for frames in zip(*found.values(), strict=True)]


def read_lake(spark: SparkSession, path: str | Path, table: str = "analytics_events") -> DataFrame:
    """One table of a vtp_lab Parquet lake as a Spark DataFrame with the table's columns (a plain Parquet read).

    A table the lake holds no file of yet is an empty DataFrame of its columns.

    Example:
        >>> import tempfile
        >>> from vtp_lab.recordings import read_recordings
        >>> from vtp_lab.store import ParquetLake
        >>> lake = ParquetLake(tempfile.mkdtemp())
        >>> lake.write_recordings(read_recordings("data/recordings.csv"))
        >>> read_lake(session(), lake.root, "recordings").count(), read_lake(session(), lake.root).count()
        (36, 0)
    """
    spec = TABLES[table]
    folder = Path(path) / spec.name
    if not any(folder.rglob("*.parquet")):
        return spark.createDataFrame([], schema=_ddl(spec))
    return spark.read.parquet(str(folder)).select(*[f"`{c}`" for c in spec.column_names])


def derive(
    events: DataFrame | str | Path,
    *,
    spark: SparkSession | None = None,
    recordings: pl.DataFrame | None = None,
    partitions: int | None = None,
    score: pl.Expr = DEFAULT_SCORE,
    attendance_threshold: float = DEFAULT_ATTENDANCE_THRESHOLD,
    session_gap: timedelta = DEFAULT_SESSION_GAP,
) -> dict[str, DataFrame]:
    """The five derived tables of ``events`` (a Spark DataFrame of ``analytics_events``, or a lake's path), on Spark.

    Each table has the mirror's columns and types and equals what
    :func:`vtp_lab.stats.derive` gives on the same events. ``recordings`` is the
    loaded catalogue (read from the lake when ``events`` is a lake's path).
    ``partitions`` cuts the recordings into that many stage-1 calls (default: four per
    core of the cluster); ``session_gap`` cuts the sessions of events that came without
    one, as :func:`vtp_lab.sessions.cut_sessions` does.

    Example:
        >>> from vtp_lab.synth import semester
        >>> events = semester(courses=1, lectures_per_course=2, students=3, seed=1).events
        >>> tables = derive(_to_spark(session(), events, ANALYTICS_EVENTS), partitions=2)
        >>> tables["lecture_statistics"].count(), tables["course_statistics"].count()
        (2, 1)
    """
    from pyspark.sql import functions as F

    spark = spark or session()
    if not isinstance(events, str | Path):
        frame = events.select(*[f"`{c}`" for c in ANALYTICS_EVENTS.column_names])
    else:
        frame = read_lake(spark, events)
        if recordings is None and (Path(events) / "recordings").is_dir():
            recordings = pl.from_arrow(read_lake(spark, events, "recordings").toArrow())  # type: ignore[assignment]
    catalogue = RECORDINGS.conform(recordings if recordings is not None else RECORDINGS.empty())
    n = partitions or 4 * spark.sparkContext.defaultParallelism
    staged = (
        frame.withColumn("_part", F.pmod(F.hash("recording_id"), F.lit(n)))
        .groupBy("_part")
        .applyInArrow(_stage_one(_ipc(catalogue), session_gap), schema=_PARTS)
    )
    parts = _partials(staged.toLocalIterator())
    if not parts:
        parts = [derive_partition(ANALYTICS_EVENTS.empty(), recordings=catalogue, session_gap=session_gap)]
    derived = combine(parts, score=score, attendance_threshold=attendance_threshold)
    return {name: _to_spark(spark, getattr(derived, name), TABLES[name]) for name in MATERIALISED}


def _plain(kind: pa.DataType) -> pa.DataType:
    """``kind`` with plain strings and lists at every depth (Spark reads no large or view types)."""
    if pa.types.is_large_string(kind) or pa.types.is_string_view(kind):
        return pa.string()
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_list_view(kind):
        return pa.list_(_plain(kind.value_type))
    if pa.types.is_struct(kind):
        return pa.struct([field.with_type(_plain(field.type)) for field in kind])
    return kind


def _to_spark(spark: SparkSession, frame: pl.DataFrame, table: Table) -> DataFrame:
    """A polars frame of ``table`` as a Spark DataFrame of the mirror's types (Spark reads no large or view strings)."""
    arrow = table.conform(frame).to_arrow()
    plain = pa.schema([f.with_type(_plain(f.type)) for f in arrow.schema])
    if not arrow.num_rows:  # Spark cannot make a DataFrame of an empty Arrow table
        return spark.createDataFrame([], schema=_ddl(table))
    return spark.createDataFrame(arrow.cast(plain), schema=_ddl(table))


def write(tables: Mapping[str, DataFrame], path: str | Path, *, mode: str = "overwrite") -> list[Path]:
    """Write each table as Parquet under ``path/<name>`` (times as UTC microseconds); return the folders.

    Example:
        >>> import tempfile
        >>> tables = {"recordings": read_lake(session(), tempfile.mkdtemp(), "recordings")}
        >>> [folder.name for folder in write(tables, tempfile.mkdtemp())]
        ['recordings']
    """
    written = []
    for name, frame in tables.items():
        folder = Path(path) / name
        frame.write.mode(mode).option("compression", "zstd").parquet(str(folder))
        written.append(folder)
    return written


def main(argv: Sequence[str] | None = None) -> list[Path]:
    """``spark-submit vtp_lab/spark.py LAKE OUT``: a lake's five derived tables, computed on the cluster, as Parquet.

    Example:
        >>> import tempfile
        >>> folders = main([tempfile.mkdtemp(), tempfile.mkdtemp(), "--partitions", "2"])
        /.../playback_sessions: 0 rows
        ...
        /.../course_statistics: 0 rows
    """
    parser = argparse.ArgumentParser(prog="vtp_lab/spark.py", description=main.__doc__)
    parser.add_argument("lake", help="a vtp_lab Parquet lake (its folder)")
    parser.add_argument("out", help="where the tables go, a folder each")
    parser.add_argument("--partitions", type=int, default=None, help="stage-1 calls (default: four per core)")
    args = parser.parse_args(argv)
    spark = session()
    folders = write(derive(args.lake, spark=spark, partitions=args.partitions), args.out)
    for folder in folders:
        print(f"{folder}: {spark.read.parquet(str(folder)).count():,} rows")
    return folders


if __name__ == "__main__":
    main()
