"""Open edX tracking logs: the browser and mobile video events, mapped onto the event contract.

One JSON object a line (plain or gzip, rotated files, folders of them); ``event`` is
an object or a JSON string. The course is ``context.course_id``; the user
``context.user_id``, else ``username``; the video the event's ``id`` (its usage key),
within its course; the session ``session`` (the browser's, else none: cut by the
inactivity gap). Every other event of the log (problems, navigation, forums) is
skipped and counted by its ``event_type``. ``docs/sources.md`` has the table.

Example:
    >>> EDX.kinds["seek_video"].action
    'seek'
"""

from __future__ import annotations

from typing import Final

from vtp_lab.events import EventType
from vtp_lab.sources.mapping import Kind, Mapping

__all__ = ["EDX"]

_PLAY: Final = Kind(event_type=EventType.PLAYBACK_STARTED, requires="position")
_PAUSE: Final = Kind(event_type=EventType.PLAYBACK_PAUSED, requires="position")
_STOP: Final = Kind(event_type=EventType.SESSION_ENDED, requires="position")
_COMPLETE: Final = Kind(event_type=EventType.PLAYBACK_COMPLETED)
_SEEK: Final = Kind(event_type=EventType.ENGAGEMENT_ACTION, action="seek", requires="to_position")
_SPEED: Final = Kind(event_type=EventType.ENGAGEMENT_ACTION, action="speed_change", requires="playback_rate")
_LOAD: Final = Kind(event_type=EventType.RECORDING_STARTED)

EDX: Final = Mapping(
    source="edx",
    paths={
        "name": "$.name",
        "event_type": "$.event_type",
        "time": "$.time",
        "username": "$.username",
        "session": "$.session",
        "user_id": "$.context.user_id",
        "course_id": "$.context.course_id",
        "event": "$.event",
    },
    inner="event",
    inner_paths={
        "id": "$.id",
        "current_time": "$.currentTime",
        "current_time_mobile": "$.current_time",
        "old_time": "$.old_time",
        "new_time": "$.new_time",
        "new_speed": "$.new_speed",
        "duration": "$.duration",
    },
    fields={
        "kind": "coalesce(nullif(s_name, ''), s_event_type)",
        "label": "coalesce(nullif(s_name, ''), s_event_type)",
        "video": "true",
        "id": "NULL",
        "timestamp": "s_time",
        "user": "coalesce(nullif(s_user_id, ''), nullif(s_username, ''))",
        "course": "nullif(s_course_id, '')",
        "video_key": "CASE WHEN nullif(s_course_id, '') IS NULL THEN s_id ELSE s_course_id || '|' || s_id END",
        "session": "s_session",
        "position": "coalesce(s_current_time, s_current_time_mobile)",
        "from_position": "s_old_time",
        "to_position": "s_new_time",
        "playback_rate": "s_new_speed",
        "duration": "s_duration",
        "title": "NULL",
        "quality": "NULL",
    },
    kinds={
        "play_video": _PLAY,
        "edx.video.played": _PLAY,
        "pause_video": _PAUSE,
        "edx.video.paused": _PAUSE,
        "stop_video": _STOP,
        "edx.video.stopped": _STOP,
        "complete_video": _COMPLETE,
        "edx.video.completed": _COMPLETE,
        "seek_video": _SEEK,
        "edx.video.position.changed": _SEEK,
        "speed_change_video": _SPEED,
        "load_video": _LOAD,
        "edx.video.loaded": _LOAD,
    },
    source_fields={
        "position": "event.currentTime",
        "to_position": "event.new_time",
        "playback_rate": "event.new_speed",
    },
    skip=("# comment line", "#"),
)
"""The Open edX tracking-log adapter."""
