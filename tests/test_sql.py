"""lab.sql and vtp-lab sql: one read-only SELECT over every table, on both stores."""

from __future__ import annotations

import polars as pl
import pytest

from vtp_lab.cli import main
from vtp_lab.errors import InputFormatError
from vtp_lab.io import write_events
from vtp_lab.lab import Lab
from vtp_lab.synth import semester
from vtp_lab.tables import TABLES


@pytest.fixture(scope="module")
def sem():
    return semester(courses=1, lectures_per_course=2, students=5, seed=4)


@pytest.fixture(params=["duckdb", "lake"])
def lab(request, tmp_path, sem):
    lab = Lab(tmp_path / ("lab.duckdb" if request.param == "duckdb" else "lake"))
    lab.load(write_events(sem.events, tmp_path / "sem.ndjson"), progress=False)
    lab.load_recordings(sem.recordings)
    yield lab
    lab.close()


def test_every_table_answers_with_fresh_derived_tables_and_parameters(lab, sem):
    counts = lab.sql(" UNION ALL ".join(f"SELECT '{name}' AS t, count(*) AS n FROM {name}" for name in TABLES))
    assert dict(counts.iter_rows()) == {name: lab.count(name) for name in TABLES}
    assert counts.filter(pl.col("t") == "playback_sessions")["n"].item() == lab.playback_sessions().height > 0
    joined = lab.sql(
        "SELECT r.title, count(*) AS sessions FROM playback_sessions JOIN recordings r USING (recording_id) "
        "GROUP BY ALL ORDER BY r.title"
    )
    expected = lab.playback_sessions().join(sem.recordings, on="recording_id").group_by("title").len().sort("title")
    assert joined.rows() == expected.rows()
    user = sem.events["user_id"][0]
    by_position = lab.sql("SELECT count(*) AS n FROM analytics_events WHERE user_id = ?", [user])["n"].item()
    by_name = lab.sql("SELECT count(*) AS n FROM analytics_events WHERE user_id = $u", {"u": user})["n"].item()
    assert by_position == by_name == sem.events.filter(pl.col("user_id") == user).height
    assert lab.sql("SELECT user_id FROM engagement_metrics LIMIT 1")["user_id"].dtype == pl.String


@pytest.mark.parametrize(
    ("query", "said"),
    [
        ("DELETE FROM analytics_events", "this is DELETE"),
        ("DROP TABLE loads", "this is DROP"),
        ("SELECT 1; DELETE FROM analytics_events", "this is SELECT then DELETE"),
        ("COPY analytics_events TO '/tmp/x.csv'", "this is COPY"),
        ("", "no statement"),
    ],
)
def test_anything_but_one_select_is_refused_and_nothing_changes(lab, query, said):
    before = lab.count("analytics_events")
    with pytest.raises(InputFormatError, match=said):
        lab.sql(query)
    assert lab.count("analytics_events") == before


def test_a_failing_query_names_the_tables(lab):
    with pytest.raises(InputFormatError, match="the tables are analytics_events, playback_sessions"):
        lab.sql("SELECT * FROM sessions")


def test_a_read_only_lab_sees_derived_tables_computed_now(tmp_path, sem):
    path = tmp_path / "ro.duckdb"
    with Lab(path) as lab:
        lab.load(write_events(sem.events, tmp_path / "sem.ndjson"), progress=False)  # not refreshed
    with Lab(path, read_only=True) as ro:
        assert ro.sql("SELECT count(*) AS n FROM playback_sessions")["n"].item() == ro.playback_sessions().height > 0


def test_cli_prints_or_writes_the_result(tmp_path, sem, capsys):
    store = str(tmp_path / "cli.duckdb")
    with Lab(store) as lab:
        lab.load(write_events(sem.events, tmp_path / "sem.ndjson"), progress=False)
    query = "SELECT event_type, count(*) AS n FROM analytics_events GROUP BY ALL ORDER BY n DESC"
    assert main(["sql", query, "--store", store]) == 0
    assert "event_type" in capsys.readouterr().out
    assert main(["sql", query, "--store", store, "-o", str(tmp_path / "out.csv")]) == 0
    assert pl.read_csv(tmp_path / "out.csv")["n"].sum() == sem.events.height
    assert main(["sql", query, "--store", store, "-o", str(tmp_path / "out.parquet")]) == 0
    assert pl.read_parquet(tmp_path / "out.parquet").height > 0
    with pytest.raises(SystemExit):
        main(["sql", query, "--store", store, "-o", str(tmp_path / "out.txt")])
    assert "name it .csv or .parquet" in capsys.readouterr().err
    assert main(["sql", "DELETE FROM loads", "--store", store]) == 1
    assert "never writes" in capsys.readouterr().err
