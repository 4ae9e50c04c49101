"""Synthetic semesters: believable viewing, for demos, tests and benchmarks.

A semester has courses of weekly lectures and students of four kinds:

- ``steady``: watches most lectures within days of publication, mostly to the end;
- ``binger``: lets lectures pile up and watches them in bursts before the midterm
  and the final;
- ``behind``: starts well, then falls further behind and finishes less;
- ``dropout``: watches like ``steady`` until a week, then stops.

Each viewing is one or more sessions. In a session the student plays, pauses,
seeks back over the lecture's hard parts, skips ahead, changes speed; the player
switches quality as the student's bandwidth changes and buffers on poor links;
errors happen (a few fatal). Some sessions are abandoned without an end event
(still open). ``bad_rows`` and ``duplicates`` add broken and repeated rows.

Example:
    >>> s = semester(courses=1, lectures_per_course=2, students=3, seed=1)
    >>> sorted(s.events["event_type"].unique())[:2]
    ['buffer_end', 'buffer_start']
    >>> s.recordings.height
    2
"""

from __future__ import annotations

import json
import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final, Literal, NamedTuple

import polars as pl

from vtp_lab.tables import ANALYTICS_EVENTS, RECORDINGS

__all__ = ["BITRATES", "Persona", "Semester", "semester"]

Persona = Literal["steady", "binger", "behind", "dropout"]

BITRATES: Final[dict[str, int]] = {"360p": 800, "480p": 1400, "720p": 2800, "1080p": 5000}
"""The bitrate ladder (kbit/s) of the synthetic player."""

_LADDER: Final = list(BITRATES)
_PERSONAS: Final[tuple[Persona, ...]] = ("steady", "binger", "behind", "dropout")
_PERSONA_WEIGHTS: Final = (0.45, 0.2, 0.2, 0.15)


@dataclass(frozen=True)
class Semester:
    """A synthetic semester: events (``analytics_events`` columns) and the recordings catalogue.

    Example:
        >>> semester(courses=1, lectures_per_course=1, students=1, seed=0).events.columns[:2]
        ['id', 'event_type']
    """

    events: pl.DataFrame
    recordings: pl.DataFrame


class _Sim:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.cols: dict[str, list[object]] = {c: [] for c in ANALYTICS_EVENTS.column_names}

    def uid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def emit(self, kind: str, who: tuple[str, str, str], t: datetime, meta: dict[str, object] | None) -> None:
        """Append one event; ``who`` is (recording_id, user_id, session_id)."""
        c = self.cols
        c["id"].append(self.uid())
        c["event_type"].append(kind)
        c["recording_id"].append(who[0])
        c["user_id"].append(who[1])
        c["session_id"].append(who[2])
        c["event_timestamp"].append(t)
        c["metadata"].append(None if meta is None else json.dumps(meta, separators=(",", ":")))

    def session(
        self,
        *,
        rec: str,
        user: str,
        start: datetime,
        duration: float,
        position: float,
        hard: list[float],
        bandwidth: float,
    ) -> float:
        """Simulate one session; return the content position where it stopped."""
        rng = self.rng
        who = (rec, user, f"sess-{self.uid()[:13]}")
        level = max(0, min(3, round(bandwidth * 3 + rng.uniform(-0.5, 0.5))))
        p = _Play(
            who=who,
            t=start,
            pos=position,
            level=level,
            quality=_LADDER[level],
            duration=duration,
            hard=hard,
            bandwidth=bandwidth,
        )
        self.emit(
            "playback_started",
            p.who,
            p.t,
            {
                "position": round(p.pos, 3),
                "quality": p.quality,
                "bitrate": BITRATES[p.quality],
                "playback_rate": p.rate,
                "duration": duration,
            },
        )
        patience = rng.expovariate(1 / (duration * (0.4 + 0.8 * bandwidth)))
        watched = 0.0
        while True:
            step = min(rng.expovariate(1 / 240), duration - p.pos) / p.rate
            if step <= 0 or watched + step > patience:
                return self._stop(p, max(0.0, min(step, patience - watched)))
            p.t += timedelta(seconds=step)
            p.pos += step * p.rate
            watched += step
            if self._event(p, self.rng.random()):
                return p.pos

    def _stop(self, p: _Play, step: float) -> float:
        """The viewer stops after ``step`` more seconds: completed at the end, else mostly an explicit end."""
        p.t += timedelta(seconds=step)
        p.pos = min(p.duration, p.pos + step * p.rate)
        if p.pos >= p.duration - 1:
            self.emit("playback_completed", p.who, p.t, {"position": round(p.duration, 3)})
        elif self.rng.random() < 0.8:
            self.emit("session_ended", p.who, p.t, {"position": round(p.pos, 3)})
        return p.pos

    def _event(self, p: _Play, roll: float) -> bool:
        """One thing the viewer does at ``p.t``, picked by ``roll``; True where it ends the session."""
        if roll < 0.25:
            self._pause(p)
        elif roll < 0.45:
            self._seek_back(p)
        elif roll < 0.52:
            self._seek_to(p, min(p.duration - 1, p.pos + self.rng.uniform(30, 300)))
        elif roll < 0.58:
            p.rate = self.rng.choice([1.0, 1.25, 1.5, 2.0])
            meta = {"action": "speed_change", "playback_rate": p.rate, "position": round(p.pos, 3)}
            self.emit("engagement_action", p.who, p.t, meta)
        elif roll < 0.72:
            self._switch_quality(p)
        elif roll < 0.72 + 0.25 * (1 - p.bandwidth):
            self._buffer(p)
        elif roll < 0.985:
            action = self.rng.choice(["caption_toggle", "note_taken", "transcript_opened"])
            self.emit("engagement_action", p.who, p.t, {"action": action, "position": round(p.pos, 3)})
        else:
            return self._error(p)
        return False

    def _pause(self, p: _Play) -> None:
        self.emit("playback_paused", p.who, p.t, {"position": round(p.pos, 3)})
        p.t += timedelta(seconds=self.rng.expovariate(1 / 90))
        self.emit("playback_resumed", p.who, p.t, {"position": round(p.pos, 3)})

    def _seek_back(self, p: _Play) -> None:
        """Back to a little before the last hard passage played, if one was."""
        if any(h < p.pos for h in p.hard):
            self._seek_to(p, max(0.0, max(h for h in p.hard if h < p.pos) - self.rng.uniform(5, 60)))

    def _seek_to(self, p: _Play, target: float) -> None:
        meta = {"action": "seek", "from_position": round(p.pos, 3), "to_position": round(target, 3)}
        self.emit("engagement_action", p.who, p.t, meta)
        p.pos = target

    def _switch_quality(self, p: _Play) -> None:
        """One rung up or down the ladder, mostly the way the viewer's bandwidth points."""
        rng = self.rng
        new_level = max(0, min(3, p.level + rng.choice([-1, 1]) * (1 if rng.random() < p.bandwidth else -1)))
        if new_level == p.level:
            return
        new = _LADDER[new_level]
        meta = {
            "old_quality": p.quality,
            "new_quality": new,
            "old_bitrate": BITRATES[p.quality],
            "new_bitrate": BITRATES[new],
            "reason": "bandwidth_increase" if new_level > p.level else "bandwidth_drop",
            "position": round(p.pos, 3),
        }
        self.emit("quality_changed", p.who, p.t, meta)
        p.level, p.quality = new_level, new

    def _buffer(self, p: _Play) -> None:
        self.emit("buffer_start", p.who, p.t, {"position": round(p.pos, 3)})
        p.t += timedelta(seconds=self.rng.uniform(0.3, 4 + 10 * (1 - p.bandwidth)))
        self.emit("buffer_end", p.who, p.t, {"position": round(p.pos, 3)})

    def _error(self, p: _Play) -> bool:
        """A playback error; True where it is fatal (the session ends)."""
        fatal = self.rng.random() < 0.3
        meta = {
            "code": self.rng.choice(["E_NETWORK", "E_DECODE", "E_DRM"]),
            "message": "playback error",
            "fatal": fatal,
            "position": round(p.pos, 3),
        }
        self.emit("error_occurred", p.who, p.t, meta)
        return fatal


@dataclass
class _Play:
    """A session being simulated: who, when and where in the content, at what speed and quality."""

    who: tuple[str, str, str]
    t: datetime
    pos: float
    level: int
    quality: str
    duration: float
    hard: list[float]
    bandwidth: float
    rate: float = 1.0


def _view_delay(persona: Persona, week: int, weeks: int, dropout_week: int, rng: random.Random) -> float | None:
    """Days between publication and the first viewing, or None when not watched."""
    if persona == "dropout" and week > dropout_week:
        return None
    if persona == "binger":
        exam = weeks // 2 if week <= weeks // 2 else weeks
        return max(0.5, (exam - week) * 7 + rng.uniform(-3, 0)) if rng.random() < 0.85 else None
    if persona == "behind":
        return rng.uniform(1, 4) + week * rng.uniform(0.5, 1.5) if rng.random() < 0.9 - week * 0.03 else None
    return rng.uniform(0.2, 4) if rng.random() < 0.92 else None


def _corrupt(events: pl.DataFrame, fraction: float, rng: random.Random) -> pl.DataFrame:
    """Break a fraction of rows, each in one of the ways the contract rejects."""
    if fraction <= 0:
        return events
    text = events.with_columns(pl.col("event_timestamp").dt.strftime("%Y-%m-%dT%H:%M:%S%.6fZ"))
    rows = text.to_dicts()
    breakers = [
        ("event_type", lambda v: "playback_exploded"),
        ("recording_id", lambda v: "not-a-uuid"),
        ("user_id", lambda v: "00000000-0000-0000-0000-000000000000"),
        ("session_id", lambda v: "   "),
        ("event_timestamp", lambda v: "yesterday-ish"),
        ("event_timestamp", lambda v: "2999-01-01T00:00:00Z"),
        ("metadata", lambda v: '{"position": -5}'),
        ("metadata", lambda v: "[1, 2, 3]"),
        ("user_id", lambda v: None),
    ]
    for i in rng.sample(range(len(rows)), round(len(rows) * fraction)):
        column, breaker = rng.choice(breakers)
        rows[i][column] = breaker(rows[i][column])
    return pl.DataFrame(rows, schema={c: pl.String for c in events.columns})


class _Lecture(NamedTuple):
    course: str
    rec: str
    duration: float
    published: datetime
    hard: list[float]
    """Positions of the passages students find hard (and seek back to)."""


def _lectures(
    sim: _Sim, *, courses: int, weeks: int, start: datetime
) -> tuple[dict[str, list[object]], list[_Lecture]]:
    """The catalogue (one lecture a week per course) and its ``recording_started`` events."""
    rng = sim.rng
    catalogue: dict[str, list[object]] = {c: [] for c in RECORDINGS.column_names}
    lectures: list[_Lecture] = []
    for c in range(courses):
        course = sim.uid()
        for week in range(1, weeks + 1):
            rec = sim.uid()
            duration = float(rng.randint(20, 75) * 60)
            published = start + timedelta(weeks=week - 1, days=c % 5, hours=rng.randint(0, 8))
            title = f"Course {c + 1}, lecture {week}"
            row = (rec, course, title, duration, published, f"Course {c + 1}")
            for name, value in zip(RECORDINGS.column_names, row, strict=True):
                catalogue[name].append(value)
            hard = sorted(rng.uniform(0.1, 0.9) * duration for _ in range(rng.randint(1, 3)))
            lectures.append(_Lecture(course, rec, duration, published, hard))
            sim.emit(
                "recording_started",
                (rec, sim.uid(), f"rec-{rec[:8]}"),
                published - timedelta(minutes=1),
                {"course_id": course, "title": title, "duration": duration},
            )
    return catalogue, lectures


def _student(sim: _Sim, lectures: list[_Lecture], *, course_ids: list[str], weeks: int, start: datetime) -> None:
    """One student's semester: a persona, a bandwidth, one to three courses, and the sessions of each lecture."""
    rng = sim.rng
    user = sim.uid()
    persona = rng.choices(_PERSONAS, _PERSONA_WEIGHTS)[0]
    bandwidth = rng.betavariate(4, 2)
    dropout_week = rng.randint(1, max(1, weeks - 1))
    enrolled = set(rng.sample(course_ids, k=min(len(course_ids), rng.randint(1, 3))))
    for lecture in lectures:
        if lecture.course not in enrolled:
            continue
        week = int((lecture.published - start).days // 7) + 1
        delay = _view_delay(persona, week, weeks, dropout_week, rng)
        if delay is None:
            continue
        t = lecture.published + timedelta(days=delay, hours=rng.uniform(0, 10))
        pos = 0.0
        for _session in range(rng.choice([1, 1, 1, 2, 2, 3])):
            pos = sim.session(
                rec=lecture.rec,
                user=user,
                start=t,
                duration=lecture.duration,
                position=pos,
                hard=lecture.hard,
                bandwidth=bandwidth,
            )
            if pos >= lecture.duration - 1:
                break
            t += timedelta(hours=rng.uniform(1, 48))


def semester(
    *,
    courses: int = 3,
    lectures_per_course: int = 12,
    students: int = 120,
    seed: int = 0,
    start: datetime = datetime(2026, 2, 2, 9, tzinfo=UTC),
    bad_rows: float = 0.0,
    duplicates: float = 0.0,
) -> Semester:
    """Simulate a semester of viewing.

    With ``bad_rows`` or ``duplicates`` above 0, the events come back as text
    columns (as a dump would be), with that fraction of rows broken or repeated.

    Example:
        >>> s = semester(courses=1, lectures_per_course=2, students=4, seed=3, bad_rows=0.1)
        >>> s.events.schema["event_timestamp"]
        String
    """
    if min(courses, lectures_per_course, students) < 1:
        raise ValueError(
            f"courses={courses}, lectures_per_course={lectures_per_course} and students={students}: "
            "each must be 1 or more"
        )
    if not 0 <= bad_rows < 1 or not 0 <= duplicates < 1:
        raise ValueError(f"bad_rows={bad_rows} and duplicates={duplicates} must be fractions in [0, 1)")
    sim = _Sim(seed)
    catalogue, lectures = _lectures(sim, courses=courses, weeks=lectures_per_course, start=start)
    course_ids = sorted({lecture.course for lecture in lectures})
    for _ in range(students):
        _student(sim, lectures, course_ids=course_ids, weeks=lectures_per_course, start=start)
    events = pl.DataFrame(sim.cols, schema=ANALYTICS_EVENTS.polars_schema).sort("event_timestamp")
    if duplicates > 0:
        events = pl.concat([events, events.sample(fraction=duplicates, seed=seed)]).sort("event_timestamp")
    events = _corrupt(events, bad_rows, sim.rng)
    return Semester(events=events, recordings=pl.DataFrame(catalogue, schema=RECORDINGS.polars_schema))
