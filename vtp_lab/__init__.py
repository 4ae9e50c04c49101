"""vtp_lab: study how students watch lecture videos, from a Jupyter notebook.

``import vtp_lab as vl`` is light: heavy modules load on first use.

Example:
    >>> import vtp_lab as vl
    >>> vl.EventType.PLAYBACK_STARTED.value
    'playback_started'
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vtp_lab import metrics, plot, reports, sessions, stats, synth
    from vtp_lab.collect import Collector
    from vtp_lab.errors import (
        EventValidationError,
        InputFormatError,
        NotFoundError,
        RejectionLimitError,
        StoreError,
        StoreLockedError,
        VtpLabError,
    )
    from vtp_lab.events import Event, EventType, events_from_json, events_to_json
    from vtp_lab.io import write_events
    from vtp_lab.lab import Lab
    from vtp_lab.validation import Validated, validate

__all__ = [
    "Collector",
    "Event",
    "EventType",
    "EventValidationError",
    "InputFormatError",
    "Lab",
    "NotFoundError",
    "PostgresError",
    "RejectionLimitError",
    "StoreError",
    "StoreLockedError",
    "Validated",
    "ViewingRequirement",
    "VtpLabError",
    "events_from_json",
    "events_to_json",
    "metrics",
    "plot",
    "reports",
    "sessions",
    "stats",
    "synth",
    "validate",
    "write_events",
]

__version__ = "0.1.0"

_MODULES = ("metrics", "plot", "reports", "sessions", "stats", "synth")
_LAZY = {
    "Collector": "vtp_lab.collect",
    "Lab": "vtp_lab.lab",
    "Event": "vtp_lab.events",
    "EventType": "vtp_lab.events",
    "events_from_json": "vtp_lab.events",
    "events_to_json": "vtp_lab.events",
    "EventValidationError": "vtp_lab.errors",
    "InputFormatError": "vtp_lab.errors",
    "NotFoundError": "vtp_lab.errors",
    "PostgresError": "vtp_lab.errors",
    "RejectionLimitError": "vtp_lab.errors",
    "StoreError": "vtp_lab.errors",
    "StoreLockedError": "vtp_lab.errors",
    "VtpLabError": "vtp_lab.errors",
    "Validated": "vtp_lab.validation",
    "ViewingRequirement": "vtp_lab.stats",
    "validate": "vtp_lab.validation",
    "write_events": "vtp_lab.io",
}


def __getattr__(name: str) -> Any:
    """Load public names on first use, so ``import vtp_lab`` stays light."""
    if name in _MODULES:
        return importlib.import_module(f"vtp_lab.{name}")
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'vtp_lab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
