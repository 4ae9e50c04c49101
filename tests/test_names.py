"""Courses and lectures by name: listings with titles and counts, and a unique title prefix wherever an id goes."""

from __future__ import annotations

import polars as pl
import pytest

from vtp_lab.cli import main
from vtp_lab.errors import AmbiguousNameError, NotFoundError
from vtp_lab.io import write_events
from vtp_lab.lab import Lab
from vtp_lab.synth import semester


@pytest.fixture(scope="module")
def sem():
    return semester(courses=2, lectures_per_course=11, students=6, seed=8)


@pytest.fixture(scope="module")
def lab(sem, tmp_path_factory):
    path = tmp_path_factory.mktemp("names") / "lab.duckdb"
    with Lab(path) as lab:
        lab.load(write_events(sem.events, path.parent / "sem.ndjson"), progress=False)
        lab.load_recordings(sem.recordings)
    return path


def test_courses_and_lectures_are_listed_with_titles_and_counts(lab, sem):
    with Lab(lab, read_only=True) as ro:
        courses, lectures = ro.courses(), ro.lectures()
        students = dict(ro.course_statistics().select("course_id", "total_unique_students").iter_rows())
        viewers = dict(ro.lecture_statistics().select("recording_id", "unique_viewers").iter_rows())
    assert courses["course_title"].to_list() == ["Course 1", "Course 2"]
    assert courses["lectures"].to_list() == [11, 11]
    assert dict(courses.select("course_id", "students").iter_rows()) == students
    assert lectures.height == 22 and lectures["title"][:2].to_list() == ["Course 1, lecture 1", "Course 1, lecture 2"]
    assert lectures["title"][10] == "Course 1, lecture 11"  # by publication, not by text
    assert dict(lectures.select("recording_id", "unique_viewers").iter_rows()) == viewers


def test_a_unique_title_prefix_stands_for_an_id_and_an_exact_title_wins(lab, sem):
    catalogue = sem.recordings
    first = catalogue.filter(pl.col("title") == "Course 1, lecture 1")["recording_id"].item()
    course = catalogue.filter(pl.col("course_title") == "Course 2")["course_id"][0]
    with Lab(lab, read_only=True) as ro:
        by_title = ro.lecture_statistics(recording_id="course 1, LECTURE 1")  # not lectures 10 and 11
        assert by_title.equals(ro.lecture_statistics(recording_id=first))
        assert ro.course_statistics(course_id="Course 2")["course_id"].to_list() == [course]
        assert ro.lectures(course_id="course 2")["course_id"].unique().to_list() == [course]
        report = ro.report("engagement", course_id="Course 2")
        assert report.to_markdown() == ro.report("engagement", course_id=course).to_markdown()


def test_an_ambiguous_prefix_lists_the_matches_and_an_unknown_one_suggests(lab):
    with Lab(lab, read_only=True) as ro:
        with pytest.raises(AmbiguousNameError) as ambiguous:
            ro.report("engagement", course_id="course")
        assert ambiguous.value.matches[0].startswith("Course 1 (") and len(ambiguous.value.matches) == 2
        assert "'course' names 2 courses: Course 1 (" in str(ambiguous.value)
        with pytest.raises(AmbiguousNameError, match="names 11 lectures"):
            ro.playback_sessions(recording_id="Course 2, lecture")
        with pytest.raises(NotFoundError, match="no lecture 'Course 1, lectur 3'; did you mean 'Course 1, lecture 3'"):
            ro.playback_sessions(recording_id="Course 1, lectur 3")


def test_info_lists_courses_and_lectures(lab, capsys):
    assert main(["info", "--store", str(lab)]) == 0
    out = capsys.readouterr().out
    assert "Course 1" in out and "Course 2, lecture 11" in out and "unique beginning of its title" in out


def test_the_dashboard_picks_courses_and_lectures_by_title(lab):
    with Lab(lab, read_only=True) as ro:
        dashboard = ro.dashboard()
    labels = [label for label, _ in dashboard.course.options]
    assert labels == ["(all)", "Course 1", "Course 2"]
    dashboard.course.value = dashboard.course.options[1][1]
    assert [label for label, _ in dashboard.lecture.options][1:3] == ["Course 1, lecture 1", "Course 1, lecture 2"]


def test_reports_show_titles_beside_ids(lab):
    with Lab(lab, read_only=True) as ro:
        report = ro.report("engagement", course_id="Course 1")
        attendance = ro.report("attendance")
    for name, table in [*report.tables.items(), *attendance.tables.items()]:
        if "recording_id" in table.columns:
            assert "title" in table.columns, name
        if "course_id" in table.columns and table.height:
            at = table.columns.index("course_id")
            assert table.columns[at + 1] == "course_title", name
            assert set(table["course_title"]) <= {"Course 1", "Course 2"}, name
    assert "Course 1, lecture 1" in report.to_markdown()
