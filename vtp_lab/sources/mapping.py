"""The engine every source adapter runs: a table-driven mapping of source records onto the event contract.

An adapter (:mod:`vtp_lab.sources.edx`, :mod:`~vtp_lab.sources.xapi`,
:mod:`~vtp_lab.sources.caliper`) is a :class:`Mapping`: SQL that reads each record's
fields as text (one JSON parse per record, in DuckDB) and a table from the source's
own kind of record (an event name, a verb, an action) to an event type, a
metadata ``action`` and the metadata key the kind requires. :func:`apply` runs it
over a batch of record texts, all in one DuckDB query:

- a record that is not a JSON object is ``malformed``;
- a record whose kind is not in the table, or that is not about a video, is
  *skipped* and counted by its kind (most of a tracking log: problems, navigation);
- a video record without the value its kind requires (a play with no position) is
  rejected as ``missing_field``, naming the source field;
- every other record becomes a raw event for :func:`vtp_lab.validation.validate`
  (which quarantines what is still wrong, such as a broken duration);
- source identifiers become ``uuid5(NS, "{source}|{kind}|{identifier}")``
  (spec section 1) and come back as :data:`vtp_lab.tables.SOURCE_IDENTITIES` rows.

Positions and durations may be numbers, numeric text or ISO 8601 durations
(``PT1M5.5S``, days and times only); a value that is none of these is kept as it
came, so that validation rejects it as ``invalid_metadata``.

Example:
    >>> from vtp_lab.sources.xapi import XAPI
    >>> XAPI.source
    'xapi'
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Literal

import duckdb
import polars as pl

from vtp_lab.duck import literal, over
from vtp_lab.events import NO_SESSION, EventType, uuid5_series
from vtp_lab.tables import SOURCE_IDENTITIES
from vtp_lab.validation import rejected_rows

__all__ = ["FIELDS", "Adapted", "Kind", "Mapping", "SourceFormat", "apply", "last_part", "seconds_sql"]

SourceFormat = Literal["edx", "xapi", "caliper"]
"""The source formats with an adapter."""

FIELDS: Final = (
    "kind",
    "label",
    "video",
    "id",
    "timestamp",
    "user",
    "course",
    "video_key",
    "session",
    "position",
    "from_position",
    "to_position",
    "playback_rate",
    "duration",
    "title",
    "quality",
)
"""The text columns an adapter's SQL gives for each record (``video`` is a boolean).

``kind`` is what the kinds table is keyed by; ``label`` is the name a skipped record is
counted under (the source's own event type).
"""

_NUMBERS: Final = ("position", "from_position", "to_position", "playback_rate", "duration")
_TEXTS: Final = ("title", "quality")


@dataclass(frozen=True, kw_only=True)
class Kind:
    """What one kind of source record becomes: an event type, a metadata ``action``, a required field.

    Example:
        >>> Kind(event_type=EventType.PLAYBACK_PAUSED, requires="position").action is None
        True
    """

    event_type: EventType
    action: str | None = None
    requires: str | None = None


@dataclass(frozen=True, kw_only=True)
class Mapping:
    """A source adapter: where each of :data:`FIELDS` is in a record, and the kinds table.

    ``paths`` are JSON paths read from each record (one parse), each as a text column
    ``s_<name>`` (an object or array as its JSON text); ``inner`` names one of them
    that holds a JSON document of its own (or its text, as edX's ``event`` may be),
    and ``inner_paths`` are read from that, as ``s_<name>`` too. ``fields`` gives each
    of :data:`FIELDS` as SQL over those columns. ``source_fields`` names the source's
    field behind each required metadata key, for rejection reasons; ``skip`` is a
    name and a line prefix for lines that are not records at all (comment lines);
    ``envelope`` the key of an object that holds records in an array (a learning record
    store's ``statements``, a Caliper envelope's ``data``).

    Example:
        >>> from vtp_lab.sources.edx import EDX
        >>> EDX.kinds["pause_video"].event_type
        <EventType.PLAYBACK_PAUSED: 'playback_paused'>
    """

    source: SourceFormat
    paths: dict[str, str]
    fields: dict[str, str]
    kinds: dict[str, Kind]
    inner: str | None = None
    inner_paths: dict[str, str] = field(default_factory=dict)
    source_fields: dict[str, str] = field(default_factory=dict)
    skip: tuple[str, str] | None = None
    envelope: str | None = None


@dataclass(frozen=True, kw_only=True)
class Adapted:
    """A batch of source records mapped: raw events, rejections, skipped counts and identities.

    Example:
        >>> from vtp_lab.tables import REJECTED_EVENTS
        >>> Adapted(rows=pl.DataFrame(), rejected=REJECTED_EVENTS.empty()).skipped
        {}
    """

    rows: pl.DataFrame
    rejected: pl.DataFrame
    skipped: dict[str, int] = field(default_factory=dict)
    identities: pl.DataFrame = field(default_factory=SOURCE_IDENTITIES.empty)


def last_part(iri: str) -> str:
    """SQL: the last part of an IRI (after its last ``/`` or ``#``), as verbs and actions are named.

    Example:
        >>> from vtp_lab.duck import compute
        >>> compute().sql(f"SELECT {last_part(repr('https://w3id.org/xapi/video/verbs/played'))}").fetchall()
        [('played',)]
    """
    return f"regexp_extract({iri}, '[^/#]+$')"


def seconds_sql(text: str) -> str:
    """SQL: seconds from a number, numeric text or an ISO 8601 duration of days and times; else null.

    Example:
        >>> from vtp_lab.duck import compute
        >>> compute().sql(f"SELECT {seconds_sql(repr('PT1M5.5S'))}, {seconds_sql(repr('12'))}").fetchall()
        [(65.5, 12.0)]
    """
    parts = (
        f"regexp_extract({text}, '^P(?:([0-9.]+)D)?(?:T(?:([0-9.]+)H)?(?:([0-9.]+)M)?(?:([0-9.]+)S)?)?$', "
        "['d', 'h', 'm', 's'])"
    )
    iso = " + ".join(
        f"coalesce(TRY_CAST(nullif({parts}.{unit}, '') AS DOUBLE), 0) * {factor}"
        for unit, factor in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))
    )
    shape = "'^P(?:[0-9.]+D)?(?:T(?:[0-9.]+H)?(?:[0-9.]+M)?(?:[0-9.]+S)?)?$'"
    is_iso = f"(regexp_full_match({text}, {shape}) AND {text} NOT IN ('P', 'PT') AND NOT ends_with({text}, 'T'))"
    return f"coalesce(TRY_CAST({text} AS DOUBLE), CASE WHEN {is_iso} THEN {iso} END)"


def _json_value(name: str) -> str:
    """A number field as JSON: the seconds when it reads as such, else the text as it came (validation rejects it)."""
    return f"CASE WHEN {name} IS NULL THEN NULL WHEN _{name} IS NOT NULL THEN to_json(_{name}) ELSE to_json({name}) END"


_IDENTIFIED: Final = (
    ("recording_id", "video", "video_key"),
    ("user_id", "user", "user"),
    ("course_id", "course", "course"),
)
"""Each id column, its identity kind and the source field it is made from."""


def _text(value: str | None) -> str:
    """A SQL string literal (:func:`vtp_lab.duck.literal`), or NULL."""
    return "NULL" if value is None else literal(value)


def _starts(prefix: str) -> str:
    """SQL: whether ``_raw`` starts with ``prefix`` after any whitespace, trimmed only where it starts with some.

    (``ltrim`` copies the rest of every text it is given: a record is about 1 KB.)
    """
    trimmed, plain = f"starts_with(ltrim(_raw), {prefix})", f"starts_with(_raw, {prefix})"
    return f"CASE WHEN ltrim(left(_raw, 1)) = '' THEN {trimmed} ELSE {plain} END"


def _by_kind(mapping: Mapping, value: Callable[[Kind], str | None]) -> str:
    """SQL: ``value`` of the record's kind in the kinds table, null for a kind not in it."""
    cases = " ".join(f"WHEN {_text(name)} THEN {_text(value(kind))}" for name, kind in mapping.kinds.items())
    return f"CASE kind {cases} END"


def _query(mapping: Mapping, *, guarded: bool) -> str:
    """SQL over ``records``: each record's outcome and its raw event fields, a row per record in their order.

    Projections only, so DuckDB keeps the records' order and :func:`apply` lays the
    columns beside the texts (no sort, no join back). What an outcome does not need is
    null: a skipped record has its label only, a rejected one its required field only.
    ``guarded`` checks that each text is JSON before reading it (see :func:`apply`).
    """
    fields = ", ".join(f"{mapping.fields[f]} AS {f}" for f in FIELDS)
    numbers = ", ".join(f"{seconds_sql(n)} AS _{n}" for n in _NUMBERS)
    members = ", ".join(  # concat_ws leaves out a member whose value is null
        f"""'"{n}":' || {value}"""
        for n, value in [*((n, _json_value(n)) for n in _NUMBERS), *((t, f"to_json({t})") for t in (*_TEXTS, "action"))]
    )
    session = f"CASE WHEN trim(coalesce(session, '')) = '' THEN '{NO_SESSION}' ELSE session END"
    skip = _starts(_text(mapping.skip[1])) if mapping.skip else "false"
    lacking = " ".join(f"WHEN '{n}' THEN _{n} IS NULL AND {n} IS NULL" for n in _NUMBERS)
    kept = {
        "event_type": "event_type",
        "id": "id",
        "event_timestamp": "timestamp",
        "session_id": session,
        "metadata": f"'{{' || concat_ws(',', {members}) || '}}'",
        **{source: source for _, _, source in _IDENTIFIED},
    }
    return f"""
        SELECT ok, _skip, mapped, lacking, CASE WHEN NOT mapped THEN label END AS label,
               CASE WHEN lacking THEN requires END AS requires,
               {", ".join(f"CASE WHEN mapped AND NOT lacking THEN {sql} END AS {name}" for name, sql in kept.items())}
        FROM (SELECT *, mapped AND CASE requires {lacking} ELSE false END AS lacking
              FROM (SELECT *, {numbers}, ok AND NOT _skip AND video AND event_type IS NOT NULL AS mapped
                    FROM (SELECT *, {_by_kind(mapping, lambda k: k.event_type.value)} AS event_type,
                                 {_by_kind(mapping, lambda k: k.action)} AS action,
                                 {_by_kind(mapping, lambda k: k.requires)} AS requires
                          FROM (SELECT ok, {skip} AS _skip, {fields} FROM ({_read(mapping, guarded=guarded)})))))
    """


def _extract(document: str, paths: dict[str, str], into: str) -> tuple[str, str]:
    """SQL: the ``paths`` of ``document`` read in one parse, and each as a text column ``s_<name>`` of ``into``.

    A value is its text: a string without its quotes, anything else as JSON. (Read into
    one structure by ``json_transform`` instead, the mapping cost more: see
    docs/design-measurements.md.)

    Example:
        >>> _extract("_raw", {"a": "$.x.y"}, "_p")
        ("json_extract_string(_raw, ['$.x.y'])", '_p[1] AS s_a')
    """
    listed = ", ".join(f"'{p}'" for p in paths.values())
    items = ", ".join(f"{into}[{i}] AS s_{name}" for i, name in enumerate(paths, start=1))
    return f"json_extract_string({document}, [{listed}])", items


def _names(key: str) -> pl.Expr:
    """Whether a record's text holds ``key`` as a JSON string (polars' search: several times DuckDB's ``contains``)."""
    return pl.col("_raw").str.contains(f'"{key}"', literal=True).fill_null(False)


def _unwrapped(mapping: Mapping, texts: pl.DataFrame) -> pl.DataFrame:
    """``texts`` (``_raw``, ``_row``), each envelope replaced in place by the records it holds, with its row number.

    Only a record that names the envelope's key (:func:`_names`) is looked into, by
    DuckDB; the others pass as they are, without the list that taking out the elements
    builds for every record it sees.
    """
    if mapping.envelope is None:
        return texts
    named = texts.select(_names(mapping.envelope)).to_series()
    if not named.any():
        return texts
    wrapped = f"coalesce(try(json_type(_raw, '$.{mapping.envelope}')) = 'ARRAY', false)"
    with over(records=texts.filter(named)) as con:
        elements = con.sql(f"""
            SELECT unnest(_list) AS _raw, _row, unnest(range(len(_list))) AS _at
            FROM (SELECT _row, CASE WHEN {wrapped} THEN json_extract(_raw, '$.{mapping.envelope}[*]')::VARCHAR[]
                                    ELSE [_raw] END AS _list
                  FROM records)
            ORDER BY _row, _at
        """).pl()
    others, elements = texts.filter(~named), elements.drop("_at")
    return elements if others.is_empty() else pl.concat([others, elements]).sort("_row", maintain_order=True)


def _read(mapping: Mapping, *, guarded: bool) -> str:
    """SQL: ``records`` with ``ok`` (a JSON object) and every path of ``mapping`` as a text column.

    Unguarded, every text is taken for JSON (the query fails on one that is not).
    """
    outer, outer_items = _extract("_raw", mapping.paths, "_p")
    valid = " AND json_valid(_raw)" if guarded else ""
    read = f"CASE WHEN ok THEN {outer} END" if guarded else outer
    query = f"""
        SELECT *, {outer_items}
        FROM (SELECT *, {read} AS _p
              FROM (SELECT *, {_starts(literal("{"))}{valid} AS ok FROM records))
    """
    if mapping.inner is None:
        return query
    inner, inner_items = _extract(f"s_{mapping.inner}", mapping.inner_paths, "_q")
    return f"""
        SELECT *, {inner_items}
        FROM (SELECT *, CASE WHEN json_valid(s_{mapping.inner}) THEN {inner} END AS _q
              FROM ({query}))
    """


def _identified(good: pl.DataFrame, source: SourceFormat) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``good`` with its id columns and the course's id last in its metadata; the identities behind them.

    Each distinct identifier of a kind is made a UUID once (``uuid5``), then looked up for
    every record. (The distinct values taken from the whole frame with a column for the
    kind took half as long again: the pairs are encoded as rows first.)
    """
    named: dict[str, tuple[pl.Series, pl.Series]] = {}  # per kind: its identifiers, their ids
    for _, kind, ident in _IDENTIFIED:
        identifiers = good[ident].drop_nulls().unique(maintain_order=True)
        named[kind] = identifiers, uuid5_series(f"{source}|{kind}|" + identifiers)
    good = good.with_columns(
        pl.col(ident).replace_strict(*named[kind], default=None).alias(column) for column, kind, ident in _IDENTIFIED
    )
    course = pl.concat_str(pl.lit('"course_id":"'), pl.col("course_id"), pl.lit('"}'))
    metadata = (
        pl.when(pl.col("course_id").is_null())
        .then(pl.col("metadata"))
        .when(pl.col("metadata") == "{}")
        .then(pl.concat_str(pl.lit("{"), course))
        .otherwise(pl.concat_str(pl.col("metadata").str.head(-1), pl.lit(","), course))
    )
    identities = pl.concat(
        pl.DataFrame({"id": ids, "identifier": identifiers}).select(
            "id", pl.lit(source).alias("source"), pl.lit(kind).alias("kind"), "identifier"
        )
        for kind, (identifiers, ids) in named.items()
    )
    return good.with_columns(metadata.alias("metadata")), SOURCE_IDENTITIES.conform(identities)


def apply(mapping: Mapping, records: pl.DataFrame, *, source: str, guard: bool = True) -> Adapted:
    """Map a batch of record texts (``_raw``, ``_row``) through ``mapping``; ``source`` names the file.

    A text that is not JSON is a ``malformed`` rejection; with ``guard=False`` it raises
    DuckDB's ``InvalidInputException`` instead, for a reader that took each text for one
    JSON value and must read otherwise where one is not (an array's lines).

    Example:
        >>> from vtp_lab.sources.edx import EDX
        >>> line = ('{"event_type": "pause_video", "time": "2026-09-01T10:00:00+00:00", "username": "ana", '
        ...         '"session": "s1", "context": {"course_id": "C1", "user_id": 7}, '
        ...         '"event": {"id": "v1", "currentTime": 12.5}}')
        >>> out = apply(EDX, pl.DataFrame({"_raw": [line, "{}"], "_row": [1, 2]}), source="log")
        >>> out.rows.select("event_type", "session_id", "metadata").row(0)
        ('playback_paused', 's1', '{"position":12.5,"course_id":"94425ad9-4b9a-521f-ad8e-5b48d288b7ef"}')
        >>> out.skipped
        {'(none)': 1}
    """
    texts = _unwrapped(mapping, records.select("_raw", pl.col("_row").cast(pl.Int64)))
    with over(records=texts.select("_raw")) as con:
        try:  # most batches are all JSON: checking each text first would parse it twice
            out = con.sql(_query(mapping, guarded=False)).pl()
        except duckdb.InvalidInputException:
            if not guard:
                raise
            out = con.sql(_query(mapping, guarded=True)).pl()
    # Projections keep the records' order. The texts' chunks and the result's do not line up,
    # and each expression over the frame would line them up again: they are lined up once.
    out = texts.hstack(out).rechunk()
    malformed = out.filter(~pl.col("ok") & ~pl.col("_skip"))
    skipped = out.filter(pl.col("_skip") | (pl.col("ok") & ~pl.col("mapped"))).select(
        pl.when(pl.col("_skip"))
        .then(pl.lit(mapping.skip[0] if mapping.skip else ""))
        .otherwise(pl.col("label").fill_null("(none)"))
        .alias("kind")
    )
    lacking = out.filter(pl.col("lacking"))
    named = lacking["requires"].replace_strict(mapping.source_fields, default=lacking["requires"])
    rejected = pl.concat(
        [
            rejected_rows(malformed["_raw"], malformed["_row"], source, reason="malformed"),
            rejected_rows(lacking["_raw"], lacking["_row"], source, reason="missing_field", field=named),
        ]
    ).sort("row_number")
    good, identities = _identified(out.filter(pl.col("mapped") & ~pl.col("lacking")), mapping.source)
    rows = good.select(
        "_raw",
        "_row",
        "id",
        "event_type",
        "recording_id",
        "user_id",
        "session_id",
        "event_timestamp",
        "metadata",
        pl.lit(source).alias("_source"),
    )
    return Adapted(
        rows=rows,
        rejected=rejected,
        skipped=dict(skipped.group_by("kind", maintain_order=True).len().iter_rows()),
        identities=identities,
    )
