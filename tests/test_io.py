"""Writing dumps: every format and compression reads back to the same events."""

from __future__ import annotations

import gzip

import polars as pl
import pyarrow as pa
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from vtp_lab import io as vl_io
from vtp_lab.errors import InputFormatError
from vtp_lab.io import _split, format_of, read_events, write_events
from vtp_lab.synth import semester
from vtp_lab.validation import validate


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


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_lines_of_every_chunk_survive_the_reading_of_the_next(tmp_path, events, monkeypatch, suffix):
    """Lines are views into the buffers they were read into: lines already handed on must not change."""
    monkeypatch.setattr("vtp_lab.io._CHUNK_BYTES", 500)  # a chunk of about 3 lines, in pieces of 500 bytes
    long_line = '{"event_type": "' + "x" * 5000 + '"}'  # longer than a chunk
    lines = [*write_events(events.head(40), tmp_path / "e.ndjson").read_text().splitlines(), long_line, "{}"]
    path = tmp_path / f"lines.ndjson{suffix}"
    data = ("\n".join(lines) + "\n").encode()
    path.write_bytes(gzip.compress(data) if suffix else data)
    batches = list(read_events(path, batch_rows=1000))
    assert len(batches) > 10
    rows = pl.concat([b.rows.select("_raw", "_row") for b in batches])
    assert rows["_raw"].to_list() == lines and rows["_row"].to_list() == list(range(1, len(lines) + 1))


_PIECES = st.sampled_from([b"\n", b"\r", b"\r\n", b"{}", b'{"a": 1}', b" ", b"x" * 20, "é😀".encode(), b"\xff"])


@settings(max_examples=200, deadline=None)
@given(parts=st.lists(st.lists(_PIECES, max_size=12), min_size=1, max_size=4))
def test_bytes_split_into_lines_at_each_newline_as_python_reads_them(parts):
    datas = [b"".join(pieces) for pieces in parts]
    expected = [line for data in datas for line in data.decode("utf-8", errors="replace").split("\n")]
    assert _split([pa.py_buffer(data) for data in datas]).to_list() == expected


_WHITE_SPACE = "\t\n\x0b\x0c\r \x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000" + "".join(map(chr, range(0x2000, 0x200B)))
"""Unicode's White_Space characters: what a regular expression's ``\\s`` matches in polars."""


@settings(max_examples=200, deadline=None)
@given(
    lines=st.lists(
        st.none() | st.text(st.sampled_from([*_WHITE_SPACE, "\x1c", "\u200b", "x", "{", "é", "😀"]), max_size=14),
        max_size=30,
    ),
    cut=st.integers(0, 5),
)
def test_a_line_is_blank_or_spaced_as_its_characters_say(lines, cut):
    """Blank: every character white space; spaced: the first or the last. Against plain references, on a Series in
    two chunks and sliced (the views are read from the Arrow arrays)."""
    halves = [pl.Series(lines[:cut], dtype=pl.String), pl.Series(lines[cut:], dtype=pl.String)]
    series = pl.concat(halves, rechunk=False)
    expected = [None if line is None else all(c in _WHITE_SPACE for c in line) for line in lines]
    assert vl_io._blank(series).to_list() == expected
    assert vl_io._blank(series.slice(1)).to_list() == expected[1:]
    texts = [line for line in lines if line is not None]
    spaced = any(line[:1] in _WHITE_SPACE or line[-1:] in _WHITE_SPACE for line in texts if line)
    assert vl_io._spaced(pl.Series(texts, dtype=pl.String)) == spaced


@settings(max_examples=60, deadline=None)
@given(
    lines=st.lists(st.text(st.characters(blacklist_characters="\n\r"), max_size=40), max_size=40),
    chunk=st.integers(8, 200),
    piece=st.integers(4, 64),
    compressed=st.booleans(),
)
def test_a_file_read_in_chunks_of_pieces_gives_its_lines_numbered_as_python_reads_them(
    tmp_path_factory, lines, chunk, piece, compressed
):
    """A plain file's pieces are mapped, a compressed file's read: the lines are the same either way."""
    path = tmp_path_factory.mktemp("lines") / "f.ndjson"
    data = "\n".join(lines).encode()
    path.write_bytes(gzip.compress(data) if compressed else data)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(vl_io, "_CHUNK_BYTES", chunk)
        mp.setattr(vl_io, "_PIECE_BYTES", piece)
        read = list(vl_io._lines(path))
    expected = data.decode().split("\n")[: -1 if data.endswith(b"\n") else None] if data else []
    assert [line for got, _, _ in read for line in got.to_list()] == expected
    assert [first for _, first, _ in read] == [1 + sum(got.len() for got, _, _ in read[:i]) for i in range(len(read))]


def _pieces(monkeypatch: pytest.MonkeyPatch) -> tuple[list[int], list[pa.MemoryPool | None], list[int]]:
    """The size and pool of every buffer pyarrow allocates from now on, and the length of every file mapping."""
    sizes: list[int] = []
    pools: list[pa.MemoryPool | None] = []
    mapped: list[int] = []
    allocate, mapping = pa.allocate_buffer, vl_io.mmap.mmap

    def spy(size: int, memory_pool: pa.MemoryPool | None = None, **kwargs: object) -> pa.Buffer:
        sizes.append(size)
        pools.append(memory_pool)
        return allocate(size, memory_pool=memory_pool, **kwargs)

    def map_spy(fileno: int, length: int, **kwargs: object) -> object:
        mapped.append(length)
        return mapping(fileno, length, **kwargs)

    monkeypatch.setattr(pa, "allocate_buffer", spy)
    monkeypatch.setattr(vl_io.mmap, "mmap", map_spy)
    return sizes, pools, mapped


_LINE = '{"event_type": "playback_paused", "metadata": {"position": 12.5}}'
_TEN_MIB = 10 * 1024 * 1024 // len(_LINE)
"""Lines of :data:`_LINE` in about 10 MiB."""


def test_a_plain_file_is_mapped_a_piece_at_a_time_not_read(tmp_path, monkeypatch):
    """Each piece of a plain file is a mapping of its own, a piece long; no buffer is allocated for it."""
    sizes, _, mapped = _pieces(monkeypatch)
    path = tmp_path / "big.ndjson"
    path.write_text((_LINE + "\n") * _TEN_MIB)
    got = pl.concat(lines for lines, _, _ in vl_io._lines(path))
    assert got.len() == _TEN_MIB and got.unique().to_list() == [_LINE]
    assert len(mapped) > 2 and max(mapped) <= vl_io._PIECE_BYTES + len(_LINE) + vl_io.mmap.ALLOCATIONGRANULARITY
    assert not sizes


def test_a_compressed_file_is_read_into_piece_sized_buffers_of_the_lines_pool(tmp_path, monkeypatch):
    """Each piece of a decompressed stream is a buffer of its own from the lines pool, a piece long (not a chunk)."""
    sizes, pools, mapped = _pieces(monkeypatch)
    path = tmp_path / "big.ndjson.gz"
    path.write_bytes(gzip.compress(((_LINE + "\n") * _TEN_MIB).encode()))
    got = pl.concat(lines for lines, _, _ in vl_io._lines(path))
    assert got.len() == _TEN_MIB and got.unique().to_list() == [_LINE]
    assert len(sizes) > 2 and max(sizes) < 8 * 1024 * 1024 and not mapped
    assert {p.backend_name for p in pools} == {vl_io._lines_pool().backend_name}


def test_a_file_that_cannot_be_mapped_is_read(tmp_path, monkeypatch):
    """Where the file system refuses a mapping, the pieces are read into buffers, the lines the same."""
    sizes, _, _ = _pieces(monkeypatch)

    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError(19, "No such device")

    monkeypatch.setattr(vl_io.mmap, "mmap", refuse)
    path = tmp_path / "big.ndjson"
    path.write_text((_LINE + "\n") * _TEN_MIB)
    got = pl.concat(lines for lines, _, _ in vl_io._lines(path))
    assert got.len() == _TEN_MIB and got.unique().to_list() == [_LINE] and len(sizes) > 2


def test_lines_written_while_a_plain_file_loads_are_read_to_its_size_at_each_piece(tmp_path, monkeypatch):
    monkeypatch.setattr(vl_io, "_CHUNK_BYTES", 64)
    path = tmp_path / "growing.ndjson"
    path.write_text("".join(f'{{"n": {i}}}\n' for i in range(20)))
    chunks = vl_io._lines(path)
    first, _, _ = next(chunks)
    with path.open("a") as more:
        more.write("".join(f'{{"n": {i}}}\n' for i in range(20, 30)))
    got = [*first.to_list(), *(line for lines, _, _ in chunks for line in lines.to_list())]
    assert got == [f'{{"n": {i}}}' for i in range(30)]


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_a_long_line_is_read_in_pieces_that_grow_with_it(tmp_path, monkeypatch, suffix):
    """Past a carried line longer than a piece, the next piece is as long again: a long line is taken a few times."""
    sizes, _, mapped = _pieces(monkeypatch)
    monkeypatch.setattr(vl_io, "_CHUNK_BYTES", 64)
    path = tmp_path / f"long.ndjson{suffix}"
    data = ("{}\n" + "x" * 10_000 + "\n{}\n").encode()
    path.write_bytes(gzip.compress(data) if suffix else data)
    assert [line for lines, _, _ in vl_io._lines(path) for line in lines.to_list()] == ["{}", "x" * 10_000, "{}"]
    assert len(sizes if suffix else mapped) <= 12  # 157 pieces of 64 bytes


def test_a_line_too_long_for_a_string_view_is_refused_naming_it(tmp_path, monkeypatch):
    monkeypatch.setattr(vl_io, "_CHUNK_BYTES", 64)
    monkeypatch.setattr(vl_io, "_LONGEST", 200)
    path = tmp_path / "long.ndjson"
    path.write_text('{"a": 1}\n{"b": 2}\n' + "x" * 500 + "\n")
    with pytest.raises(InputFormatError, match=r"line 3 is longer than 1 GiB"):
        list(vl_io._lines(path))


def test_an_event_array_reads_the_same_in_every_layout_and_as_lines_where_written_so(tmp_path, events, monkeypatch):
    """The platform's arrays share the sources' reader: lines where an element is a line, else DuckDB's stream."""
    import json

    from vtp_lab import io

    streamed: list[int] = []
    stream = io._array_elements
    monkeypatch.setattr(io, "_array_elements", lambda path: streamed.append(1) or stream(path))
    lines = write_events(events, tmp_path / "a line each.json")
    elements = [*json.loads(lines.read_text()), 5]  # and an element that is not an object
    lines.write_text("[" + ",\n".join(json.dumps(e) for e in elements) + "]\n")
    (tmp_path / "pretty.json").write_text(json.dumps(elements, indent=2))
    (tmp_path / "one line.json").write_text(json.dumps(elements))
    got = {}
    for name in ("a line each", "pretty", "one line"):
        streamed.clear()
        batches = list(read_events(tmp_path / f"{name}.json"))
        rows = pl.concat([b.rows for b in batches]).drop("_raw", "_source")  # the file names differ
        bad = pl.concat([b.malformed for b in batches]).select("row_number", "reason")
        got[name] = (rows, bad.rows())
        assert bool(streamed) == (name != "a line each"), name
    n = len(elements)
    assert got["a line each"][1] == [(n, "malformed")] and got["a line each"][0].height == n - 1
    for name in ("pretty", "one line"):
        assert got[name][0].equals(got["a line each"][0]) and got[name][1] == got["a line each"][1]


def test_an_array_read_as_lines_up_to_what_duckdb_cannot_read_is_finished_as_one_document(tmp_path, events):
    """A lone surrogate escape in the last element: the lines before it loaded, the rest from Python's reader."""
    import json

    elements = json.loads(write_events(events.head(20), tmp_path / "e.json").read_text())
    elements[-1]["session_id"] = "\ud800"
    text = "[" + ",\n".join(json.dumps(e) for e in elements) + "]"  # no newline at the end: the last line alone
    for name, body in (("lines.json", text), ("pretty.json", json.dumps(elements, indent=2))):
        (tmp_path / name).write_text(body)
    got = {}
    for name in ("lines.json", "pretty.json"):
        batches = list(read_events(tmp_path / name))
        rows = pl.concat([b.rows for b in batches])
        got[name] = (rows["_row"].to_list(), pl.concat([b.malformed for b in batches])["row_number"].to_list())
    assert got["lines.json"] == got["pretty.json"] and len(got["lines.json"][0]) + len(got["lines.json"][1]) == 20
