"""The six reports: numbers that match their frames, offline HTML, JSON round trips; alerts; the CLI."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import polars as pl
import pytest
from conftest import ROOT, raw_event

from vtp_lab import reports
from vtp_lab.errors import NotFoundError, VtpLabError
from vtp_lab.lab import Lab
from vtp_lab.metrics import alerts
from vtp_lab.reports import REPORT_KINDS, REPORTS, Report
from vtp_lab.reports.builders import Audit, compliance
from vtp_lab.stats import derive
from vtp_lab.synth import semester
from vtp_lab.tables import LOADS, RECORDINGS, REJECTED_EVENTS


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    sem = semester(courses=2, lectures_per_course=4, students=40, seed=31, bad_rows=0.02)
    path = tmp_path_factory.mktemp("reports") / "lab.duckdb"
    lab = Lab(path)
    dump = tmp_path_factory.mktemp("dump") / "d.ndjson"
    from vtp_lab.io import write_events

    write_events(sem.events, dump)
    lab.load(dump, progress=False)
    lab.load_recordings(sem.recordings)
    return lab


@pytest.fixture(scope="module")
def built(lab):
    user = lab.engagement_metrics()["user_id"][0]
    return {kind: lab.report(kind, user_id=user if kind == "student" else None) for kind in REPORT_KINDS}


def test_every_kind_builds_with_its_class(built):
    assert {k: type(r).__name__ for k, r in built.items()} == {
        "student": "StudentEngagementReport",
        "attendance": "AttendanceReport",
        "engagement": "EngagementReport",
        "performance": "PerformanceReport",
        "quality": "QualityReport",
        "compliance": "ComplianceReport",
    }


def test_headline_numbers_match_the_frames(built, lab):
    s = built["student"]
    assert s.headline["sessions"] == s.tables["watch_history"].height
    assert s.headline["watch_hours"] == pytest.approx(
        s.tables["watch_history"]["watched_seconds"].sum() / 3600, abs=0.01
    )
    assert s.headline["lectures_watched"] == s.tables["coverage_per_lecture"].height
    e = built["engagement"]
    assert e.tables["score_distribution"]["pairs"].sum() == lab.engagement_metrics().height
    assert e.headline["mean_engagement_score"] == pytest.approx(lab.engagement_metrics()["engagement_score"].mean())
    assert e.headline["students_at_risk"] == e.tables["students_at_risk"]["user_id"].n_unique()
    p = built["performance"]
    assert p.headline["sessions"] == lab.playback_sessions().height == p.tables["overall"]["sessions"].item()
    assert p.headline["rebuffer_ratio"] == pytest.approx(p.tables["overall"]["rebuffer_ratio"].item())
    q = built["quality"]
    assert q.headline["quality_switches"] == lab.quality_events().height == q.tables["switches"]["switches"].sum()
    c = built["compliance"]
    loads = lab.loads()
    assert (c.headline["rows_read"], c.headline["accepted"], c.headline["rejected"], c.headline["duplicates"]) == (
        loads["rows_read"].sum(),
        loads["accepted"].sum(),
        loads["rejected"].sum(),
        loads["duplicates"].sum(),
    )
    assert c.headline["quarantined_rows"] == lab.rejected_events().height
    assert c.tables["rejected_by_reason"]["rows"].sum() == lab.rejected_events().height
    a = built["attendance"]
    assert a.headline["lectures"] == lab.recordings().height
    assert a.headline["mean_attendance_rate"] == pytest.approx(
        lab.course_statistics()["average_attendance_rate"].mean()
    )


def test_html_is_standalone_and_offline(built, tmp_path):
    for kind, report in built.items():
        page = report.to_html(tmp_path / f"{kind}.html")
        assert (tmp_path / f"{kind}.html").read_text() == page
        assert not re.search(r"<script[^>]*src=|<link[^>]*href=|@import|url\(\s*['\"]?https?:", page), kind
        assert page.count("<svg") == len(report.charts)
        assert "<h1>" in page


def test_json_round_trip_and_markdown(built):
    for report in built.values():
        data = json.loads(json.dumps(report.to_dict()))
        back = Report.from_dict(data)
        assert back.headline == data["headline"]
        assert {name: frame.height for name, frame in back.tables.items()} == {
            name: frame.height for name, frame in report.tables.items()
        }
        assert back.to_dict()["tables"] == data["tables"]
        assert report.to_markdown().startswith(f"# {report.title}")
        bundle = report._repr_mimebundle_()
        assert set(bundle) == {"text/html", "text/plain"}


def test_scopes_and_bad_scopes(lab):
    course = lab.recordings()["course_id"][0]
    scoped = lab.report("engagement", course_id=course)
    assert scoped.scope == {"course_id": course}
    assert scoped.tables["lectures"].height == lab.recordings().filter(pl.col("course_id") == course).height
    with pytest.raises(NotFoundError, match="no course 'nope'"):
        lab.report("attendance", course_id="nope")
    with pytest.raises(ValueError, match="needs user_id"):
        lab.report("student")
    rec = lab.recordings().filter(pl.col("course_id") == course)["recording_id"][0]
    one = lab.report("performance", course_id=course, recording_id=rec)
    assert one.tables["per_lecture"]["recording_id"].to_list() == [rec]
    with pytest.raises(NotFoundError, match=r"no lecture 'nope'; See lab\.lectures"):  # not an id: a title
        lab.report("performance", recording_id="nope")
    other = lab.recordings().filter(pl.col("course_id") != course)["course_id"][0]
    with pytest.raises(NotFoundError, match=f"no recording '{rec}' in course '{other}'"):
        lab.report("quality", course_id=other, recording_id=rec)


def test_an_unknown_id_is_a_lookup_error_that_suggests_close_ids(lab):
    rec = lab.recordings()["recording_id"][0]
    typo = rec[:-1] + ("0" if rec[-1] != "0" else "1")
    with pytest.raises(LookupError) as info:
        lab.report("performance", recording_id=typo)
    assert isinstance(info.value, NotFoundError) and isinstance(info.value, VtpLabError)
    assert info.value.matches[0] == rec and f"did you mean '{rec}'" in str(info.value)
    user = lab.engagement_metrics()["user_id"][0]
    with pytest.raises(NotFoundError, match=f"did you mean '{user}'"):
        lab.report("student", user_id=user[:-1] + ("0" if user[-1] != "0" else "1"))


def test_alerts_name_their_rules(lab):
    table = lab.alerts(below=0.9, weeks=1)
    assert table.columns == ["kind", "subject", "course_id", "rule", "details"]
    assert table.height > 0
    assert set(table["kind"]) <= {"low_engagement", "struggle_lecture", "qoe_regression"}
    for row in table.iter_rows(named=True):
        assert row["rule"] and json.loads(row["details"])
    struggle = [r for c in lab.course_statistics().iter_rows(named=True) for r in c["struggle_lectures"]]
    assert sorted(table.filter(pl.col("kind") == "struggle_lecture")["subject"]) == sorted(struggle)


def test_reports_and_alerts_take_a_cohort_frame(lab):
    """A report is built from frames: the derived tables of a cohort of ten students, not a Lab."""
    cohort = lab.engagement_metrics()["user_id"].unique().sort().head(10)
    d = derive(lab.events().filter(pl.col("user_id").is_in(cohort.implode())), recordings=lab.recordings())
    report = reports.engagement(d)
    assert report.headline["students"] == 10
    assert reports.build("engagement", derived=d).headline == report.headline
    assert (
        reports.student(d, user_id=cohort[0]).headline["lectures_watched"]
        == d.engagement_features.filter(pl.col("user_id") == cohort[0]).height
    )
    table = alerts(
        features=d.engagement_features,
        details=d.session_details,
        courses=d.course_statistics,
        recordings=d.recordings,
        below=0.9,
        weeks=1,
    )
    assert table.equals(d.alerts(below=0.9, weeks=1))
    assert set(table.filter(pl.col("kind") == "low_engagement")["subject"]) <= set(cohort)


def test_the_registry_finds_every_kind_and_says_what_it_reads(lab):
    assert tuple(REPORTS) == REPORT_KINDS
    assert {kind: entry.reads for kind, entry in REPORTS.items()} == {
        **dict.fromkeys(REPORT_KINDS, "derived"),
        "compliance": "audit",
    }
    with pytest.raises(ValueError, match="the compliance report reads the audit tables: pass audit="):
        reports.build("compliance", derived=lab.derived())
    with pytest.raises(ValueError, match="unknown report 'timeline'"):
        reports.build("timeline", derived=lab.derived())  # type: ignore[arg-type]


def test_cli_report(lab, tmp_path):
    lab.close()
    store = lab.path

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "vtp_lab.cli", *args],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=300,
            check=False,
        )

    out = run("report", "engagement", "--store", store, "-o", str(tmp_path / "e.html"))
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "e.html").read_text().startswith("<!DOCTYPE html>")
    out = run("report", "compliance", "--store", store, "--format", "json", "-o", str(tmp_path / "c.json"))
    assert json.loads((tmp_path / "c.json").read_text())["kind"] == "compliance"
    out = run("report", "student", "--store", store)
    assert out.returncode == 2 and "needs --user" in out.stderr
    out = run("report", "quality", "--store", store, "-o", str(tmp_path / "q.md"))
    assert out.returncode == 0 and (tmp_path / "q.md").read_text().startswith("# Streaming quality")


def test_reports_are_strict_json_when_sessions_played_nothing():
    lab = Lab(":memory:")
    lab.append(semester(courses=1, lectures_per_course=2, students=4, seed=2).events)
    rec = "5ba7b811-9dad-11d1-80b4-00c04fd430c8"
    lab.append(
        pl.DataFrame(
            [
                raw_event(recording_id=rec, session_id=f"idle-{i}", event_type=kind)
                for i, kind in enumerate(["playback_started", "buffer_start", "playback_started"])
            ]
        )
    )
    for kind in REPORT_KINDS:
        if kind != "student":
            json.dumps(lab.report(kind).to_dict(), allow_nan=False)  # no NaN or infinity anywhere


def test_compliance_says_who_watched_enough_in_time(tmp_path):
    """By hand: one 100 s lecture, due 7 days after publication, 80% required.

    Ana plays 0-90 s on day 1 (0.9: met); Ben plays 0-50 s on day 2 and 50-100 s on day 9
    (0.5 by the deadline: missed, though he watched it all); Cy plays nothing.
    """
    from datetime import UTC, datetime, timedelta

    from conftest import COURSE, REC

    from vtp_lab.stats import ViewingRequirement, viewing_compliance

    published = datetime(2026, 9, 1, 9, tzinfo=UTC)
    users = {"ana": "6ba7b821-9dad-11d1-80b4-00c04fd430c8", "ben": "6ba7b822-9dad-11d1-80b4-00c04fd430c8"}
    cy = "6ba7b823-9dad-11d1-80b4-00c04fd430c8"
    plays = [("ana", 1, 0, 90), ("ben", 2, 0, 50), ("ben", 9, 50, 100)]
    rows = []
    for who, day, start, end in plays:
        at = published + timedelta(days=day)
        session = f"{who}-{day}"
        rows.append(("playback_started", users[who], session, at, f'{{"position": {start}}}'))
        rows.append(
            ("playback_paused", users[who], session, at + timedelta(seconds=end - start), f'{{"position": {end}}}')
        )
    rows.append(("buffer_end", cy, "cy-1", published + timedelta(days=3), '{"position": 0}'))
    events = pl.DataFrame(
        {
            "id": [f"6ba7b8{i:02d}-9dad-11d1-80b4-00c04fd430c8" for i in range(len(rows))],
            "event_type": [r[0] for r in rows],
            "recording_id": [REC] * len(rows),
            "user_id": [r[1] for r in rows],
            "session_id": [r[2] for r in rows],
            "event_timestamp": [r[3] for r in rows],
            "metadata": [r[4] for r in rows],
        }
    )
    recordings = RECORDINGS.conform(
        pl.DataFrame(
            {"recording_id": [REC], "course_id": [COURSE], "title": ["Lecture 1"], "duration_seconds": [100.0]}
        ).with_columns(pl.lit(published).alias("published_at"))
    )
    requirement = ViewingRequirement(coverage=0.8, within=timedelta(days=7))
    viewing = viewing_compliance(events, recordings, requirement)
    who = {v: k for k, v in {**users, "cy": cy}.items()}
    assert {who[u]: (round(c, 3), m) for u, c, m in viewing.select("user_id", "coverage", "met").iter_rows()} == {
        "ana": (0.9, True),
        "ben": (0.5, False),
        "cy": (0.0, False),
    }
    audit = Audit(
        loads=LOADS.empty(),
        rejected_events=REJECTED_EVENTS.empty(),
        event_timestamps=events["event_timestamp"],
        viewing=viewing,
        requirement=requirement.describe(),
    )
    report = compliance(audit)
    assert report.title == "Engagement compliance and audit trail"
    assert report.tables["viewing_by_lecture"].select("students", "met").row(0) == (3, 1)
    assert sorted(who[u] for u in report.tables["viewing_missed"]["user_id"]) == ["ben", "cy"]
    assert "within 7 days" in report.to_markdown()


def test_html_reports_are_print_ready_with_a_footer(tmp_path):
    import vtp_lab

    sem = semester(courses=1, lectures_per_course=2, students=5, seed=2)
    lab = Lab(tmp_path / "print.duckdb")
    lab.append(sem.events)
    lab.load_recordings(sem.recordings)
    course = lab.recordings()["course_id"][0]
    page = lab.report("engagement", course_id=course).to_html()
    assert "@media print" in page and f"<p class='scope'>course {course}</p>" in page
    footer = page[page.index("<footer>") :]
    assert lab.path in footer and f"vtp_lab {vtp_lab.__version__}" in footer and "docs/metrics.md" in footer
    assert "http://" not in page.replace("http://www.w3.org", "") and "https://" not in page  # nothing remote
