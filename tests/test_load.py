"""Loading dumps: every format and compression, malformed lines, reloads, corrupt files, bounded memory."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import textwrap
import threading
import zlib

import polars as pl
import pytest
from conftest import ROOT

import vtp_lab.io
import vtp_lab.load
from vtp_lab.errors import InputFormatError, RejectionLimitError
from vtp_lab.events import REASONS, derive_event_id
from vtp_lab.io import RawBatch, write_events
from vtp_lab.lab import Lab
from vtp_lab.load import load_files, read_ahead
from vtp_lab.store import open_store
from vtp_lab.synth import semester
from vtp_lab.tables import REJECTED_EVENTS
from vtp_lab.validation import validate


@pytest.fixture(scope="module")
def sem():
    return semester(courses=1, lectures_per_course=2, students=12, seed=17)


def balanced(report) -> bool:
    return report.rows_read == report.accepted + report.rejected + report.duplicates and all(
        f.balanced for f in report.files
    )


@pytest.mark.parametrize(
    "name",
    ["e.ndjson", "e.ndjson.gz", "e.jsonl.zst", "e.json", "e.json.gz", "e.csv", "e.csv.gz", "e.csv.zst", "e.parquet"],
)
def test_every_format_and_compression(tmp_path, sem, name):
    path = write_events(sem.events, tmp_path / name)
    lab = Lab(":memory:")
    report = lab.load(path, progress=False)
    assert balanced(report)
    assert (report.accepted, report.rejected, report.duplicates) == (sem.events.height, 0, 0)
    assert lab.events().sort("id").equals(sem.events.sort("id"))


@pytest.mark.parametrize("name", ["e.ndjson", "e.csv.gz", "e.json", "e.ndjson.zst"])
def test_a_byte_order_mark_is_not_part_of_the_first_row(tmp_path, sem, name):
    """Windows tools start UTF-8 text with a BOM: the CSV header's first name and the first NDJSON line keep theirs."""
    import zstandard

    plain = write_events(sem.events, tmp_path / name.replace(".gz", "").replace(".zst", ""))
    data = b"\xef\xbb\xbf" + plain.read_bytes()
    marked = tmp_path / f"marked-{name}"
    compress = {".gz": gzip.compress, ".zst": zstandard.ZstdCompressor().compress}.get(marked.suffix, bytes)
    marked.write_bytes(compress(data))
    bare = tmp_path / f"dump-{name}".split(".")[0]
    bare.write_bytes(data)
    for path in (marked, bare):  # the second's format comes from its content
        lab = Lab(":memory:")
        report = lab.load(path, progress=False)
        assert (report.accepted, report.rejected) == (sem.events.height, 0), report
        assert lab.events().sort("id").equals(sem.events.sort("id"))  # the file's ids, none derived


def test_a_csv_with_only_its_header_has_no_rows(tmp_path, sem):
    path = tmp_path / "header.csv"
    path.write_text(",".join(sem.events.columns) + "\n")
    report = Lab(":memory:").load(path, progress=False)
    assert (report.rows_read, report.errors) == (0, [])


def test_headerless_postgres_csv_in_table_order(tmp_path, sem):
    text = sem.events.with_columns(pl.col("event_timestamp").dt.strftime("%Y-%m-%d %H:%M:%S%.6f+00")).write_csv(
        include_header=False
    )
    path = tmp_path / "copy_out.csv"
    path.write_text(text)
    lab = Lab(":memory:")
    assert lab.load(path, progress=False).accepted == sem.events.height
    assert lab.events().sort("id").equals(sem.events.sort("id"))


def test_an_unknown_format_is_refused_before_anything_is_read_or_recorded(tmp_path, sem):
    path = write_events(sem.events.head(10), tmp_path / "e.ndjson")
    lab = Lab(":memory:")
    with pytest.raises(InputFormatError, match="unknown format 'xml'; use one of ndjson, json, csv, parquet"):
        lab.load(path, format="xml", progress=False)
    assert lab.loads().height == 0 and lab.events().height == 0


def test_format_from_content_when_the_name_says_nothing(tmp_path, sem):
    for fmt in ("ndjson", "json", "csv", "parquet"):
        path = write_events(sem.events, tmp_path / f"dump-{fmt}", format=fmt)
        report = Lab(":memory:").load(path, progress=False)
        assert report.files[0].format == fmt
        assert report.accepted == sem.events.height


def test_directories_and_globs(tmp_path, sem):
    half = sem.events.height // 2
    write_events(sem.events.head(half), tmp_path / "dumps" / "a.ndjson")
    write_events(sem.events.tail(sem.events.height - half), tmp_path / "dumps" / "sub" / "b.csv.gz")
    assert Lab(":memory:").load(tmp_path / "dumps", progress=False).accepted == sem.events.height
    report = Lab(":memory:").load(str(tmp_path / "dumps" / "**" / "*.csv.gz"), progress=False)
    assert [f.source for f in report.files] == [str(tmp_path / "dumps" / "sub" / "b.csv.gz")]
    with pytest.raises(InputFormatError, match="no file matches"):
        Lab(":memory:").load(tmp_path / "nothing" / "*.ndjson")


def test_malformed_lines_are_quarantined_with_line_numbers_and_neighbours_load(tmp_path, sem):
    lines = write_events(sem.events.head(6), tmp_path / "ok.ndjson").read_text().splitlines()
    broken = [
        lines[0],
        lines[1][:40],
        "[1, 2]",
        lines[2],
        "\x00\x01binary",
        "",
        lines[3],
        '"just a string"',
        lines[4],
        lines[5][:-1],
    ]
    path = tmp_path / "broken.ndjson"
    path.write_text("\n".join(broken))
    lab = Lab(":memory:")
    report = lab.load(path, progress=False)
    assert balanced(report)
    assert (report.accepted, report.rejected) == (4, 5)
    rejected = lab.rejected_events().sort("row_number")
    assert rejected.select("row_number", "reason").rows() == [
        (2, "malformed"),
        (3, "malformed"),
        (5, "malformed"),
        (8, "malformed"),
        (10, "malformed"),
    ]
    assert rejected["raw"][0] == lines[1][:40]


def _object_texts(events: pl.DataFrame, tmp_path) -> list[str]:
    """Each event as the JSON object text a JSON-array dump holds."""
    return write_events(events, tmp_path / "ok.json").read_text().strip()[1:-1].split(",\n")


def test_a_json_array_quarantines_elements_that_are_not_objects_and_a_broken_document_whole(tmp_path, sem):
    objects = _object_texts(sem.events.head(3), tmp_path)
    array = tmp_path / "array.json"
    array.write_text("[" + ", ".join([objects[0], "7", objects[1], '"text"', objects[2]]) + "]")
    single = tmp_path / "single.json"
    single.write_text(objects[0])
    broken = tmp_path / "broken.json"
    broken.write_text("[" + objects[0] + ", {")
    lab = Lab(":memory:")
    report = lab.load(array, single, broken, progress=False)
    assert balanced(report)
    counts = {f.source.rsplit("/", 1)[-1]: (f.rows_read, f.accepted, f.rejected, f.duplicates) for f in report.files}
    assert counts == {"array.json": (5, 3, 2, 0), "single.json": (1, 0, 0, 1), "broken.json": (1, 0, 1, 0)}
    rejected = lab.rejected_events().sort("source", "row_number")
    assert rejected.select("row_number", "reason", "raw").rows() == [
        (2, "malformed", "7"),
        (4, "malformed", '"text"'),
        (1, "malformed", broken.read_text()),
    ]


def test_a_json_array_too_big_to_read_whole_that_breaks_fails_its_file_with_where_and_the_fix(
    tmp_path, sem, monkeypatch
):
    objects = _object_texts(sem.events.head(3), tmp_path)
    broken = tmp_path / "broken.json"
    broken.write_text("[" + ", ".join(objects) + ", {")
    monkeypatch.setattr(vtp_lab.io, "_WHOLE_DOCUMENT_BYTES", 10)  # as if the file were over 64 MB
    fine = write_events(sem.events.head(5), tmp_path / "fine.ndjson")
    lab = Lab(":memory:")
    report = lab.load(broken, fine, progress=False)
    assert balanced(report)
    failed = report.files[0]
    assert failed.error is not None and str(broken) in failed.error
    assert "record/value" in failed.error and "write it as NDJSON" in failed.error
    assert failed.rows_read == lab.rejected_events().height == 0  # nothing was handed on before the break
    assert report.files[1].accepted == 5 and report.files[1].error is None


def test_a_json_array_that_breaks_after_elements_were_handed_on_keeps_them_and_fails_its_file(
    tmp_path, sem, monkeypatch
):
    objects = _object_texts(sem.events.head(5), tmp_path)
    path = tmp_path / "big.json"
    path.write_text("[" + ", ".join(objects) + "]")

    def breaks_after_two_batches(path):  # DuckDB hands over two batches, then meets the break
        yield pl.Series("_raw", objects[:3])
        yield pl.Series("_raw", [objects[3], "7"])
        raise vtp_lab.io._Unstreamable("Malformed JSON at byte 3 in record/value 6")

    monkeypatch.setattr(vtp_lab.io, "_array_elements", breaks_after_two_batches)
    lab = Lab(":memory:")
    report = lab.load(path, progress=False)
    assert balanced(report)
    assert (report.rows_read, report.accepted, report.rejected) == (5, 4, 1)
    assert lab.rejected_events().select("row_number", "raw").rows() == [(5, "7")]
    assert "record/value 6" in report.files[0].error and "the first 5 elements were read" in report.files[0].error


@pytest.mark.parametrize("name", ["week*.json", "week[1].json", "week?.json.gz"])
def test_a_json_array_whose_name_looks_like_a_glob_is_read_alone(tmp_path, sem, name):
    objects = _object_texts(sem.events.head(5), tmp_path)
    text = "[" + ", ".join(objects[:3]) + "]"
    path = tmp_path / name
    path.write_bytes(gzip.compress(text.encode()) if name.endswith(".gz") else text.encode())
    (tmp_path / "week1.json").write_text("[" + ", ".join(objects[3:]) + "]")  # what the name matches as a glob
    (tmp_path / "weekx.json.gz").write_bytes(gzip.compress(("[" + ", ".join(objects[3:]) + "]").encode()))
    report = Lab(":memory:").load(path, progress=False)
    assert (report.rows_read, report.accepted) == (3, 3)


def test_ragged_csv_rows_are_malformed_and_the_rest_load(tmp_path, sem):
    lines = write_events(sem.events.head(4), tmp_path / "ok.csv").read_text().splitlines()
    path = tmp_path / "ragged.csv"
    path.write_text("\n".join([lines[0], lines[1], "a,b,c", lines[2], lines[3] + ',"extra"', lines[4]]) + "\n")
    lab = Lab(":memory:")
    report = lab.load(path, progress=False)
    assert (report.accepted, report.rejected) == (3, 2)
    assert lab.rejected_events().sort("row_number").select("row_number", "reason").rows() == [
        (3, "malformed"),
        (5, "malformed"),
    ]


def test_bad_rows_get_their_reasons(tmp_path):
    bad = semester(courses=1, lectures_per_course=2, students=10, seed=2, bad_rows=0.1)
    path = write_events(bad.events, tmp_path / "bad.csv")
    lab = Lab(":memory:")
    report = lab.load(path, progress=False)
    assert balanced(report)
    assert report.rejected > 0
    assert set(report.rejected_by_reason) <= set(REASONS) - {"malformed"}
    assert lab.rejected_events()["source"].unique().to_list() == [str(path)]


@pytest.mark.parametrize("store", ["lab.duckdb", "lake"])
def test_loading_the_same_file_again_stores_nothing_new(tmp_path, store):
    bad = semester(courses=1, lectures_per_course=2, students=10, seed=2, bad_rows=0.05, duplicates=0.02)
    path = write_events(bad.events, tmp_path / "d.ndjson.gz")
    lab = Lab(tmp_path / store)
    first = lab.load(path, progress=False)
    again = lab.load(path, progress=False)
    assert first.duplicates > 0 and first.rejected > 0
    assert (again.accepted, again.rejected, again.duplicates) == (0, 0, again.rows_read)
    assert sum(first.rejected_by_reason.values()) == first.rejected
    assert again.rejected_by_reason == {}  # the rows already quarantined are duplicates, with no reason counted
    ledger = lab.loads().sort("started_at")
    assert ledger.height == 2
    assert [json.loads(r) for r in ledger["rejected_by_reason"]] == [first.rejected_by_reason, {}]
    assert lab.rejected_events().height == first.rejected


def test_corrupt_files_are_reported_and_other_files_still_load(tmp_path, sem):
    write_events(sem.events, tmp_path / "a_good.ndjson")
    data = gzip.compress(write_events(sem.events, tmp_path / "x.ndjson").read_bytes())
    (tmp_path / "x.ndjson").unlink()
    (tmp_path / "b_truncated.ndjson.gz").write_bytes(data[: len(data) // 2])
    (tmp_path / "c_corrupt.parquet").write_bytes(b"PAR1 this is not parquet PAR1")
    lab = Lab(":memory:")
    report = lab.load(tmp_path, progress=False)
    by_name = {f.source.rsplit("/", 1)[-1]: f for f in report.files}
    assert by_name["a_good.ndjson"].accepted == sem.events.height and by_name["a_good.ndjson"].error is None
    assert "the gzip stream is cut short at byte" in by_name["b_truncated.ndjson.gz"].error
    assert "not a readable Parquet file" in by_name["c_corrupt.parquet"].error
    assert all(f.balanced for f in report.files)
    assert len(report.errors) == 2
    assert lab.loads().filter(pl.col("error").is_not_null()).height == 2
    assert lab.events()["id"].n_unique() == lab.events().height


def test_report_renders_as_text_and_html(tmp_path, sem):
    report = Lab(":memory:").load(write_events(sem.events, tmp_path / "a.ndjson"), progress=False)
    text = str(report)
    assert "rows read" in text and f"{sem.events.height:,}" in text and "=" in text.splitlines()[-1]
    assert report._repr_html_().startswith("<table>")
    assert json.loads(json.dumps(report.to_dict()))["accepted"] == sem.events.height


def test_a_recordings_catalogue_whose_name_looks_like_a_glob_is_read_alone(tmp_path, sem):
    path = tmp_path / "recordings*.parquet"
    sem.recordings.write_parquet(path)
    sem.recordings.write_parquet(tmp_path / "recordings-old.parquet")  # what the name matches as a glob
    lab = Lab(":memory:")
    lab.load_recordings(path)
    assert lab.recordings().sort("recording_id").equals(sem.recordings.sort("recording_id"))


def test_recordings_catalogue(tmp_path, sem):
    lab = Lab(":memory:")
    path = tmp_path / "rec.csv"
    sem.recordings.write_csv(path)
    assert lab.load_recordings(path).equals(sem.recordings)
    assert lab.recordings().equals(sem.recordings)
    bad = sem.recordings.with_columns(
        pl.when(pl.int_range(pl.len()) == 1).then(pl.lit(-3.0)).otherwise("duration_seconds").alias("duration_seconds")
    )
    bad.write_csv(path)
    with pytest.raises(
        InputFormatError, match=r"data row 2: duration_seconds='-3.0' is not a number from 0 to 2147483647"
    ):
        lab.load_recordings(path)
    assert lab.recordings().equals(sem.recordings)


BOUNDED = textwrap.dedent(
    """
    import sys
    from vtp_lab.lab import Lab
    report = Lab(sys.argv[2]).load(sys.argv[1], progress=False)
    peak_kb = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
    print(report.rows_read, report.accepted, round(peak_kb / 1024))
    """
)
"""The load in a process of its own, and its peak RSS: VmHWM, the high-water mark of this process image.

Not ``getrusage().ru_maxrss``: on Linux a child started by vfork and exec inherits its
parent's, so a pytest process that once held 1.6 GB made a 1.25 GB load report 1.6 GB.
"""


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["ndjson", "json"])
def test_five_million_events_load_in_bounded_memory(tmp_path, kind):
    """NDJSON, and a JSON array (one document of 1.6 GB before gzip, streamed element by element)."""
    sem = semester(courses=4, lectures_per_course=14, students=1000, seed=5).events
    path = tmp_path / f"big.{kind}.gz"
    rows, copy = 0, 0
    with open(path, "wb") as out:
        out.write(gzip.compress(b"[" if kind == "json" else b""))
        while rows < 5_000_000:
            chunk = sem.with_columns(
                pl.concat_str(pl.lit(f"{copy:x}"[-1]), pl.col("id").str.slice(1)).alias("id"),
                pl.concat_str(pl.col("session_id"), pl.lit(f"-{copy}")).alias("session_id"),
            )
            chunk = chunk.head(5_000_000 - rows)
            text = write_events(chunk, tmp_path / "chunk.ndjson").read_bytes()
            if kind == "json":
                text = (b",\n" if rows else b"") + text.rstrip(b"\n").replace(b"\n", b",\n")
            out.write(gzip.compress(text, compresslevel=1))
            rows += chunk.height
            copy += 1
        out.write(gzip.compress(b"]" if kind == "json" else b""))
    out = subprocess.run(
        [sys.executable, "-c", BOUNDED, str(path), str(tmp_path / "big.duckdb")],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        timeout=3000,
    )
    rows_read, accepted, peak_mb = map(int, out.stdout.split())
    assert rows_read == 5_000_000
    assert accepted > 0
    assert peak_mb < 1536, f"peak RSS {peak_mb} MB"
    print(f"5M events ({kind}): peak RSS {peak_mb} MB")


def test_progress_bar_only_where_someone_looks(tmp_path, sem, capsys):
    path = write_events(sem.events, tmp_path / "p.ndjson")
    Lab(":memory:").load(path)  # not a terminal, not a notebook: silent
    assert capsys.readouterr().err == ""
    Lab(":memory:").load(path, progress=True)
    assert "loading" in capsys.readouterr().err
    Lab(":memory:").load(path, progress=False)
    assert capsys.readouterr().err == ""


def test_read_ahead_keeps_order_and_raises_after_what_was_made():
    def produce():
        yield from range(5)
        raise ValueError("line 6 is cut")

    got = []
    with pytest.raises(ValueError, match="line 6 is cut"):
        got.extend(read_ahead(produce))
    assert got == [0, 1, 2, 3, 4]


def test_read_ahead_stops_its_thread_when_the_reader_stops_early():
    made = []

    def produce():
        for k in range(1000):
            made.append(k)
            yield k

    reader = read_ahead(produce, depth=2)
    assert [next(reader) for _ in range(3)] == [0, 1, 2]
    reader.close()
    assert not any(t.name == "vtp-lab-read-ahead" for t in threading.enumerate())
    assert len(made) <= 3 + 2 + 1  # what was read, what waited, and one in hand


def test_a_file_of_many_chunks_is_validated_and_stored_in_row_group_sized_parts(tmp_path, sem, monkeypatch):
    monkeypatch.setattr("vtp_lab.io._CHUNK_BYTES", 4096)  # about 12 lines a chunk
    monkeypatch.setattr("vtp_lab.load.ROW_GROUP_ROWS", 100)
    path = write_events(sem.events, tmp_path / "many.ndjson")
    store = open_store(":memory:")
    sizes, checked = [], []
    append = store.append
    monkeypatch.setattr(
        store, "append", lambda ev, rej, **kw: sizes.append(ev.height + rej.height) or append(ev, rej, **kw)
    )
    check = vtp_lab.load.validate
    monkeypatch.setattr("vtp_lab.load.validate", lambda frame, **kw: checked.append(frame.height) or check(frame, **kw))
    report = load_files(store, [path], progress=False)
    assert balanced(report) and report.accepted == sem.events.height
    assert all(size >= 100 for size in sizes[:-1]) and len(sizes) <= sem.events.height // 100 + 1
    assert all(height >= 100 for height in checked[:-1]) and len(checked) == len(sizes)
    assert store.count("analytics_events") == sem.events.height


def test_ids_are_derived_in_a_thread_of_their_own_beside_validation_and_storing(tmp_path, sem, monkeypatch):
    """A file without ids: each batch's ids are derived apart from its validation and its append, and are the spec's."""
    monkeypatch.setattr("vtp_lab.load.ROW_GROUP_ROWS", 100)
    path = write_events(sem.events.with_columns(pl.lit(None, pl.String).alias("id")), tmp_path / "no-ids.ndjson")
    threads: dict[str, set[str]] = {"validate": set(), "derive": set(), "append": set()}
    check, derive = vtp_lab.load.validate, vtp_lab.load.with_derived_ids

    def seen(step: str) -> None:
        threads[step].add(threading.get_ident())

    monkeypatch.setattr("vtp_lab.load.validate", lambda frame, **kw: seen("validate") or check(frame, **kw))
    monkeypatch.setattr("vtp_lab.load.with_derived_ids", lambda accepted: seen("derive") or derive(accepted))
    store = open_store(":memory:")
    append = store.append
    monkeypatch.setattr(store, "append", lambda ev, rej, **kw: seen("append") or append(ev, rej, **kw))
    report = load_files(store, [path], progress=False)
    assert report.accepted == sem.events.height
    assert all(len(ids) == 1 for ids in threads.values()) and len(set.union(*threads.values())) == 3
    spec_ids = [
        derive_event_id(**{**row, "metadata": json.loads(row["metadata"]) if row["metadata"] else None})
        for row in sem.events.drop("id").iter_rows(named=True)
    ]
    assert sorted(store.read("analytics_events")["id"].to_list()) == sorted(spec_ids)


def test_a_load_stopped_early_leaves_none_of_its_threads_running(tmp_path, monkeypatch):
    """Over ``max_rejected`` at the first batch of many: reading, validating and deriving all stop."""
    monkeypatch.setattr("vtp_lab.io._CHUNK_BYTES", 4096)
    monkeypatch.setattr("vtp_lab.load.ROW_GROUP_ROWS", 100)
    bad = semester(courses=1, lectures_per_course=2, students=12, seed=3, bad_rows=0.3).events
    path = write_events(bad.with_columns(pl.lit(None, pl.String).alias("id")), tmp_path / "bad.ndjson")
    with pytest.raises(RejectionLimitError) as info:
        load_files(open_store(":memory:"), [path], progress=False, max_rejected=1)
    assert info.value.rejected < validate(bad).rejected.height  # it stopped at its first batches
    assert not any(t.name == "vtp-lab-read-ahead" for t in threading.enumerate())


@pytest.mark.parametrize("kept", [0.5, 0.6, 0.75])
def test_a_file_cut_short_keeps_every_whole_line_read_before_the_fault(tmp_path, sem, monkeypatch, kept):
    monkeypatch.setattr("vtp_lab.io._CHUNK_BYTES", 4096)
    monkeypatch.setattr("vtp_lab.load.ROW_GROUP_ROWS", 100)
    text = write_events(sem.events, tmp_path / "x.ndjson").read_bytes()
    data = gzip.compress(text)
    path = tmp_path / "cut.ndjson.gz"
    path.write_bytes(data[: int(len(data) * kept)])
    store = open_store(":memory:")
    report = load_files(store, [path], progress=False)
    (file,) = report.files
    assert file.error is not None and balanced(report)
    readable = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(path.read_bytes()).count(b"\n")
    assert readable - 40 <= file.rows_read <= readable  # all but the last chunk of 4096 bytes
    assert file.accepted == file.rows_read < sem.events.height
    stored = store.read("analytics_events", columns=["id"])["id"].sort()
    assert stored.to_list() == sem.events["id"].head(file.rows_read).sort().to_list()


def test_bytes_that_are_not_utf8_are_replaced_and_their_neighbours_load(tmp_path, sem):
    lines = write_events(sem.events.head(3), tmp_path / "ok.ndjson").read_bytes().splitlines()
    path = tmp_path / "latin1.ndjson"
    path.write_bytes(b"\n".join([lines[0], b'{"event_type": "pause\xe9", "session_id": "s"}', b"\xff\xfe{", lines[2]]))
    lab = Lab(":memory:")
    report = lab.load(path, progress=False)
    assert balanced(report) and (report.accepted, report.rejected) == (2, 2)
    rejected = lab.rejected_events().sort("row_number")
    assert rejected.select("row_number", "reason").rows() == [(2, "missing_field"), (3, "malformed")]
    assert "pause\ufffd" in rejected["raw"][0]


def test_grouped_batches_keep_every_row_even_of_batches_without_columns():
    empty = RawBatch(rows=pl.DataFrame(), malformed=REJECTED_EVENTS.empty(), bytes_read=1)
    bad = RawBatch(
        rows=pl.DataFrame(),
        malformed=REJECTED_EVENTS.conform(pl.DataFrame({"raw": ["x"], "source": ["f"], "row_number": [1]})),
        bytes_read=2,
    )
    rows = RawBatch(
        rows=pl.DataFrame({"event_type": ["buffer_end"] * 3}), malformed=REJECTED_EVENTS.empty(), bytes_read=3
    )
    assert [g.rows_read for g in vtp_lab.load._grouped(iter([empty, bad]), 5)] == [1]
    groups = list(vtp_lab.load._grouped(iter([empty, rows, bad, rows]), 4))
    assert [(g.rows.height, g.malformed.height, g.bytes_read) for g in groups] == [(3, 1, 2), (3, 0, 3)]
    cut = list(vtp_lab.load._grouped(iter([rows, rows, bad, rows]), 4))  # whole groups of 4 parsed rows, then the rest
    assert [(g.rows.height, g.malformed.height) for g in cut] == [(4, 0), (4, 1), (1, 0)]


def test_the_text_report_fits_an_80_column_terminal(tmp_path, sem):
    broken = sem.events.head(50).with_columns(pl.lit("teleported").alias("event_type"))
    long_name = tmp_path / ("a-rather-long-folder-name-for-exports" * 2) / "events-of-the-autumn-term.ndjson"
    long_name.parent.mkdir()
    report = Lab(":memory:").load(write_events(pl.concat([sem.events, broken]), long_name), progress=False)
    text = str(report)
    assert max(len(line) for line in text.splitlines()) <= 80, text
    assert "rejected by reason" in text and "unknown_event_type 50" in text
    assert text.splitlines()[-1].startswith("rows read")
