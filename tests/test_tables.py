"""The table declarations agree with both schema files, DuckDB, PostgreSQL, Arrow and pandera."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pandera.errors
import polars as pl
import pytest
from conftest import REC, ROOT, USER

from vtp_lab.duck import connect
from vtp_lab.tables import (
    ANALYTICS_EVENTS,
    ANALYTICS_TABLES,
    ENGAGEMENT_METRICS,
    LECTURE_STATISTICS,
    PLAYBACK_SESSIONS,
    QUALITY_SECONDS,
    RECORDINGS,
    TABLES,
    schema_sql,
)

PG_FILE = ROOT / "schema/postgres/005_analytics_schema.sql"
DUCK_FILE = ROOT / "schema/duckdb/analytics_schema.sql"


def parse_tables(sql: str) -> dict[str, dict[str, str]]:
    """{table: {column: type as written}} from CREATE TABLE statements."""
    tables = {}
    for name, body in re.findall(r"CREATE TABLE IF NOT EXISTS (\w+) \((.*?)\n\);", sql, re.S):
        cols = {}
        for line in body.strip().splitlines():
            col, rest = line.strip().rstrip(",").split(" ", 1)
            cols[col] = re.sub(r" (PRIMARY KEY|NOT NULL)", "", rest)
        tables[name] = cols
    return tables


def parse_indexes(sql: str) -> dict[str, list[tuple[bool, str]]]:
    out: dict[str, list[tuple[bool, str]]] = {}
    for unique, table, cols in re.findall(r"CREATE (UNIQUE )?INDEX IF NOT EXISTS \w+ ON (\w+) \(([^)]*)\);", sql):
        out.setdefault(table, []).append((bool(unique), cols))
    return out


def test_files_are_what_the_declarations_generate():
    assert PG_FILE.read_text() == schema_sql("postgres")
    assert DUCK_FILE.read_text() == schema_sql("duckdb")


@pytest.mark.parametrize("table", ANALYTICS_TABLES, ids=lambda t: t.name)
def test_postgres_file_matches_declaration_through_type_mapping(table):
    parsed = parse_tables(PG_FILE.read_text())[table.name]
    assert list(parsed) == list(table.column_names)
    assert parsed == {c.name: c.postgres_type for c in table.columns}


@pytest.mark.parametrize("table", TABLES.values(), ids=lambda t: t.name)
def test_duckdb_file_matches_declaration_through_type_mapping(table):
    parsed = parse_tables(DUCK_FILE.read_text())[table.name]
    assert parsed == {c.name: c.duckdb_type for c in table.columns}


def test_postgres_and_duckdb_files_have_the_same_six_tables_and_columns():
    pg, duck = parse_tables(PG_FILE.read_text()), parse_tables(DUCK_FILE.read_text())
    assert list(pg) == [t.name for t in ANALYTICS_TABLES]
    for name, cols in pg.items():
        assert list(duck[name]) == list(cols)


def test_postgres_indexes_follow_the_design_note():
    idx = parse_indexes(PG_FILE.read_text())
    assert {t: len(v) for t, v in idx.items()} == {
        "analytics_events": 4,
        "playback_sessions": 3,
        "quality_events": 2,
        "engagement_metrics": 1,
        "lecture_statistics": 2,
        "course_statistics": 1,
    }
    assert (True, "user_id, recording_id") in idx["engagement_metrics"]
    assert (True, "recording_id") in idx["lecture_statistics"]
    assert (True, "course_id") in idx["course_statistics"]


def test_duckdb_ddl_applies_and_types_round_trip():
    con = connect()
    con.execute(DUCK_FILE.read_text())
    for table in TABLES.values():
        described = con.execute(f"DESCRIBE {table.name}").fetchall()
        spelled = {"TIMESTAMP WITH TIME ZONE": "TIMESTAMPTZ"}
        assert [(r[0], spelled.get(r[1], r[1])) for r in described] == [(c.name, c.duckdb_type) for c in table.columns]
        back = con.sql(f"SELECT * FROM {table.name}").pl()
        assert table.conform(back).schema == table.polars_schema


def test_arrow_schema_matches_polars_schema_and_nullability():
    for table in TABLES.values():
        schema = table.arrow_schema
        assert schema.names == list(table.column_names)
        assert pl.DataFrame(schema=table.polars_schema).to_arrow().schema.types == schema.types
        assert [f.nullable for f in schema] == [c.nullable for c in table.columns]


def test_pandera_model_checks_types_nulls_and_canonical_uuids():
    good = ANALYTICS_EVENTS.conform(
        pl.DataFrame(
            {
                "id": [REC],
                "event_type": ["buffer_end"],
                "recording_id": [REC],
                "user_id": [USER],
                "session_id": ["s"],
                "event_timestamp": [datetime(2026, 9, 1, tzinfo=UTC)],
            }
        )
    )
    assert ANALYTICS_EVENTS.model.validate(good).height == 1
    with pytest.raises(pandera.errors.SchemaError):
        ANALYTICS_EVENTS.model.validate(good.with_columns(pl.lit(REC.upper()).alias("user_id")))
    with pytest.raises(pandera.errors.SchemaError):
        ANALYTICS_EVENTS.model.validate(good.with_columns(pl.lit(None, pl.String).alias("session_id")))
    with pytest.raises(pandera.errors.SchemaError):
        RECORDINGS.model.validate(good)


def test_postgres_ddl_applies_to_a_real_server(postgres):
    psycopg = pytest.importorskip("psycopg")
    with psycopg.connect(postgres, autocommit=True) as con:
        con.execute("DROP SCHEMA IF EXISTS ddl_check CASCADE; CREATE SCHEMA ddl_check; SET search_path TO ddl_check")
        con.execute(PG_FILE.read_text())
        con.execute(PG_FILE.read_text())  # idempotent
        rows = con.execute(
            "SELECT table_name, column_name, data_type, udt_name, character_maximum_length "
            "FROM information_schema.columns WHERE table_schema = 'ddl_check' ORDER BY table_name, ordinal_position"
        ).fetchall()
        n_indexes = con.execute(
            "SELECT count(*) FROM pg_indexes WHERE schemaname = 'ddl_check' AND indexname LIKE 'idx_%'"
        ).fetchone()
    pg_names = {
        "uuid": "uuid",
        "character varying": "varchar",
        "timestamp with time zone": "timestamptz",
        "jsonb": "json",
        "integer": "integer",
        "double precision": "double",
        "ARRAY": "uuid[]",
        "text": "text",
    }
    got: dict[str, list[tuple[str, str, int | None]]] = {}
    for table, column, data_type, udt, length in rows:
        kind = pg_names[data_type]
        if kind == "uuid[]":
            assert udt == "_uuid"
        got.setdefault(table, []).append((column, kind, length))
    for table in ANALYTICS_TABLES:
        mirrored = {"quality_secs": "json"}  # typed in frames, a JSON object in PostgreSQL
        assert got[table.name] == [(c.name, mirrored.get(c.kind, c.kind), c.length) for c in table.columns]
    assert n_indexes == (13,)


def test_the_model_checks_every_column_rule_in_one_pass() -> None:
    """NaN is no value in a NOT NULL double and allowed in a nullable one; the error lists the rules."""
    row = {
        "id": REC,
        "recording_id": REC,
        "user_id": USER,
        "total_views": 1,
        "total_watch_time_seconds": 1,
        "buffer_events_total": 0,
        "engagement_score": 0.5,
    }
    good = ENGAGEMENT_METRICS.conform(pl.DataFrame([row]))
    assert ENGAGEMENT_METRICS.model.validate(good).height == 1
    assert [c.name for c in ENGAGEMENT_METRICS.model.to_schema().checks] == ["contract"]
    with pytest.raises(pandera.errors.SchemaError, match="engagement_score: not null"):
        ENGAGEMENT_METRICS.model.validate(good.with_columns(pl.lit(float("nan")).alias("engagement_score")))
    rate = next(c for c in PLAYBACK_SESSIONS.columns if c.name == "completion_rate")
    assert rate.nullable
    assert pl.DataFrame({"completion_rate": [float("nan"), None, 0.5]}).select(rate.valid).to_series().all()


def test_the_typed_quality_seconds_become_json_objects_for_postgresql_whatever_the_quality_text():
    """Any quality the contract accepts (quotes, backslashes, line breaks, control characters) is valid JSON text."""
    qualities = ['4K "HDR"', "a\\b", "a\r\nb", "\x01\x1f", "é\u2028", ""]
    typed = pl.DataFrame(
        {"quality_distribution": [[{"quality": q, "seconds": i} for i, q in enumerate(qualities)]]},
        schema={"quality_distribution": QUALITY_SECONDS},
    )
    text = LECTURE_STATISTICS.mirror_text(typed).item()
    assert json.loads(text) == {q: i for i, q in enumerate(qualities)}
