"""A plain per-event reference of spec section 3, for tests only: the oracle of the vectorised sessions.

It walks each session's events one by one with the state of the spec (playing, pos, rate,
quality, seg_t, seg_pos, resume_after_buffer) and records content intervals and play time.
Times are seconds after the session's first event. Readings where the spec is silent
(documented in docs/sessions.md): close(end) sets pos = end whether or not playing; a
missing new_quality or playback_rate leaves the value as it was; rebuffering is the union
of the periods from a buffer_start to the next buffer_end.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from datetime import datetime
from typing import NamedTuple

from vtp_lab.events import SESSION_EVENT_ORDER

RANK = {t.value: i for i, t in enumerate(SESSION_EVENT_ORDER)}


def _num(meta: dict, key: str) -> float | None:
    value = meta.get(key)
    return None if value is None or isinstance(value, bool) else float(value)


def half_up(x: float, decimals: int = 0) -> float:
    """Half up as a decimal computation rounds: the float first cleaned to 6 places."""
    scale = 10**decimals
    return math.floor(round(x * scale, 6) + 0.5) / scale


def union_and_rewatch(intervals: list[tuple[float, float]]) -> tuple[float, float]:
    """Length covered at least once, and at least twice."""
    points = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    union = rewatch = 0.0
    depth = 0
    for i, (x, delta) in enumerate(points):
        depth += delta
        if i + 1 < len(points):
            length = points[i + 1][0] - x
            union += length if depth >= 1 else 0.0
            rewatch += length if depth >= 2 else 0.0
    return union, rewatch


class Walker:
    """The state of one session while its events are walked."""

    def __init__(self, duration: float | None) -> None:
        self.duration = duration
        self.playing, self.pos, self.rate = False, 0.0, 1.0
        self.quality: str | None = None
        self.bitrate: float | None = None
        self.seg_t = self.seg_pos = 0.0
        self.seg_quality: str | None = None
        self.seg_bitrate: float | None = None
        self.rab = False
        self.intervals: list[tuple[float, float]] = []
        self.play = 0.0
        self.by_quality: dict[str | None, float] = defaultdict(float)
        self.first_open: dict[str | None, float] = {}
        self.bitrate_time = self.bitrate_play = 0.0
        self.counts: dict[str, int] = defaultdict(int)
        self.buffering_since: float | None = None
        self.rebuffer = 0.0
        self.ended_at: datetime | None = None
        self.saw_started = False

    def close(self, end: float, t: float) -> None:
        if self.playing:
            capped = min(end, self.duration) if self.duration is not None else end
            if capped > self.seg_pos:
                self.intervals.append((self.seg_pos, capped))
            self.play += t - self.seg_t
            self.by_quality[self.seg_quality] += t - self.seg_t
            self.first_open.setdefault(self.seg_quality, self.seg_t)
            if self.seg_bitrate is not None:
                self.bitrate_time += self.seg_bitrate * (t - self.seg_t)
                self.bitrate_play += t - self.seg_t
        self.playing = False
        self.pos = end

    def open(self, at: float, t: float) -> None:
        self.playing, self.seg_t, self.seg_pos, self.pos = True, t, at, at
        self.seg_quality, self.seg_bitrate = self.quality, self.bitrate

    def end(self, x: At) -> None:
        """The session ends here (completed, ended, or a fatal error)."""
        self.close(x.p, x.t)
        self.rab = False
        self.ended_at = x.at

    def on_playback_started(self, x: At) -> None:
        self.saw_started = True
        if self.playing:
            self.close(x.cur, x.t)
        if x.meta.get("quality") is not None:
            self.quality = x.meta["quality"]
        if _num(x.meta, "bitrate") is not None:
            self.bitrate = _num(x.meta, "bitrate")
        if _num(x.meta, "playback_rate") is not None:
            self.rate = _num(x.meta, "playback_rate")
        self.open(x.position if x.position is not None else 0.0, x.t)

    def on_playback_resumed(self, x: At) -> None:
        if self.playing:
            self.close(x.cur, x.t)
        self.open(x.p, x.t)

    def on_buffer_start(self, x: At) -> None:
        self.counts["buffer_events"] += 1
        self.rab = self.playing
        self.close(x.p, x.t)
        self.buffering_since = x.t if self.buffering_since is None else self.buffering_since

    def on_buffer_end(self, x: At) -> None:
        if self.rab:
            self.open(x.p, x.t)
        self.rab = False
        if self.buffering_since is not None:
            self.rebuffer += x.t - self.buffering_since
            self.buffering_since = None

    def on_playback_paused(self, x: At) -> None:
        self.counts["pauses"] += 1
        self.close(x.p, x.t)
        self.rab = False

    def on_error_occurred(self, x: At) -> None:
        self.counts["errors"] += 1
        if x.meta.get("fatal") is True:
            self.counts["fatal_errors"] += 1
            self.end(x)

    def on_quality_changed(self, x: At) -> None:
        self.counts["quality_changes"] += 1
        old, new = _num(x.meta, "old_bitrate"), _num(x.meta, "new_bitrate")
        if old is not None and new is not None:
            self.counts["upshifts"] += new > old
            self.counts["downshifts"] += new < old
        was_playing = self.playing
        if was_playing:
            self.close(x.p, x.t)
        if x.meta.get("new_quality") is not None:
            self.quality = x.meta["new_quality"]
        if new is not None:
            self.bitrate = new
        if was_playing:
            self.open(x.p, x.t)

    def on_engagement_action(self, x: At) -> None:
        action = x.meta.get("action")
        if action == "seek":
            self.seek(x)
        elif action == "speed_change":
            self.speed_change(x)

    def seek(self, x: At) -> None:
        self.counts["seeks"] += 1
        frm, to = _num(x.meta, "from_position"), _num(x.meta, "to_position")
        if frm is not None and to is not None and to < frm:
            self.counts["backward_seeks"] += 1
        if self.playing:
            self.close(frm if frm is not None else x.cur, x.t)
            self.open(to if to is not None else x.cur, x.t)
        elif to is not None:
            self.pos = to

    def speed_change(self, x: At) -> None:
        self.counts["speed_changes"] += 1
        new_rate = _num(x.meta, "playback_rate")
        if self.playing:
            self.close(x.cur, x.t)
            if new_rate is not None:
                self.rate = new_rate
            self.open(x.cur, x.t)
        elif new_rate is not None:
            self.rate = new_rate

    def step(self, e: dict, t: float) -> None:
        """One event, ``t`` seconds after the session's first: its kind's handler, if it has one."""
        meta = json.loads(e["metadata"]) if e["metadata"] else {}
        cur = self.seg_pos + self.rate * (t - self.seg_t) if self.playing else self.pos
        position = _num(meta, "position")
        p = position if position is not None else cur
        x = At(meta=meta, t=t, cur=cur, position=position, p=p, at=e["event_timestamp"])
        kind = e["event_type"]
        handler = self.end if kind in ("playback_completed", "session_ended") else getattr(self, f"on_{kind}", None)
        if handler is not None:
            handler(x)


class At(NamedTuple):
    """One event as the walk reads it: metadata, seconds since the first event, the position now and as given."""

    meta: dict
    t: float
    cur: float
    position: float | None
    p: float
    at: datetime


def walk(events: list[dict], duration: float | None) -> dict:
    """One session's events (dicts with id, event_type, event_timestamp, metadata) to its row."""
    events = sorted(events, key=lambda e: (e["event_timestamp"], RANK[e["event_type"]], e["id"]))
    t0: datetime = events[0]["event_timestamp"]
    w = Walker(duration)
    last_quality = None
    for e in events:
        w.step(e, (e["event_timestamp"] - t0).total_seconds())
        if w.quality is not None:
            last_quality = w.quality

    union, rewatched = union_and_rewatch(w.intervals)
    watched = int(half_up(union))
    duration_int = int(half_up(duration)) if duration is not None else None
    completion = min(100.0, half_up(watched / duration_int * 100, 2)) if duration_int else None
    played = {q: s for q, s in w.by_quality.items() if q is not None and s > 0}
    if played:
        best = max(played.values())
        top = min((q for q, s in played.items() if s == best), key=lambda q: w.first_open[q])
    else:
        top = last_quality
    counts = w.counts
    return {
        "watched_seconds": watched,
        "completion_rate": completion,
        "quality": top,
        "buffer_events": counts["buffer_events"],
        "started_at": t0,
        "ended_at": w.ended_at,
        "play_time_seconds": w.play,
        "rebuffer_seconds": w.rebuffer,
        "seeks": counts["seeks"],
        "backward_seeks": counts["backward_seeks"],
        "pauses": counts["pauses"],
        "speed_changes": counts["speed_changes"],
        "quality_changes": counts["quality_changes"],
        "upshifts": counts["upshifts"],
        "downshifts": counts["downshifts"],
        "time_weighted_bitrate": w.bitrate_time / w.bitrate_play if w.bitrate_play > 0 else None,
        "errors": counts["errors"],
        "fatal_errors": counts["fatal_errors"],
        "rewatched_seconds": rewatched,
        "exited_before_start": w.saw_started and w.play == 0 and counts["fatal_errors"] == 0,
    }
