"""IMS Caliper 1.x MediaEvents, mapped onto the event contract.

Single events, or sensor envelopes whose ``data`` holds them (NDJSON or a JSON
array of either). ``target.currentTime`` and ``object.duration`` are ISO 8601
durations; the actor's id is the user, the object's id the recording, ``group`` the
course, ``session`` the session (else none: cut by the inactivity gap), the event's
``id`` (``urn:uuid:...``) the event id. The profile has no field for a speed: a
``ChangedSpeed`` with ``extensions.playbackRate`` changes the rate, one without is an
engagement action that changes nothing. Every event that is not a MediaEvent is
skipped and counted by its type. ``docs/sources.md`` has the table.

Example:
    >>> CALIPER.kinds["JumpedTo"].action
    'seek'
"""

from __future__ import annotations

from typing import Final

from vtp_lab.events import EventType
from vtp_lab.sources.mapping import Kind, Mapping, last_part

__all__ = ["CALIPER", "OTHER_ACTIONS"]

_ACTION: Final = last_part("s_action")
_NO_RATE: Final = "ChangedSpeed without a rate"
_SEEK: Final = Kind(event_type=EventType.ENGAGEMENT_ACTION, action="seek", requires="to_position")

OTHER_ACTIONS: Final = (
    "ChangedResolution",
    "ChangedSize",
    "ChangedVolume",
    "ClosedPopout",
    "DisabledClosedCaptioning",
    "EnabledClosedCaptioning",
    "EnteredFullScreen",
    "ExitedFullScreen",
    "Muted",
    "OpenedPopout",
    "Unmuted",
)
"""Media profile actions that change nothing of playback: engagement actions named after them."""

CALIPER: Final = Mapping(
    source="caliper",
    paths={
        "id": "$.id",
        "type": "$.type",
        "action": "$.action",
        "time": "$.eventTime",
        "actor": "$.actor",
        "actor_id": "$.actor.id",
        "object": "$.object.id",
        "duration": "$.object.duration",
        "name": "$.object.name",
        "current_time": "$.target.currentTime",
        "group": "$.group.id",
        "session": "$.session.id",
        "speed": "$.extensions.playbackRate",
    },
    fields={
        "kind": f"CASE WHEN {_ACTION} = 'ChangedSpeed' AND s_speed IS NULL THEN '{_NO_RATE}' ELSE {_ACTION} END",
        "label": f"{last_part('s_type')} || coalesce('.' || {_ACTION}, '')",
        "video": f"coalesce({last_part('s_type')} = 'MediaEvent', false)",
        "id": "s_id",
        "timestamp": "s_time",
        "user": "coalesce(s_actor_id, CASE WHEN NOT starts_with(s_actor, '{') THEN s_actor END)",
        "course": "s_group",
        "video_key": "s_object",
        "session": "s_session",
        "position": "s_current_time",
        "from_position": "NULL",
        "to_position": f"CASE WHEN {_ACTION} IN ('JumpedTo', 'ForwardedTo') THEN s_current_time END",
        "playback_rate": "s_speed",
        "duration": "s_duration",
        "title": "s_name",
        "quality": "NULL",
    },
    kinds={
        "Started": Kind(event_type=EventType.PLAYBACK_STARTED),
        "Restarted": Kind(event_type=EventType.PLAYBACK_STARTED),
        "Resumed": Kind(event_type=EventType.PLAYBACK_RESUMED),
        "Paused": Kind(event_type=EventType.PLAYBACK_PAUSED),
        "Ended": Kind(event_type=EventType.PLAYBACK_COMPLETED),
        "JumpedTo": _SEEK,
        "ForwardedTo": _SEEK,
        "ChangedSpeed": Kind(event_type=EventType.ENGAGEMENT_ACTION, action="speed_change", requires="playback_rate"),
        _NO_RATE: Kind(event_type=EventType.ENGAGEMENT_ACTION, action="changedSpeed"),
    }
    | {
        action: Kind(event_type=EventType.ENGAGEMENT_ACTION, action=action[0].lower() + action[1:])
        for action in OTHER_ACTIONS
    },
    source_fields={"to_position": "target.currentTime", "playback_rate": "extensions.playbackRate"},
    envelope="data",
)
"""The Caliper media profile adapter."""
