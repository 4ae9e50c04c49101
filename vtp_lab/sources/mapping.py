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

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Final, Literal

import duckdb
import polars as pl

from vtp_lab.duck import over
from vtp_lab.events import NO_SESSION, EventType, uuid5_sql
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


def _query(mapping: Mapping, *, guarded: bool) -> str:
    """SQL over ``records`` and ``kinds``: each record's outcome, its raw event fields and its identities.

    Identities are made once per distinct identifier (``ids``), not per record. The
    record's text is not handed back (the caller has it), only an envelope's element.
    ``guarded`` checks that each text is JSON before reading it (see :func:`apply`).
    """
    fields = ", ".join(f"{mapping.fields[f]} AS {f}" for f in FIELDS)
    numbers = ", ".join(f"{seconds_sql(n)} AS _{n}" for n in _NUMBERS)
    members = ", ".join(  # concat_ws leaves out a member whose value is null
        f"""'"{n}":' || {value}"""
        for n, value in [
            *((n, _json_value(n)) for n in _NUMBERS),
            *((t, f"to_json({t})") for t in (*_TEXTS, "action", "course_id")),
        ]
    )
    session = f"CASE WHEN trim(coalesce(session, '')) = '' THEN '{NO_SESSION}' ELSE session END"
    skip = f"starts_with(ltrim(_raw), '{mapping.skip[1]}')" if mapping.skip else "false"
    named = " UNION ".join(
        f"SELECT '{kind}' AS kind, {source} AS identifier FROM f WHERE mapped AND {source} IS NOT NULL"
        for _, kind, source in _IDENTIFIED
    )
    name = f"'{mapping.source}|' || kind || '|' || identifier"
    joins = " ".join(
        f"LEFT JOIN ids AS _{kind} ON _{kind}.kind = '{kind}' AND _{kind}.identifier = f.{source}"
        for _, kind, source in _IDENTIFIED
    )
    ids = ", ".join(f"_{kind}.id AS {column}" for column, kind, _ in _IDENTIFIED)
    lacking = " ".join(f"WHEN '{n}' THEN _{n} IS NULL AND {n} IS NULL" for n in _NUMBERS)
    return f"""
        WITH f AS MATERIALIZED (
            SELECT *, {numbers}, ok AND NOT _skip AND video AND event_type IS NOT NULL AS mapped
            FROM (SELECT f.*, k.event_type, k.action, k.requires
                  FROM (SELECT _row, _at, _element, ok, {skip} AS _skip, {fields}
                        FROM ({_read(mapping, guarded=guarded)})) f
                  LEFT JOIN kinds k ON f.kind = k.kind)),
        ids AS MATERIALIZED (SELECT kind, identifier, {uuid5_sql(name)} AS id FROM ({named}))
        SELECT _row, _at, _element, ok, _skip, label, mapped, event_type, requires, f.user, f.course, video_key,
               recording_id, user_id, course_id, f.id, timestamp AS event_timestamp, {session} AS session_id,
               CASE WHEN mapped THEN '{{' || concat_ws(',', {members}) || '}}' END AS metadata,
               CASE requires {lacking} ELSE false END AS lacking
        FROM (SELECT f.*, {ids} FROM f {joins}) f
    """


_SEGMENT: Final = re.compile(r'\.([A-Za-z_][A-Za-z0-9_-]*)|\."([^"]+)"|\[([0-9]+)\]')
"""One step of a JSON path as the adapters write them: ``.name``, ``."any name"`` or ``[index]``."""

_Shape = dict[str, "_Shape"] | list["_Shape"] | str
"""A JSON structure for DuckDB's ``json_transform``: objects, arrays of one element shape, ``VARCHAR`` leaves."""


def _steps(path: str) -> list[str | int]:
    """The steps of a JSON path (``$.a."b c"[0]``): names and indexes."""
    found = list(_SEGMENT.finditer(path, 1))
    if not path.startswith("$") or "".join(m[0] for m in found) != path[1:]:
        raise ValueError(f'JSON path {path!r} is not of the form $.name."any name"[index]')
    return [int(m[3]) if m[3] is not None else m[1] or m[2] for m in found]


def _shape(paths: dict[str, str]) -> tuple[_Shape, dict[str, str]] | None:
    """``paths`` as one structure that ``json_transform`` reads in a single pass, and each path's SQL into it.

    None when they do not fit one structure: a path that runs on from where another
    ends (the one is text, the other looks inside it), or two names at one level that
    differ only in case (a DuckDB struct's field names ignore case).

    Example:
        >>> _shape({"a": "$.x.y", "b": '$.x."y z"[0]'})
        ({'x': {'y': 'VARCHAR', 'y z': ['VARCHAR']}}, {'a': '."x"."y"', 'b': '."x"."y z"[1]'})
    """
    root: dict[str, _Shape] = {}
    access: dict[str, str] = {}
    for name, path in paths.items():
        steps = _steps(path)
        node: _Shape = root
        sql = ""
        for step, after in zip(steps, [*steps[1:], None], strict=True):
            want: _Shape = "VARCHAR" if after is None else [] if isinstance(after, int) else {}
            if isinstance(step, int) and isinstance(node, list):
                child = node[0] if node else want
                node[:1] = [child]
                sql += f"[{step + 1}]"
            elif isinstance(step, str) and isinstance(node, dict):
                if any(k != step and k.lower() == step.lower() for k in node):
                    return None
                child = node.setdefault(step, want)
                sql += '."' + step.replace('"', '""') + '"'
            else:
                return None
            if type(child) is not type(want):
                return None
            node = child
        access[name] = sql
    return root, access


def _extract(document: str, paths: dict[str, str], into: str) -> tuple[str, str]:
    """SQL: the ``paths`` of ``document`` read in one parse, and each as a text column ``s_<name>`` of ``into``.

    One structure (:func:`_shape`) where the paths fit one, else a list of the paths' texts.
    Either way a value is its text: a string without its quotes, anything else as JSON.
    """
    shaped = _shape(paths)
    if shaped is not None:
        structure, access = shaped
        items = ", ".join(f"{into}{access[name]} AS s_{name}" for name in paths)
        text = json.dumps(structure, separators=(",", ":")).replace("'", "''")
        return f"json_transform({document}, '{text}')", items
    listed = ", ".join(f"'{p}'" for p in paths.values())
    items = ", ".join(f"{into}[{i}] AS s_{name}" for i, name in enumerate(paths, start=1))
    return f"json_extract_string({document}, [{listed}])", items


def _unwrapped(mapping: Mapping) -> str:
    """SQL: ``records``, each envelope replaced by the records it holds (with the envelope's row number).

    ``_element`` is the text of a record taken out of an envelope (null for the others),
    ``_at`` its place in the envelope (0 for the others).
    Only a record that names the envelope's key (``_named``, found by :func:`apply`) is
    looked into: the others pass as they are, without the list that taking out the
    elements builds for every record it sees.
    """
    if mapping.envelope is None:
        return "(SELECT *, 0 AS _at, NULL::VARCHAR AS _element FROM records)"
    path = f"'$.{mapping.envelope}'"
    wrapped = f"coalesce(try(json_type(_raw, {path})) = 'ARRAY', false)"
    return f"""
        (SELECT _row, _raw, 0 AS _at, NULL::VARCHAR AS _element FROM records WHERE NOT _named
         UNION ALL
         SELECT _row, _raw, _at, CASE WHEN _wrapped THEN _raw END AS _element
         FROM (SELECT _row, _wrapped, unnest(_list) AS _raw, unnest(range(len(_list))) AS _at
               FROM (SELECT _row, {wrapped} AS _wrapped,
                            CASE WHEN _wrapped THEN json_extract(_raw, '$.{mapping.envelope}[*]')::VARCHAR[]
                                 ELSE [_raw] END AS _list
                     FROM records WHERE _named)))
    """


def _names(key: str) -> pl.Expr:
    """Whether a record's text holds ``key`` as a JSON string (polars' search: several times DuckDB's ``contains``)."""
    return pl.col("_raw").str.contains(f'"{key}"', literal=True).fill_null(False)


def _read(mapping: Mapping, *, guarded: bool) -> str:
    """SQL: ``records`` with ``ok`` (a JSON object) and every path of ``mapping`` as a text column.

    Unguarded, every text is taken for JSON (the query fails on one that is not).
    """
    outer, outer_items = _extract("_raw", mapping.paths, "_p")
    valid = " AND json_valid(_raw)" if guarded else ""
    query = f"""
        SELECT *, {outer_items}
        FROM (SELECT *, CASE WHEN ok THEN {outer} END AS _p
              FROM (SELECT *, starts_with(ltrim(_raw), '{{'){valid} AS ok FROM {_unwrapped(mapping)}))
    """
    if mapping.inner is None:
        return query
    inner, inner_items = _extract(f"s_{mapping.inner}", mapping.inner_paths, "_q")
    return f"""
        SELECT *, {inner_items}
        FROM (SELECT *, CASE WHEN json_valid(s_{mapping.inner}) THEN {inner} END AS _q
              FROM ({query}))
    """


def _kinds(mapping: Mapping) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "kind": list(mapping.kinds),
            "event_type": [k.event_type.value for k in mapping.kinds.values()],
            "action": [k.action for k in mapping.kinds.values()],
            "requires": [k.requires for k in mapping.kinds.values()],
        },
        schema={"kind": pl.String, "event_type": pl.String, "action": pl.String, "requires": pl.String},
    )


def _identities(mapped: pl.DataFrame, source: str) -> pl.DataFrame:
    pairs = [
        mapped.select(
            pl.col(uuid).alias("id"),
            pl.lit(source).alias("source"),
            pl.lit(kind).alias("kind"),
            pl.col(ident).alias("identifier"),
        )
        for uuid, kind, ident in _IDENTIFIED
    ]
    return SOURCE_IDENTITIES.conform(pl.concat(pairs).drop_nulls("id").unique(maintain_order=True))


def apply(mapping: Mapping, records: pl.DataFrame, *, source: str) -> Adapted:
    """Map a batch of record texts (``_raw``, ``_row``) through ``mapping``; ``source`` names the file.

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
    texts = records.select("_raw", pl.col("_row").cast(pl.Int64))
    named = [] if mapping.envelope is None else [_names(mapping.envelope).alias("_named")]
    with over(records=texts.with_columns(named), kinds=_kinds(mapping)) as con:
        try:  # most batches are all JSON: checking each text first would parse it twice
            out = con.sql(_query(mapping, guarded=False)).pl()
        except duckdb.InvalidInputException:
            out = con.sql(_query(mapping, guarded=True)).pl()
    out = out.sort("_row", "_at")  # as the records came (polars' sort: DuckDB's carried every column)
    out = out.join(texts, on="_row", how="left", maintain_order="left").with_columns(
        pl.coalesce("_element", "_raw").alias("_raw")
    )
    malformed = out.filter(~pl.col("ok") & ~pl.col("_skip"))
    skipped_rows = out.filter(pl.col("_skip") | (pl.col("ok") & ~pl.col("mapped")))
    kinds = skipped_rows.select(
        pl.when(pl.col("_skip"))
        .then(pl.lit(mapping.skip[0] if mapping.skip else ""))
        .otherwise(pl.col("label").fill_null("(none)"))
    ).to_series()
    mapped = out.filter(pl.col("mapped"))
    lacking = mapped.filter(pl.col("lacking"))
    good = mapped.filter(~pl.col("lacking"))
    named = lacking["requires"].replace_strict(mapping.source_fields, default=lacking["requires"])
    rejected = pl.concat(
        [
            rejected_rows(malformed["_raw"], malformed["_row"], source, reason="malformed"),
            rejected_rows(lacking["_raw"], lacking["_row"], source, reason="missing_field", field=named),
        ]
    ).sort("row_number")
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
        skipped=dict(Counter(kinds.to_list())),
        identities=_identities(good, mapping.source),
    )
