-- The platform's PostgreSQL analytics schema (migration 005): six tables and their indexes,
-- with the columns of vtp_lab's spec sections 1, 3 and 4.
-- The design note lists indexes per table (4 + 3 + 2 + 1 + 2 + 1 = 13); its summary line
-- says 11. The per-table lists are followed here.
-- Generated from vtp_lab/tables.py (schema_sql); tests/test_tables.py checks they agree.

CREATE TABLE IF NOT EXISTS analytics_events (
    id UUID PRIMARY KEY,
    event_type VARCHAR(50) NOT NULL,
    recording_id UUID NOT NULL,
    user_id UUID NOT NULL,
    session_id VARCHAR(255) NOT NULL,
    event_timestamp TIMESTAMPTZ NOT NULL,
    metadata JSONB
);
CREATE INDEX IF NOT EXISTS idx_analytics_events_recording_id ON analytics_events (recording_id);
CREATE INDEX IF NOT EXISTS idx_analytics_events_user_id ON analytics_events (user_id);
CREATE INDEX IF NOT EXISTS idx_analytics_events_event_type ON analytics_events (event_type);
CREATE INDEX IF NOT EXISTS idx_analytics_events_event_timestamp ON analytics_events (event_timestamp);

CREATE TABLE IF NOT EXISTS playback_sessions (
    id UUID PRIMARY KEY,
    recording_id UUID NOT NULL,
    user_id UUID NOT NULL,
    session_id VARCHAR(255) NOT NULL,
    duration_seconds INTEGER,
    watched_seconds INTEGER NOT NULL,
    completion_rate DOUBLE PRECISION,
    quality VARCHAR(20),
    buffer_events INTEGER NOT NULL,
    started_at TIMESTAMPTZ NOT NULL,
    ended_at TIMESTAMPTZ
);
CREATE INDEX IF NOT EXISTS idx_playback_sessions_recording_id ON playback_sessions (recording_id);
CREATE INDEX IF NOT EXISTS idx_playback_sessions_user_id ON playback_sessions (user_id);
CREATE INDEX IF NOT EXISTS idx_playback_sessions_session_id ON playback_sessions (session_id);

CREATE TABLE IF NOT EXISTS quality_events (
    id UUID PRIMARY KEY,
    session_id VARCHAR(255) NOT NULL,
    recording_id UUID NOT NULL,
    user_id UUID NOT NULL,
    old_quality VARCHAR(20),
    new_quality VARCHAR(20),
    old_bitrate INTEGER,
    new_bitrate INTEGER,
    reason VARCHAR(100),
    quality_timestamp TIMESTAMPTZ NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_quality_events_session_id ON quality_events (session_id);
CREATE INDEX IF NOT EXISTS idx_quality_events_recording_id ON quality_events (recording_id);

CREATE TABLE IF NOT EXISTS engagement_metrics (
    id UUID PRIMARY KEY,
    recording_id UUID NOT NULL,
    user_id UUID NOT NULL,
    total_views INTEGER NOT NULL,
    total_watch_time_seconds INTEGER NOT NULL,
    average_quality VARCHAR(20),
    buffer_events_total INTEGER NOT NULL,
    engagement_score DOUBLE PRECISION NOT NULL,
    last_watched TIMESTAMPTZ
);
CREATE UNIQUE INDEX IF NOT EXISTS idx_engagement_metrics_user_id_recording_id ON engagement_metrics (user_id, recording_id);

CREATE TABLE IF NOT EXISTS lecture_statistics (
    id UUID PRIMARY KEY,
    recording_id UUID NOT NULL,
    course_id UUID,
    total_viewers INTEGER NOT NULL,
    unique_viewers INTEGER NOT NULL,
    average_watch_time DOUBLE PRECISION NOT NULL,
    average_completion_rate DOUBLE PRECISION,
    quality_distribution JSONB NOT NULL,
    buffer_events_total INTEGER NOT NULL,
    avg_engagement_score DOUBLE PRECISION NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS idx_lecture_statistics_recording_id ON lecture_statistics (recording_id);
CREATE INDEX IF NOT EXISTS idx_lecture_statistics_course_id ON lecture_statistics (course_id);

CREATE TABLE IF NOT EXISTS course_statistics (
    id UUID PRIMARY KEY,
    course_id UUID NOT NULL,
    total_lectures INTEGER NOT NULL,
    total_unique_students INTEGER NOT NULL,
    average_attendance_rate DOUBLE PRECISION,
    average_completion_rate DOUBLE PRECISION,
    engagement_trend VARCHAR(20),
    most_watched_lectures UUID[],
    struggle_lectures UUID[],
    avg_engagement_score DOUBLE PRECISION
);
CREATE UNIQUE INDEX IF NOT EXISTS idx_course_statistics_course_id ON course_statistics (course_id);
