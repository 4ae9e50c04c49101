"""Event metadata as typed columns: the keys the sessions, statistics and catalogue read.

Validated events hold their metadata as JSON text; :func:`metadata_columns` parses the
keys of :data:`METADATA_TYPES` in one DuckDB pass.

Example:
    >>> import polars as pl
    >>> metadata_columns(pl.DataFrame({"metadata": ['{"position": 3}']}), {"position": pl.Float64()}).item()
    3.0
"""

from __future__ import annotations

from typing import Final

import duckdb
import polars as pl

from vtp_lab.duck import over
from vtp_lab.errors import InputFormatError

__all__ = ["METADATA_TYPES", "metadata_columns"]

METADATA_TYPES: Final[dict[str, pl.DataType]] = {
    "position": pl.Float64(),
    "playback_rate": pl.Float64(),
    "quality": pl.String(),
    "bitrate": pl.Float64(),
    "from_position": pl.Float64(),
    "to_position": pl.Float64(),
    "action": pl.String(),
    "new_quality": pl.String(),
    "old_bitrate": pl.Float64(),
    "new_bitrate": pl.Float64(),
    "fatal": pl.String(),
    "duration": pl.Float64(),
    "course_id": pl.String(),
    "title": pl.String(),
}
"""The metadata keys the sessions, statistics and catalogue read, with their types."""


def metadata_columns(events: pl.DataFrame, keys: dict[str, pl.DataType] = METADATA_TYPES) -> pl.DataFrame:
    """Events with ``metadata`` replaced by the ``keys`` as typed columns ``m_<key>`` (one JSON parse, in DuckDB).

    ``keys`` maps a metadata key to ``pl.Float64()`` or ``pl.String()``; a value that is
    absent or not of that type is null. By default, every key the sessions read. Metadata
    that is not JSON raises :class:`~vtp_lab.errors.InputFormatError` (validated events
    never hold any).

    The parsed columns come back as one chunk each: DuckDB's many small chunks beside the
    events' few made every later filter and sort several times slower.

    Example:
        >>> frame = pl.DataFrame({"metadata": ['{"position": 12.5, "quality": "720p"}', None]})
        >>> metadata_columns(frame, {"position": pl.Float64(), "quality": pl.String()}).rows()
        [(12.5, '720p'), (None, None)]
    """
    duck = {pl.Float64(): "DOUBLE", pl.String(): "VARCHAR"}
    struct = "{" + ", ".join(f'"{k}": "{duck[dtype]}"' for k, dtype in keys.items()) + "}"
    try:
        with over(ev=events.select("metadata")) as con:
            values = con.sql(f"SELECT from_json(metadata, '{struct}') AS m FROM ev").pl()["m"].rechunk()
    except duckdb.InvalidInputException as exc:
        raise InputFormatError(
            f"an event's metadata is not valid JSON ({str(exc).splitlines()[0]}); sessions and statistics "
            "take validated events: pass the frame through vtp_lab.validate() and use its accepted rows"
        ) from None
    return events.drop("metadata").hstack(values.struct.unnest().select(pl.col(k).alias(f"m_{k}") for k in keys))
