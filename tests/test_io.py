"""Writing dumps: every format and compression reads back to the same events."""

from __future__ import annotations

import gzip

import polars as pl
import pytest
import zstandard

from vtp_lab.errors import InputFormatError
from vtp_lab.io import format_of, write_events
from vtp_lab.synth import semester
from vtp_lab.validate import validate


@pytest.fixture(scope="module")
def events():
    return semester(courses=1, lectures_per_course=2, students=5, seed=4).events


def read_back(path, fmt):
    data = path.read_bytes()
    if path.suffix == ".gz":
        data = gzip.decompress(data)
    elif path.suffix == ".zst":
        data = zstandard.ZstdDecompressor().decompress(data)
    if fmt == "parquet":
        return pl.read_parquet(path)
    if fmt == "csv":
        return pl.read_csv(data, infer_schema=False)
    text = data.decode()
    lines = text.strip().splitlines() if fmt == "ndjson" else text.strip()[1:-1].split(",\n")
    return pl.DataFrame({"line": lines}).select(
        pl.col("line").str.json_path_match(f"$.{c}").alias(c)
        for c in ("id", "event_type", "recording_id", "user_id", "session_id", "event_timestamp", "metadata")
    )


@pytest.mark.parametrize("name", ["e.ndjson", "e.ndjson.gz", "e.jsonl.zst", "e.json", "e.csv", "e.csv.gz", "e.parquet"])
def test_round_trip(tmp_path, events, name):
    path = write_events(events, tmp_path / name)
    back = validate(read_back(path, format_of(path)))
    assert back.rejected.height == 0
    assert back.accepted.equals(events)


def test_ndjson_metadata_is_a_nested_object(tmp_path, events):
    line = (write_events(events.head(1), tmp_path / "one.ndjson")).read_text().splitlines()[0]
    assert '"metadata":{' in line


def test_csv_uses_postgres_timestamp_text(tmp_path, events):
    text = write_events(events.head(1), tmp_path / "one.csv").read_text()
    assert text.splitlines()[0] == "id,event_type,recording_id,user_id,session_id,event_timestamp,metadata"
    assert "+00," in text.splitlines()[1]


def test_unknown_format_names_the_fix(tmp_path, events):
    with pytest.raises(InputFormatError, match=r"name it \.ndjson, \.json, \.csv or \.parquet"):
        write_events(events, tmp_path / "e.xml")
