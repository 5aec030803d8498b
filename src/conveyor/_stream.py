"""Decoding the entries of a queue's event stream.

Most entries are one event of one job: ``event``, ``job_id`` and the event's
fields. The hot path writes the same event for a whole batch of jobs as one
entry, ``event`` and ``jobs`` (a JSON array of per-job field objects), to spend
one Redis command per batch instead of one per job. Readers see one event per
job either way.

An ``added`` job that landed ready carries ``state`` (``waiting`` or
``prioritized``): it reads as two events, ``added`` and then that state's, as
BullMQ emits them, for the cost of one field instead of a second entry.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

_JSON_FIELDS = frozenset({"return_value", "progress"})
_INT_FIELDS = frozenset({"attempts_made", "delay", "stalled_count"})


def text(value: bytes | str) -> str:
    """A reply value as str (replies are bytes unless a client decodes them)."""
    return value.decode() if isinstance(value, bytes) else value


def _typed(event: dict[str, Any], key: str, value: str) -> None:
    if key in _JSON_FIELDS:
        event[key] = orjson.loads(value)
    elif key in _INT_FIELDS:
        event[key] = int(value)
    else:
        event[key] = value


def decode_entry(entry_id: bytes | str, fields: Mapping[Any, Any]) -> list[dict[str, Any]]:
    """The events of one stream entry, each a dict with ``id`` (the entry id),
    ``event``, ``job_id`` and the event's own fields, typed."""
    entry = text(entry_id)
    raw = {text(k): text(v) for k, v in fields.items()}
    batch = raw.pop("jobs", None)
    if batch is None:
        event: dict[str, Any] = {"id": entry}
        for key, value in raw.items():
            _typed(event, key, value)
        return _with_state([event])
    events = []
    for job in orjson.loads(batch):
        event = {"id": entry, "event": raw["event"]}
        for key, value in job.items():
            _typed(event, key, value)
        events.append(event)
    return _with_state(events)


def _with_state(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each ``added`` event with a ``state`` followed by that state's event."""
    if not events or events[0].get("event") != "added":
        return events
    out = []
    for event in events:
        out.append(event)
        state = event.pop("state", None)
        if state is not None:
            out.append({"id": event["id"], "event": state, "job_id": event.get("job_id")})
    return out
