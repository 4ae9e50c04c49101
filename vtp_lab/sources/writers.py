"""Platform events written as each source writes them: synthetic edX logs, xAPI statements and Caliper events.

:func:`as_source` turns events of the contract into one source's records (JSON
texts), so a study can be shown on every source without private data
(``vtp-lab synth --format edx``). A source cannot say everything the platform
says: :func:`expressible` gives the platform events reduced to what the source
carries (no buffering, quality changes or errors; edX has no speed on a play, Caliper
no seek origin nor session end), which is what loading :func:`as_source`'s
records gives back, up to the source's own identifiers.

Example:
    >>> from vtp_lab.synth import semester
    >>> ev = semester(courses=1, lectures_per_course=1, students=2, seed=0).events
    >>> as_source(ev, "xapi").item(0).startswith('{"id":')
    True
"""

from __future__ import annotations

from typing import Final

import polars as pl

from vtp_lab.events import EventType
from vtp_lab.sources.mapping import SourceFormat
from vtp_lab.sources.xapi import PROFILE

__all__ = ["SITE", "as_source", "expressible"]

SITE: Final = "https://vtp.example"
"""The made-up site whose IRIs name the synthetic xAPI and Caliper actors, videos, courses and sessions."""

_META: Final = pl.Struct(
    {
        "position": pl.Float64,
        "from_position": pl.Float64,
        "to_position": pl.Float64,
        "playback_rate": pl.Float64,
        "duration": pl.Float64,
        "course_id": pl.String,
        "title": pl.String,
        "action": pl.String,
        "quality": pl.String,
    }
)

_E = EventType
_KINDS: Final[dict[SourceFormat, dict[str, str]]] = {
    "edx": {
        _E.RECORDING_STARTED: "load_video",
        _E.PLAYBACK_STARTED: "play_video",
        _E.PLAYBACK_RESUMED: "play_video",
        _E.PLAYBACK_PAUSED: "pause_video",
        _E.PLAYBACK_COMPLETED: "complete_video",
        _E.SESSION_ENDED: "stop_video",
        "seek": "seek_video",
        "speed_change": "speed_change_video",
    },
    "xapi": {
        _E.RECORDING_STARTED: "http://adlnet.gov/expapi/verbs/initialized",
        _E.PLAYBACK_STARTED: f"{PROFILE}/verbs/played",
        _E.PLAYBACK_RESUMED: f"{PROFILE}/verbs/played",
        _E.PLAYBACK_PAUSED: f"{PROFILE}/verbs/paused",
        _E.PLAYBACK_COMPLETED: "http://adlnet.gov/expapi/verbs/completed",
        _E.SESSION_ENDED: "http://adlnet.gov/expapi/verbs/terminated",
        "seek": f"{PROFILE}/verbs/seeked",
        "speed_change": "http://adlnet.gov/expapi/verbs/interacted",
        "other": "http://adlnet.gov/expapi/verbs/interacted",
    },
    "caliper": {
        _E.PLAYBACK_STARTED: "Started",
        _E.PLAYBACK_RESUMED: "Resumed",
        _E.PLAYBACK_PAUSED: "Paused",
        _E.PLAYBACK_COMPLETED: "Ended",
        "seek": "JumpedTo",
        "speed_change": "ChangedSpeed",
        "other": "EnabledClosedCaptioning",
    },
}
"""What each platform event becomes in each source (engagement actions by their ``action``); others are left out."""


def _kind(events: pl.DataFrame, fmt: SourceFormat) -> pl.DataFrame:
    """``events`` with their metadata parsed (``m``), their course, and ``kind``: the source's name (null: left out)."""
    table = {str(k): v for k, v in _KINDS[fmt].items()}
    m = pl.col("metadata").str.json_decode(_META)
    courses = (
        events.filter(pl.col("event_type") == _E.RECORDING_STARTED.value)
        .select("recording_id", m.struct.field("course_id").alias("course"))
        .unique("recording_id", keep="first")
    )
    action = m.struct.field("action")
    key = pl.when(pl.col("event_type") == _E.ENGAGEMENT_ACTION.value).then(
        pl.when(action.is_in(["seek", "speed_change"])).then(action).otherwise(pl.lit("other"))
    )
    return (
        events.with_columns(m.alias("m"))
        .join(courses, on="recording_id", how="left")
        .with_columns(
            pl.coalesce(key, pl.col("event_type"))
            .replace_strict(table, default=None, return_dtype=pl.String)
            .alias("kind")
        )
        .filter(pl.col("kind").is_not_null())
    )


def _iso(expr: pl.Expr) -> pl.Expr:
    return expr.dt.convert_time_zone("UTC").dt.strftime("%Y-%m-%dT%H:%M:%S%.6fZ")


def _seconds(expr: pl.Expr) -> pl.Expr:
    """Seconds as an ISO 8601 duration (``PT12.5S``)."""
    return pl.concat_str(pl.lit("PT"), expr.cast(pl.String), pl.lit("S"))


def _edx(ev: pl.DataFrame) -> pl.Series:
    m = pl.col("m").struct
    inner = pl.struct(
        pl.col("recording_id").alias("id"),
        m.field("position").alias("currentTime"),
        m.field("from_position").alias("old_time"),
        m.field("to_position").alias("new_time"),
        m.field("playback_rate").cast(pl.String).alias("new_speed"),
        m.field("duration"),
    ).struct.json_encode()
    return ev.select(
        pl.struct(
            pl.col("user_id").alias("username"),
            pl.col("kind").alias("event_type"),
            pl.col("kind").alias("name"),
            pl.lit("browser").alias("event_source"),
            pl.col("session_id").alias("session"),
            _iso(pl.col("event_timestamp")).alias("time"),
            pl.struct(pl.col("user_id"), pl.col("course").alias("course_id"), pl.lit("/event").alias("path")).alias(
                "context"
            ),
            inner.alias("event"),
        ).struct.json_encode()
    ).to_series()


def _xapi(ev: pl.DataFrame) -> pl.Series:
    m = pl.col("m").struct
    ext = f"{PROFILE}/extensions"
    return ev.select(
        pl.struct(
            pl.col("id"),
            pl.struct(
                pl.lit("Agent").alias("objectType"),
                pl.struct(pl.lit(SITE).alias("homePage"), pl.col("user_id").alias("name")).alias("account"),
            ).alias("actor"),
            pl.struct(pl.col("kind").alias("id")).alias("verb"),
            pl.struct(
                pl.concat_str(pl.lit(f"{SITE}/recordings/"), pl.col("recording_id")).alias("id"),
                pl.struct(
                    pl.lit(f"{PROFILE}/activity-type/video").alias("type"),
                    pl.struct(m.field("title").alias("en-US")).alias("name"),
                ).alias("definition"),
            ).alias("object"),
            pl.struct(
                pl.struct(
                    m.field("position").alias(f"{ext}/time"),
                    m.field("from_position").alias(f"{ext}/time-from"),
                    m.field("to_position").alias(f"{ext}/time-to"),
                ).alias("extensions")
            ).alias("result"),
            pl.struct(
                pl.struct(
                    pl.concat_list(
                        pl.struct(pl.concat_str(pl.lit(f"{SITE}/courses/"), pl.col("course")).alias("id"))
                    ).alias("parent"),
                    pl.concat_list(pl.struct(pl.lit(PROFILE).alias("id"))).alias("category"),
                ).alias("contextActivities"),
                pl.struct(
                    m.field("duration").alias(f"{ext}/length"),
                    pl.col("session_id").alias(f"{ext}/session-id"),
                    pl.concat_str(m.field("playback_rate").cast(pl.String), pl.lit("x")).alias(f"{ext}/speed"),
                    m.field("quality").alias(f"{ext}/quality"),
                ).alias("extensions"),
            ).alias("context"),
            _iso(pl.col("event_timestamp")).alias("timestamp"),
        ).struct.json_encode()
    ).to_series()


def _caliper(ev: pl.DataFrame) -> pl.Series:
    m = pl.col("m").struct
    video = pl.concat_str(pl.lit(f"{SITE}/recordings/"), pl.col("recording_id"))
    return ev.select(
        pl.struct(
            pl.lit("http://purl.imsglobal.org/ctx/caliper/v1p2").alias("@context"),
            pl.concat_str(pl.lit("urn:uuid:"), pl.col("id")).alias("id"),
            pl.lit("MediaEvent").alias("type"),
            pl.struct(
                pl.concat_str(pl.lit(f"{SITE}/users/"), pl.col("user_id")).alias("id"), pl.lit("Person").alias("type")
            ).alias("actor"),
            pl.col("kind").alias("action"),
            pl.struct(
                video.alias("id"),
                pl.lit("VideoObject").alias("type"),
                m.field("title").alias("name"),
                _seconds(m.field("duration")).alias("duration"),
            ).alias("object"),
            pl.struct(
                pl.concat_str(video, pl.lit("#position")).alias("id"),
                pl.lit("MediaLocation").alias("type"),
                _seconds(pl.coalesce(m.field("to_position"), m.field("position"))).alias("currentTime"),
            ).alias("target"),
            _iso(pl.col("event_timestamp")).alias("eventTime"),
            pl.struct(
                pl.concat_str(pl.lit(f"{SITE}/courses/"), pl.col("course")).alias("id"),
                pl.lit("CourseSection").alias("type"),
            ).alias("group"),
            pl.struct(
                pl.concat_str(pl.lit(f"{SITE}/sessions/"), pl.col("session_id")).alias("id"),
                pl.lit("Session").alias("type"),
            ).alias("session"),
            pl.struct(m.field("playback_rate").alias("playbackRate")).alias("extensions"),
        ).struct.json_encode()
    ).to_series()


_WRITERS: Final = {"edx": _edx, "xapi": _xapi, "caliper": _caliper}


def as_source(events: pl.DataFrame, fmt: SourceFormat) -> pl.Series:
    r"""Events of the contract as ``fmt``'s records (JSON texts, one per event the source can say), in time order.

    Example:
        >>> from vtp_lab.synth import semester
        >>> ev = semester(courses=1, lectures_per_course=1, students=1, seed=0).events
        >>> '"event_type":"play_video"' in as_source(ev, "edx").str.join("\\n").item()
        True
    """
    ev = _kind(events.sort("event_timestamp", maintain_order=True), fmt)
    return _WRITERS[fmt](ev).rename("record")


def expressible(events: pl.DataFrame, fmt: SourceFormat) -> pl.DataFrame:
    """The platform events reduced to what ``fmt`` carries: what loading :func:`as_source`'s records gives back.

    Example:
        >>> from vtp_lab.synth import semester
        >>> ev = semester(courses=1, lectures_per_course=1, students=2, seed=0).events
        >>> expressible(ev, "caliper")["event_type"].unique().sort().to_list()  # doctest: +NORMALIZE_WHITESPACE
        ['engagement_action', 'playback_completed', 'playback_paused', 'playback_resumed', 'playback_started']
    """
    ev = _kind(events, fmt)
    m = pl.col("m").struct
    kept: dict[SourceFormat, list[str]] = {
        "edx": ["position", "from_position", "to_position", "playback_rate", "duration", "course_id", "action"],
        "xapi": [
            "position",
            "from_position",
            "to_position",
            "playback_rate",
            "duration",
            "course_id",
            "title",
            "action",
            "quality",
        ],
        "caliper": ["position", "to_position", "playback_rate", "duration", "title", "action"],
    }
    keys = [m.field(k) for k in kept[fmt]]
    started = pl.col("event_type").is_in([_E.PLAYBACK_STARTED.value, _E.PLAYBACK_RESUMED.value])
    event_type = pl.col("event_type")
    if fmt != "caliper":
        event_type = pl.when(started).then(pl.lit(_E.PLAYBACK_STARTED.value)).otherwise(event_type)
    if fmt == "edx":
        rate = pl.when(started).then(None).otherwise(m.field("playback_rate"))
        keys = [k if name != "playback_rate" else rate.alias(name) for k, name in zip(keys, kept[fmt], strict=True)]
    return ev.select(
        "id",
        event_type.alias("event_type"),
        "recording_id",
        "user_id",
        "session_id",
        "event_timestamp",
        pl.struct(keys).struct.json_encode().alias("metadata"),
    )
