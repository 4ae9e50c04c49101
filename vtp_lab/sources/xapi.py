"""xAPI statements of the ADL video profile, mapped onto the event contract.

A JSON array, NDJSON, or a learning record store's result page (``statements``). The
verb is the last part of its IRI (``https://w3id.org/xapi/video/verbs/played`` and
``http://adlnet.gov/expapi/verbs/initialized`` alike); a statement is about a video
when its object's type is a video, its context's category is the video profile, or
it carries a video profile extension. The actor is its account's name, else its
mbox (or its SHA-1, or OpenID); the object id is the recording; the statement id
the event id; ``session-id`` the session (else none: cut by the inactivity gap);
the first parent activity the course. An ``interacted`` statement that carries
``speed`` is a speed change (the profile's way to say one); without, it changes
nothing. ``docs/sources.md`` has the table.

Example:
    >>> XAPI.kinds["seeked"].requires
    'to_position'
"""

from __future__ import annotations

from typing import Final

from vtp_lab.events import EventType
from vtp_lab.sources.mapping import Kind, Mapping, last_part

__all__ = ["PROFILE", "XAPI"]

PROFILE: Final = "https://w3id.org/xapi/video"
"""The ADL video profile's IRI: its verbs, extensions and activity type live under it."""

_VERB: Final = last_part("s_verb")
_SPEED: Final = "interacted with speed"
_RESULT: Final = "$.result.extensions"
_CONTEXT: Final = "$.context.extensions"

XAPI: Final = Mapping(
    source="xapi",
    paths={
        "id": "$.id",
        "verb": "$.verb.id",
        "timestamp": "$.timestamp",
        "account": "$.actor.account.name",
        "mbox": "$.actor.mbox",
        "mbox_sha1sum": "$.actor.mbox_sha1sum",
        "openid": "$.actor.openid",
        "object": "$.object.id",
        "object_type": "$.object.definition.type",
        "name_en_us": '$.object.definition.name."en-US"',
        "name_en": "$.object.definition.name.en",
        "course": "$.context.contextActivities.parent[0].id",
        "category": "$.context.contextActivities.category[0].id",
        "time": f'{_RESULT}."{PROFILE}/extensions/time"',
        "time_from": f'{_RESULT}."{PROFILE}/extensions/time-from"',
        "time_to": f'{_RESULT}."{PROFILE}/extensions/time-to"',
        "length": f'{_CONTEXT}."{PROFILE}/extensions/length"',
        "session": f'{_CONTEXT}."{PROFILE}/extensions/session-id"',
        "speed": f'{_CONTEXT}."{PROFILE}/extensions/speed"',
        "quality": f'{_CONTEXT}."{PROFILE}/extensions/quality"',
    },
    fields={
        "kind": f"CASE WHEN {_VERB} = 'interacted' AND s_speed IS NOT NULL THEN '{_SPEED}' ELSE {_VERB} END",
        "label": "s_verb",
        "video": (
            f"coalesce(ends_with(s_object_type, '/video'), false) OR coalesce(s_category = '{PROFILE}', false) "
            "OR coalesce(s_time, s_time_from, s_time_to, s_length, s_session) IS NOT NULL"
        ),
        "id": "s_id",
        "timestamp": "s_timestamp",
        "user": "coalesce(s_account, s_mbox, s_mbox_sha1sum, s_openid)",
        "course": "s_course",
        "video_key": "s_object",
        "session": "s_session",
        "position": "s_time",
        "from_position": "s_time_from",
        "to_position": "s_time_to",
        "playback_rate": "rtrim(s_speed, 'x')",
        "duration": "s_length",
        "title": "coalesce(s_name_en_us, s_name_en)",
        "quality": "s_quality",
    },
    kinds={
        "initialized": Kind(event_type=EventType.RECORDING_STARTED),
        "played": Kind(event_type=EventType.PLAYBACK_STARTED, requires="position"),
        "paused": Kind(event_type=EventType.PLAYBACK_PAUSED, requires="position"),
        "seeked": Kind(event_type=EventType.ENGAGEMENT_ACTION, action="seek", requires="to_position"),
        "completed": Kind(event_type=EventType.PLAYBACK_COMPLETED),
        "terminated": Kind(event_type=EventType.SESSION_ENDED, requires="position"),
        "interacted": Kind(event_type=EventType.ENGAGEMENT_ACTION, action="interacted"),
        _SPEED: Kind(event_type=EventType.ENGAGEMENT_ACTION, action="speed_change", requires="playback_rate"),
    },
    source_fields={
        "position": "result.extensions.time",
        "playback_rate": "context.extensions.speed",
        "to_position": "result.extensions.time-to",
    },
    envelope="statements",
)
"""The xAPI video profile adapter."""
