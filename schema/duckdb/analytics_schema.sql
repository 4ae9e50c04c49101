-- vtp_lab's DuckDB mirror of schema/postgres/005_analytics_schema.sql, plus the recordings
-- catalogue, the quarantine and the load ledger. No indexes: DuckDB's min-max zonemaps serve
-- the filters, and uniqueness of ids is kept by the loader's anti-join.
-- Generated from vtp_lab/tables.py (schema_sql); tests/test_tables.py checks they agree.

CREATE TABLE IF NOT EXISTS analytics_events (
    id UUID NOT NULL,
    event_type VARCHAR NOT NULL,
    recording_id UUID NOT NULL,
    user_id UUID NOT NULL,
    session_id VARCHAR NOT NULL,
    event_timestamp TIMESTAMPTZ NOT NULL,
    metadata JSON
);

CREATE TABLE IF NOT EXISTS playback_sessions (
    id UUID NOT NULL,
    recording_id UUID NOT NULL,
    user_id UUID NOT NULL,
    session_id VARCHAR NOT NULL,
    duration_seconds INTEGER,
    watched_seconds INTEGER NOT NULL,
    completion_rate DOUBLE,
    quality VARCHAR,
    buffer_events INTEGER NOT NULL,
    started_at TIMESTAMPTZ NOT NULL,
    ended_at TIMESTAMPTZ
);

CREATE TABLE IF NOT EXISTS quality_events (
    id UUID NOT NULL,
    session_id VARCHAR NOT NULL,
    recording_id UUID NOT NULL,
    user_id UUID NOT NULL,
    old_quality VARCHAR,
    new_quality VARCHAR,
    old_bitrate INTEGER,
    new_bitrate INTEGER,
    reason VARCHAR,
    quality_timestamp TIMESTAMPTZ NOT NULL
);

CREATE TABLE IF NOT EXISTS engagement_metrics (
    id UUID NOT NULL,
    recording_id UUID NOT NULL,
    user_id UUID NOT NULL,
    total_views INTEGER NOT NULL,
    total_watch_time_seconds INTEGER NOT NULL,
    average_quality VARCHAR,
    buffer_events_total INTEGER NOT NULL,
    engagement_score DOUBLE NOT NULL,
    last_watched TIMESTAMPTZ
);

CREATE TABLE IF NOT EXISTS lecture_statistics (
    id UUID NOT NULL,
    recording_id UUID NOT NULL,
    course_id UUID,
    total_viewers INTEGER NOT NULL,
    unique_viewers INTEGER NOT NULL,
    average_watch_time DOUBLE NOT NULL,
    average_completion_rate DOUBLE,
    quality_distribution STRUCT(quality VARCHAR, "seconds" BIGINT)[] NOT NULL,
    buffer_events_total INTEGER NOT NULL,
    avg_engagement_score DOUBLE NOT NULL
);

CREATE TABLE IF NOT EXISTS course_statistics (
    id UUID NOT NULL,
    course_id UUID NOT NULL,
    total_lectures INTEGER NOT NULL,
    total_unique_students INTEGER NOT NULL,
    average_attendance_rate DOUBLE,
    average_completion_rate DOUBLE,
    engagement_trend VARCHAR,
    most_watched_lectures UUID[],
    struggle_lectures UUID[],
    avg_engagement_score DOUBLE
);

CREATE TABLE IF NOT EXISTS recordings (
    recording_id UUID NOT NULL,
    course_id UUID,
    title VARCHAR,
    duration_seconds DOUBLE,
    published_at TIMESTAMPTZ,
    course_title VARCHAR
);

CREATE TABLE IF NOT EXISTS rejected_events (
    raw VARCHAR NOT NULL,
    source VARCHAR NOT NULL,
    row_number BIGINT NOT NULL,
    reason VARCHAR NOT NULL,
    field VARCHAR,
    rejected_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE IF NOT EXISTS loads (
    load_id UUID NOT NULL,
    source VARCHAR NOT NULL,
    format VARCHAR NOT NULL,
    bytes BIGINT NOT NULL,
    rows_read BIGINT NOT NULL,
    accepted BIGINT NOT NULL,
    rejected BIGINT NOT NULL,
    duplicates BIGINT NOT NULL,
    rejected_by_reason JSON NOT NULL,
    started_at TIMESTAMPTZ NOT NULL,
    finished_at TIMESTAMPTZ NOT NULL,
    error VARCHAR,
    skipped_records BIGINT,
    skipped_by_type JSON,
    watermark TIMESTAMPTZ
);

CREATE TABLE IF NOT EXISTS source_identities (
    id UUID NOT NULL,
    source VARCHAR NOT NULL,
    kind VARCHAR NOT NULL,
    identifier VARCHAR NOT NULL
);
