"""Shared fixtures: canonical ids, a raw-event factory, and a throwaway PostgreSQL server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from servers import PostgresUnavailable, running_postgres, unavailable

ROOT = Path(__file__).resolve().parents[1]
REC = "6ba7b811-9dad-11d1-80b4-00c04fd430c8"
USER = "6ba7b812-9dad-11d1-80b4-00c04fd430c8"
COURSE = "6ba7b814-9dad-11d1-80b4-00c04fd430c8"


def raw_event(**overrides: object) -> dict[str, object]:
    """A valid raw event as a dump would hold it; override or drop (value ...) fields."""
    event: dict[str, object] = {
        "event_type": "playback_started",
        "recording_id": REC,
        "user_id": USER,
        "session_id": "s1",
        "event_timestamp": "2026-09-01T10:00:00Z",
        "metadata": '{"position": 0, "quality": "720p"}',
    }
    event.update(overrides)
    return {k: v for k, v in event.items() if v is not ...}


@pytest.fixture(scope="session")
def postgres() -> Iterator[str]:
    """A PostgreSQL server on loopback for this test session; yields its connection string.

    Skips (with the reason) where no server can be started, except in CI, where it fails.
    """
    try:
        with running_postgres() as dsn:
            yield dsn
    except PostgresUnavailable as exc:
        unavailable(f"PostgreSQL: {exc}")


@pytest.fixture(scope="session")
def spark() -> Iterator[object]:
    """A local SparkSession (two cores, UTC) for this test session.

    Skips (with the reason) where pyspark or Java is missing, except in CI, where it fails.
    """
    try:
        from vtp_lab.spark import session

        spark = session(master="local[2]")
    except ImportError as exc:
        unavailable(f"Spark: {exc}")
    spark.sparkContext.setLogLevel("ERROR")
    yield spark
    spark.stop()
