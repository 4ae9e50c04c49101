"""Parse and validate whole frames of raw events (spec section 1), vectorised.

:func:`validate` takes a polars frame of raw events (any accepted column spelling,
any timestamp form, metadata as an object or a JSON string) and splits it into the
accepted rows, in the columns of ``analytics_events``, and the rejected rows, in the
columns of ``rejected_events``, each with its reason code and field. Nothing is
dropped: ``accepted.height + rejected.height == frame.height``.

Parsing is one polars pass plus one DuckDB pass (timestamps given as text, JSON
metadata); the rules, one per reason and field in priority order
(:data:`vtp_lab.events.REASONS`), run as one pandera check over the parsed frame, and a
row that breaks several rules is rejected with the first. The accepted frame's columns and
dtypes are then checked against the ``analytics_events`` pandera model generated from
:mod:`vtp_lab.tables` (its data rules follow from the rules the rows have passed).

Optional input columns: ``_raw`` (the row's raw text; else the row as JSON),
``_source`` (else the ``source`` argument) and ``_row`` (else 1, 2, 3, ...).

Example:
    >>> import polars as pl
    >>> raw = pl.DataFrame({
    ...     "EventType": ["EventPlaybackStarted", "nonsense"],
    ...     "RecordingID": ["6ba7b811-9dad-11d1-80b4-00c04fd430c8"] * 2,
    ...     "UserID": ["6ba7b812-9dad-11d1-80b4-00c04fd430c8"] * 2,
    ...     "SessionID": ["s1", "s1"],
    ...     "EventTime": ["2026-09-01T10:00:00Z"] * 2,
    ... })
    >>> v = validate(raw)
    >>> v.accepted["event_type"].to_list(), v.rejected["reason"].to_list()
    (['playback_started'], ['unknown_event_type'])
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final

import polars as pl

from vtp_lab.duck import JsonParse, json_query, over
from vtp_lab.events import (
    DEFAULT_MAX_CLOCK_SKEW,
    EVENT_TYPE_SPELLINGS,
    FIELD_ALIASES,
    MAX_INTEGER,
    MAX_OFFSET_HOURS,
    METADATA_RULES,
    NIL_UUID,
    EventType,
    Reason,
    derive_event_ids,
    jsonb_text,
)
from vtp_lab.tables import ANALYTICS_EVENTS, REJECTED_EVENTS, is_canonical_uuid

__all__ = ["Validated", "canonical_uuid", "cast_timestamps", "rejected_rows", "rules", "validate", "with_derived_ids"]

_REQUIRED: Final = ("event_type", "recording_id", "user_id", "session_id", "event_timestamp")
_SPECIAL: Final = ("_raw", "_source", "_row")


@dataclass(frozen=True)
class Validated:
    """The result of :func:`validate`: accepted and rejected rows.

    Example:
        >>> v = validate(pl.DataFrame({"event_type": ["x"]}))
        >>> v.rows_read, v.accepted.height, v.rejected.height
        (1, 0, 1)
    """

    accepted: pl.DataFrame
    rejected: pl.DataFrame
    inputs: pl.DataFrame = field(default_factory=pl.DataFrame, repr=False, compare=False)
    kept: pl.Series = field(default_factory=lambda: pl.Series(dtype=pl.UInt32), repr=False, compare=False)
    source: str = "frame"

    @property
    def rows_read(self) -> int:
        """Rows in: accepted plus rejected."""
        return self.accepted.height + self.rejected.height

    def origins(self, at: pl.Series) -> pl.DataFrame:
        """Where the accepted rows at positions ``at`` came from: ``raw`` text, ``source`` and ``row_number``.

        For the quarantine, when the store finds one of them conflicts with a stored event.

        Example:
            >>> v = validate(pl.DataFrame({"event_type": ["session_ended"], "recording_id": [str(NIL_UUID)]}))
            >>> v.origins(pl.Series([], dtype=pl.UInt32)).columns
            ['raw', 'source', 'row_number']
        """
        return _origins(self.inputs, self.kept.gather(at), self.source)


def canonical_uuid(expr: pl.Expr) -> pl.Expr:
    """The canonical lowercase form of UUID strings (any case, dashes, braces, urn), else null.

    The vectorised twin of :func:`vtp_lab.events.parse_uuid`.

    Example:
        >>> pl.select(canonical_uuid(pl.lit("{6BA7B8119DAD11D180B400C04FD430C8}"))).item()
        '6ba7b811-9dad-11d1-80b4-00c04fd430c8'
    """
    text = _uuid_text(expr)
    hex_ = text.str.replace_all(r"[{}\-]", "")
    dashed = pl.concat_str(
        [
            hex_.str.slice(0, 8),
            hex_.str.slice(8, 4),
            hex_.str.slice(12, 4),
            hex_.str.slice(16, 4),
            hex_.str.slice(20, 12),
        ],
        separator="-",
    )
    return pl.when(_is_uuid_text(text)).then(dashed)


def _uuid_text(expr: pl.Expr) -> pl.Expr:
    return expr.cast(pl.String).str.strip_chars().str.to_lowercase().str.strip_prefix("urn:uuid:")


def _is_uuid_text(text: pl.Expr) -> pl.Expr:
    """32 hex digits, dashes anywhere between them, braces at the ends (as :func:`parse_uuid`)."""
    return text.str.contains(r"^[{}]*(-*[0-9a-f]){32}-*[{}]*$")


def _canonical_event_type(text: pl.Expr) -> pl.Expr:
    """The canonical event type of any accepted spelling, else null (the slow path of staging)."""
    mapping = {k: v.value for k, v in EVENT_TYPE_SPELLINGS.items()}
    compact = text.str.replace_all(r"[\s_\-]", "").str.to_lowercase().str.strip_prefix("event")
    return compact.replace_strict(mapping, default=None, return_dtype=pl.String)


def _is_canonical_event_type(text: pl.Expr) -> pl.Expr:
    return text.is_in([t.value for t in EventType])


_Expression = Callable[[pl.Expr], pl.Expr]
_NORMALISE: Final[dict[str, tuple[_Expression, _Expression]]] = {
    "id": (is_canonical_uuid, canonical_uuid),
    "recording_id": (is_canonical_uuid, canonical_uuid),
    "user_id": (is_canonical_uuid, canonical_uuid),
    "event_type": (_is_canonical_event_type, _canonical_event_type),
}
"""Per column: a cheap test for the canonical form, and the normaliser for the rest."""


def _needs_normaliser(name: str, text: pl.Expr) -> pl.Expr:
    """``_slow_<name>``: true where a value is neither null nor canonical.

    :func:`_normalise` replaces exactly those values, so staging takes the column as it
    is: no copy of a million strings to null out none of them.
    """
    canonical = _NORMALISE[name][0](text).fill_null(False)
    return (text.is_not_null() & ~canonical).alias(f"_slow_{name}")


def _normalise(staged: pl.DataFrame, frame: pl.DataFrame, texts: dict[str, pl.Expr]) -> pl.DataFrame:
    """Run the normalisers of :data:`_NORMALISE` on the values not already canonical (usually none).

    Those rows are also the only ones whose presence flag needs a look: a canonical
    value is present, a null one is not, and the rest are present unless blank.
    """
    for name, (_, normaliser) in _NORMALISE.items():
        slow = staged[f"_slow_{name}"]
        if slow.any():
            text = texts[name]
            fixed = frame.filter(slow).select(normaliser(text).alias(name), (text.str.strip_chars() != "").alias("p"))
            at = slow.arg_true()
            staged = staged.with_columns(
                staged[name].scatter(at, fixed[name]), staged[f"p_{name}"].scatter(at, fixed["p"])
            )
    return staged.drop(f"_slow_{name}" for name in _NORMALISE)


def _epoch(expr: pl.Expr) -> pl.Expr:
    x = expr.cast(pl.Float64, strict=False)
    micros = pl.when(x.abs() < 1e11).then(x * 1e6).when(x.abs() < 1e14).then(x * 1e3).otherwise(x)
    return pl.from_epoch(micros.round(0).cast(pl.Int64, strict=False), time_unit="us").dt.replace_time_zone("UTC")


def _timestamp_plan(dtype: pl.DataType, raw: pl.Expr) -> tuple[pl.Expr | None, pl.Expr | None]:
    """(a parsed expression, a text expression for DuckDB to parse) for a raw timestamp column."""
    if isinstance(dtype, pl.Datetime):
        parsed = raw.dt.convert_time_zone("UTC") if dtype.time_zone else raw.dt.replace_time_zone("UTC")
        return parsed.dt.cast_time_unit("us"), None
    if isinstance(dtype, pl.Date):
        return raw.cast(pl.Datetime("us")).dt.replace_time_zone("UTC"), None
    if dtype.is_numeric():
        return _epoch(raw), None
    return None, raw.cast(pl.String, strict=False)


def _text_timestamps(texts: pl.Series) -> pl.Series:
    """Timestamps from the texts DuckDB's cast did not take as they were (the slow path).

    A text is stripped of any Unicode whitespace (DuckDB's cast skips only ASCII
    whitespace); an epoch number is converted by :func:`_epoch`, the rest is cast again
    once stripped. DuckDB's cast takes no text that is a number, so casting first
    changes no result.
    """
    stripped = texts.str.strip_chars()
    numeric = stripped.str.contains(r"^-?\d+(\.\d+)?$").fill_null(False)
    epochs, others = pl.select(
        pl.when(numeric).then(_epoch(pl.lit(stripped))), pl.when(~numeric).then(pl.lit(stripped)).alias("text")
    ).get_columns()
    return epochs.fill_null(cast_timestamps(others))


def cast_timestamps(texts: pl.Series) -> pl.Series:
    """DuckDB's ``TRY_CAST(text AS TIMESTAMPTZ)`` over a column of texts: UTC microseconds, null where it fails.

    Example:
        >>> cast_timestamps(pl.Series(["2026-09-01 12:00:00+02", "soon"])).to_list()
        [datetime.datetime(2026, 9, 1, 10, 0, tzinfo=zoneinfo.ZoneInfo(key='UTC')), None]
    """
    with over(texts=texts.to_frame("t")) as con:
        parsed = con.sql("SELECT TRY_CAST(t AS TIMESTAMPTZ) AS t FROM texts").pl()["t"]
    return parsed.cast(pl.Datetime("us", "UTC"))


def _metadata_text(dtype: pl.DataType, raw: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    """(metadata as JSON text or null, whether a non-null value can be an object)."""
    if isinstance(dtype, pl.Struct):
        return raw.struct.json_encode(), pl.lit(True)
    if dtype == pl.String:
        text = raw.str.strip_chars()
        return pl.when(text != "").then(text), pl.lit(True)
    if dtype == pl.Null:
        return pl.lit(None, pl.String), pl.lit(True)
    return raw.cast(pl.String, strict=False), pl.lit(False)


def _coalesce_aliases(frame: pl.DataFrame) -> pl.DataFrame:
    """Where several spellings of a field are columns, the first non-null value per row wins."""
    for keys in FIELD_ALIASES.values():
        present = [k for k in keys if k in frame.columns]
        if len(present) > 1:
            same = len({frame.schema[k] for k in present}) == 1
            cols = [pl.col(k) if same else pl.col(k).cast(pl.String) for k in present]
            frame = frame.with_columns(pl.coalesce(cols).alias(present[0])).drop(present[1:])
    return frame


def _stage(frame: pl.DataFrame) -> pl.DataFrame:
    """Raw columns in any spelling to presence flags (``p_*``) and parsed canonical columns."""
    frame = _coalesce_aliases(frame)
    schema = frame.schema
    source = {name: next((k for k in keys if k in schema), None) for name, keys in FIELD_ALIASES.items()}

    def raw(name: str) -> pl.Expr:
        col = source[name]
        return pl.col(col) if col else pl.lit(None)

    def present(name: str) -> pl.Expr:
        """Not null, and (for text) not blank; session_id blank is a rule of its own.

        The columns of :data:`_NORMALISE` get only the null test here; :func:`_normalise`
        looks for blanks among the few values that are not already canonical.
        """
        col = source[name]
        if col is None:
            return pl.lit(False).alias(f"p_{name}")
        if schema[col] == pl.String and name != "session_id" and name not in _NORMALISE:
            return (pl.col(col).str.strip_chars() != "").fill_null(False).alias(f"p_{name}")
        return pl.col(col).is_not_null().alias(f"p_{name}")

    ts_col, meta_col = source["event_timestamp"], source["metadata"]
    ts_parsed, ts_text = _timestamp_plan(schema[ts_col], raw("event_timestamp")) if ts_col else (None, None)
    meta_text, meta_object = (
        _metadata_text(schema[meta_col], raw("metadata")) if meta_col else (pl.lit(None, pl.String), pl.lit(True))
    )

    texts = {name: raw(name).cast(pl.String, strict=False).alias(name) for name in _NORMALISE}
    staged = (
        frame.lazy()
        .select(
            *(present(name) for name in FIELD_ALIASES if name != "metadata"),
            *texts.values(),
            *(_needs_normaliser(name, text) for name, text in texts.items()),
            raw("session_id").cast(pl.String, strict=False).str.strip_chars().alias("session_id"),
            (ts_parsed if ts_parsed is not None else pl.lit(None, pl.Datetime("us", "UTC"))).alias("event_timestamp"),
            (ts_text if ts_text is not None else pl.lit(None, pl.String)).alias("_ts_text"),
            meta_text.alias("metadata"),
            meta_object.alias("_meta_can_be_object"),
        )
        .collect(engine="in-memory")  # faster here than the default engine (docs/design-measurements.md)
    )
    offset_ok = _offset_ok(staged["_ts_text"])
    parsed = _parse_in_duckdb(_normalise(staged, frame, texts))
    ts = pl.col("event_timestamp")
    held = ts.dt.year().is_between(1, 9999) & offset_ok  # what PostgreSQL, DuckDB and Python all hold
    return parsed.with_columns(pl.when(held).then(ts).alias("event_timestamp"))


def _parse_in_duckdb(staged: pl.DataFrame) -> pl.DataFrame:
    """Parse text timestamps and JSON metadata in one DuckDB pass (row order preserved).

    Each known metadata key comes back as its raw JSON text (``_m_<key>``), for the
    rules to check, and ``_meta_parsed`` tells whether the metadata is valid JSON other
    than ``null`` (an object if it also starts with ``{``: one parse, not a second one
    for ``json_type``). ``_meta_jsonb`` is false where PostgreSQL's JSONB cannot hold
    the metadata (NaN, Infinity, a NUL character). A metadata text naming a known key twice
    is rewritten with the key's last value (see :func:`vtp_lab.events.jsonb_text`) and
    parsed again.
    """
    keys = list(METADATA_RULES)
    if staged["_ts_text"].null_count() == staged.height and staged["metadata"].null_count() == staged.height:
        return staged.drop("_ts_text").with_columns(
            pl.lit(None, pl.Boolean).alias("_meta_parsed"),
            *(pl.lit(None, pl.String).alias(f"_m_{k}") for k in keys),
            pl.lit(True).alias("_meta_jsonb"),
        )
    struct = "{" + ",".join(f'"{k}":"JSON"' for k in keys) + "}"
    fields = ", ".join(f"m.{k} AS _m_{k}" for k in keys)

    def query(parse: JsonParse) -> str:
        return f"""
            SELECT _ts_parsed, m IS NOT NULL AS _meta_parsed, {fields}
            FROM (SELECT TRY_CAST(_ts_text AS TIMESTAMPTZ) AS _ts_parsed, {parse("metadata", struct)} AS m FROM inputs)
        """

    with over(inputs=staged.select("_ts_text", "metadata")) as con:
        parsed = json_query(con, query)
    ts = parsed["_ts_parsed"].cast(pl.Datetime("us", "UTC"))
    retry = ts.is_null() & staged["_ts_text"].is_not_null()
    if retry.any():
        ts = ts.scatter(retry.arg_true(), _text_timestamps(staged["_ts_text"].filter(retry)))
    out = (
        staged.drop("_ts_text")
        .hstack(parsed.drop("_ts_parsed").cast({f"_m_{k}": pl.String for k in keys}))
        .with_columns(
            pl.coalesce("event_timestamp", ts).alias("event_timestamp"),
            pl.lit(True).alias("_meta_jsonb"),
        )
    )
    return _as_jsonb_reads(out)


_KNOWN_KEY: Final = '"(?:' + "|".join(METADATA_RULES) + r')"\s*:'
"""A known metadata key, as a key."""

_NOT_JSONB: Final = r"(?i:nan|inf)|\\u0000|\x00|,[ \t\n\r]*[}\]]"
"""What may make a JSON text one PostgreSQL's JSONB cannot hold (NaN, Infinity, a NUL character) or one that is
not JSON but DuckDB's reader takes (a comma before a closing bracket; ``inf`` or ``nan`` in any case): checked
exactly where found (a text such as ``"information"`` too, which is kept)."""


def _as_jsonb_reads(parsed: pl.DataFrame) -> pl.DataFrame:
    """Metadata as PostgreSQL's JSONB reads it: the rare texts that may differ are checked one by one.

    Those are texts that name a known key more often than the parse found distinct known
    keys (a repeated key: the last value counts, so the text is rewritten and parsed
    again), and texts holding NaN, Infinity or a NUL character, or that DuckDB's reader
    takes but are not JSON (``_meta_jsonb`` false where the text really is such).
    """
    meta = parsed["metadata"]
    present = parsed.select(pl.sum_horizontal(pl.col(f"_m_{k}").is_not_null() for k in METADATA_RULES)).to_series()
    suspect = ((meta.str.count_matches(_KNOWN_KEY) > present) | meta.str.contains(_NOT_JSONB)).fill_null(
        False
    ) & parsed["_meta_parsed"].fill_null(False)
    if not suspect.any():
        return parsed
    at = suspect.arg_true()
    texts = [jsonb_text(t) for t in meta.filter(suspect).to_list()]
    holds = pl.Series([t is not None for t in texts])
    parsed = parsed.with_columns(parsed["_meta_jsonb"].scatter(at, holds))
    rewritten = pl.Series([t is not None and t != old for t, old in zip(texts, meta.filter(suspect), strict=True)])
    if not rewritten.any():
        return parsed
    at = at.filter(rewritten)
    added = ["_meta_parsed", *(f"_m_{k}" for k in METADATA_RULES), "_meta_jsonb"]
    redo = (
        parsed[at]
        .drop(added)
        .with_columns(
            pl.Series("metadata", [t for t, r in zip(texts, rewritten, strict=True) if r], pl.String),
            pl.lit(None, pl.String).alias("_ts_text"),
        )
    )
    return _put(parsed, at, _parse_in_duckdb(redo).select(parsed.columns))


def _put(frame: pl.DataFrame, at: pl.Series, rows: pl.DataFrame) -> pl.DataFrame:
    """``frame`` with its rows at positions ``at`` replaced by ``rows``."""
    return frame.with_columns(frame[c].scatter(at, rows[c]) for c in frame.columns)


_LARGE_OFFSET: Final = rf":\d\d(?:[.,]\d+)?\s*[+-](?:1[{MAX_OFFSET_HOURS - 9}-9]|[2-9]\d)(?::?\d\d){{0,2}}\s*$"
"""A time's minutes or seconds followed by a UTC offset of 16 hours or more."""


def _offset_ok(texts: pl.Series) -> pl.Series:
    """False where a text timestamp carries an offset beyond +-15:59 (DuckDB takes +25:00; PostgreSQL does not).

    Only the last 24 characters of each text are searched.

    Example:
        >>> _offset_ok(pl.Series(["2026-09-20 10:00:00+25", "2026-09-20T10:00-15:59", "2026-09-20", None])).to_list()
        [False, True, True, True]
    """
    return ~texts.str.slice(-24).str.contains(_LARGE_OFFSET).fill_null(False)


def _metadata_ok(key: str) -> pl.Expr:
    """True where metadata key ``key`` is absent, JSON null, or valid by its rule."""
    kind = METADATA_RULES[key].kind
    v = pl.col(f"_m_{key}")
    number = v.cast(pl.Float64, strict=False)
    if kind == "boolean":
        ok = v.is_in(["true", "false"])
    elif kind == "uuid":
        ok = v.str.starts_with('"') & _is_uuid_text(_uuid_text(v.str.strip_chars('"')))
    elif kind == "nonneg_integer":
        ok = number.is_finite() & (number == number.floor()) & number.is_between(0, MAX_INTEGER)
    elif kind == "seconds":
        ok = number.is_finite() & number.is_between(0, MAX_INTEGER)
    elif kind == "positive_number":
        ok = number.is_finite() & (number > 0)
    else:
        ok = number.is_finite() & (number >= 0)
    return (v.is_null() | (v == "null") | ok).fill_null(False)


def rules(now: datetime, max_clock_skew: timedelta) -> list[tuple[str, str, pl.Expr]]:
    """The rules as (reason, field, expression true where a staged row passes), in priority order.

    Example:
        >>> [r for r, _, _ in rules(datetime.now(UTC), DEFAULT_MAX_CLOCK_SKEW)][:2]
        ['missing_field', 'missing_field']
    """
    present = {name: pl.col(f"p_{name}") for name in FIELD_ALIASES}
    rules: list[tuple[str, str, pl.Expr]] = [("missing_field", name, present[name]) for name in _REQUIRED]
    rules.append(("unknown_event_type", "event_type", pl.col("event_type").is_not_null()))
    for name in ("id", "recording_id", "user_id"):
        rules.append(("invalid_uuid", name, ~present[name] | pl.col(name).is_not_null()))
    rules += [("nil_uuid", name, pl.col(name) != NIL_UUID) for name in ("recording_id", "user_id")]
    length = pl.col("session_id").str.len_chars()
    no_nul = ~pl.col("session_id").str.contains("\x00", literal=True)
    rules.append(("empty_session_id", "session_id", (length >= 1) & (length <= 255) & no_nul))
    rules.append(("invalid_timestamp", "event_timestamp", pl.col("event_timestamp").is_not_null()))
    limit = pl.lit(now + max_clock_skew, pl.Datetime("us", "UTC"))
    rules.append(("future_timestamp", "event_timestamp", pl.col("event_timestamp") <= limit))
    is_object = pl.col("metadata").is_null() | (
        pl.col("_meta_can_be_object") & pl.col("metadata").str.starts_with("{") & pl.col("_meta_parsed")
    )
    rules.append(("invalid_metadata", "metadata", is_object))
    rules += [("invalid_metadata", f"metadata.{key}", _metadata_ok(key)) for key in METADATA_RULES]
    rules.append(("invalid_metadata", "metadata", pl.col("_meta_jsonb")))
    return rules


def _first_failure(rules: list[tuple[str, str, pl.Expr]]) -> pl.Expr:
    """The number of the first rule a row breaks (null where it passes them all)."""
    return pl.min_horizontal(*(pl.when(~e.fill_null(False)).then(pl.lit(i)) for i, (_, _, e) in enumerate(rules)))


def _failures(staged: pl.DataFrame, rules: list[tuple[str, str, pl.Expr]]) -> pl.DataFrame:
    """One row per failing row index: (index, check_number) of its first failed rule.

    pandera runs the rules as one check (all rules in one pass over the frame, so small
    frames cost little); the rows it reports are then told which rule they broke first.
    """
    import pandera.polars as pa
    from pandera.errors import SchemaErrors

    every = pl.all_horizontal(e.fill_null(False) for _, _, e in rules)
    check = pa.Check(lambda data: data.lazyframe.select(every), name="event_rules", error="event_rules")
    try:
        pa.DataFrameSchema(checks=[check], name="event_rules").validate(staged, lazy=True)
    except SchemaErrors as err:
        index = err.failure_cases["index"].cast(pl.Int64).unique().sort()
        first = staged[index].select(_first_failure(rules).cast(pl.Int64).alias("check_number"))
        return first.with_columns(index.alias("index"))
    return pl.DataFrame(schema={"check_number": pl.Int64, "index": pl.Int64})


def with_derived_ids(accepted: pl.DataFrame) -> pl.DataFrame:
    """Accepted events (``analytics_events``) with the ids they came without derived (spec section 1), checked.

    :func:`validate` calls it unless told ``derive_ids=False`` (a load calls it in a thread
    of its own, beside the validation of the next batch).

    Example:
        >>> v = validate(pl.DataFrame({"event_type": ["session_ended"], "recording_id": [NIL_UUID[:-1] + "1"],
        ...     "user_id": [NIL_UUID[:-1] + "2"], "session_id": ["s"], "event_timestamp": ["2026-09-01T10:00:00Z"]}),
        ...     derive_ids=False)
        >>> v.accepted["id"].item() is None, with_derived_ids(v.accepted)["id"].item()
        (True, 'f2a0e607-71ff-5cde-927c-417aa919501b')
    """
    missing = accepted["id"].is_null()
    if missing.all():
        ids = derive_event_ids(accepted)
    elif missing.any():
        ids = accepted["id"].scatter(missing.arg_true(), derive_event_ids(accepted.filter(missing)))
    else:
        ids = accepted["id"]
    accepted = accepted.with_columns(ids.alias("id"))
    ANALYTICS_EVENTS.check_schema(accepted)  # the rules of validate imply the model's data rules
    return accepted


def validate(
    frame: pl.DataFrame,
    *,
    source: str = "frame",
    now: datetime | None = None,
    max_clock_skew: timedelta = DEFAULT_MAX_CLOCK_SKEW,
    derive_ids: bool = True,
) -> Validated:
    """Split raw events into accepted (``analytics_events``) and rejected (``rejected_events``) rows.

    An accepted event that came without an id gets its derived id (spec section 1), or,
    with ``derive_ids=False``, keeps a null id for :func:`with_derived_ids` to fill.

    Example:
        >>> v = validate(pl.DataFrame({"event_type": ["session_ended"], "recording_id": ["x"]}))
        >>> v.rejected.select("reason", "field").row(0)
        ('missing_field', 'user_id')
    """
    if not isinstance(frame, pl.DataFrame):
        raise TypeError(
            f"events come as a polars DataFrame, not a {type(frame).__name__}; build one with pl.DataFrame(rows), "
            "or send single events through Lab.collector()"
        )
    if not frame.height:
        return Validated(accepted=ANALYTICS_EVENTS.empty(), rejected=REJECTED_EVENTS.empty())
    now = now or datetime.now(UTC)
    staged = _stage(frame)
    checks = rules(now, max_clock_skew)
    failed = _failures(staged, checks)
    reason_of = pl.DataFrame(
        {
            "check_number": range(len(checks)),
            "reason": [r for r, _, _ in checks],
            "field": [f for _, f, _ in checks],
        },
        schema={"check_number": pl.Int64, "reason": pl.String, "field": pl.String},
    )
    failed = failed.join(reason_of, on="check_number").sort("index")
    bad = pl.repeat(False, frame.height, eager=True).scatter(failed["index"], True) if failed.height else None
    accepted = staged if bad is None else staged.filter(~bad)
    accepted = ANALYTICS_EVENTS.conform(accepted)
    if derive_ids:
        accepted = with_derived_ids(accepted)

    rejected = REJECTED_EVENTS.conform(
        _origins(frame, failed["index"], source).with_columns(
            failed["reason"],
            failed["field"],
            pl.lit(now, pl.Datetime("us", "UTC")).alias("rejected_at"),
        )
    )
    kept = pl.int_range(frame.height, dtype=pl.UInt32, eager=True)
    return Validated(
        accepted=accepted,
        rejected=rejected,
        inputs=_origin_columns(frame),
        kept=kept if bad is None else kept.filter(~bad),
        source=source,
    )


def rejected_rows(
    raw: pl.Series, rows: pl.Series, source: str | pl.Series, *, reason: Reason, field: pl.Series | None = None
) -> pl.DataFrame:
    """Quarantine rows for records a reader or an adapter turns away before validation, stamped now.

    Example:
        >>> rejected_rows(pl.Series(["{oops"]), pl.Series([3]), "a.ndjson", reason="malformed").row(0)[:4]
        ('{oops', 'a.ndjson', 3, 'malformed')
    """
    n = raw.len()
    return REJECTED_EVENTS.conform(
        pl.DataFrame(
            {
                "raw": raw,
                "source": source if isinstance(source, pl.Series) else pl.repeat(source, n, eager=True),
                "row_number": rows.cast(pl.Int64),
                "reason": pl.repeat(reason, n, eager=True, dtype=pl.String),
                "field": field if field is not None else pl.repeat(None, n, eager=True, dtype=pl.String),
                "rejected_at": pl.repeat(datetime.now(UTC), n, eager=True, dtype=pl.Datetime("us", "UTC")),
            }
        )
    )


def _origin_columns(frame: pl.DataFrame) -> pl.DataFrame:
    """What :func:`_origins` reads of ``frame``: the raw text, source and row where it has raw text, else every column.

    A validated part waiting to be stored keeps only this, not its whole parsed batch.
    """
    return frame.select(c for c in _SPECIAL if c in frame.columns) if "_raw" in frame.columns else frame


def _origins(frame: pl.DataFrame, idx: pl.Series, source: str) -> pl.DataFrame:
    """The raw text (``_raw``, else the row as JSON), source and row number of the input rows at ``idx``."""
    rows = frame[idx]
    originals = [c for c in frame.columns if c not in _SPECIAL]
    raw = (
        rows["_raw"] if "_raw" in frame.columns else rows.select(pl.struct(originals).struct.json_encode()).to_series()
    )
    return pl.DataFrame(
        {
            "raw": raw,
            "source": rows["_source"] if "_source" in frame.columns else pl.repeat(source, idx.len(), eager=True),
            "row_number": (rows["_row"] if "_row" in frame.columns else idx + 1).cast(pl.Int64),
        },
        schema={"raw": pl.String, "source": pl.String, "row_number": pl.Int64},
    )
