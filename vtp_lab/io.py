"""Event files: reading and writing dumps in the platform's formats.

Formats: NDJSON / JSON Lines (one event object per line, metadata nested or as a JSON
string), a JSON array, CSV (as PostgreSQL's ``COPY analytics_events TO ... CSV
HEADER`` writes it: the table's columns, timestamps as PostgreSQL text, metadata as
JSON text; or the same without a header, in the table's column order) and Parquet.
Text formats may be plain, ``.gz`` or ``.zst``. The format comes from the file name
or, failing that, from the content.

:func:`read_events` streams a file as :class:`RawBatch` es of bounded size: raw rows
(``_raw``, ``_source``, ``_row`` and the fields as found) for
:func:`vtp_lab.validation.validate`, plus the lines that could not be parsed at all,
already as ``malformed`` rejections with their line numbers. Parsing is vectorised
(DuckDB for JSON, polars for CSV); only a CSV chunk that polars cannot parse is
re-read line by line to find the bad lines.

Example:
    >>> import tempfile, pathlib
    >>> from vtp_lab.synth import semester
    >>> events = semester(courses=1, lectures_per_course=1, students=2, seed=0).events
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "events.ndjson.gz"
    >>> write_events(events, path) == path
    True
"""

from __future__ import annotations

import codecs
import csv
import glob
import gzip
import io
import json
import mmap
import os
import re
import tempfile
import zlib
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, Final, Literal, cast

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from vtp_lab.duck import ROW_GROUP_ROWS, JsonParse, connect, json_query, over, uuid_texts
from vtp_lab.errors import InputFormatError
from vtp_lab.events import FIELD_ALIASES
from vtp_lab.sources import MAPPINGS, SOURCE_FORMATS, SourceFormat, apply, sniff
from vtp_lab.sources.writers import as_source
from vtp_lab.tables import ANALYTICS_EVENTS, RECORDINGS, REJECTED_EVENTS, json_value
from vtp_lab.validation import rejected_rows

__all__ = [
    "FORMATS",
    "Format",
    "RawBatch",
    "checked_format",
    "detect_format",
    "expand_paths",
    "format_of",
    "read_documents",
    "read_events",
    "skip_reason",
    "typed_rows",
    "write_events",
]

Format = Literal["ndjson", "json", "csv", "parquet"] | SourceFormat
FORMATS: Final[tuple[Format, ...]] = ("ndjson", "json", "csv", "parquet", *SOURCE_FORMATS)
_SUFFIXES: Final[dict[str, Format]] = {
    ".ndjson": "ndjson",
    ".jsonl": "ndjson",
    ".json": "json",
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}
_COMPRESSIONS: Final = (".gz", ".zst")


def checked_format(name: str) -> Format:
    """``name`` if it is one of :data:`FORMATS`, else an :class:`InputFormatError` naming it.

    Example:
        >>> checked_format("csv")
        'csv'
    """
    if name not in FORMATS:
        raise InputFormatError(f"unknown format {name!r}; use one of {', '.join(FORMATS)}")
    return cast(Format, name)


def format_of(path: str | Path) -> Format | None:
    """The format a file name says (``.ndjson.gz`` is ndjson), or None.

    Example:
        >>> format_of("dump.csv.zst"), format_of("dump.bin")
        ('csv', None)
    """
    suffixes = Path(path).suffixes
    if suffixes and suffixes[-1] in _COMPRESSIONS:
        suffixes = suffixes[:-1]
    return _SUFFIXES.get(suffixes[-1].lower()) if suffixes else None


def _ndjson_lines(events: pl.DataFrame) -> pl.Series:
    scalars = [c for c in events.columns if c != "metadata"]
    text = events.with_columns(pl.col(pl.Datetime).dt.strftime("%Y-%m-%dT%H:%M:%S%.6fZ"))
    head = pl.struct(scalars).struct.json_encode().str.strip_suffix("}")
    if "metadata" not in events.columns:
        return text.select(head + "}").to_series()
    meta = pl.col("metadata")
    as_json = pl.when(meta.str.starts_with("{") | meta.str.starts_with("[")).then(meta)
    value = pl.coalesce(as_json, json_value(meta), pl.lit("null"))
    return text.select(pl.concat_str([head, pl.lit(',"metadata":'), value, pl.lit("}")])).to_series()


def _encode(events: pl.DataFrame, fmt: Format) -> bytes:
    if fmt in SOURCE_FORMATS:
        return (as_source(events, cast(SourceFormat, fmt)).str.join("\n").item() + "\n").encode()
    if fmt == "ndjson":
        return (_ndjson_lines(events).str.join("\n").item() + "\n").encode()
    if fmt == "json":
        return ("[" + _ndjson_lines(events).str.join(",\n").item() + "]\n").encode()
    text = events.with_columns(pl.col(pl.Datetime).dt.strftime("%Y-%m-%d %H:%M:%S%.6f+00"))
    return text.write_csv().encode()


def write_events(events: pl.DataFrame, path: str | Path, *, format: Format | None = None) -> Path:
    """Write events to ``path`` in ``format`` (default: from the file name).

    A source format (``edx``, ``xapi``, ``caliper``) writes the events as that source
    would have recorded them, one record a line (:func:`vtp_lab.sources.writers.as_source`).

    Example:
        >>> write_events(pl.DataFrame({"id": ["x"]}), "/tmp/x.xml")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        vtp_lab.errors.InputFormatError: cannot tell the format of /tmp/x.xml; ...
    """
    path = Path(path)
    fmt = format or format_of(path)
    if fmt is None or fmt not in FORMATS:
        raise InputFormatError(
            f"cannot tell the format of {path}; name it .ndjson, .json, .csv or .parquet "
            f"(optionally .gz or .zst), or pass format= one of {', '.join(FORMATS)}"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "parquet":
        events.write_parquet(path, compression="zstd")
        return path
    data = _encode(events, fmt)
    if path.suffix == ".gz":
        data = gzip.compress(data, mtime=0)
    elif path.suffix == ".zst":
        import zstandard

        data = zstandard.ZstdCompressor(level=6).compress(data)
    path.write_bytes(data)
    return path


_GZIP: Final = b"\x1f\x8b"
_ZSTD: Final = b"\x28\xb5\x2f\xfd"
_CHUNK_BYTES: Final = 32 * 1024 * 1024


@dataclass(frozen=True)
class RawBatch:
    """Part of a file: raw rows to validate, and lines that could not be parsed.

    A source format's batch also counts the records it skipped (not playback events),
    by their source type, and carries the identities its adapter made
    (:data:`vtp_lab.tables.SOURCE_IDENTITIES` rows).

    Example:
        >>> RawBatch(rows=pl.DataFrame(), malformed=REJECTED_EVENTS.empty(), bytes_read=0).rows_read
        0
    """

    rows: pl.DataFrame
    malformed: pl.DataFrame
    bytes_read: int
    skipped: dict[str, int] = field(default_factory=dict)
    identities: pl.DataFrame | None = None

    @property
    def rows_read(self) -> int:
        """Rows in this batch: parsed, malformed (or rejected by a source's adapter) and skipped."""
        return self.rows.height + self.malformed.height + sum(self.skipped.values())


def expand_paths(*paths: str | Path) -> list[Path]:
    """Files named by paths, globs and directories (recursively), sorted, each once.

    Example:
        >>> expand_paths("/no/such/file.ndjson")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        vtp_lab.errors.InputFormatError: no file matches /no/such/file.ndjson; ...
    """
    found: dict[Path, None] = {}
    for spec in paths:
        path = Path(spec)
        if path.is_dir():
            matches = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
        elif path.is_file():
            matches = [path]
        else:
            matches = sorted(Path(m) for m in glob.glob(str(spec), recursive=True) if Path(m).is_file())
        if not matches:
            raise InputFormatError(
                f"no file matches {spec}; check the path, or quote a glob so the shell leaves it alone"
            )
        found.update(dict.fromkeys(matches))
    return list(found)


def _compression(path: Path) -> Literal["gzip", "zstd", "none"]:
    """How the file is compressed, by its magic number (not its name)."""
    with open(path, "rb") as fh:
        magic = fh.read(4)
    return "gzip" if magic.startswith(_GZIP) else "zstd" if magic == _ZSTD else "none"


def _open_text(path: Path) -> io.BufferedIOBase:
    """The file's bytes, decompressed if it is gzip or zstd (by its magic number), after any UTF-8 byte order mark.

    A byte order mark is not text: it would be part of a CSV header's first name, or
    make an NDJSON file's first line malformed.
    """
    fh = _open_bytes(path)
    if fh.read(len(codecs.BOM_UTF8)) != codecs.BOM_UTF8:
        fh.close()
        fh = _open_bytes(path)  # no mark: from the start again (a zstd stream cannot seek back)
    return fh


def _read_text(path: Path) -> bytes:
    """The whole of :func:`_open_text`, the file closed after."""
    with _open_text(path) as fh:
        return fh.read()


class _Decompressed(io.RawIOBase):
    """A gzip or zstd file's decompressed bytes, checked to its end.

    Members (gzip) and frames (zstd) may follow each other, as ``cat`` or log rotation
    leave them. A stream cut short, a corrupt block, or bytes after the last member that
    are not another one raise :class:`InputFormatError` naming the file and how far it got;
    what was decompressed before the fault has been handed out already.
    ``consumed`` counts the compressed bytes read, for progress.
    """

    _STEP: Final = 256 * 1024

    def __init__(self, path: Path, compression: Literal["gzip", "zstd"]) -> None:
        super().__init__()
        self.path, self.compression = path, compression
        self._file = open(path, "rb")  # noqa: SIM115 - closed by close()
        self._size = path.stat().st_size
        self._pending = b""  # decompressed, not yet handed out
        self._input = b""  # compressed, not yet decompressed
        self._decoder: Any = None
        self.consumed = 0
        self.produced = 0

    def readable(self) -> bool:
        return True

    def _new_decoder(self) -> Any:
        if self.compression == "gzip":
            return zlib.decompressobj(wbits=31)
        import zstandard

        return zstandard.ZstdDecompressor().decompressobj()

    def _fault(self, what: str) -> InputFormatError:
        return InputFormatError(
            f"{self.path}: the {self.compression} stream {what} at byte {self.consumed - len(self._input):,} of "
            f"{self._size:,}"
            f" ({self.produced:,} bytes decompressed before it); what was read before it is kept. "
            f"Check the file ({'gzip -t' if self.compression == 'gzip' else 'zstd -t'}), "
            "copy it whole and load it again"
        )

    def _fill(self) -> bool:
        """Decompress more; False at the clean end of the stream."""
        magic = _GZIP if self.compression == "gzip" else _ZSTD
        while not self._pending:
            if len(self._input) < len(magic):
                if self._read():
                    continue
                if not self._input:
                    if self._decoder is not None:
                        raise self._fault("is cut short")
                    return False
            if self._decoder is None and not self._start(magic):
                continue
            self._decode()
        return True

    def _read(self) -> bool:
        """Read the next compressed bytes into the input; False at the end of the file."""
        more = self._file.read(self._STEP)
        self.consumed += len(more)
        self._input += more
        return bool(more)

    def _start(self, magic: bytes) -> bool:
        """Start decoding a member (or frame); False where the rest of the input is zero padding, dropped."""
        if not self._input.strip(b"\0"):  # zero padding after the last member, as gzip allows
            self._input = b""
            return False
        if not self._input.startswith(magic):
            raise self._fault("has bytes that are not " + self.compression)
        self._decoder = self._new_decoder()
        return True

    def _decode(self) -> None:
        """Decompress the input; at a member's end, what follows waits for the next one."""
        data, self._input = self._input, b""
        try:
            self._pending = self._decoder.decompress(data)
        except Exception as exc:  # zlib.error, zstandard.ZstdError
            raise self._fault(f"is corrupt ({exc})") from None
        if self._decoder.eof:
            self._input, self._decoder = self._decoder.unused_data, None
        self.produced += len(self._pending)

    def readinto(self, buffer: Any) -> int:
        if not self._pending and not self._fill():
            return 0
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n

    def close(self) -> None:
        self._file.close()
        super().close()


def _open_bytes(path: Path) -> io.BufferedIOBase:
    compression = _compression(path)
    if compression == "none":
        return open(path, "rb")
    return io.BufferedReader(_Decompressed(path, compression), buffer_size=1024 * 1024)


_SNIFF_BYTES: Final = 16 * 1024
"""How much of a file's start :func:`detect_format` reads to tell its format from its content."""


def _head(path: Path, named: Format | None) -> bytes:
    """The first :data:`_SNIFF_BYTES` of a file's text; empty for a damaged file whose name says its format."""
    try:
        with _open_text(path) as fh:
            return fh.read(_SNIFF_BYTES).lstrip()
    except (InputFormatError, OSError, EOFError):  # its reader reports the damage
        if named:
            return b""
        raise


def detect_format(path: str | Path) -> Format:
    r"""The format of a file: a source format (edX, xAPI, Caliper) from its first record, else from its name or bytes.

    A Parquet or CSV file is what its name says; JSON text is a source's when its first
    record has the source's keys (:func:`vtp_lab.sources.sniff`), whatever its name.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "dump"
        >>> _ = p.write_text('{"event_type": "buffer_end"}\n')
        >>> detect_format(p)
        'ndjson'
    """
    named = format_of(path)
    with open(path, "rb") as fh:
        if named == "parquet" or fh.read(4) == b"PAR1":
            return "parquet"
    if named == "csv":
        return named
    head = _head(Path(path), named)
    source = sniff(
        b"\n".join(line for line in head.split(b"\n") if not line.startswith(b"#")).decode("utf-8", "replace")
    )
    return source or named or ("json" if head.startswith(b"[") else "ndjson" if head.startswith(b"{") else "csv")


def skip_reason(path: str | Path, fmt: Format) -> str | None:
    r"""Why a file is not an event dump (a catalogue, notes, another table), or None when it may be one.

    A CSV is an event dump when its header names the event type (in any accepted
    spelling), or when it has no header and its first row has the table's seven fields;
    a Parquet file when a column names the event type. JSON is taken as events.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "recordings.csv"
        >>> _ = p.write_text("recording_id,course_id,title,duration_seconds,published_at\n")
        >>> skip_reason(p, "csv")
        'a recordings catalogue, not events: load it with load_recordings() or --recordings'
    """
    path = Path(path)
    if fmt == "parquet":
        try:
            names = pq.read_schema(path).names
        except Exception:  # an unreadable file is the reader's to report
            return None
        headerless = False
    elif fmt == "csv":
        with _open_text(path) as fh:
            first = fh.readline(64 * 1024).decode("utf-8", errors="replace")
        if not first.strip():
            return None
        names = next(csv.reader([first]), [])
        headerless = len(names) == len(ANALYTICS_EVENTS.column_names)
    else:
        return None
    if set(names) & set(FIELD_ALIASES["event_type"]) or headerless:
        return None
    if "recording_id" in names and set(names) <= set(RECORDINGS.column_names):
        return "a recordings catalogue, not events: load it with load_recordings() or --recordings"
    return f"no event_type column (its columns: {', '.join(sorted(names)[:8])}): not an event dump"


def _lines_pool() -> pa.MemoryPool:
    """Where :func:`_lines` reads a compressed file: pyarrow's jemalloc where it has one, else the default pool.

    A piece's buffer lives as long as a line of it does, then is freed. Whole loads of 1M
    xAPI statements read into buffers took 4.5 to 4.7 s from jemalloc, as from the system's
    allocator, against 4.8 to 6.4 s from mimalloc, pyarrow's default, though in a file read
    alone jemalloc gave fresh pages to a quarter to more than half of the pieces and
    mimalloc to almost none (docs/design-measurements.md). A plain file is mapped, not read
    (:func:`_mapped`).

    Example:
        >>> _lines_pool().backend_name in {"jemalloc", pa.default_memory_pool().backend_name}
        True
    """
    try:
        return pa.jemalloc_memory_pool()
    except NotImplementedError:  # a pyarrow built without jemalloc (Windows)
        return pa.default_memory_pool()


_LINES_POOL: Final = _lines_pool()
_PIECE_BYTES: Final = 4 * 1024 * 1024
"""The most bytes mapped or read as one piece (:func:`_piece`), past a line carried from the last."""
_INLINE: Final = 12
"""The longest string an Arrow string view holds in itself."""
_WINDOW: Final = 1024 * 1024
"""Bytes searched for newlines at a time."""
_LONGEST: Final = 2**30 - 1
"""The longest line :func:`_lines` reads: a piece holds it and at most as much again, and an Arrow string view's
offset is a 32-bit integer."""


def _breaks(byte: np.ndarray) -> np.ndarray:
    r"""Where each ``\n`` of ``byte`` is, found a window at a time.

    A comparison over a whole chunk at once would make a temporary of its size, whose
    fresh pages cost more to fault in than the search.

    Example:
        >>> _breaks(np.frombuffer(b"a\nbc\n", np.uint8)).tolist()
        [1, 4]
    """
    found = [np.flatnonzero(byte[at : at + _WINDOW] == ord("\n")) + at for at in range(0, byte.size, _WINDOW)]
    return np.concatenate(found) if found else np.empty(0, np.intp)


def _views(data: pa.Buffer, index: int, breaks: np.ndarray | None) -> tuple[np.ndarray, pa.Buffer]:
    """The Arrow string views (16 bytes each) of the lines of ``data``, its buffer ``index``; and ``data`` as UTF-8."""
    whole = pa.Array.from_buffers(pa.large_binary(), 1, [None, pa.array([0, data.size], pa.int64()).buffers()[1], data])
    try:
        whole.cast(pa.large_string())
    except pa.ArrowInvalid:  # not UTF-8
        data, breaks = pa.py_buffer(data.to_pybytes().decode("utf-8", errors="replace").encode()), None
    byte = np.frombuffer(data, np.uint8)
    breaks = _breaks(byte) if breaks is None else breaks
    starts = np.concatenate([[0], breaks + 1])
    lengths = np.concatenate([breaks, [data.size]]) - starts
    views = np.zeros((starts.size, 16), np.uint8)
    views[:, :4] = lengths.astype("<i4").view(np.uint8).reshape(-1, 4)
    inline = lengths <= _INLINE
    at, columns = starts[inline], np.arange(_INLINE)
    inside = np.minimum(at[:, None] + columns, max(data.size - 1, 0))
    views[inline, 4:] = np.where(columns < lengths[inline, None], byte[inside] if data.size else 0, 0)
    at = starts[~inline]
    views[~inline, 4:8] = byte[at[:, None] + np.arange(4)]
    views[~inline, 8:12] = np.array([index], "<i4").view(np.uint8)
    views[~inline, 12:] = at.astype("<i4").view(np.uint8).reshape(-1, 4)
    return views, data


def _split(pieces: list[pa.Buffer], breaks: list[np.ndarray] | None = None) -> pl.Series:
    r"""The lines of each of ``pieces`` (split at each ``\n``) as one polars Series of views into them.

    No line is copied: each is an Arrow string view of its piece (its length and offset,
    made with numpy from where the newlines are, ``breaks`` if the caller has found them),
    which polars takes as it is; the pieces must not change afterwards. Bytes that are not
    UTF-8 are replaced by U+FFFD, as ``bytes.decode(errors="replace")`` does (in a copy).
    Arrow's ``split_pattern`` copied every line, at three to four times the cost
    (docs/design-measurements.md).

    Example:
        >>> _split([pa.py_buffer(b'{"a": 1}\n\n{"b": 2}\r'), pa.py_buffer(b"x")]).to_list()
        ['{"a": 1}', '', '{"b": 2}\r', 'x']
    """
    made = [_views(data, i, None if breaks is None else breaks[i]) for i, data in enumerate(pieces)]
    views = np.concatenate([v for v, _ in made])
    lines = pa.Array.from_buffers(pa.string_view(), len(views), [None, pa.py_buffer(views), *(d for _, d in made)])
    return pl.Series("_raw", lines)


def _lines(path: Path) -> Generator[tuple[pl.Series, int, int]]:
    """(lines, number of the first line, bytes read so far) in chunks of about 32 MiB.

    A chunk is read in pieces (:func:`_piece`) of whole lines, the unfinished line of
    each carried to the next (a view of its bytes: a mapped piece maps it again, a read
    one copies it); its lines are views into them (:func:`_split`).
    """
    number, tail, done = 1, np.empty(0, np.uint8), False
    fault: InputFormatError | None = None
    with _open_text(path) as fh, open(path, "rb") as raw:
        while not done:
            pieces: list[pa.Buffer] = []
            breaks: list[np.ndarray] = []
            while sum(p.size for p in pieces) < _CHUNK_BYTES and not done:
                if len(tail) > _LONGEST:
                    raise InputFormatError(
                        f"{path}: line {number + sum(b.size + 1 for b in breaks)} is longer than 1 GiB, the most "
                        "a line can hold here; write the file a record a line (NDJSON), or as a JSON array"
                    )
                buffer, byte, ended, fault = _piece(fh, tail)
                done = ended or fault is not None
                found = _breaks(byte[len(tail) :]) + len(tail)
                if not found.size:
                    tail = byte
                    if number == 1 and not pieces and (done or byte.size >= _CHUNK_BYTES):
                        _carriage_returns(path, tail.tobytes())
                    continue
                tail = byte[found[-1] + 1 :]
                pieces.append(buffer.slice(0, int(found[-1])))
                breaks.append(found[:-1])
            if pieces:
                lines = _split(pieces, breaks)
                yield lines, number, _position(fh, raw)
                number += lines.len()
        if fault is not None:
            raise fault  # a line cut by the fault is not handed on: the error says where the file stops
        if tail.size:
            yield _split([pa.py_buffer(tail)]), number, _position(fh, raw)


_Piece = tuple[pa.Buffer, np.ndarray, bool, InputFormatError | None]
"""A piece of a file (:func:`_piece`): its buffer, its bytes, whether the file ended in it, a fault that stopped it."""


def _piece(fh: io.BufferedIOBase, tail: np.ndarray) -> _Piece:
    """``tail`` and as much of ``fh`` after it as fits a piece: a plain file's mapped, a stream's read into a buffer.

    A piece is :data:`_PIECE_BYTES` past the tail. Past a tail longer than that, a piece is
    as long again, so that a long line is not copied or mapped over and over. A plain file
    is mapped (:func:`_mapped`); a decompressed stream is read into a buffer of
    :data:`_LINES_POOL`: fresh pages cost a fault each, and jemalloc gives them to more of
    the pieces the larger they are (1 GB read holding five chunks: 150,000 faults in
    pieces of 4 MiB, 258,000 in pieces of 7 MiB; pieces of 1 MiB, 90,000, made whole loads
    no faster).
    """
    room = max(min(_PIECE_BYTES, _CHUNK_BYTES), len(tail))
    if isinstance(fh, io.BufferedReader) and isinstance(fh.raw, io.FileIO):
        mapped = _mapped(fh, len(tail), room)
        if mapped is not None:
            return mapped
    buffer = pa.allocate_buffer(len(tail) + room, memory_pool=_LINES_POOL)
    fault = None
    with memoryview(buffer) as whole, whole.cast("B") as view:
        view[: len(tail)] = tail.data
        end = len(tail)
        try:
            while end < len(view) and (got := fh.readinto1(view[end:])):
                end += got
        except InputFormatError as exc:  # what came before the fault is handed on, then the fault
            fault = exc
    return buffer, np.frombuffer(buffer, np.uint8, count=end), end < buffer.size, fault


def _mapped(fh: io.BufferedReader, carried: int, room: int) -> _Piece | None:
    """The ``carried`` bytes before ``fh``'s position and up to ``room`` after it, mapped from the file, not read.

    Reading copies each byte into fresh memory, a page fault each 4 KiB; a mapping shares
    the pages the operating system holds of the file, and the unfinished line carried
    over is mapped again, not copied (1 GB of xAPI statements split into lines: 0.34 to
    0.58 CPU-s against 0.59 to 0.89 read; docs/design-measurements.md). The mapping lives
    as long as a line of it does. A file that grows while it loads is read to its size at
    each piece; one cut shorter while lines of it are still held stops the process with
    ``SIGBUS``, as with polars' own readers, which map files too. None where the file
    cannot be mapped (some network file systems): the piece is read instead.
    """
    start = fh.tell() - carried
    end = min(start + carried + room, os.fstat(fh.fileno()).st_size)
    if end <= start:
        return pa.py_buffer(b""), np.empty(0, np.uint8), True, None
    base = start - start % mmap.ALLOCATIONGRANULARITY
    try:
        mapping = mmap.mmap(fh.fileno(), end - base, access=mmap.ACCESS_READ, offset=base)
    except (OSError, ValueError):
        return None
    piece = pa.py_buffer(mapping).slice(start - base)
    fh.seek(end)
    return piece, np.frombuffer(piece, np.uint8), end < start + carried + room, None


def _carriage_returns(path: Path, text: bytes) -> None:
    """Raise where ``text``, the start of a file with no newline in it, ends its lines with carriage returns alone."""
    if b"\r" in text.rstrip(b"\r"):
        raise InputFormatError(
            f"{path} ends its lines with a carriage return alone (old Mac line endings), so it reads "
            "as one line; convert them first, for example: tr '\\r' '\\n' < FILE > FILE.unix"
        )


def _position(fh: io.BufferedIOBase, raw: io.BufferedIOBase) -> int:
    """Compressed bytes consumed so far, for progress (the raw file's size when unknown)."""
    inner = getattr(fh, "raw", None)
    if isinstance(inner, _Decompressed):
        return inner.consumed
    try:
        return int(fh.tell())
    except (OSError, AttributeError, ValueError):
        raw.seek(0, io.SEEK_END)
        return raw.tell()


_SPELLINGS: Final = [k for spellings in FIELD_ALIASES.values() for k in spellings]
_FOLDED: Final = [k for i, k in enumerate(_SPELLINGS) if k.lower() in {j.lower() for j in _SPELLINGS[:i]}]
"""Spellings equal to an earlier one but for case (``ID``, ``Metadata``)."""


def _malformed(raw: pl.Series, rows: pl.Series, source: str | pl.Series) -> pl.DataFrame:
    return rejected_rows(raw, rows, source, reason="malformed")


def _fields_sql(texts: str, parse: JsonParse, *, folded: bool, carry: bool) -> str:
    """SQL over relation ``texts`` (a column ``_raw``): ``ok`` and the fields as text, after the input's columns.

    Every accepted key (:data:`vtp_lab.events.FIELD_ALIASES`) comes back as text: strings
    unquoted, numbers as written, a nested object (metadata) as compact JSON; the first
    non-null spelling of a field wins. ``ok`` is false where the text is not a JSON object.
    Each text is parsed once, by ``from_json`` into a struct of the spellings. DuckDB's
    struct fields ignore case, so the spellings that differ from another only in case
    (:data:`_FOLDED`) are looked up by path, unless ``folded=False`` says no text holds them.
    ``parse`` writes the parse (see :func:`vtp_lab.duck.json_query`). ``carry=False``
    leaves the input's columns out.
    """
    struct = "{" + ", ".join(f'"{k}": "VARCHAR"' for k in _SPELLINGS if k not in _FOLDED) + "}"
    paths = ", ".join(f"'$.\"{k}\"'" for k in _FOLDED)
    found = f"CASE WHEN ok THEN json_extract_string(_raw, [{paths}]) END" if folded else "NULL"

    def value(k: str) -> str:
        return f"f[{_FOLDED.index(k) + 1}]" if k in _FOLDED else f'm."{k}"'

    fields = ", ".join(
        f"coalesce({', '.join(value(k) for k in spellings)}) AS {name}" for name, spellings in FIELD_ALIASES.items()
    )
    return f"""
        SELECT {"* EXCLUDE (m, f)" if carry else "ok"}, {fields}
        FROM (SELECT * EXCLUDE (ok), coalesce(ok, false) AS ok, {found} AS f
              FROM (SELECT *, m IS NOT NULL AND (starts_with(_raw, '{{') OR starts_with(ltrim(_raw), '{{')) AS ok
                    FROM (SELECT *, {parse("_raw", struct)} AS m FROM {texts})))
    """


_MAY_BE_SPACE: Final = np.isin(np.arange(256), [*b"\t\n\x0b\x0c\r ", *range(0x80, 256)])
"""The bytes a whitespace character can start with: ASCII whitespace, or the first byte of any longer character."""


def _first_bytes(texts: pl.Series) -> tuple[np.ndarray, np.ndarray]:
    """Whether each text is empty, and its first byte, read from its Arrow string view: no pass over the texts.

    A null's view holds nothing that says so: the caller tells nulls apart.

    Example:
        >>> [a.tolist() for a in _first_bytes(pl.Series(["", "{}", " x"]))]
        [[True, False, False], [0, 123, 32]]
    """
    arrow = texts.rechunk().to_arrow(compat_level=pl.CompatLevel.newest())
    views = np.frombuffer(arrow.buffers()[1], np.uint8).reshape(-1, 16)[arrow.offset : arrow.offset + len(arrow)]
    return np.asarray(~views[:, :4].any(axis=1)), views[:, 4]


def _blank(lines: pl.Series) -> pl.Series:
    r"""Whether each line is empty or only whitespace (null where the line is null).

    Only a line that is empty or starts with a byte of :data:`_MAY_BE_SPACE` can be blank,
    so the whole line is tested only then; which lines those are is read from the Arrow
    string views (:func:`_first_bytes`; a seventh of the cost of polars' test of each
    line's first character, docs/design-measurements.md).

    Example:
        >>> _blank(pl.Series(["", " \t", "\u00a0", " {}", "x", "a,b", None])).to_list()
        [True, True, True, False, False, False, None]
    """
    empty, first = _first_bytes(lines)
    maybe = pl.Series(empty | _MAY_BE_SPACE[first]) | lines.is_null()
    if not maybe.any():
        return maybe
    return maybe.scatter(maybe.arg_true(), lines.filter(maybe).str.contains(r"^\s*$"))


def _holds_folded(texts: pl.Series) -> bool:
    """Whether any text may hold a spelling of :data:`_FOLDED` (a cheap substring test)."""
    return any(texts.str.contains(f'"{k}"', literal=True).any() for k in _FOLDED)


def _split_parsed(frame: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Parsed rows (``ok`` true) and the others as ``malformed`` rejections."""
    bad = frame.filter(~pl.col("ok"))
    return frame.filter(pl.col("ok")).drop("ok"), _malformed(bad["_raw"], bad["_row"], bad["_source"])


def _json_objects(texts: pl.DataFrame, source: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Parse JSON object texts (columns ``_raw``, ``_row`` the line numbers) into raw field columns: one parse per line.

    Only the parsed fields come back from DuckDB (row order kept); the texts stay in
    polars, which saves handing them back.
    """
    with over(texts=texts.select("_raw")) as con:
        parsed = json_query(con, partial(_fields_sql, "texts", folded=_holds_folded(texts["_raw"]), carry=False))
    rows = texts.select("_raw", pl.col("_row").cast(pl.Int64))
    return _split_parsed(rows.hstack(parsed).with_columns(pl.lit(source).alias("_source")))


def _ndjson(path: Path, batch_rows: int) -> Iterator[RawBatch]:
    source = str(path)
    for lines, first, position in _lines(path):
        frame = lines.to_frame().with_row_index("_row", offset=first)
        frame = frame.filter(~_blank(lines))
        for start in range(0, max(frame.height, 1), batch_rows):
            good, bad = _json_objects(frame.slice(start, batch_rows), source)
            yield RawBatch(rows=good, malformed=bad, bytes_read=position)


_WHOLE_DOCUMENT_BYTES: Final = 64 * 1024 * 1024
"""The largest JSON file read whole when DuckDB cannot stream it as an array (one object, or broken JSON)."""


class _Unstreamable(Exception):
    """DuckDB could not read the file as a JSON array (at the start, or part way: ``streamed`` elements in)."""

    def __init__(self, message: str, *, streamed: int = 0) -> None:
        super().__init__(message)
        self.streamed = streamed


def _array_elements(path: Path) -> Iterator[pl.Series]:
    """The elements of a JSON array file as JSON texts (``null`` for a null), a row group at a time, streamed by DuckDB.

    A batch of :data:`~vtp_lab.duck.ROW_GROUP_ROWS` elements is what a load validates and
    stores at once, so none is cut and joined again. The stream runs in a DuckDB of its own
    on one thread: read on two threads beside the load's other DuckDB work, some loads held
    about 300 MB more from start to end (docs/design-measurements.md).

    DuckDB takes a path as a glob pattern, so a file whose name has ``*``, ``?``, ``[`` or
    ``{`` in it is read through a link of a plain name, lest the pattern match others.
    """
    query = (
        "SELECT coalesce(json::VARCHAR, 'null') AS _raw FROM read_json(?, format = 'array', records = false, "
        f"columns = {{'json': 'JSON'}}, compression = '{_compression(path)}')"
    )
    con = connect(threads=1)
    links = tempfile.TemporaryDirectory(prefix="vtp-lab-") if any(c in str(path) for c in "*?[{") else None
    try:
        plain = path
        if links is not None:
            plain = Path(links.name) / "array.json"
            plain.symlink_to(path.resolve())
        for batch in con.sql(query, params=[str(plain)]).to_arrow_reader(batch_size=ROW_GROUP_ROWS):
            yield cast(pl.DataFrame, pl.from_arrow(batch)).to_series()
    except (duckdb.Error, OSError) as exc:  # at the start or part way, or no link could be made
        raise _Unstreamable(str(exc).strip()) from None
    finally:
        con.close()
        if links is not None:
            links.cleanup()


def _json_array(path: Path, batch_rows: int) -> Iterator[RawBatch]:
    """A JSON array of events, read a batch at a time (:func:`_array_records`), each parsed as an NDJSON line is.

    An element is numbered by its position; one that is not an object is a ``malformed``
    row. Memory stays bounded, where reading the array whole takes several times the
    file's size (docs/design-measurements.md). A file DuckDB cannot read as an array (one
    object, or JSON that does not parse) is read whole by :func:`_json_document`, past the
    elements read as lines, if DuckDB handed on none of it and it is at most
    :data:`_WHOLE_DOCUMENT_BYTES`; otherwise it fails with :class:`InputFormatError` saying
    where, and what was handed on before stays loaded, as when a compressed file is cut short.
    """
    source, size, read = str(path), path.stat().st_size, 0
    try:
        for records, position in _array_records(path):
            for start in range(0, records.height, batch_rows):
                good, bad = _json_objects(records.slice(start, batch_rows), source)
                yield RawBatch(rows=good, malformed=bad, bytes_read=position)
            read += records.height
    except _Unstreamable as exc:
        if exc.streamed or size > _WHOLE_DOCUMENT_BYTES:  # DuckDB read part of it, or it is too large to read whole
            raise _unreadable_array(path, exc, read) from None
        yield from _json_document(path, batch_rows, after=read, broken=_unreadable_array(path, exc, read))


def _unreadable_array(path: Path, exc: Exception, read: int) -> InputFormatError:
    """The error for a JSON array that DuckDB could not read to its end after ``read`` elements."""
    return InputFormatError(
        f"{path} is not a JSON array that can be read to its end ({exc}); the first {read:,} elements were read. "
        "Fix the file there, or write it as NDJSON (one record per line), where a broken line is one rejection"
    )


def _json_document(path: Path, batch_rows: int, *, after: int, broken: InputFormatError) -> Iterator[RawBatch]:
    """A JSON document read whole, as :func:`read_documents` reads a posted one; its elements past the first ``after``.

    An array's elements and one event object load as events. A document DuckDB cannot
    parse is parsed by Python's reader, which takes what DuckDB does not (a lone
    surrogate escape in one element): its elements are then written back one by one, so
    that the element at fault is one ``malformed`` row and the others load. A document
    neither reads, or that is neither an array nor an object, is one ``malformed`` row
    (line 1, the whole text as its raw text), or, once ``after`` elements of it were
    handed on, the error ``broken``.
    """
    source, size = str(path), path.stat().st_size
    docs = pl.DataFrame({"_doc": [_read_text(path).decode("utf-8", errors="replace")], "_source": [source]})
    parsed, unreadable = read_documents(docs.with_columns(_ndjson=False))
    if unreadable.len():
        elements = _python_elements(docs["_doc"].item())
        if elements is None and after:
            raise broken
        if elements is None:
            yield RawBatch(
                rows=pl.DataFrame(), malformed=_malformed(docs["_doc"], pl.Series([1]), source), bytes_read=size
            )
            return
        good, bad = _json_objects(elements.to_frame().with_row_index("_row", offset=1), source)
        parsed = RawBatch(rows=good, malformed=bad, bytes_read=size)
    if after:
        rows, malformed = parsed.rows.filter(pl.col("_row") > after), parsed.malformed
        parsed = replace(parsed, rows=rows, malformed=malformed.filter(pl.col("row_number") > after))
    for start in range(0, max(parsed.rows.height, 1), batch_rows):
        malformed = parsed.malformed if start == 0 else parsed.malformed.clear()
        yield RawBatch(rows=parsed.rows.slice(start, batch_rows), malformed=malformed, bytes_read=size)


def _python_elements(text: str) -> pl.Series | None:
    r"""The elements of a JSON array (or the one object) as JSON texts, by Python's reader; None if it cannot read it.

    Example:
        >>> _python_elements('[{"a": 1}, {"s": "\ud800"}]').to_list()
        ['{"a": 1}', '{"s": "\\ud800"}']
    """
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if isinstance(value, dict):
        return pl.Series("_raw", [text])
    if not isinstance(value, list):
        return None
    return pl.Series("_raw", [json.dumps(v) for v in value], dtype=pl.String)


_MAX_RECORD_LINES: Final = 1000
"""The most lines one CSV record may span (a quoted field with line breaks); a quote left open longer is a stray one."""


def _records(lines: pl.Series, numbers: pl.Series, *, last: bool) -> tuple[pl.Series, pl.Series, int]:
    r"""CSV records from lines (RFC 4180: a quoted field may hold line breaks): (records, first line numbers, carry).

    A line with an odd number of quotes opens a quoted field that the next such line
    closes; the lines between belong to the same record. Only those lines are looked at
    one by one (usually none). A quote still open at the end of the lines is carried
    (``carry``: how many lines at the end belong to the next call) unless ``last``; a
    quote not closed within :data:`_MAX_RECORD_LINES` lines is a stray one, and its line
    a record of its own.

    Example:
        >>> r, n, carry = _records(pl.Series(['a,"x', 'y",b', "c,d"]), pl.Series([1, 2, 3]), last=True)
        >>> r.to_list(), n.to_list(), carry
        (['a,"x\ny",b', 'c,d'], [1, 3], 0)
    """
    odd = (lines.str.count_matches('"', literal=True) % 2 == 1).arg_true().to_list()
    if not odd:
        return lines, numbers, 0
    spans: list[tuple[int, int]] = []
    carry, k = 0, 0
    while k < len(odd):
        opener = odd[k]
        closer = odd[k + 1] if k + 1 < len(odd) else None
        if closer is not None and closer - opener < _MAX_RECORD_LINES:
            spans.append((opener, closer))
            k += 2
            continue
        if closer is None and not last and lines.len() - opener < _MAX_RECORD_LINES:
            carry = lines.len() - opener
        k += 1
    keep = lines.len() - carry
    starts = np.ones(keep, dtype=np.int64)
    for opener, closer in spans:
        starts[opener + 1 : closer + 1] = 0
    group = pl.Series("_g", starts.cumsum())
    merged = (
        pl.DataFrame({"_line": lines.head(keep), "_n": numbers.head(keep), "_g": group})
        .group_by("_g", maintain_order=True)
        .agg(pl.col("_line").str.join("\n"), pl.col("_n").first())
    )
    return merged["_line"], merged["_n"], carry


_NULL_MARKER: Final = re.compile(r'("(?:[^"]|"")*")|(?<![^,])\\N(?![^,])')
"""A quoted field (kept as it is) or an unquoted ``\\N``, PostgreSQL's COPY null marker (made an empty field)."""


def _without_null_markers(records: pl.Series) -> pl.Series:
    r"""Records with each unquoted ``\N`` field made empty (null); a quoted ``"\N"`` stays the text ``\N``.

    Example:
        >>> _without_null_markers(pl.Series(['\\N,"\\N",a\\Nb,\\N'])).to_list()
        [',"\\N",a\\Nb,']
    """
    marked = records.str.contains("\\N", literal=True)
    if not marked.any():
        return records
    fixed = [_NULL_MARKER.sub(lambda m: m[1] or "", r) for r in records.filter(marked).to_list()]
    return records.scatter(marked.arg_true(), pl.Series(fixed, dtype=pl.String))


def _read_csv_text(records: pl.Series, columns: list[str]) -> pl.DataFrame:
    """CSV records parsed by polars: every field a string, a quoted empty field ``""``, an unquoted one null."""
    if not records.len():
        return pl.DataFrame(schema=dict.fromkeys(columns, pl.String))
    frame = pl.read_csv(
        io.StringIO(records.str.join("\n").item()),
        has_header=False,
        new_columns=columns,
        infer_schema=False,
        truncate_ragged_lines=False,
        missing_columns="raise",
    )
    if frame.height != records.len() or frame.width != len(columns):
        raise pl.exceptions.ComputeError("row count changed")
    return frame


def _csv_chunk(
    records: pl.Series, numbers: pl.Series, columns: list[str], source: str
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Parse CSV records with polars; only if polars cannot, find the bad records one by one."""
    keep = ~_blank(records)
    kept, numbers = records.filter(keep), numbers.filter(keep).cast(pl.Int64).alias("_row")
    texts = _without_null_markers(kept)
    try:
        frame, bad = _read_csv_text(texts, columns), REJECTED_EVENTS.empty()
    except (pl.exceptions.ComputeError, pl.exceptions.NoDataError, pl.exceptions.ShapeError, pl.exceptions.SchemaError):
        ok = pl.Series([_one_record(t, len(columns)) for t in texts.to_list()], dtype=pl.Boolean)
        bad = _malformed(kept.filter(~ok), numbers.filter(~ok), source)
        kept, numbers, texts = kept.filter(ok), numbers.filter(ok), texts.filter(ok)
        frame = _read_csv_text(texts, columns)
    return frame.with_columns(kept.alias("_raw"), numbers, pl.lit(source).alias("_source")), bad


def _one_record(text: str, width: int) -> bool:
    """Whether ``text`` is one CSV record of ``width`` fields (the slow check, for chunks polars refused)."""
    try:
        rows = list(csv.reader(io.StringIO(text), strict=True))
    except csv.Error:
        return False
    return len(rows) == 1 and len(rows[0]) == width


def _csv_records(path: Path) -> Iterator[tuple[pl.Series, pl.Series, int]]:
    """(records, their first line numbers, bytes read) chunk by chunk: :func:`_lines` joined by :func:`_records`."""
    carried, carried_numbers, position = pl.Series("_raw", [], pl.String), pl.Series([], dtype=pl.Int64), 0
    chunks = _lines(path)
    while True:
        try:
            lines, first, position = next(chunks)
            last = False
        except StopIteration:
            lines, first, last = pl.Series("_raw", [], pl.String), 0, True
        except InputFormatError:
            if carried.len():
                yield *_records(carried, carried_numbers, last=True)[:2], position
            raise
        numbers = pl.concat([carried_numbers, pl.int_range(first, first + lines.len(), dtype=pl.Int64, eager=True)])
        lines = pl.concat([carried, lines])
        records, starts, carry = _records(lines, numbers, last=last)
        carried, carried_numbers = lines.tail(carry), numbers.tail(carry)
        if records.len():
            yield records, starts, position
        if last:
            return


def _csv(path: Path, batch_rows: int) -> Iterator[RawBatch]:
    source = str(path)
    columns: list[str] | None = None
    for records, numbers, position in _csv_records(path):
        body, starts = records, numbers
        if columns is None:
            header = next(csv.reader([records[0]]), [])
            known = {k for keys in FIELD_ALIASES.values() for k in keys}
            if header and set(header) & known:
                columns = header
                body, starts = records[1:], numbers[1:]
            else:
                columns = list(ANALYTICS_EVENTS.column_names)
        for start in range(0, max(body.len(), 1), batch_rows):
            good, bad = _csv_chunk(body.slice(start, batch_rows), starts.slice(start, batch_rows), columns, source)
            yield RawBatch(rows=good, malformed=bad, bytes_read=position)


_UUID_SPELLINGS: Final = frozenset(k for name in ("id", "recording_id", "user_id") for k in FIELD_ALIASES[name])


def _as_text(frame: pl.DataFrame) -> pl.DataFrame:
    """Columns as other engines write them, in the forms validation reads.

    Ids as 16-byte binary UUIDs (Spark, PostgreSQL) become their canonical text (other
    binaries their hex, which validation rejects); metadata as a map or a struct becomes
    a JSON object's text.

    Example:
        >>> f = pl.DataFrame({"id": [bytes(range(16))], "metadata": [{"position": 5}]})
        >>> _as_text(f).row(0)
        ('00010203-0405-0607-0809-0a0b0c0d0e0f', '{"position":5}')
        >>> _as_text(pl.DataFrame({"id": [bytes([1, 2]), None]}))["id"].to_list()
        ['0102', None]
    """
    fixes = []
    for name, dtype in frame.schema.items():
        if name in _UUID_SPELLINGS and dtype == pl.Binary:
            dashed = pl.lit(uuid_texts(frame[name], repeats=name not in FIELD_ALIASES["id"]))
            fixes.append(pl.coalesce(dashed, pl.col(name).bin.encode("hex")).alias(name))
        elif name in FIELD_ALIASES["metadata"] and isinstance(dtype, pl.Map | pl.Struct):
            fixes.append(pl.when(pl.col(name).is_not_null()).then(json_value(pl.col(name))).alias(name))
    return frame.with_columns(fixes) if fixes else frame


def typed_rows(batch: pa.RecordBatch | pa.Table, rows: pl.Series, *, source: str, bytes_read: int) -> RawBatch:
    """Typed columns (Parquet's, a database's) numbered by ``rows`` as a raw batch, in the forms validation reads.

    An Arrow extension column (a database's UUID or JSON) is read as its storage: a
    16-byte UUID becomes its canonical text, JSON its text (see :func:`_as_text`).

    Example:
        >>> batch = pa.table({"id": [bytes(range(16))], "event_type": ["buffer_end"]})
        >>> typed_rows(batch, pl.Series([4]), source="t", bytes_read=0).rows.row(0)
        ('00010203-0405-0607-0809-0a0b0c0d0e0f', 'buffer_end', 4, 't')
    """
    plain = [c.storage if isinstance(c.type, pa.BaseExtensionType) else c for c in batch.columns]
    frame = _as_text(cast(pl.DataFrame, pl.from_arrow(pa.table(plain, names=batch.schema.names))))
    frame = frame.with_columns(rows.cast(pl.Int64).alias("_row"), pl.lit(source).alias("_source"))
    return RawBatch(rows=frame, malformed=REJECTED_EVENTS.empty(), bytes_read=bytes_read)


def _parquet(path: Path, batch_rows: int) -> Iterator[RawBatch]:
    try:
        file = pq.ParquetFile(path)
    except Exception as exc:
        raise InputFormatError(
            f"{path} is not a readable Parquet file ({exc}); check the file or name its format"
        ) from None
    number, size = 1, path.stat().st_size
    for i, batch in enumerate(file.iter_batches(batch_size=batch_rows)):
        rows = pl.int_range(number, number + batch.num_rows, dtype=pl.Int64, eager=True)
        number += batch.num_rows
        yield typed_rows(batch, rows, source=str(path), bytes_read=size * (i + 1) // max(file.num_row_groups, 1))


def _source_records(path: Path, *, checked: bool = True) -> Generator[tuple[pl.DataFrame, int]]:
    """A source file's records as texts (``_raw``, ``_row``) as the readers hand them, with the bytes read so far.

    A JSON array streams element by element (``checked`` as :func:`_array_records` takes
    it); a file holding one JSON document over many lines (a learning record store's page,
    up to :data:`_WHOLE_DOCUMENT_BYTES`) is one record, read whole; anything else is a
    record a line (blank lines left out).
    """
    head = _head(path, None)
    size = path.stat().st_size
    if head.startswith(b"["):
        yield from _array_texts(path, _array_records(path, checked=checked), read=0)
        return
    first = head.split(b"\n", 1)[0]
    if head.startswith(b"{") and not _is_json(first) and size <= _WHOLE_DOCUMENT_BYTES:
        whole = _read_text(path)
        if _is_json(whole):
            yield pl.DataFrame({"_raw": [whole.decode("utf-8", errors="replace")], "_row": [1]}), size
            return
    for lines, number, position in _lines(path):
        yield lines.to_frame().with_row_index("_row", offset=number).filter(~_blank(lines)), position


def _one_a_line(head: bytes) -> bool:
    """Whether an array's first line (in ``head``) opens it as one written an element a line: ``[{...},`` or ``[``."""
    lines = head.split(b"\n")[:-1]  # whole lines only
    opening = lines[0].strip() if lines else b""
    return opening == b"[" or (opening.startswith(b"[") and opening.endswith(b","))


def _spaced(lines: pl.Series) -> bool:
    r"""Whether any line starts or ends with whitespace: tested only on those whose first or last byte may be some.

    Example:
        >>> _spaced(pl.Series(['{"a": 1},', "[{}]"])), _spaced(pl.Series(['{"a": 1}, ', ""]))
        (False, True)
    """
    maybe = _MAY_BE_SPACE[_first_bytes(lines)[1]] | _MAY_BE_SPACE[_first_bytes(lines.str.tail(1))[1]]
    if not maybe.any():
        return False
    edges = lines.filter(pl.Series(maybe))
    return bool((edges.str.contains(r"^\s") | edges.str.contains(r"\s$")).any())


def _elements(lines: pl.Series, *, first: bool, last: bool, checked: bool = True) -> pl.Series | None:
    """The elements of a chunk of an array's lines written an element a line, or None where they are not so written.

    Each line holds one element and the comma after it (the first opens with ``[``, the
    last closes with ``]`` and has no comma; ``first`` and ``last`` say whether the chunk
    holds them); blank lines and the brackets alone are left out. None when a line is not
    so: several elements on it, an element over several lines, a comma missing or too many
    (each text must be one JSON value, DuckDB's ``json_valid``; ``checked=False`` leaves
    that to the caller).

    Example:
        >>> _elements(pl.Series(["[", ' {"a": 1},', "", '{"b": [2]}]']), first=True, last=True).to_list()
        ['{"a": 1}', '{"b": [2]}']
        >>> _elements(pl.Series(['[{"a": 1}, {"b": 2}]']), first=True, last=True) is None
        True
    """
    texts = lines.str.strip_chars() if _spaced(lines) else lines  # a strip copies every line
    texts = texts.filter(texts != "")
    if first:
        if texts.is_empty() or not texts[0].startswith("["):
            return None
        texts = texts.scatter(0, texts[0][1:].lstrip())
    if last:
        texts = texts.filter(texts != "")
        if texts.is_empty() or not texts[-1].endswith("]"):
            return None
        texts = texts.scatter(texts.len() - 1, texts[-1][:-1].rstrip())
    texts = texts.filter(texts != "")
    commas = texts.str.ends_with(",")
    if not (commas.head(texts.len() - 1).all() and (commas[-1] != last if texts.len() else True)):
        return None
    cut = int(commas.sum())
    texts = pl.concat([texts.head(cut).str.head(-1), texts.slice(cut)])  # JSON allows the space left before a comma
    return texts if not checked or _all_json(texts) else None


def _all_json(texts: pl.Series) -> bool:
    """Whether every text is one JSON value (DuckDB's ``json_valid``).

    Example:
        >>> _all_json(pl.Series(['{"a": 1}', "[2]"])), _all_json(pl.Series(['{"a": 1}, {"b": 2}']))
        (True, False)
    """
    with over(t=texts.to_frame("_raw")) as con:
        return bool(con.sql("SELECT coalesce(bool_and(json_valid(_raw)), true) FROM t").fetchall()[0][0])


def _array_records(path: Path, *, checked: bool = True) -> Iterator[tuple[pl.DataFrame, int]]:
    """A JSON array's elements as texts (``_raw``) numbered by position (``_row``), with about the bytes read so far.

    Where the array is written an element a line (:func:`_one_a_line`, from its first
    line), the lines are read as NDJSON's are: DuckDB's stream of the elements parses each
    and writes its text again, on one thread (1M xAPI statements: 3.9 s to read, against
    1.9 to 3.0 s as lines, docs/design-measurements.md). From the first chunk of lines that
    is not so written (:func:`_elements`), DuckDB streams the array, past the elements
    already handed on (:func:`_array_stream`). With ``checked=False`` a line's text is not
    checked to be one JSON value: the caller checks it as it parses it, and where one is
    not, reads on with :func:`_array_stream` past the elements it took.
    """
    read = 0
    if _one_a_line(_head(path, None)):
        chunks = _lines(path)
        current, first = next(chunks, None), True
        while current is not None:
            following = next(chunks, None)
            lines, _, position = current
            texts = _elements(lines, first=first, last=following is None, checked=checked)
            if texts is None:
                break
            yield texts.to_frame("_raw").with_row_index("_row", offset=read + 1), position
            read, current, first = read + texts.len(), following, False
        chunks.close()
        if current is None:
            return
    yield from _array_stream(path, read)


def _array_stream(path: Path, read: int) -> Iterator[tuple[pl.DataFrame, int]]:
    """A JSON array's elements past the first ``read``, streamed by DuckDB, numbered on from there.

    Raises :class:`_Unstreamable` where DuckDB cannot read on (``streamed``: how many it
    handed on before).
    """
    size, skip, text_bytes = path.stat().st_size, read, 0  # the stream's bytes: its elements' texts
    streamed = 0
    try:
        for texts in _array_elements(path):
            kept = texts.slice(min(skip, texts.len()))
            skip -= texts.len() - kept.len()
            text_bytes += int(texts.str.len_bytes().sum())
            if kept.len():
                yield kept.to_frame("_raw").with_row_index("_row", offset=read + 1), min(text_bytes, size)
                read, streamed = read + kept.len(), streamed + kept.len()
    except _Unstreamable as exc:
        raise _Unstreamable(str(exc), streamed=streamed) from None


def _array_texts(
    path: Path, records: Iterator[tuple[pl.DataFrame, int]], *, read: int
) -> Generator[tuple[pl.DataFrame, int]]:
    """``records`` of the array at ``path``, ``read`` elements in; where DuckDB cannot read on, the array's error."""
    try:
        for frame, position in records:
            yield frame, position
            read += frame.height
    except _Unstreamable as exc:
        raise _unreadable_array(path, exc, read) from None


def _is_json(text: bytes) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


_SOURCE_BATCH_BYTES: Final = 128 * 1024 * 1024
"""The most record text in one source batch: a batch is mapped in one query, which costs more per record if small."""


def _source(path: Path, batch_rows: int, fmt: Format) -> Iterator[RawBatch]:
    """A source format's file (edX, xAPI, Caliper), mapped by its adapter onto raw events, in large batches.

    An array written an element a line is read as lines whose texts are not checked to be
    JSON first: the mapping parses each anyway. A text that is not JSON (a layout the lines
    do not show, or a broken array) stops it; the batch's chunks of lines before the first
    that holds one are mapped, and DuckDB's stream reads on from there. Checking every
    text first parsed 1 GB of xAPI statements twice (docs/design-measurements.md).
    """
    mapping = MAPPINGS[cast(SourceFormat, fmt)]
    head = _head(path, None)
    unchecked = head.startswith(b"[") and _one_a_line(head)

    def mapped(parts: list[tuple[pl.DataFrame, int]], *, guard: bool) -> RawBatch:
        adapted = apply(mapping, pl.concat(texts for texts, _ in parts), source=str(path), guard=guard)
        return RawBatch(
            rows=adapted.rows,
            malformed=adapted.rejected,
            bytes_read=parts[-1][1],
            skipped=adapted.skipped,
            identities=adapted.identities,
        )

    batches = _gathered(_source_records(path, checked=not unchecked), batch_rows)
    handed = 0
    while (parts := next(batches, None)) is not None:
        try:
            batch = mapped(parts, guard=not unchecked)
        except duckdb.InvalidInputException:  # a line of the array that is not one JSON value: DuckDB reads on
            whole = next((i for i, (texts, _) in enumerate(parts) if not _all_json(texts["_raw"])), None)
            if whole is None:  # every text is JSON: the query failed for another reason
                raise
            batches.close()
            if whole:  # the chunks of lines before it, as when each chunk was checked first
                yield mapped(parts[:whole], guard=True)
                handed += sum(texts.height for texts, _ in parts[:whole])
            stream = _array_texts(path, _array_stream(path, handed), read=handed)
            batches, unchecked = _gathered(stream, batch_rows), False
            continue
        yield batch
        handed += sum(texts.height for texts, _ in parts)


def _gathered(
    records: Iterator[tuple[pl.DataFrame, int]], batch_rows: int
) -> Generator[list[tuple[pl.DataFrame, int]]]:
    """``records`` (texts, bytes read) gathered into batches of ``batch_rows`` records or :data:`_SOURCE_BATCH_BYTES`.

    Where the file is cut short or broken part way, what was gathered before is handed
    on first, then the error.
    """
    parts: list[tuple[pl.DataFrame, int]] = []
    rows = size = 0
    try:
        for texts, position in records:
            parts.append((texts, position))
            rows, size = rows + texts.height, size + int(texts["_raw"].str.len_bytes().sum())
            if rows >= batch_rows or size >= _SOURCE_BATCH_BYTES:
                yield parts
                parts, rows, size = [], 0, 0
    except InputFormatError:
        if parts:
            yield parts
        raise
    if parts:
        yield parts


def read_events(path: str | Path, *, format: Format | None = None, batch_rows: int = 250_000) -> Iterator[RawBatch]:
    r"""Stream a dump as raw batches of at most ``batch_rows`` rows (memory stays bounded).

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "d.ndjson"
        >>> _ = p.write_text('{"EventType": "BufferEnd", "UserID": "u"}\nnot json\n')
        >>> b = next(read_events(p))
        >>> b.rows.select("event_type", "user_id").row(0), b.malformed.select("row_number", "reason").row(0)
        (('BufferEnd', 'u'), (2, 'malformed'))
    """
    path = Path(path)
    if not path.is_file():
        raise InputFormatError(f"no file {path}; check the path")
    fmt = checked_format(format or detect_format(path))
    if fmt in SOURCE_FORMATS:
        yield from _source(path, batch_rows, fmt)
        return
    readers = {"ndjson": _ndjson, "json": _json_array, "csv": _csv, "parquet": _parquet}
    yield from readers[fmt](path, batch_rows)


def read_documents(docs: pl.DataFrame) -> tuple[RawBatch, pl.Series]:
    r"""Parse posted documents, all in one pass: raw rows, malformed lines, and the unreadable documents.

    ``docs`` has a column ``_doc`` (the text), ``_source`` (a name per document) and
    ``_ndjson`` (True for NDJSON, one event per line; False for one JSON array of events,
    or one event object). A row's ``_row`` is its 1-based position in its document. An
    NDJSON line that is not a JSON object is a ``malformed`` rejection; a JSON document
    that does not parse, or is neither an array nor an object, is unreadable as a whole:
    its source is returned and none of its rows are.

    Example:
        >>> docs = pl.DataFrame({"_doc": ['[{"event_type": "buffer_end"}, 7]', "{}\nnope", "[1,"],
        ...                      "_source": ["a", "b", "c"], "_ndjson": [False, True, False]})
        >>> batch, unreadable = read_documents(docs)
        >>> batch.rows.select("_source", "_row").rows(), batch.malformed.select("source", "row_number").rows()
        ([('a', 1), ('b', 1)], [('a', 2), ('b', 2)])
        >>> unreadable.to_list()
        ['c']
    """
    elements = """
        (SELECT _source, unreadable, _raw, _row
         FROM (SELECT _source, unreadable, _ndjson, unnest(e) AS _raw, unnest(range(1, len(e) + 1)) AS _row
         FROM (SELECT _source, unreadable, _ndjson,
                      CASE WHEN _ndjson THEN string_split(_doc, chr(10))
                           WHEN t = 'ARRAY' THEN json_extract(_doc, '$[*]')::VARCHAR[]
                           WHEN t = 'OBJECT' THEN [_doc] ELSE [''] END AS e
               FROM (SELECT *, NOT _ndjson AND coalesce(t NOT IN ('ARRAY', 'OBJECT'), true) AS unreadable
                     FROM (SELECT *, CASE WHEN NOT _ndjson THEN try(json_type(_doc)) END AS t FROM docs))))
         WHERE NOT _ndjson OR trim(_raw) <> '')
    """
    folded = _holds_folded(docs["_doc"])
    with over(docs=docs.select("_doc", "_source", "_ndjson")) as con:
        parsed = json_query(con, partial(_fields_sql, elements, folded=folded, carry=True))
    gone = parsed.filter(pl.col("unreadable"))["_source"]
    readable = parsed.filter(~pl.col("unreadable")).drop("unreadable").with_columns(pl.col("_row").cast(pl.Int64))
    readable = readable.filter(~_blank(readable["_raw"]))  # blank lines are skipped, as in files
    good, bad = _split_parsed(readable)
    return RawBatch(rows=good, malformed=bad, bytes_read=int(docs["_doc"].str.len_bytes().sum())), gone
