"""Two-stage derivation: any cut of the recordings into partitions gives the whole-frame tables."""

from __future__ import annotations

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal
from test_sessions import REC2, event, frame, recordings, session_events

from vtp_lab.stats import Derived, Partial, combine, derive, derive_partition
from vtp_lab.synth import semester

TABLES = (
    "session_details",
    "playback_sessions",
    "quality_events",
    "engagement_features",
    "engagement_metrics",
    "lecture_statistics",
    "course_statistics",
    "recordings",
    "quality_play",
)
REC3 = "6ba7b814-9dad-11d1-80b4-00c04fd430c8"


def cut(events: pl.DataFrame, assignment: list[int], catalogue: pl.DataFrame | None) -> list[Partial]:
    """``derive_partition`` of each group of recordings (recording i in partition assignment[i % len])."""
    recs = events["recording_id"].unique().sort().to_list()
    part_of = {rec: assignment[i % len(assignment)] for i, rec in enumerate(recs)}
    groups = events.with_columns(pl.col("recording_id").replace_strict(part_of, return_dtype=pl.Int64).alias("_p"))
    return [
        derive_partition(group.drop("_p"), recordings=catalogue)
        for _, group in groups.group_by("_p", maintain_order=True)
    ]


def assert_same(got: Derived, want: Derived) -> None:
    """Integers, strings, lists and times exactly; floats within 1e-9 relative."""
    for name in TABLES:
        assert_frame_equal(getattr(got, name), getattr(want, name), check_exact=False, rel_tol=1e-9, abs_tol=0)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    shape=st.tuples(st.integers(0, 10_000), st.integers(1, 3), st.integers(1, 4), st.integers(2, 12)),
    assignment=st.lists(st.integers(0, 5), min_size=1, max_size=8),
    with_catalogue=st.booleans(),
)
def test_a_semester_cut_any_way_gives_the_whole_tables(shape, assignment, with_catalogue):
    seed, courses, lectures, students = shape
    sem = semester(courses=courses, lectures_per_course=lectures, students=students, seed=seed)
    catalogue = sem.recordings if with_catalogue else None
    want = derive(sem.events, recordings=catalogue)
    assert_same(combine(cut(sem.events, assignment, catalogue)), want)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(
    sessions=st.lists(st.tuples(session_events(), st.sampled_from([0, 1, 2])), min_size=1, max_size=6),
    assignment=st.lists(st.integers(0, 3), min_size=1, max_size=3),
)
def test_random_sessions_cut_any_way_give_the_whole_tables(sessions, assignment):
    recs = [recordings(600.0)["recording_id"][0], REC2, REC3]
    rows = []
    for s, (evs, r) in enumerate(sessions):
        rows += [
            event(s * 100 + i, t, kind, meta, session=f"s{s}", rec=recs[r]) for i, (t, kind, meta) in enumerate(evs)
        ]
    events = frame(rows)
    assert_same(combine(cut(events, assignment, None)), derive(events))


def test_combine_needs_a_partition_and_a_fraction():
    with pytest.raises(ValueError, match="at least one partition"):
        combine([])
    with pytest.raises(ValueError, match="attendance_threshold=0"):
        combine(
            [derive_partition(semester(courses=1, lectures_per_course=1, students=2).events)], attendance_threshold=0
        )
