"""The recordings catalogue (spec section 2): read from a file or frame, or built from events.

A loaded catalogue (:func:`read_recordings`) wins; recordings it does not list come from
their ``recording_started`` events (:func:`catalogue`). A recording's duration is the
catalogue's, else the largest ``duration`` in the metadata of any of its events.

Example:
    >>> read_recordings("data/recordings.csv").height
    36
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Final, Literal

import polars as pl

from vtp_lab.errors import AmbiguousNameError, InputFormatError, NotFoundError
from vtp_lab.events import MAX_INTEGER, EventType, parse_uuid
from vtp_lab.io import _read_text, detect_format
from vtp_lab.metadata import METADATA_TYPES, metadata_columns
from vtp_lab.tables import RECORDINGS
from vtp_lab.validation import canonical_uuid, cast_timestamps

__all__ = [
    "CATALOGUE_KEYS",
    "Named",
    "catalogue",
    "catalogue_of_parsed",
    "course_titles",
    "lecture_titles",
    "named_id",
    "read_recordings",
]

Named = Literal["course", "lecture"]
"""What a title names: a course (``course_title``) or a lecture, that is a recording (``title``)."""


def course_titles(recordings: pl.DataFrame) -> pl.DataFrame:
    """Each course of the catalogue once, with its title where a row gives one (``course_id, course_title``).

    Sorted by title, then id; courses without a title last.

    Example:
        >>> cat = RECORDINGS.conform(pl.DataFrame({"recording_id": ["r1", "r2"], "course_id": ["c", "c"],
        ...                                        "course_title": [None, "Statistics"]}))
        >>> course_titles(cat).rows()
        [('c', 'Statistics')]
    """
    return (
        recordings.filter(pl.col("course_id").is_not_null())
        .group_by("course_id")
        .agg(pl.col("course_title").drop_nulls().first())
        .sort("course_title", "course_id", nulls_last=True)
    )


def lecture_titles(recordings: pl.DataFrame) -> pl.DataFrame:
    """Each recording once with its title (``recording_id, title``), from the catalogue or any frame holding both.

    Example:
        >>> lecture_titles(pl.DataFrame({"recording_id": ["r", "r"], "title": ["Intro", "Intro"], "x": [1, 2]})).rows()
        [('r', 'Intro')]
    """
    return recordings.select("recording_id", "title").unique("recording_id", maintain_order=True)


def named_id(kind: Named, value: str, recordings: Callable[[], pl.DataFrame]) -> str:
    """The id ``value`` stands for: itself if it is a UUID, else that of the one title it begins (in any case).

    ``recordings`` gives the catalogue, read only for a title.

    A title equal to ``value`` wins over longer ones it begins ("Lecture 1" over
    "Lecture 10"); several otherwise raise :class:`AmbiguousNameError` listing them, none
    :class:`NotFoundError` suggesting close titles.

    Example:
        >>> cat = RECORDINGS.conform(pl.DataFrame({"recording_id": ["6ba7b811-9dad-11d1-80b4-00c04fd430c8"],
        ...                                        "title": ["Intro to statistics"]}))
        >>> named_id("lecture", "intro", lambda: cat)
        '6ba7b811-9dad-11d1-80b4-00c04fd430c8'
    """
    canonical = parse_uuid(value)
    if canonical is not None:
        return canonical
    column, title = ("course_id", "course_title") if kind == "course" else ("recording_id", "title")
    names = recordings().select(pl.col(column).alias("id"), pl.col(title).alias("title")).drop_nulls().unique()
    wanted = value.strip().lower()
    lowered = pl.col("title").str.to_lowercase()
    matches = names.filter(lowered.str.starts_with(wanted)).sort("title", "id")
    exact = matches.filter(lowered == wanted)
    found = exact if exact.height else matches
    if found["id"].n_unique() == 1:
        return found["id"][0]
    if found.height:
        raise AmbiguousNameError(kind=kind, value=value, matches=[f"{t} ({i})" for i, t in found.iter_rows()])
    where = "lab.courses()" if kind == "course" else "lab.lectures()"
    raise NotFoundError(kind=kind, value=value, known=names["title"].to_list(), where=where)


CATALOGUE_KEYS: Final = ("duration", "course_id", "title")
"""The metadata keys of events that describe their recording."""


def catalogue(events: pl.DataFrame | pl.LazyFrame, recordings: pl.DataFrame | None = None) -> pl.DataFrame:
    """The recordings catalogue: loaded rows win, then ``recording_started`` events (spec section 2).

    A recording's duration is the catalogue's, else the largest ``duration`` in the metadata
    of any of its events, else null. Its course and title, when no ``recording_started``
    gives them, are the first in time found in the metadata of its events (a source such
    as Caliper carries them on every event, and has no ``recording_started``).

    Example:
        >>> from vtp_lab.synth import semester
        >>> sem = semester(courses=1, lectures_per_course=2, students=1, seed=0)
        >>> kept = ["recording_id", "course_id", "title", "duration_seconds"]  # events carry no course title
        >>> catalogue(sem.events).select(kept).sort("recording_id").equals(
        ...     sem.recordings.select(kept).sort("recording_id"))
        True
    """
    frame = events.lazy().select("recording_id", "event_type", "event_timestamp", "metadata").collect()
    return catalogue_of_parsed(metadata_columns(frame, {k: METADATA_TYPES[k] for k in CATALOGUE_KEYS}), recordings)


def _first_in_time(value: pl.Expr) -> pl.Expr:
    """The value of the earliest event that has one (null when none has): no sort of the events."""
    return value.get(pl.when(value.is_not_null()).then(pl.col("event_timestamp")).arg_min())


def catalogue_of_parsed(parsed: pl.DataFrame, recordings: pl.DataFrame | None) -> pl.DataFrame:
    """:func:`catalogue` of events whose metadata keys :data:`CATALOGUE_KEYS` are parsed (``m_<key>`` columns).

    Example:
        >>> catalogue_of_parsed(pl.DataFrame({"recording_id": ["r"], "event_type": ["buffer_end"],
        ...     "event_timestamp": [None], "m_duration": [60.0], "m_course_id": [None], "m_title": [None]}),
        ...     None)["duration_seconds"].to_list()
        [60.0]
    """
    started = (
        parsed.lazy()
        .filter(pl.col("event_type") == EventType.RECORDING_STARTED.value)
        .sort("event_timestamp")
        .group_by("recording_id")
        .agg(
            pl.col("m_course_id").first().alias("course_id"),
            pl.col("m_title").first().alias("title"),
            pl.col("event_timestamp").first().alias("published_at"),
        )
    )
    described = (
        parsed.lazy()
        .group_by("recording_id")
        .agg(
            pl.col("m_duration").max().alias("max_duration"),
            _first_in_time(pl.col("m_course_id")).alias("any_course_id"),
            _first_in_time(pl.col("m_title")).alias("any_title"),
        )
    )
    loaded = (recordings if recordings is not None else RECORDINGS.empty()).lazy().select(RECORDINGS.column_names)
    from_events = (
        described.join(loaded.select("recording_id"), on="recording_id", how="anti")
        .join(started, on="recording_id", how="left")
        .select(
            "recording_id",
            pl.coalesce("course_id", "any_course_id").alias("course_id"),
            pl.coalesce("title", "any_title").alias("title"),
            pl.lit(None, pl.Float64).alias("duration_seconds"),
            "published_at",
            pl.lit(None, pl.String).alias("course_title"),
        )
    )
    out = (
        pl.concat([loaded, from_events], how="vertical_relaxed")
        .join(described.select("recording_id", "max_duration"), on="recording_id", how="left")
        .with_columns(pl.coalesce("duration_seconds", "max_duration").alias("duration_seconds"))
    )
    return RECORDINGS.conform(out.collect().sort("recording_id"))


def read_recordings(source: str | Path | pl.DataFrame) -> pl.DataFrame:
    """The recordings catalogue from CSV, Parquet or a frame, checked: ids are UUIDs, durations numbers >= 0.

    Example:
        >>> read_recordings("data/recordings.csv").columns
        ['recording_id', 'course_id', 'title', 'duration_seconds', 'published_at', 'course_title']
    """
    if isinstance(source, pl.DataFrame):
        raw, name = source, "the recordings frame"
    else:
        path = Path(source)
        if not path.is_file():
            raise InputFormatError(f"no file {path}; check the path")
        fmt = detect_format(path)
        if fmt not in ("csv", "parquet"):
            raise InputFormatError(f"{path} is {fmt}; a recordings catalogue is CSV or Parquet")
        raw = (
            pl.read_parquet(path, glob=False) if fmt == "parquet" else pl.read_csv(_read_text(path), infer_schema=False)
        )
        name = str(path)
    missing = [c for c in ("recording_id",) if c not in raw.columns]
    if missing:
        raise InputFormatError(
            f"{name} has no column {missing[0]!r}; the columns are {', '.join(RECORDINGS.column_names)}"
        )
    text = raw.select(
        pl.col(c).cast(pl.String) if c in raw.columns else pl.lit(None, pl.String).alias(c)
        for c in RECORDINGS.column_names
    )
    catalogue = text.with_columns(
        canonical_uuid(pl.col("recording_id")).alias("recording_id"),
        canonical_uuid(pl.col("course_id")).alias("course_id"),
        pl.col("duration_seconds").cast(pl.Float64, strict=False),
        cast_timestamps(text["published_at"]).alias("published_at"),
    )
    checks = [
        ("recording_id", catalogue["recording_id"].is_null(), "a UUID"),
        ("course_id", catalogue["course_id"].is_null() & text["course_id"].is_not_null(), "a UUID or empty"),
        (
            "duration_seconds",
            (catalogue["duration_seconds"].is_null() & text["duration_seconds"].is_not_null())
            | ~catalogue["duration_seconds"].is_between(0, MAX_INTEGER).fill_null(True),
            f"a number from 0 to {MAX_INTEGER} or empty",
        ),
        (
            "published_at",
            catalogue["published_at"].is_null() & text["published_at"].is_not_null(),
            "a timestamp or empty",
        ),
    ]
    for column, bad, rule in checks:
        if bad.any():
            row = int(bad.arg_true()[0])
            raise InputFormatError(
                f"{name}, data row {row + 1}: {column}={text[column][row]!r} is not {rule}; "
                f"{int(bad.sum())} row(s) like it. Fix the file and load it again (nothing was stored)"
            )
    dupes = catalogue["recording_id"].is_duplicated()
    if dupes.any():
        raise InputFormatError(
            f"{name}: recording_id {catalogue['recording_id'].filter(dupes)[0]} appears more than once; "
            "keep one row per recording (nothing was stored)"
        )
    return RECORDINGS.conform(catalogue)
