"""Event files: writing dumps in the platform's formats.

Formats: NDJSON (one event object per line, metadata as a nested object), CSV (as
PostgreSQL's ``COPY analytics_events TO ... CSV HEADER`` writes it: the table's
columns in order, timestamps as PostgreSQL text, metadata as JSON text) and Parquet
(zstd). A ``.gz`` or ``.zst`` suffix compresses the text formats.

Example:
    >>> import tempfile, pathlib
    >>> from vtp_lab.synth import semester
    >>> events = semester(courses=1, lectures_per_course=1, students=2, seed=0).events
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "events.ndjson.gz"
    >>> write_events(events, path) == path
    True
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Final, Literal

import polars as pl

from vtp_lab.errors import InputFormatError

__all__ = ["FORMATS", "Format", "format_of", "write_events"]

Format = Literal["ndjson", "json", "csv", "parquet"]
FORMATS: Final[tuple[Format, ...]] = ("ndjson", "json", "csv", "parquet")
_SUFFIXES: Final[dict[str, Format]] = {
    ".ndjson": "ndjson",
    ".jsonl": "ndjson",
    ".json": "json",
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}
_COMPRESSIONS: Final = (".gz", ".zst")


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
    as_string = pl.struct(meta).struct.json_encode().str.strip_prefix('{"metadata":').str.strip_suffix("}")
    value = pl.coalesce(as_json, as_string, pl.lit("null"))
    return text.select(pl.concat_str([head, pl.lit(',"metadata":'), value, pl.lit("}")])).to_series()


def _encode(events: pl.DataFrame, fmt: Format) -> bytes:
    if fmt == "ndjson":
        return ("\n".join(_ndjson_lines(events).to_list()) + "\n").encode()
    if fmt == "json":
        return ("[" + ",\n".join(_ndjson_lines(events).to_list()) + "]\n").encode()
    text = events.with_columns(pl.col(pl.Datetime).dt.strftime("%Y-%m-%d %H:%M:%S%.6f+00"))
    return text.write_csv().encode()


def write_events(events: pl.DataFrame, path: str | Path, *, format: Format | None = None) -> Path:
    """Write events to ``path`` in ``format`` (default: from the file name).

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
