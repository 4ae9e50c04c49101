"""Whatever the contract accepts survives every later step (hypothesis, hostile input).

Each example is a handful of hostile raw events (extreme and non-finite numbers, odd
and extreme timestamps, control characters, NUL, lone surrogates, repeated keys, long
and deeply nested metadata, ids in every spelling) written in one of the input formats.
It goes through the whole chain: load, derive, every report, Parquet and CSV export,
``COPY`` of the CSV into a real PostgreSQL with schema 005, and a reload of each export.
Every row ends rejected with a reason or through every step, the reloads exact, and
``rows read = accepted + rejected + duplicates`` always.
"""

from __future__ import annotations

import csv
import io
import json
import math
import tempfile
from datetime import datetime
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import REC, USER
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from servers import copy_csv_exports

from vtp_lab import Lab
from vtp_lab.events import EventType
from vtp_lab.reports import REPORT_KINDS

pytestmark = pytest.mark.slow

FIELDS = ("id", "event_type", "recording_id", "user_id", "session_id", "event_timestamp", "metadata")

hostile_text = st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=12) | st.sampled_from(
    ["\x00", "a\x00b", "\ud800", "x\udfffy", "\r\n", '"', "\\N", "", " ", "\u2028", "é" * 300]
)


def uuid_spellings(value: str) -> st.SearchStrategy[str]:
    hex_ = value.replace("-", "")
    return st.sampled_from(
        [value, value.upper(), "{" + value + "}", "urn:uuid:" + value, hex_, hex_.upper(), f" {value} "]
    )


numbers = st.one_of(
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, -0.0, 2_147_483_647, 2_147_483_648, 1e308, 5e-324, 3e9, 2**63, 2**64]),
)
leaves = st.none() | st.booleans() | numbers | hostile_text
nested = st.recursive(
    leaves,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(hostile_text, inner, max_size=3),
    max_leaves=12,
)
known = st.sampled_from(
    [
        "position",
        "duration",
        "from_position",
        "to_position",
        "playback_rate",
        "old_bitrate",
        "new_bitrate",
        "bitrate",
        "fatal",
        "course_id",
        "quality",
        "new_quality",
        "action",
        "title",
    ]
)
metadata_objects = st.dictionaries(known | hostile_text, nested, max_size=5)


repeated_key = st.tuples(known, numbers, numbers).map(
    lambda k: f'{{"{k[0]}": {json.dumps(k[1])}, "{k[0]}": {json.dumps(k[2])}}}'
)
deep = st.integers(1, 60).map(lambda depth: {"deep": json.loads("[" * depth + "1" + "]" * depth)})
long_text = st.tuples(st.sampled_from(["x", "é", "\u2028"]), st.integers(1000, 20_000)).map(
    lambda c: {"note": c[0] * c[1]}
)
not_object = st.sampled_from(["[1,2]", "3", '"text"', "{not json", "null"])
metadata = st.sampled_from(
    [
        *[metadata_objects] * 3,
        metadata_objects.map(json.dumps),  # NaN and Infinity written as JSON5-style tokens
        repeated_key,
        deep,
        long_text,
        st.none(),
        not_object,
    ]
).flatmap(lambda strategy: strategy)


timestamps = st.one_of(
    st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
    st.sampled_from(
        [
            "2026-09-01T10:00:00Z",
            "2026-09-01 10:00:00.123+00",
            "0000-01-01T00:00:00Z",
            "-0044-03-15T00:00:00Z",
            "9999-12-31T23:59:59.999999Z",
            "0001-01-01T00:00:00Z",
            "0001-01-01T00:00:00+01:00",
            "9999-12-31T23:59:59-01:00",
            "2026-09-01T10:00:00+25:00",
            "2026-09-01T10:00:00+15:59",
            "infinity",
            "2026-02-30T00:00:00Z",
            "  2026-09-01T10:00:00Z\t",
            "2026-09-01T10:00:00.1234567Z",
        ]
    ),
    numbers,
)


def mostly(valid: st.SearchStrategy[object], hostile: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
    """``valid`` nine times in ten, else ``hostile``: most rows get past validation and on to the later steps."""
    return st.integers(0, 9).flatmap(lambda i: hostile if i == 9 else valid)


valid_timestamps = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(2026, 1, 1), timezones=st.timezones()
).map(lambda d: d.isoformat())


@st.composite
def raw_event(draw: st.DrawFn) -> dict[str, object]:
    types = st.sampled_from([t.value for t in EventType] + ["PlaybackStarted", "EventBufferEnd"])
    event: dict[str, object] = {
        "event_type": draw(mostly(types, hostile_text)),
        "recording_id": draw(mostly(uuid_spellings(REC), st.sampled_from(["0" * 32, "nope", ""]))),
        "user_id": draw(mostly(uuid_spellings(USER), uuid_spellings("00000000-0000-0000-0000-000000000000"))),
        "session_id": draw(mostly(st.sampled_from(["s1", "s2"]) | hostile_text.filter(str.strip), hostile_text)),
        "event_timestamp": draw(mostly(valid_timestamps, timestamps)),
        "metadata": draw(metadata),
    }
    if draw(st.booleans()):
        event["id"] = draw(
            uuid_spellings("11111111-2222-3333-4444-555555555555")
            | uuid_spellings("6ba7b815-9dad-11d1-80b4-00c04fd430c8")
        )
    return event


def write(events: list[dict[str, object]], fmt: str, folder: Path) -> Path:
    """The events as a dump in ``fmt``; text that UTF-8 cannot hold goes in as the bytes Python would write."""

    def text(value: object) -> str | None:
        if value is None:
            return None
        if isinstance(value, str):
            return value
        return json.dumps(value)

    if fmt in ("ndjson", "json"):
        lines = [json.dumps(e) for e in events]  # ASCII: lone surrogates and NUL as escapes
        body = "\n".join(lines) + "\n" if fmt == "ndjson" else "[" + ",\n".join(lines) + "]"
        path = folder / f"d.{fmt}"
        path.write_text(body)
        return path
    rows = [{k: text(e.get(k)) for k in FIELDS} for e in events]
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=FIELDS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        path = folder / "d.csv"
        path.write_bytes(out.getvalue().encode("utf-8", errors="surrogatepass"))
        return path
    clean = [{k: None if v is None else v.encode("utf-8", "replace").decode() for k, v in r.items()} for r in rows]
    path = folder / "d.parquet"
    pq.write_table(pa.Table.from_pylist(clean, schema=pa.schema([(k, pa.string()) for k in FIELDS])), path)
    return path


def copy_into_postgres(dsn: str, written: list[Path]) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as con:
        copy_csv_exports(con, "chain", written)


def same_events(a: pl.DataFrame, b: pl.DataFrame) -> bool:
    return a.sort("id").equals(b.sort("id"))


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)
@given(events=st.lists(raw_event(), min_size=1, max_size=8), fmt=st.sampled_from(["ndjson", "json", "csv", "parquet"]))
def test_whatever_is_accepted_survives_every_later_step(postgres, events, fmt):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        dump = write(events, fmt, folder)
        lab = Lab(folder / "lab.duckdb")
        report = lab.load(dump, progress=False)
        assert report.errors == [] and report.rows_read == len(events)
        assert report.rows_read == report.accepted + report.rejected + report.duplicates
        assert lab.rejected_events()["reason"].is_not_null().all()
        stored = lab.events()
        lab.refresh()
        details = lab.session_details()
        assert details["watched_seconds"].is_between(0, 2_147_483_647).all()
        users = details["user_id"].unique().sort().to_list()
        for kind in REPORT_KINDS:
            if kind == "student" and not users:
                continue
            built = lab.report(kind, user_id=users[0] if kind == "student" else None)
            built.to_html(folder / f"{kind}.html")
            built.to_markdown()
            json.dumps(built.to_dict(), allow_nan=False, default=str)
        written = lab.export_csv(folder / "csv")
        lab.export_parquet(folder / "parquet")
        copy_into_postgres(postgres, written)
        for path in (folder / "csv" / "analytics_events.csv", folder / "parquet" / "analytics_events"):
            again = Lab(":memory:")
            reloaded = again.load(path, progress=False)
            assert (reloaded.accepted, reloaded.rejected) == (stored.height, 0), again.rejected_events()
            assert same_events(again.events(), stored)
        assert all(math.isfinite(x) for x in details["completion_rate"].drop_nulls())
        lab.close()
