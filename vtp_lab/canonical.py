r"""Canonical JSON text for a whole column at once, as Python's ``json`` writes it with sorted keys.

That is ``json.dumps(json.loads(t), sort_keys=True, separators=(",", ":"))``.

Derived event ids (spec section 1) hash an event's metadata as Python writes it with
sorted keys and no spaces. :func:`canonical_json` gives that text for every row of a
column without a Python call per row, in three steps, each for the rows the one before
left:

- a flat object of plain keys and values (the platform's metadata) is already Python's
  text once its spaces are gone and its pairs are in order of key: polars checks it with
  one regular expression and reorders the rows of each order of keys with another;
- another flat object of printable ASCII keys, with values to be rewritten (numbers in
  other spellings, say), is read by DuckDB into one struct of the batch's keys;
- anything else is cut into its pairs by one regular expression over the column, an
  object or array that holds another taken apart a level at a time by DuckDB's
  ``json_each``; then strings, numbers and keys are rewritten as Python writes them and
  the pairs are sorted and joined per row.

Python's rules, kept here: keys sorted by code point, the last of a repeated key wins;
strings escaped as ``ensure_ascii`` does (``\\"``, ``\\\\``, ``\\n``, ``\\r``, ``\\t``,
``\\b``, ``\\f``, any other character outside space to ``~`` as ``\\uXXXX``, astral
characters as a surrogate pair); integers exactly as written (``-0`` is ``0``); other
numbers as the shortest text that reads back to the same double (``1e-05``,
``1e+16``, ``3060.0``), ``Infinity`` beyond the double range.

Example:
    >>> canonical_json(pl.Series(['{"b": 1.50, "a": "caf\\u00e9", "b": 2}', None])).to_list()
    ['{"a":"caf\\u00e9","b":2}', None]
"""

from __future__ import annotations

import re
from collections import Counter
from typing import TYPE_CHECKING, Final

import polars as pl

if TYPE_CHECKING:
    import duckdb

__all__ = ["canonical_json"]

_WS: Final = r"[ \t\n\r]*"
_STRING: Final = r'"(?:[^"\\\x00-\x1f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*"'
_NUMBER: Final = r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?"
_SCALAR: Final = f"(?:{_STRING}|{_NUMBER}|true|false|null)"
_PAIR: Final = f"({_STRING}){_WS}:{_WS}({_SCALAR})"
_FLAT_OBJECT: Final = f"^{_WS}\\{{{_WS}(?:{_PAIR}(?:{_WS},{_WS}{_PAIR})*)?{_WS}\\}}{_WS}$"
_PLAIN_TEXT: Final = r"^[ !#-\[\]-~]*$"
_PLAIN_STRING: Final = r'^"[ !#-\[\]-~]*"$'
_INTEGER: Final = r"^-?[0-9]+$"

_ESCAPE: Final = r"""
    array_to_string(list_transform(string_split(s, ''), lambda c: CASE
        WHEN c = '"' THEN '\"' WHEN c = '\' THEN '\\'
        WHEN c = chr(10) THEN '\n' WHEN c = chr(13) THEN '\r' WHEN c = chr(9) THEN '\t'
        WHEN c = chr(8) THEN '\b' WHEN c = chr(12) THEN '\f'
        WHEN unicode(c) BETWEEN 32 AND 126 THEN c
        WHEN unicode(c) < 65536 THEN printf('\u%04x', unicode(c))
        ELSE printf('\u%04x\u%04x', 55296 + ((unicode(c) - 65536) >> 10), 56320 + ((unicode(c) - 65536) & 1023))
    END), '')"""
"""A decoded string ``s`` escaped as Python's ``ensure_ascii`` writes it (without the quotes)."""


def _quoted(decoded: pl.Series) -> pl.Series:
    """Decoded strings as Python writes them: quoted, escaped as ``ensure_ascii`` does."""
    plain = decoded.str.contains(_PLAIN_TEXT)
    quoted = pl.select(pl.concat_str(pl.lit('"'), pl.lit(decoded), pl.lit('"'))).to_series()
    if plain.all():
        return quoted
    from vtp_lab.duck import over

    with over(others=pl.DataFrame({"s": decoded.filter(~plain)})) as con:
        escaped = con.sql(f"SELECT '\"' || {_ESCAPE} || '\"' AS t FROM others").pl()["t"]
    return quoted.scatter(plain.not_().arg_true(), escaped)


def _decoded(literals: pl.Series) -> pl.Series:
    """JSON string literals decoded: plain printable ASCII by taking off the quotes, the rest by a JSON reader."""
    plain = literals.str.contains(_PLAIN_STRING)
    inner = literals.str.slice(1, literals.str.len_chars() - 2)
    if plain.all():
        return inner
    return inner.scatter(plain.not_().arg_true(), literals.filter(~plain).str.json_decode(pl.String))


def _strings(literals: pl.Series) -> pl.Series:
    """JSON string literals as Python writes them: plain printable ASCII as it is, the rest decoded and escaped."""
    plain = literals.str.contains(_PLAIN_STRING)
    if plain.all():
        return literals
    return literals.scatter(plain.not_().arg_true(), _quoted(_decoded(literals.filter(~plain))))


def _float_text(value: pl.Expr) -> pl.Expr:
    """A double as Python's ``repr`` writes it, from polars' shortest text (which differs only in notation)."""
    text = value.cast(pl.String)
    small = text.str.extract_groups(r"^(-?)0\.(0{4,})([0-9])([0-9]*)$")
    sign, zeros, first, rest = (small.struct.field(f"{i}") for i in range(1, 5))
    scientific = pl.concat_str(
        sign,
        first,
        pl.when(rest != "").then(pl.lit(".") + rest).otherwise(pl.lit("")),
        pl.lit("e-"),
        (zeros.str.len_chars() + 1).cast(pl.String).str.zfill(2),
    )
    exponent = text.str.extract_groups(r"^(-?[0-9.]+)e([+-]?)([0-9]+)$")
    mantissa, exp_sign, digits = (exponent.struct.field(f"{i}") for i in range(1, 4))
    written = pl.concat_str(
        mantissa, pl.lit("e"), pl.when(exp_sign == "-").then(pl.lit("-")).otherwise(pl.lit("+")), digits.str.zfill(2)
    )
    return (
        pl.when(text == "inf")
        .then(pl.lit("Infinity"))
        .when(text == "-inf")
        .then(pl.lit("-Infinity"))
        .when(sign.is_not_null())
        .then(scientific)
        .when(mantissa.is_not_null())
        .then(written)
        .otherwise(text)
    )


def _scalars(tokens: pl.Series) -> pl.Series:
    """JSON scalars (strings, numbers, true, false, null) as Python writes them."""
    frame = pl.DataFrame({"t": tokens.str.strip_chars(" \t\n\r")})
    t = pl.col("t")
    numbers = frame.select(
        pl.when(t.str.starts_with('"') | t.is_in(["true", "false", "null"]))
        .then(None)
        .when(t.str.contains(_INTEGER))
        .then(pl.when(t == "-0").then(pl.lit("0")).otherwise(t))
        .otherwise(_float_text(t.cast(pl.Float64, strict=False)))
    ).to_series()
    is_string = frame["t"].str.starts_with('"')
    if is_string.any():
        strings = _strings(frame["t"].filter(is_string))
        numbers = numbers.scatter(is_string.arg_true(), strings)
    return numbers.fill_null(frame["t"]).rename(tokens.name)


def _join(parts: pl.DataFrame, rows: int, *, objects: pl.Series) -> pl.Series:
    """Each row's members joined: ``{k:v,...}`` sorted by key (last repeat wins) for objects, ``[v,...]`` for arrays.

    ``parts`` has ``row``, ``order`` (position within the row), ``key`` (decoded, null in
    arrays), ``key_text`` and ``value`` (both canonical).
    """
    repeat = pl.when(pl.col("key").is_null()).then(pl.col("order")).alias("repeat")
    kept = (
        parts.with_columns(repeat)
        .unique(["row", "key", "repeat"], keep="last", maintain_order=True)
        .sort("row", "key", "order", nulls_last=True)
    )
    members = kept.select(
        "row",
        pl.when(pl.col("key").is_null())
        .then(pl.col("value"))
        .otherwise(pl.concat_str("key_text", pl.lit(":"), "value"))
        .alias("member"),
    )
    joined = members.group_by("row", maintain_order=True).agg(pl.col("member").str.join(","))
    every = pl.DataFrame({"row": pl.int_range(rows, eager=True, dtype=pl.UInt32), "object": objects})
    return (
        every.join(joined, on="row", how="left")
        .select(
            pl.when("object")
            .then(pl.concat_str(pl.lit("{"), pl.col("member").fill_null(""), pl.lit("}")))
            .otherwise(pl.concat_str(pl.lit("["), pl.col("member").fill_null(""), pl.lit("]")))
        )
        .to_series()
    )


def _flat_objects(texts: pl.Series) -> pl.Series:
    """Flat objects (every value a scalar) by one regular expression over the column."""
    pairs = (
        pl.DataFrame({"pair": texts.str.extract_all(f"{_PAIR}")})
        .with_row_index("row")
        .explode("pair")
        .drop_nulls("pair")
        .with_columns(pl.int_range(pl.len()).alias("order"))
        .select(
            "row",
            "order",
            pl.col("pair").str.extract_groups(f"^{_PAIR}$").struct.rename_fields(["key_text", "value"]).alias("pair"),
        )
        .unnest("pair")
    )
    pairs = pairs.with_columns(
        _decoded(pairs["key_text"]).alias("key"),
        _strings(pairs["key_text"]),
        _scalars(pairs["value"]),
    )
    return _join(pairs, texts.len(), objects=pl.repeat(True, texts.len(), eager=True))


def _containers(texts: pl.Series) -> pl.Series:
    """Objects and arrays holding others, a level at a time: DuckDB's ``json_each``, then each member again."""
    from vtp_lab.duck import over

    with over(texts=pl.DataFrame({"t": texts}).with_row_index("row")) as con:
        kinds = con.sql("SELECT json_type(t) = 'OBJECT' AS object FROM texts ORDER BY row").pl()["object"]
        members = con.sql(
            "SELECT texts.row, j.id AS \"order\", CASE WHEN json_type(texts.t) = 'OBJECT' THEN j.key END AS key,"
            " j.value::VARCHAR AS value FROM texts, json_each(texts.t) AS j ORDER BY texts.row, j.id"
        ).pl()
    members = members.with_columns(
        pl.col("row").cast(pl.UInt32),
        _quoted(members["key"].fill_null("")).alias("key_text"),
        _any_json(members["value"]),
    )
    return _join(members, texts.len(), objects=kinds)


_KEY_SAMPLE: Final = 16_384
"""Rows whose keys make the fast path's struct: a row with a key none of them has takes the general path."""

_FAST_KEYS: Final = 256
"""The most distinct keys a batch's fast path reads (beyond that, every row takes the general path)."""

_NEEDS_REWRITE: Final = r"[^ -~]|\\|[0-9][eE]|[:,\[]-?0\.0000|[0-9]{17,}\.|.[{\[]"
"""A text the JSON reader wrote in a way Python would not (or might not): any such row takes the general path."""

_PLAIN_KEY: Final = r'"[#-9;-\[\]-~]*"'
"""A key Python writes as it is, whose text sorts as the key does (no character at or below ``"``), without ``:``."""
_PLAIN_ZERO: Final = r"0{0,3}[1-9](?:[0-9]{0,13}[1-9])?"
"""The digits after ``0.`` of a decimal of at least 1e-4: 15 significant digits at most, the last not a zero."""
_PLAIN_DECIMAL: Final = "|".join(f"[1-9][0-9]{{{n - 1}}}\\.(?:0|[0-9]{{0,{14 - n}}}[1-9])" for n in range(1, 15))
"""A decimal from 1 of 1 to 14 digits before the point, in at most 15 digits (none at its end a zero but ``.0``)."""
_PLAIN_VALUE: Final = (
    rf'"[ !#-\[\]-~]*"|true|false|null|0|-?[1-9][0-9]*|-?0\.(?:0|{_PLAIN_ZERO})|-?(?:{_PLAIN_DECIMAL})'
)
"""A value Python writes as it is: printable ASCII text, a literal, an integer (not ``-0``), or a decimal of at
least 1e-4 in 15 significant digits at most (so that it is the shortest text of its double) without zeros at
its end (``3060.0`` aside)."""
_PLAIN_OBJECT: Final = f"^\\{{(?:{_PLAIN_KEY}:(?:{_PLAIN_VALUE})(?:,{_PLAIN_KEY}:(?:{_PLAIN_VALUE}))*)?\\}}$"
"""A compact flat object of plain keys and values: Python's text once its pairs are in order of key."""
_SPACES: Final = r'("[^"]*")|[ \t\n\r]*([{}:,])[ \t\n\r]*'
"""Spaces around a JSON text's punctuation, outside its strings. A text with an escaped quote is cut wrongly,
but a backslash is never plain: such a text takes the other paths as it came."""
_VALUE_ONLY: Final = r':(?:"[^"]*"|[^,}"]+)'
"""A plain object's value, after its key's colon (the first colon outside a string): without them,
``{"b":,"a":}`` is the order of a row's keys."""
_ORDERS: Final = 64
"""The most orders of keys a batch's plain objects are sorted in (rows in rarer ones take the general path)."""


def _plain_objects(texts: pl.Series) -> pl.Series:
    """Plain flat objects (see :data:`_PLAIN_OBJECT`) as Python writes them, null for any other text.

    Spaces between tokens go, then the rows of each order of keys (a few in a batch of the
    platform's metadata) have their pairs put in order by one regular expression.
    """
    spaced = texts.str.contains(r"[ \t\n\r]")
    if spaced.any():
        texts = texts.clone().scatter(spaced.arg_true(), texts.filter(spaced).str.replace_all(_SPACES, "${1}${2}"))
    plain = texts.str.contains(_PLAIN_OBJECT)
    result = pl.select(pl.when(plain).then(pl.lit(texts))).to_series()
    several = plain & (texts.str.count_matches('":', literal=True) > 1)
    rows = pl.DataFrame({"text": texts.filter(several), "row": several.arg_true()})
    rows = rows.with_columns(order=pl.col("text").str.replace_all(_VALUE_ONLY, ":"))
    orders = rows["order"].value_counts(sort=True)["order"]
    rare = rows.filter(~pl.col("order").is_in(orders.head(_ORDERS).implode()))["row"]
    for order in orders.head(_ORDERS).to_list():
        keys = order[2:-3].split('":,"')
        if len(set(keys)) < len(keys):  # the last of a repeated key wins: the general path
            result = result.scatter(rows.filter(pl.col("order") == order)["row"], None)
        elif keys != sorted(keys):
            same = rows.filter(pl.col("order") == order)
            result = result.scatter(same["row"], _in_order(same["text"], keys))
    return result.scatter(rare, None)


def _in_order(texts: pl.Series, keys: list[str]) -> pl.Series:
    """Plain objects whose keys are ``keys`` in this order, with their pairs in order of key.

    A plain object's pairs are cut apart where ``,"`` is: no key or value holds a quote, but
    a text value may end in a comma, and a row cut into more pieces than it has keys is null.

    Example:
        >>> _in_order(pl.Series(['{"b":1,"a":"x, y"}', '{"b":"x,","a":1}']), ["b", "a"]).to_list()
        ['{"a":"x, y","b":1}', None]
    """
    pairs = pl.lit(texts.str.slice(2, texts.str.len_bytes() - 3).str.split(',"'))
    by_key = sorted(range(len(keys)), key=keys.__getitem__)
    joined = pl.concat_str(pl.lit('{"'), pairs.list.gather(by_key).list.join(',"'), pl.lit("}"))
    return pl.select(pl.when(pairs.list.len() == len(keys)).then(joined)).to_series()


def _struct_select(con: duckdb.DuckDBPyConnection, table: str, column: str) -> str:
    """A query over ``table``: ``canonical``, the JSON ``column`` written as Python writes it.

    The common case in one DuckDB pass: a flat object with printable ASCII keys, none
    repeated, none null. The table's keys, sorted, become one struct that the JSON reader
    fills, and the present fields are joined in that order. ``canonical`` is null where a
    row is anything else (not an object, a repeated key, a ``null`` value, a key outside the
    table's list, a nested value, text that the reader writes otherwise than Python:
    non-ASCII, escapes, exponents, very small or large numbers) and where ``column`` is
    null: those take the general path (:func:`_any_json`). Runs one query on ``con`` to find
    the keys, on a sample of :data:`_KEY_SAMPLE` rows (a key only rarer rows hold costs
    them the general path, not a different text).

    Example:
        >>> from vtp_lab.duck import over
        >>> with over(t=pl.DataFrame({"m": ['{"b": 1, "a": "x"}', '{"a": [1]}']})) as con:
        ...     con.sql(_struct_select(con, "t", "m")).pl()["canonical"].to_list()
        ['{"a":"x","b":1}', None]
    """
    sample = f"(SELECT {column} FROM {table} USING SAMPLE reservoir({_KEY_SAMPLE} ROWS) REPEATABLE (1))"
    found = con.sql(
        f"SELECT k FROM (SELECT unnest(json_keys({column})) AS k FROM {sample}) GROUP BY k ORDER BY count(*) DESC"
    ).pl()["k"]
    plain = [k for k in found.head(_FAST_KEYS).to_list() if k and re.fullmatch(_PLAIN_TEXT, k) and "'" not in k]
    folded = Counter(k.lower() for k in plain)
    keys = sorted(k for k in plain if folded[k.lower()] == 1)  # a struct's field names ignore case
    if not keys:
        return f"SELECT NULL::VARCHAR AS canonical FROM {table}"
    struct = "{" + ",".join(f'"{k}":"JSON"' for k in keys) + "}"
    members = ", ".join(f"""'"{k}":' || _fields."{k}\"""" for k in keys)
    values = ", ".join(f'_fields."{k}"' for k in keys)
    rewrite = f"regexp_matches(_joined, '{_NEEDS_REWRITE}')"
    return f"""
        SELECT CASE WHEN _complete AND NOT {rewrite} THEN _joined END AS canonical
        FROM (SELECT *, '{{' || concat_ws(',', {members}) || '}}' AS _joined,
                     list_count(list_value({values})) = len(json_keys({column}))
                         AND starts_with(ltrim({column}), '{{') AS _complete
              FROM (SELECT *, json_transform({column}, '{struct}') AS _fields FROM {table}))
    """


def _any_json(texts: pl.Series) -> pl.Series:
    """JSON values (none null) canonical, by shape: flat objects, scalars, then objects and arrays holding others."""
    result = texts.clear(texts.len())
    flat = texts.str.contains(_FLAT_OBJECT)
    scalar = ~flat & texts.str.contains(f"^{_WS}{_SCALAR}{_WS}$")
    nested = ~flat & ~scalar
    for mask, rewrite in ((flat, _flat_objects), (scalar, _scalars), (nested, _containers)):
        if mask.any():
            result = result.scatter(mask.arg_true(), rewrite(texts.filter(mask)))
    return result


def canonical_json(texts: pl.Series) -> pl.Series:
    r"""Each JSON text as ``json.dumps(..., sort_keys=True, separators=(",", ":"))`` writes it; null stays null.

    Example:
        >>> canonical_json(pl.Series(['{"z": [1, {"b": 1e-5, "a": true}], "y": "\\n"}'])).item()
        '{"y":"\\n","z":[1,{"a":true,"b":1e-05}]}'
    """
    texts = texts.cast(pl.String)
    plain = _plain_objects(texts).rename(texts.name)
    left = texts.is_not_null() & plain.is_null()
    if not left.any():
        return plain
    from vtp_lab.duck import over

    others = texts.filter(left)
    with over(texts=pl.DataFrame({"t": others})) as con:
        fast = con.sql(_struct_select(con, "texts", "t")).pl()["canonical"]
    rest = fast.is_null()
    return plain.scatter(left.arg_true(), fast.scatter(rest.arg_true(), _any_json(others.filter(rest))))
