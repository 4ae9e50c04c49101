"""Synthetic semesters: deterministic, believable, and with the bad rows asked for."""

from __future__ import annotations

import polars as pl
import pytest

from vtp_lab.events import EventType
from vtp_lab.synth import semester
from vtp_lab.tables import ANALYTICS_EVENTS, RECORDINGS
from vtp_lab.validation import validate


@pytest.fixture(scope="module")
def sem():
    return semester(courses=2, lectures_per_course=6, students=40, seed=11)


def test_deterministic(sem):
    again = semester(courses=2, lectures_per_course=6, students=40, seed=11)
    assert again.events.equals(sem.events)
    assert not semester(courses=2, lectures_per_course=6, students=40, seed=12).events.equals(sem.events)


def test_schemas_and_all_valid(sem):
    assert sem.events.schema == ANALYTICS_EVENTS.polars_schema
    assert sem.recordings.schema == RECORDINGS.polars_schema
    assert sem.recordings.height == 12
    v = validate(sem.events)
    assert v.rejected.height == 0
    assert v.accepted["id"].n_unique() == sem.events.height


def test_viewing_has_every_behaviour(sem):
    types = set(sem.events["event_type"])
    assert types == {t.value for t in EventType}
    meta = sem.events.filter(pl.col("event_type") == "engagement_action")["metadata"].str.json_path_match("$.action")
    assert {"seek", "speed_change"} <= set(meta)
    fatal = sem.events.filter(pl.col("metadata").str.contains('"fatal":true'))
    assert fatal.height > 0
    sessions = (
        sem.events.filter(pl.col("event_type") != "recording_started")
        .group_by("session_id")
        .agg(closed=pl.col("event_type").is_in(["playback_completed", "session_ended", "error_occurred"]).any())
    )
    assert 0 < sessions.filter(~pl.col("closed")).height < sessions.height  # some sessions are still open


def test_backward_seeks_cluster_on_hard_parts(sem):
    seeks = sem.events.filter(pl.col("metadata").str.contains('"action":"seek"')).with_columns(
        frm=pl.col("metadata").str.json_path_match("$.from_position").cast(pl.Float64),
        to=pl.col("metadata").str.json_path_match("$.to_position").cast(pl.Float64),
    )
    assert seeks.filter(pl.col("to") < pl.col("frm")).height > seeks.filter(pl.col("to") > pl.col("frm")).height


def test_bad_rows_and_duplicates():
    s = semester(courses=1, lectures_per_course=3, students=20, seed=5, bad_rows=0.1, duplicates=0.05)
    v = validate(s.events)
    assert v.rows_read == s.events.height
    assert 0.07 < v.rejected.height / s.events.height < 0.12
    assert v.accepted.height > v.accepted["id"].n_unique()


def test_bad_fraction_is_checked():
    with pytest.raises(ValueError, match=r"bad_rows=1\.5"):
        semester(bad_rows=1.5)


@pytest.mark.parametrize("counts", [{"courses": 0}, {"lectures_per_course": -1}, {"students": 0}])
def test_counts_below_one_are_refused(counts):
    with pytest.raises(ValueError, match="each must be 1 or more") as err:
        semester(**counts)
    name, value = next(iter(counts.items()))
    assert f"{name}={value}" in str(err.value)
