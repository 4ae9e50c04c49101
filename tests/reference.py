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


def walk(events: list[dict], duration: float | None) -> dict:
    """One session's events (dicts with id, event_type, event_timestamp, metadata) to its row."""
    events = sorted(events, key=lambda e: (e["event_timestamp"], RANK[e["event_type"]], e["id"]))
    t0: datetime = events[0]["event_timestamp"]
    w = Walker(duration)
    counts: dict[str, int] = defaultdict(int)
    buffering_since: float | None = None
    rebuffer = 0.0
    ended_at = None
    last_quality = None
    saw_started = False
    for e in events:
        kind = e["event_type"]
        t = (e["event_timestamp"] - t0).total_seconds()
        meta = json.loads(e["metadata"]) if e["metadata"] else {}
        cur = w.seg_pos + w.rate * (t - w.seg_t) if w.playing else w.pos
        position = _num(meta, "position")
        p = position if position is not None else cur
        if kind == "playback_started":
            saw_started = True
            if w.playing:
                w.close(cur, t)
            if meta.get("quality") is not None:
                w.quality = meta["quality"]
            if _num(meta, "bitrate") is not None:
                w.bitrate = _num(meta, "bitrate")
            if _num(meta, "playback_rate") is not None:
                w.rate = _num(meta, "playback_rate")
            w.open(position if position is not None else 0.0, t)
        elif kind == "playback_resumed":
            if w.playing:
                w.close(cur, t)
            w.open(p, t)
        elif kind == "buffer_start":
            counts["buffer_events"] += 1
            w.rab = w.playing
            w.close(p, t)
            buffering_since = t if buffering_since is None else buffering_since
        elif kind == "buffer_end":
            if w.rab:
                w.open(p, t)
            w.rab = False
            if buffering_since is not None:
                rebuffer += t - buffering_since
                buffering_since = None
        elif kind in ("playback_paused", "playback_completed", "session_ended"):
            counts["pauses"] += kind == "playback_paused"
            w.close(p, t)
            w.rab = False
            if kind != "playback_paused":
                ended_at = e["event_timestamp"]
        elif kind == "error_occurred":
            counts["errors"] += 1
            if meta.get("fatal") is True:
                counts["fatal_errors"] += 1
                w.close(p, t)
                w.rab = False
                ended_at = e["event_timestamp"]
        elif kind == "quality_changed":
            counts["quality_changes"] += 1
            old, new = _num(meta, "old_bitrate"), _num(meta, "new_bitrate")
            if old is not None and new is not None:
                counts["upshifts"] += new > old
                counts["downshifts"] += new < old
            was_playing = w.playing
            if was_playing:
                w.close(p, t)
            if meta.get("new_quality") is not None:
                w.quality = meta["new_quality"]
            if new is not None:
                w.bitrate = new
            if was_playing:
                w.open(p, t)
        elif kind == "engagement_action":
            action = meta.get("action")
            if action == "seek":
                counts["seeks"] += 1
                frm, to = _num(meta, "from_position"), _num(meta, "to_position")
                if frm is not None and to is not None and to < frm:
                    counts["backward_seeks"] += 1
                if w.playing:
                    w.close(frm if frm is not None else cur, t)
                    w.open(to if to is not None else cur, t)
                elif to is not None:
                    w.pos = to
            elif action == "speed_change":
                counts["speed_changes"] += 1
                new_rate = _num(meta, "playback_rate")
                if w.playing:
                    w.close(cur, t)
                    if new_rate is not None:
                        w.rate = new_rate
                    w.open(cur, t)
                elif new_rate is not None:
                    w.rate = new_rate
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
    return {
        "watched_seconds": watched,
        "completion_rate": completion,
        "quality": top,
        "buffer_events": counts["buffer_events"],
        "started_at": t0,
        "ended_at": ended_at,
        "play_time_seconds": w.play,
        "rebuffer_seconds": rebuffer,
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
        "exited_before_start": saw_started and w.play == 0 and counts["fatal_errors"] == 0,
    }
