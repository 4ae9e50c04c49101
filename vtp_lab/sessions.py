"""Playback sessions (spec section 3), vectorised, and the recordings catalogue (section 2).

A session is every event of one ``(session_id, recording_id, user_id)`` except
``recording_started``, ordered by time, then by :data:`vtp_lab.events.SESSION_EVENT_ORDER`,
then by id. The spec defines it as a walk over the events with a small state; here the
walk is computed for all sessions at once, without a Python loop over events:

1. ``playing`` and ``resume_after_buffer`` form a 4-state machine. Each event's effect
   is a function on the 4 states, packed in a byte; the state after each event is the
   composition of its session's functions so far, computed by pointer doubling
   (``log2`` of the longest session rounds of a table lookup).
2. ``rate``, ``quality`` and ``bitrate`` are the last value set, a forward fill.
3. The content position is a linear recurrence with resets (an event with a position
   resets it; playing advances it by rate x time), computed with a cumulative sum and
   a forward fill.
4. A playing segment opens at an event that opens one and ends at the next event of the
   session that closes or reopens it; closed segments give content intervals and play
   time. Watched seconds are the union of the intervals (a sweep over their ends).

:func:`session_details` gives one row per session with the QoE columns;
:func:`playback_sessions` the ``playback_sessions`` table. Definitions are in
``docs/sessions.md``; ``tests/reference.py`` walks events one by one as the spec says,
and a property test holds the two to the same answers.

Example:
    >>> from vtp_lab.synth import semester
    >>> sem = semester(courses=1, lectures_per_course=1, students=3, seed=2)
    >>> details = session_details(sem.events, recordings=sem.recordings)
    >>> (details["watched_seconds"] <= details["duration_seconds"]).all()
    True
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Final

import polars as pl

from vtp_lab.events import (
    CLOSES,
    CLOSES_AT_POSITION,
    ENDS,
    MAX_INTEGER,
    NO_SESSION,
    OPENS,
    SESSION_EVENT_ORDER,
    STOPS,
    EventType,
    uuid5_series,
)
from vtp_lab.metadata import metadata_columns
from vtp_lab.recordings import catalogue_of_parsed
from vtp_lab.tables import PLAYBACK_SESSIONS

__all__ = [
    "DECIMAL_PLACES",
    "DEFAULT_SESSION_GAP",
    "DETAIL_COLUMNS",
    "SESSION_KEY",
    "Sessionized",
    "checked_gap",
    "coverage",
    "cut_sessions",
    "playback_sessions",
    "round_half_up",
    "run_starts",
    "session_details",
    "session_segments",
    "sessionize",
    "sweep",
]

SESSION_KEY: Final = ["session_id", "recording_id", "user_id"]
"""The columns that make a session."""

# The 4 states are playing + 2 * resume_after_buffer; a function maps each to its image.
_IMAGES: Final[dict[str, tuple[int, int, int, int]]] = {
    "open": (1, 1, 3, 3),  # started, resumed: playing := true, rab kept
    "buffer_start": (0, 2, 0, 2),  # rab := playing, playing := false
    "buffer_end": (0, 1, 1, 1),  # if rab: playing := true; rab := false
    "clear": (0, 0, 0, 0),  # paused, completed, ended, fatal error
    "keep": (0, 1, 2, 3),
}


def _encode(images: tuple[int, ...]) -> int:
    return sum(v << (2 * s) for s, v in enumerate(images))


def _image(code: pl.Expr, state: int | pl.Expr) -> pl.Expr:
    """The image of ``state`` under the function ``code`` (digit ``state`` of ``code`` in base 4)."""
    return (code // pl.lit(4, pl.Int64).pow(state)) % 4


def _composition_table() -> pl.Series:
    pair = pl.int_range(0, 256 * 256, dtype=pl.Int64)
    a, b = pair // 256, pair % 256
    composed = pl.sum_horizontal(_image(a, _image(b, s)) * 4**s for s in range(4))
    return pl.select(composed.cast(pl.UInt8).alias("compose")).to_series()


_COMPOSE: Final = _composition_table()
"""``_COMPOSE[a * 256 + b]`` is the function a after b (b first)."""

_DETAIL_TYPES: Final[dict[str, pl.DataType]] = {
    "play_time_seconds": pl.Float64(),
    "rebuffer_seconds": pl.Float64(),
    "rebuffer_ratio": pl.Float64(),
    "seeks": pl.Int32(),
    "backward_seeks": pl.Int32(),
    "pauses": pl.Int32(),
    "speed_changes": pl.Int32(),
    "quality_changes": pl.Int32(),
    "upshifts": pl.Int32(),
    "downshifts": pl.Int32(),
    "time_weighted_bitrate": pl.Float64(),
    "errors": pl.Int32(),
    "fatal_errors": pl.Int32(),
    "max_position": pl.Float64(),
    "rewatched_seconds": pl.Float64(),
    "exited_before_start": pl.Boolean(),
    "completed": pl.Boolean(),
    "last_event_at": pl.Datetime("us", "UTC"),
}
"""The session detail columns beyond ``playback_sessions``, in order, with their types."""

DETAIL_COLUMNS: Final = tuple(_DETAIL_TYPES)
"""The session detail columns beyond ``playback_sessions`` (spec section 3), plus whether a
playback_completed was seen and the time of the session's last event."""

_COUNTS: Final = tuple(c for c, t in _DETAIL_TYPES.items() if t == pl.Int32())


def _lazy(frame: pl.DataFrame | pl.LazyFrame) -> pl.LazyFrame:
    return frame.lazy() if isinstance(frame, pl.DataFrame) else frame


_NEW: Final = pl.col("_new")


def _previous(expr: pl.Expr, fill: object) -> pl.Expr:
    """The value at the previous event of the same session (``fill`` at a session's first event).

    The walk's frame is sorted by session, so this is a shift that resets where ``_new``.
    """
    return pl.when(_NEW).then(pl.lit(fill)).otherwise(expr.shift(1))


def _last_set(expr: pl.Expr, start: object = None) -> pl.Expr:
    """The last non-null value so far in the session (``start`` before the first), on the sorted frame."""
    last = pl.when(expr.is_not_null()).then(pl.col("_i")).forward_fill()
    value = expr.gather(last.fill_null(0))
    return pl.when(last >= pl.col("_first")).then(value).otherwise(pl.lit(start))


def _session_cum_sum(expr: pl.Expr) -> pl.Expr:
    """Cumulative sum within the session, restarted at each one.

    Not the sorted frame's running sum less its value before the session: that loses
    precision as the frame grows, so a session's numbers would depend on what else is in it.
    """
    return expr.cum_sum().over("_s")


def _state_after(code: pl.Series, first: pl.Series, index: pl.Series, longest: int) -> pl.Series:
    """The 4-state after each event: prefix composition within sessions by pointer doubling."""
    prefix = code
    step = 1
    while step < longest:
        frame = pl.DataFrame(
            {"p": prefix, "e": prefix.shift(step, fill_value=0), "v": (index.cast(pl.Int64) - step) >= first}
        )
        lookup = frame.select(
            pl.when(pl.col("v")).then(pl.col("p").cast(pl.UInt32) * 256 + pl.col("e").cast(pl.UInt32)).otherwise(0)
        ).to_series()
        prefix = (
            frame.with_columns(composed=_COMPOSE.gather(lookup))
            .select(pl.when(pl.col("v")).then(pl.col("composed")).otherwise(pl.col("p")))
            .to_series()
        )
        step *= 2
    return prefix & 3  # the image of the start state (not playing, no rab)


def run_starts(columns: list[str]) -> pl.Expr:
    """True at the first row of each run of equal values of ``columns`` (on a frame sorted by them).

    Example:
        >>> f = pl.DataFrame({"a": [1, 1, 2, 2], "b": ["x", "y", "y", "y"]})
        >>> f.select(run_starts(["a", "b"]))["a"].to_list()
        [True, True, True, False]
    """
    return pl.any_horizontal(pl.col(c) != pl.col(c).shift(1) for c in columns).fill_null(True)


_SESSION_HASH: Final = pl.struct(SESSION_KEY).hash()
"""What events are grouped by when sorted into sessions: a 64-bit hash of the session key."""

_KIND: Final = pl.Enum([t.value for t in SESSION_EVENT_ORDER])
"""The walk's event types, ordered as :data:`SESSION_EVENT_ORDER` (so sorting by it is that order)."""


def _in_walk_order(parsed: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The walk's events in order (session, time, :data:`SESSION_EVENT_ORDER`, id), and its sessions.

    Sessions are numbered ``_s`` from 0 in walk order; the events carry ``_s`` and ``_new``
    (a session's first event) instead of the key's strings, and the sessions frame holds
    ``_s`` with the key. Sessions are grouped by :data:`_SESSION_HASH`, which sorts faster
    than the three strings of the key, and only the columns the walk reads are put in
    order (the key's strings only at a session's first event). Should two keys share a
    hash (found exactly: more keys than hashes), the events are sorted by the key.
    """
    kind, action = pl.col("event_type"), pl.col("m_action")
    started, changed = kind == EventType.PLAYBACK_STARTED.value, kind == EventType.QUALITY_CHANGED.value
    ev = (
        parsed.lazy()
        .filter(kind != EventType.RECORDING_STARTED.value)
        .select(
            pl.exclude("^m_.*$"),
            "m_position",
            "m_playback_rate",
            "m_from_position",
            "m_to_position",
            ((kind == EventType.ERROR_OCCURRED.value) & (pl.col("m_fatal") == "true")).alias("_fatal"),
            ((kind == EventType.ENGAGEMENT_ACTION.value) & (action == "seek")).alias("_seek"),
            ((kind == EventType.ENGAGEMENT_ACTION.value) & (action == "speed_change")).alias("_speed"),
            pl.when(started).then(pl.col("m_quality")).when(changed).then(pl.col("m_new_quality")).alias("_quality"),
            pl.when(started).then(pl.col("m_bitrate")).when(changed).then(pl.col("m_new_bitrate")).alias("_bitrate"),
            pl.when(changed)
            .then((pl.col("m_new_bitrate") - pl.col("m_old_bitrate")).sign())
            .cast(pl.Int8)
            .alias("_shift"),
        )
        .with_columns(kind.cast(_KIND), _SESSION_HASH.alias("_h"))
        .collect()
    )
    keys = ev.select(SESSION_KEY)
    hashed = ev.select(pl.col("_h").n_unique()).item() == keys.unique().height
    by = ["_h"] if hashed else SESSION_KEY
    order = ev.select(pl.arg_sort_by([*by, "event_timestamp", "event_type", "id"])).to_series()
    walk = ev.drop("id", *SESSION_KEY).select(pl.all().gather(order))
    new = (walk if hashed else keys[order]).select(run_starts(by)).to_series()
    walk = walk.drop("_h").with_columns(new.alias("_new"))
    walk = walk.with_columns((pl.col("_new").cum_sum() - 1).cast(pl.UInt32).alias("_s"))
    starts = order.filter(walk["_new"])
    sessions = keys[starts].select(pl.int_range(pl.len(), dtype=pl.UInt32).alias("_s"), *SESSION_KEY)
    return walk, sessions


def _walk(parsed: pl.DataFrame, durations: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """One row per event with the walk's state (playing before/after, positions, opens and closes), and the sessions.

    ``parsed`` is events with their metadata parsed (:func:`metadata_columns`); the sessions
    frame has ``_s``, the key and the recording's ``duration_seconds``.
    """
    ev, sessions = _in_walk_order(parsed)
    sessions = sessions.join(durations, on="recording_id", how="left", maintain_order="left")
    ev = ev.with_columns(sessions["duration_seconds"].gather(ev["_s"]))
    ev = _carried(_playing_states(ev))
    ev = _positions(ev)
    playing, kind = pl.col("playing_before"), pl.col("event_type")
    closing = kind.is_in(CLOSES) | pl.col("_fatal") | pl.col("_seek") | pl.col("_speed")
    opens = (
        kind.is_in(OPENS)
        | ((kind == EventType.BUFFER_END.value) & pl.col("rab_before"))
        | (playing & (kind == EventType.QUALITY_CHANGED.value))
        | (playing & (pl.col("_seek") | pl.col("_speed")))
    )
    end = (
        pl.when(kind.is_in(OPENS) | pl.col("_speed"))
        .then(pl.col("cur"))
        .when(pl.col("_seek"))
        .then(pl.coalesce("m_from_position", "cur"))
        .otherwise(pl.coalesce("m_position", "cur"))
    )
    walked = ev.with_columns((playing & closing).alias("closes"), opens.alias("opens"), end.alias("close_end"))
    return walked, sessions


def _playing_states(ev: pl.DataFrame) -> pl.DataFrame:
    """``playing`` and ``resume_after_buffer`` before and after each event: the state machine run per session."""
    kind = pl.col("event_type")
    ev = ev.with_columns(
        pl.int_range(pl.len(), dtype=pl.UInt32).alias("_i"),
        pl.when(kind.is_in(OPENS))
        .then(_encode(_IMAGES["open"]))
        .when(kind == EventType.BUFFER_START.value)
        .then(_encode(_IMAGES["buffer_start"]))
        .when(kind == EventType.BUFFER_END.value)
        .then(_encode(_IMAGES["buffer_end"]))
        .when(kind.is_in(STOPS) | pl.col("_fatal"))
        .then(_encode(_IMAGES["clear"]))
        .otherwise(_encode(_IMAGES["keep"]))
        .cast(pl.UInt8)
        .alias("_f"),
    )
    ev = ev.with_columns(pl.when(pl.col("_new")).then(pl.col("_i")).forward_fill().alias("_first"))
    longest = int(ev.select((pl.col("_i") - pl.col("_first")).max()).item()) + 1
    state = _state_after(ev["_f"], ev["_first"], ev["_i"], longest)
    ev = ev.with_columns(
        (state & 1).cast(pl.Boolean).alias("playing_after"),
        (state // 2).cast(pl.Boolean).alias("rab_after"),
    )
    return ev.with_columns(
        _previous(pl.col("playing_after"), False).alias("playing_before"),
        _previous(pl.col("rab_after"), False).alias("rab_before"),
    )


def _carried(ev: pl.DataFrame) -> pl.DataFrame:
    """Seconds since the session's first event, and the rate, quality and bitrate in force after each event."""
    kind = pl.col("event_type")
    ev = ev.with_columns(
        (
            (pl.col("event_timestamp") - pl.col("event_timestamp").gather(pl.col("_first"))).dt.total_microseconds()
            / 1e6
        ).alias("t"),
        _last_set(
            pl.when(
                ((kind == EventType.PLAYBACK_STARTED.value) | pl.col("_speed"))
                & pl.col("m_playback_rate").is_not_null()
            ).then(pl.col("m_playback_rate")),
            1.0,
        ).alias("rate_after"),
        _last_set(pl.col("_quality")).alias("quality_after"),
        _last_set(pl.col("_bitrate")).alias("bitrate_after"),
    )
    return ev.with_columns(_previous(pl.col("rate_after"), 1.0).alias("rate_before"))


def _positions(ev: pl.DataFrame) -> pl.DataFrame:
    """The content position at each event: ``cur`` (before it acts) and ``x`` (after), from the last given position."""
    kind, playing = pl.col("event_type"), pl.col("playing_before")
    advance = pl.col("rate_before") * (pl.col("t") - _previous(pl.col("t"), 0.0))
    # content past the largest position the INTEGER columns hold counts for nothing (segments are capped there);
    # capping each step there keeps a huge rate times a long pause finite
    d = pl.when(playing).then(advance.clip(upper_bound=float(MAX_INTEGER))).otherwise(0.0)
    ev = ev.with_columns(d.alias("_d")).with_columns(_session_cum_sum(pl.col("_d")).alias("_D"))
    position = pl.col("m_position")
    has_p = position.is_not_null()
    override = (
        pl.when(kind == EventType.PLAYBACK_STARTED.value)
        .then(position.fill_null(0.0))
        .when(kind.is_in(CLOSES_AT_POSITION) & has_p)
        .then(position)
        .when((kind == EventType.BUFFER_END.value) & pl.col("rab_before") & has_p)
        .then(position)
        .when(pl.col("_fatal") & has_p)
        .then(position)
        .when((kind == EventType.QUALITY_CHANGED.value) & playing & has_p)
        .then(position)
        .when(pl.col("_seek") & pl.col("m_to_position").is_not_null())
        .then(pl.col("m_to_position"))
    )
    ev = ev.with_columns(_last_set(override - pl.col("_D"), 0.0).alias("_base"))
    return ev.with_columns(
        (pl.col("_base") + pl.col("_D")).alias("x"),
        (_previous(pl.col("_base"), 0.0) + pl.col("_D")).alias("cur"),
    )


def session_segments(walked: pl.DataFrame) -> pl.DataFrame:
    """Closed playing segments: one row each with its session ``_s``, content interval, play time, quality, bitrate.

    Example:
        >>> from vtp_lab.synth import semester
        >>> sem = semester(courses=1, lectures_per_course=1, students=2, seed=1)
        >>> from vtp_lab.recordings import catalogue
        >>> walked, _ = _walk(metadata_columns(sem.events), catalogue(sem.events).select(
        ...     "recording_id", "duration_seconds"))
        >>> segs = session_segments(walked)
        >>> (segs["play_seconds"] >= 0).all()
        True
    """
    boundary = pl.col("closes") | pl.col("opens")
    nxt = pl.when(boundary).then(pl.col("_i")).shift(-1).backward_fill()
    w = walked.lazy().with_columns(
        pl.when(pl.col("_s").gather(nxt.fill_null(0)) == pl.col("_s")).then(nxt).alias("_next")
    )
    opens = w.filter(pl.col("opens") & pl.col("_next").is_not_null()).select(
        "_s",
        pl.col("_next"),
        pl.col("t").alias("open_t"),
        pl.col("x").alias("start"),
        pl.col("quality_after").alias("quality"),
        pl.col("bitrate_after").alias("bitrate"),
        "duration_seconds",
    )
    closes = w.filter(pl.col("closes")).select(pl.col("_i").alias("_next"), pl.col("t").alias("close_t"), "close_end")
    segs = opens.join(closes, on="_next", how="inner").collect()
    capped = (
        pl.when(pl.col("duration_seconds").is_not_null())
        .then(pl.min_horizontal("close_end", "duration_seconds"))
        .otherwise(pl.min_horizontal("close_end", pl.lit(float(MAX_INTEGER))))  # what the INTEGER columns hold
    )
    return segs.select(
        "_s",
        "open_t",
        "quality",
        "bitrate",
        "start",
        capped.alias("end"),
        (pl.col("close_t") - pl.col("open_t")).alias("play_seconds"),
    )


def sweep(segments: pl.DataFrame, by: list[str]) -> pl.DataFrame:
    """The content line of each group cut where its coverage changes: ``[x, x + length)`` at ``depth``.

    Every interval ``[start, end)`` adds 1 at its start and takes 1 away at its end; over
    the points sorted by group and position, the running sum is the depth within each
    group (earlier groups sum to zero). Pieces of zero length are dropped.

    Example:
        >>> segs = pl.DataFrame({"g": ["a", "a"], "start": [0.0, 5.0], "end": [10.0, 20.0]})
        >>> sweep(segs, ["g"]).select("x", "length", "depth").rows()
        [(0.0, 5.0, 1), (5.0, 5.0, 2), (10.0, 10.0, 1)]
    """
    iv = segments.filter(pl.col("end") > pl.col("start"))
    points = pl.concat(
        [
            iv.select(*by, pl.col("start").alias("x"), pl.lit(1, pl.Int32).alias("d")),
            iv.select(*by, pl.col("end").alias("x"), pl.lit(-1, pl.Int32).alias("d")),
        ]
    ).sort([*by, "x", "d"])
    same_next = pl.all_horizontal(pl.col(c) == pl.col(c).shift(-1) for c in by).fill_null(False)
    return (
        points.with_columns(
            pl.col("d").cum_sum().alias("depth"),
            pl.when(same_next).then(pl.col("x").shift(-1) - pl.col("x")).otherwise(0.0).alias("length"),
        )
        .filter(pl.col("length") > 0)
        .select(*by, "x", "length", "depth")
    )


def coverage(segments: pl.DataFrame, by: list[str]) -> pl.DataFrame:
    """Per group: seconds covered at least once (``covered_seconds``) and twice (``rewatched_seconds``).

    The content intervals are the segments' ``[start, end)`` (see :func:`sweep`).

    Example:
        >>> segs = pl.DataFrame({"g": ["a", "a", "b"], "start": [0.0, 5.0, 0.0], "end": [10.0, 20.0, 3.0]})
        >>> coverage(segs, ["g"]).sort("g").rows()
        [('a', 20.0, 5.0), ('b', 3.0, 0.0)]
    """
    pieces = sweep(segments, by)
    totals = pieces.group_by(by).agg(
        pl.col("length").filter(pl.col("depth") >= 1).sum().alias("covered_seconds"),
        pl.col("length").filter(pl.col("depth") >= 2).sum().alias("rewatched_seconds"),
    )
    groups = segments.select(by).unique()
    return groups.join(totals, on=by, how="left").with_columns(
        pl.col("covered_seconds", "rewatched_seconds").fill_null(0.0)
    )


DECIMAL_PLACES: Final = 6
"""Positions and times come in decimals (tenths of a second, milliseconds): sums are cleaned to this many places."""


def round_half_up(expr: pl.Expr, decimals: int = 0) -> pl.Expr:
    """Round half up to ``decimals`` places, as a decimal computation would: float noise first cleaned away.

    ``403.2 - 331.7`` is ``71.49999999999997`` in binary floating point; the union it belongs
    to is exactly 149.5 seconds as the events wrote it, and rounds to 150. The value is
    first rounded to :data:`DECIMAL_PLACES` places, then half up.

    Example:
        >>> pl.select(round_half_up(pl.lit(1800 - 1722 + (403.2 - 331.7)))).item()
        150.0
        >>> pl.select(round_half_up(pl.lit(150 / 1800 * 100), 2).alias("a"), round_half_up(pl.lit(0.625), 2)).row(0)
        (8.33, 0.63)
    """
    scale = 10.0**decimals
    return ((expr * scale).round(DECIMAL_PLACES) + 0.5).floor() / scale


DEFAULT_SESSION_GAP: Final = timedelta(minutes=30)
"""The inactivity that ends a session of events that came without one (spec section 1, "Other sources")."""


def checked_gap(gap: timedelta) -> timedelta:
    """``gap`` if it can end a session (positive), else a ``ValueError`` naming it and the fix.

    Example:
        >>> checked_gap(timedelta(0))
        Traceback (most recent call last):
        ...
        ValueError: session_gap=0:00:00 must be positive, e.g. timedelta(minutes=30)
    """
    if gap <= timedelta(0):
        raise ValueError(f"session_gap={gap} must be positive, e.g. timedelta(minutes=30)")
    return gap


def cut_sessions(events: pl.DataFrame, *, gap: timedelta = DEFAULT_SESSION_GAP) -> pl.DataFrame:
    """Events whose source gave no session (``session_id`` is :data:`NO_SESSION`) given one by an inactivity gap.

    Per user and recording, in time order, a new session starts at the first event and
    at each event more than ``gap`` after the one before; it is named for its first
    event's time (``no-session@2026-09-01T10:00:00.000000Z``). The cut depends only on
    the events' times, never on the order of lines or loads. Other events are returned
    as they are; the result keeps the input's rows, in another order when any are cut.

    Example:
        >>> from datetime import UTC, datetime
        >>> t = [datetime(2026, 9, 1, 10, m, tzinfo=UTC) for m in (0, 20, 55)]
        >>> ev = pl.DataFrame({"user_id": ["u"] * 3, "recording_id": ["r"] * 3, "event_timestamp": t,
        ...                    "session_id": [NO_SESSION] * 3})
        >>> cut_sessions(ev)["session_id"].to_list()  # doctest: +NORMALIZE_WHITESPACE
        ['no-session@2026-09-01T10:00:00.000000Z', 'no-session@2026-09-01T10:00:00.000000Z',
         'no-session@2026-09-01T10:55:00.000000Z']
    """
    checked_gap(gap)
    lone = pl.col("session_id") == NO_SESSION
    if not events.select(lone.any()).item():
        return events
    key = ["user_id", "recording_id"]
    ts = pl.col("event_timestamp")
    cut = (
        events.filter(lone)
        .sort([*key, "event_timestamp"])
        .with_columns(((ts.diff().over(key) > gap).fill_null(True)).cum_sum().over(key).alias("_run"))
        .with_columns(
            pl.concat_str(
                pl.lit(f"{NO_SESSION}@"),
                ts.min().over([*key, "_run"]).dt.convert_time_zone("UTC").dt.strftime("%Y-%m-%dT%H:%M:%S%.6fZ"),
            ).alias("session_id")
        )
        .drop("_run")
    )
    return pl.concat([events.filter(~lone), cut])


def session_details(events: pl.DataFrame | pl.LazyFrame, *, recordings: pl.DataFrame | None = None) -> pl.DataFrame:
    """One row per session: the ``playback_sessions`` columns plus the QoE detail columns.

    Example:
        >>> from vtp_lab.tables import ANALYTICS_EVENTS
        >>> session_details(ANALYTICS_EVENTS.empty()).height
        0
    """
    return sessionize(events, recordings=recordings).details


@dataclass(frozen=True)
class Sessionized:
    """Sessions with what the aggregates need: details, closed segments, the catalogue.

    ``details`` is sorted by recording, user, start and session id. ``segments`` has one row
    per closed playing segment: ``session`` (the row of its session in ``details``), the
    session key, ``started_at`` of its session, ``open_t`` (seconds after the session
    started), ``quality``, ``bitrate``, the content interval ``[start, end)`` (capped) and
    ``play_seconds``.

    Example:
        >>> from vtp_lab.tables import ANALYTICS_EVENTS
        >>> sessionize(ANALYTICS_EVENTS.empty()).segments.height
        0
    """

    details: pl.DataFrame
    segments: pl.DataFrame
    catalogue: pl.DataFrame


def sessionize(
    events: pl.DataFrame | pl.LazyFrame,
    *,
    recordings: pl.DataFrame | None = None,
    session_gap: timedelta = DEFAULT_SESSION_GAP,
) -> Sessionized:
    """Walk every session once; return details, segments and the catalogue.

    Events that came without a session are first cut into sessions by ``session_gap``
    (:func:`cut_sessions`).

    Example:
        >>> from vtp_lab.synth import semester
        >>> s = sessionize(semester(courses=1, lectures_per_course=1, students=2, seed=3).events)
        >>> abs(s.segments["play_seconds"].sum() - s.details["play_time_seconds"].sum()) < 1e-6
        True
    """
    parsed = metadata_columns(cut_sessions(_lazy(events).collect(), gap=session_gap))
    cat = catalogue_of_parsed(parsed, recordings)
    durations = cat.select("recording_id", "duration_seconds")
    if not parsed.select((pl.col("event_type") != EventType.RECORDING_STARTED.value).any()).item():
        return Sessionized(details=_empty_details(), segments=_empty_segments(), catalogue=cat)
    walked, sessions = _walk(parsed, durations)
    segs = session_segments(walked)
    details = _details(walked, segs, sessions)
    row = details["_s"].arg_sort().gather(segs["_s"])  # _s numbers 0..n-1, so arg_sort maps it to the row
    of_session = details.select(*SESSION_KEY, "started_at")[row]
    segments = segs.with_columns(row.alias("session")).hstack(of_session)
    return Sessionized(
        details=details.select(*PLAYBACK_SESSIONS.column_names, *DETAIL_COLUMNS),
        segments=segments.select(_empty_segments().columns),
        catalogue=cat,
    )


def _empty_segments() -> pl.DataFrame:
    return pl.DataFrame(
        schema={
            "session": pl.UInt32,
            **{c: pl.String for c in SESSION_KEY},
            "open_t": pl.Float64,
            "quality": pl.String,
            "bitrate": pl.Float64,
            "start": pl.Float64,
            "end": pl.Float64,
            "play_seconds": pl.Float64,
            "started_at": pl.Datetime("us", "UTC"),
        }
    )


def _counted(walked: pl.DataFrame) -> pl.DataFrame:
    """Per session, what its events count: start and end, buffering, seeks, pauses, switches, errors."""
    kind = pl.col("event_type")
    return walked.group_by("_s").agg(
        pl.col("event_timestamp").min().alias("started_at"),
        pl.col("event_timestamp").filter(kind.is_in(ENDS) | pl.col("_fatal")).max().alias("ended_at"),
        (kind == EventType.BUFFER_START.value).sum().alias("buffer_events"),
        pl.col("_seek").sum().alias("seeks"),
        (pl.col("_seek") & (pl.col("m_to_position") < pl.col("m_from_position"))).sum().alias("backward_seeks"),
        (kind == EventType.PLAYBACK_PAUSED.value).sum().alias("pauses"),
        pl.col("_speed").sum().alias("speed_changes"),
        (kind == EventType.QUALITY_CHANGED.value).sum().alias("quality_changes"),
        (pl.col("_shift") > 0).sum().alias("upshifts"),
        (pl.col("_shift") < 0).sum().alias("downshifts"),
        (kind == EventType.ERROR_OCCURRED.value).sum().alias("errors"),
        pl.col("_fatal").sum().alias("fatal_errors"),
        (kind == EventType.PLAYBACK_STARTED.value).any().alias("_saw_started"),
        pl.col("quality_after").drop_nulls().last().alias("_last_quality"),
        pl.col("m_position").max().alias("_max_event_position"),
        (kind == EventType.PLAYBACK_COMPLETED.value).any().alias("completed"),
        pl.col("event_timestamp").max().alias("last_event_at"),
    )


def _played(segs: pl.DataFrame) -> pl.DataFrame:
    """Per session, what its segments add up to: play time, bitrate-weighted time, furthest end, top quality."""
    play = segs.group_by("_s").agg(
        pl.col("play_seconds").sum().alias("play_time_seconds"),
        (pl.col("bitrate") * pl.col("play_seconds")).filter(pl.col("bitrate").is_not_null()).sum().alias("_br_time"),
        pl.col("play_seconds").filter(pl.col("bitrate").is_not_null()).sum().alias("_br_play"),
        pl.col("end").max().alias("_max_end"),
    )
    top = (
        segs.filter(pl.col("quality").is_not_null())
        .group_by("_s", "quality")
        .agg(pl.col("play_seconds").sum().alias("q_play"), pl.col("open_t").min().alias("q_first"))
        .filter(pl.col("q_play") > 0)
        .sort(["_s", "q_play", "q_first"], descending=[False, True, False])
        .group_by("_s", maintain_order=True)
        .first()
        .select("_s", pl.col("quality").alias("_top_quality"))
    )
    return play.join(top, on="_s", how="left")


def _details(walked: pl.DataFrame, segs: pl.DataFrame, sessions: pl.DataFrame) -> pl.DataFrame:
    """Aggregate the walk and its segments to one row per session (with ``_s``)."""
    per_session, play = _counted(walked), _played(segs)
    cover = coverage(segs, ["_s"]).rename({"covered_seconds": "union_seconds"})
    rebuffer = _rebuffer(walked)
    out = (
        sessions.join(per_session, on="_s", how="left")
        .join(play, on="_s", how="left")
        .join(cover, on="_s", how="left")
        .join(rebuffer, on="_s", how="left")
        .with_columns(
            pl.col("play_time_seconds").fill_null(0.0),
            pl.col("union_seconds").fill_null(0.0),
            pl.col("rewatched_seconds").fill_null(0.0),
            pl.col("rebuffer_seconds").fill_null(0.0),
        )
    )
    watched = round_half_up(pl.col("union_seconds")).cast(pl.Int32)
    duration_int = round_half_up(pl.col("duration_seconds")).cast(pl.Int32)
    out = out.with_columns(watched.alias("watched_seconds"), duration_int.alias("duration_int"))
    out = out.with_columns(
        pl.when(pl.col("duration_int") > 0)
        .then(pl.min_horizontal(round_half_up(pl.col("watched_seconds") / pl.col("duration_int") * 100, 2), 100.0))
        .alias("completion_rate"),
        pl.coalesce("_top_quality", "_last_quality").alias("quality"),
        (pl.col("rebuffer_seconds") / (pl.col("play_time_seconds") + pl.col("rebuffer_seconds")))
        .fill_nan(None)
        .alias("rebuffer_ratio"),
        pl.when(pl.col("_br_play") > 0).then(pl.col("_br_time") / pl.col("_br_play")).alias("time_weighted_bitrate"),
        pl.max_horizontal("_max_end", "_max_event_position").alias("max_position"),
        (pl.col("_saw_started") & (pl.col("play_time_seconds") == 0) & (pl.col("fatal_errors") == 0)).alias(
            "exited_before_start"
        ),
    )
    out = out.sort(["recording_id", "user_id", "started_at", "session_id"])
    ids = uuid5_series(out.select(pl.concat_str([pl.lit("session"), *SESSION_KEY], separator="|")).to_series())
    out = out.with_columns(ids.alias("id"), pl.col("duration_int").alias("duration_seconds"))
    return out.with_columns(pl.col(c).cast(pl.Int32) for c in (*_COUNTS, "buffer_events"))


def _rebuffer(walked: pl.DataFrame) -> pl.DataFrame:
    """Seconds from a buffer_start to the next buffer_end: the union of such periods, in walk order.

    The walk is sorted by session, so the previous buffer event is the session's when ``_s``
    is the same, and the last opening start before a closing end is in the end's session.
    """
    kind, on = pl.col("event_type"), pl.col("on")
    buf = (
        walked.lazy()
        .filter(kind.is_in([EventType.BUFFER_START.value, EventType.BUFFER_END.value]))
        .select("_s", "t", (kind == EventType.BUFFER_START.value).alias("on"))
    )
    was_on = pl.when(run_starts(["_s"])).then(False).otherwise(on.shift(1))
    buf = buf.with_columns(was_on.alias("was_on"))
    buf = buf.with_columns(pl.when(on & ~pl.col("was_on")).then(pl.col("t")).forward_fill().alias("since"))
    ends = buf.filter(~on & pl.col("was_on"))
    return ends.group_by("_s").agg((pl.col("t") - pl.col("since")).sum().alias("rebuffer_seconds")).collect()


def _empty_details() -> pl.DataFrame:
    schema = {**PLAYBACK_SESSIONS.polars_schema, **_DETAIL_TYPES}
    return pl.DataFrame(schema=schema).select(*PLAYBACK_SESSIONS.column_names, *DETAIL_COLUMNS)


def playback_sessions(events: pl.DataFrame | pl.LazyFrame, *, recordings: pl.DataFrame | None = None) -> pl.DataFrame:
    """The ``playback_sessions`` table (spec section 3).

    Example:
        >>> from vtp_lab.tables import ANALYTICS_EVENTS
        >>> playback_sessions(ANALYTICS_EVENTS.empty()).columns == list(PLAYBACK_SESSIONS.column_names)
        True
    """
    return PLAYBACK_SESSIONS.conform(session_details(events, recordings=recordings))
