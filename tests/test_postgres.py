"""The platform's PostgreSQL both ways, against a real server on loopback: load (incremental, late rows), publish."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from conftest import REC, ROOT, USER
from servers import PASSWORD_ROLE, copy_csv_exports, url_of

from vtp_lab.cli import main
from vtp_lab.errors import PostgresError
from vtp_lab.export import PUBLISHED
from vtp_lab.io import write_events
from vtp_lab.lab import Lab
from vtp_lab.postgres import INSTALL, PostgresSource, server_state
from vtp_lab.synth import semester

psycopg = pytest.importorskip("psycopg")


@pytest.fixture(scope="module")
def sem():
    return semester(courses=1, lectures_per_course=3, students=6, seed=11)


def events_schema(postgres: str, schema: str, lab: Lab, tmp_path: Path) -> None:
    """``schema`` afresh with schema 005, its events table holding ``lab``'s events (COPY of the CSV export)."""
    written = lab.export_csv(tmp_path / schema, tables=["analytics_events"])
    with psycopg.connect(postgres, autocommit=True) as con:
        copy_csv_exports(con, schema, written)


def insert(postgres: str, table: str, rows: list[dict[str, object]]) -> None:
    with psycopg.connect(postgres, autocommit=True) as con:
        for row in rows:
            con.execute(
                f"INSERT INTO {table} (id, event_type, recording_id, user_id, session_id, event_timestamp, metadata) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (
                    row.get("id", str(uuid.uuid4())),
                    row["event_type"],
                    row.get("recording_id", REC),
                    row.get("user_id", USER),
                    row.get("session_id", "pg-s1"),
                    row["event_timestamp"],
                    json.dumps(row.get("metadata", {})),
                ),
            )


def buffer_end(at: datetime) -> dict[str, object]:
    return {"event_type": "buffer_end", "event_timestamp": at, "metadata": {"position": 12.5, "duration_ms": 800}}


def test_load_accounts_for_every_row_then_reads_only_new_and_late_rows(postgres, sem, tmp_path):
    source = Lab(":memory:")
    source.load(write_events(sem.events, tmp_path / "sem.ndjson"), progress=False)
    events_schema(postgres, "vl_load", source, tmp_path)
    table = "vl_load.analytics_events"
    broken = [  # each passes PostgreSQL's column types but breaks the contract
        {"event_type": "teleported", "event_timestamp": datetime(2026, 9, 2, tzinfo=UTC)},
        {"event_type": "buffer_end", "event_timestamp": datetime(2026, 9, 2, tzinfo=UTC), "metadata": {"position": -5}},
        {**buffer_end(datetime(2026, 9, 2, tzinfo=UTC)), "user_id": "00000000-0000-0000-0000-000000000000"},
        buffer_end(datetime.now(UTC) + timedelta(days=30)),
    ]
    insert(postgres, table, broken)
    url = url_of(postgres)

    lab = Lab(tmp_path / "lab.duckdb")
    first = lab.load(url, table=table, progress=False)
    assert first.rows_read == sem.events.height + 4
    assert (first.accepted, first.rejected) == (sem.events.height, 4)
    assert first.rows_read == first.accepted + first.rejected + first.duplicates
    assert sorted(first.rejected_by_reason) == [
        "future_timestamp",
        "invalid_metadata",
        "nil_uuid",
        "unknown_event_type",
    ]
    ledger = lab.loads()
    assert ledger["source"].to_list() == [f"{url}#{table}"] and ledger["format"].item() == "postgresql"
    watermark = ledger["watermark"].item()
    assert abs(watermark - datetime.now(UTC)) < timedelta(minutes=5)

    new = [buffer_end(datetime.now(UTC)) for _ in range(3)]
    late = [buffer_end(watermark - timedelta(hours=3)) for _ in range(2)]  # inserted after, but older than it
    too_late = [buffer_end(watermark - timedelta(days=3))]  # older than the overlap: not read again
    insert(postgres, table, new + late + too_late)
    again = lab.load(url, table=table, progress=False)
    assert again.accepted == len(new) + len(late)
    assert again.rows_read == again.accepted + again.rejected + again.duplicates
    assert again.rejected == 0 and again.duplicates == 1  # the future row, read again: quarantined once
    assert lab.count("rejected_events") == 4
    assert lab.count("analytics_events") == sem.events.height + 5

    since = lab.load(url, table=table, since=watermark - timedelta(days=4), progress=False)
    assert since.accepted == 1  # an explicit start reads what the overlap left
    everything = lab.load(url, table=table, since=datetime(2000, 1, 1, tzinfo=UTC), progress=False)
    assert everything.accepted == 0 and everything.duplicates == everything.rows_read

    stored = lab.events().sort("id")
    expected = source.events().sort("id")
    stored = stored.filter(pl.col("id").is_in(expected["id"].implode()))
    assert stored.drop("metadata").equals(expected.drop("metadata"))
    as_dicts = [[json.loads(m) for m in frame["metadata"]] for frame in (stored, expected)]
    assert as_dicts[0] == as_dicts[1]  # JSONB keeps the members, in its own order


def test_cli_loads_a_table_and_publishes(postgres, sem, tmp_path, capsys):
    source = Lab(":memory:")
    source.load(write_events(sem.events, tmp_path / "sem.ndjson"), progress=False)
    events_schema(postgres, "vl_cli", source, tmp_path)
    store = str(tmp_path / "cli.duckdb")
    url = url_of(postgres)
    assert main(["load", url, "--table", "vl_cli.analytics_events", "--store", store, "--no-progress"]) == 0
    assert f"{sem.events.height:,}" in capsys.readouterr().out
    assert main(["publish", url, "--schema", "vl_cli", "--store", store]) == 0
    assert "playback_sessions" in capsys.readouterr().out
    with psycopg.connect(postgres) as con:
        assert con.execute("SELECT count(*) FROM vl_cli.playback_sessions").fetchone()[0] > 0
    assert main(["load", url, "--table", "nowhere", "--store", store]) == 1
    assert "has no table 'nowhere'" in capsys.readouterr().err


def server_tables(postgres: str, schema: str) -> dict[str, list[tuple[object, ...]]]:
    with psycopg.connect(postgres) as con:
        return {name: sorted(con.execute(f"SELECT * FROM {schema}.{name}").fetchall(), key=str) for name in PUBLISHED}


def test_publish_upserts_once_and_a_failed_or_killed_publish_changes_nothing(postgres, sem, tmp_path):
    lab = Lab(tmp_path / "pub.duckdb")
    lab.load(write_events(sem.events, tmp_path / "sem.ndjson"), progress=False)
    events_schema(postgres, "vl_pub", lab, tmp_path)
    url = url_of(postgres)
    written = lab.publish(url, schema="vl_pub")
    derived = lab.derived()
    assert written == {name: getattr(derived, name).height for name in PUBLISHED}
    once = server_tables(postgres, "vl_pub")
    assert {name: len(rows) for name, rows in once.items()} == written
    assert lab.publish(url, schema="vl_pub") == written
    assert server_tables(postgres, "vl_pub") == once  # upserted: one copy of each row, the same values

    with psycopg.connect(postgres) as con:
        sessions = dict(con.execute("SELECT id::text, watched_seconds FROM vl_pub.playback_sessions").fetchall())
    assert sessions == dict(derived.playback_sessions.select("id", "watched_seconds").iter_rows())

    with psycopg.connect(postgres, autocommit=True) as con:  # the last table cannot take the rows: all is undone
        con.execute("ALTER TABLE vl_pub.course_statistics ADD CHECK (total_lectures < 0) NOT VALID")
    more = Lab(tmp_path / "more.duckdb")
    more.load(
        write_events(semester(courses=2, lectures_per_course=2, students=4, seed=3).events, tmp_path / "m.ndjson"),
        progress=False,
    )
    with pytest.raises(PostgresError, match="course_statistics") as failed:
        more.publish(url, schema="vl_pub")
    assert "\n" not in str(failed.value)
    assert server_tables(postgres, "vl_pub") == once
    with psycopg.connect(postgres, autocommit=True) as con:
        con.execute("ALTER TABLE vl_pub.course_statistics DROP CONSTRAINT course_statistics_total_lectures_check")

    more.close()
    with psycopg.connect(postgres) as blocker:  # holds the last table, so the publish waits inside its transaction
        blocker.execute("LOCK TABLE vl_pub.course_statistics IN ACCESS EXCLUSIVE MODE")
        code = f"from vtp_lab.lab import Lab; Lab({str(tmp_path / 'more.duckdb')!r}).publish({url!r}, schema='vl_pub')"
        child = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT)
        try:
            waited = 0.0
            while waited < 120:
                with psycopg.connect(postgres) as watcher:
                    query = "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = '{}'::regclass"
                    (waiting,) = watcher.execute(query.format("vl_pub.course_statistics")).fetchone()
                if waiting or child.poll() is not None:
                    break
                time.sleep(0.2)
                waited += 0.2
            assert waiting, "the publish never reached the last table"
            os.kill(child.pid, signal.SIGKILL)
            child.wait()
        finally:
            if child.poll() is None:
                child.kill()
        blocker.rollback()
    assert server_tables(postgres, "vl_pub") == once  # the killed publish's transaction is gone


def test_wrong_password_is_one_clear_line_without_it_and_pgpass_works(postgres, tmp_path, monkeypatch):
    with psycopg.connect(postgres, autocommit=True) as con:
        con.execute(f"DROP ROLE IF EXISTS {PASSWORD_ROLE}")
        con.execute(f"CREATE ROLE {PASSWORD_ROLE} LOGIN SUPERUSER PASSWORD 'right-horse-battery'")
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "nothing"))
    wrong = url_of(postgres, user=PASSWORD_ROLE, password="wr0ng-s3cret")
    lab = Lab(tmp_path / "pw.duckdb")
    with pytest.raises(PostgresError) as caught:
        lab.load(wrong, progress=False)
    message = str(caught.value)
    assert "wr0ng-s3cret" not in message and "\n" not in message
    assert "password authentication failed" in message and url_of(postgres, user=PASSWORD_ROLE) in message
    assert lab.count("loads") == 0
    with pytest.raises(PostgresError) as published:
        lab.publish(wrong)
    assert "wr0ng-s3cret" not in str(published.value)

    plain = url_of(postgres, user=PASSWORD_ROLE)
    kv = dict(part.split("=", 1) for part in postgres.split())
    pgpass = tmp_path / "pgpass"
    pgpass.write_text(f"{kv['host']}:{kv['port']}:*:{PASSWORD_ROLE}:right-horse-battery\n")
    pgpass.chmod(0o600)
    monkeypatch.setenv("PGPASSFILE", str(pgpass))
    assert server_state(PostgresSource(url=plain, table="pg_catalog.pg_class"))[1] > 0
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "nothing"))
    monkeypatch.setenv("PGPASSWORD", "right-horse-battery")
    assert server_state(PostgresSource(url=plain, table="pg_catalog.pg_class"))[1] > 0
    right = url_of(postgres, user=PASSWORD_ROLE, password="right-horse-battery")
    monkeypatch.delenv("PGPASSWORD")
    with pytest.raises(PostgresError) as missing:
        lab.load(right, table="no_such_table", progress=False)
    assert "right-horse-battery" not in str(missing.value)


def test_a_missing_driver_is_the_one_line_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "adbc_driver_postgresql.dbapi", None)
    with pytest.raises(PostgresError) as caught:
        server_state(PostgresSource(url="postgresql:///x"))
    assert str(caught.value) == INSTALL and 'pip install "vtp-lab[postgres]"' in INSTALL
