"""Adapters for the sources researchers hold: Open edX tracking logs, xAPI statements, Caliper media events.

Each adapter maps a source's records onto the event contract (spec section 1, "Other
sources") through one engine, :func:`vtp_lab.sources.mapping.apply`; the reader in
:mod:`vtp_lab.io` streams a file's records into it, so a source loads like any dump
(bounded memory, progress, ledger, load report, quarantine). :func:`sniff` tells a
source from the platform's own dumps by a record's keys.

Example:
    >>> sniff('{"actor": {"mbox": "mailto:a@b.c"}, "verb": {"id": "x"}, "object": {"id": "y"}}')
    'xapi'
"""

from __future__ import annotations

import re
from typing import Final, get_args

from vtp_lab.events import FIELD_ALIASES
from vtp_lab.sources.caliper import CALIPER
from vtp_lab.sources.edx import EDX
from vtp_lab.sources.mapping import Adapted, Mapping, SourceFormat, apply
from vtp_lab.sources.xapi import XAPI

__all__ = ["MAPPINGS", "SOURCE_FORMATS", "Adapted", "SourceFormat", "apply", "sniff"]

SOURCE_FORMATS: Final[tuple[SourceFormat, ...]] = get_args(SourceFormat)
MAPPINGS: Final[dict[SourceFormat, Mapping]] = {"edx": EDX, "xapi": XAPI, "caliper": CALIPER}
"""Each source format's adapter."""


_KEY: Final = re.compile(r'"([A-Za-z_@]+)"\s*:')


def _kind(keys: set[str]) -> SourceFormat | None:
    if "statements" in keys or {"verb", "actor"} <= keys:
        return "xapi"
    if {"sensor", "data"} <= keys or ({"action", "actor"} <= keys and keys & {"eventTime", "@context"}):
        return "caliper"
    if {"event_type", "context"} <= keys and not keys & set(FIELD_ALIASES["recording_id"]):
        return "edx"
    return None


def sniff(text: str) -> SourceFormat | None:
    """The source format of a record (or an envelope, or an array of records), or None for anything else.

    Looks at the keys of the first record in ``text`` (the head of a file: a line, or
    the start of an array or a document, which may be cut anywhere).

    Example:
        >>> sniff('{"event_type": "play_video", "context": {}, "event": "{}"}'), sniff('{"event_type": "x"}')
        ('edx', None)
    """
    body = text.lstrip().lstrip("[").lstrip()
    line = body.split("\n", 1)[0]
    return _kind(set(_KEY.findall(line if body.startswith("{") and "}" in line else body)))
