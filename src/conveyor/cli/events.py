"""``conveyor events QUEUE``: a queue's event stream, live, through
:class:`conveyor.QueueEvents`; one line per event (or one JSON object a line),
until Ctrl-C, which exits 0."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click

from ..connection import time_ms
from ..events import QueueEvents
from .support import DURATION, Target, redis_options, safe, safe_json, with_inspector

if TYPE_CHECKING:
    from ..inspection import Inspector

__all__ = ["EVENT_NAMES", "event_line", "events"]

#: The events a queue's stream carries (see :class:`conveyor.QueueEvents`).
EVENT_NAMES = ("added", "waiting", "prioritized", "delayed", "duplicated", "deduplicated",
               "waiting-children", "active", "progress", "completed", "retrying", "failed",
               "stalled", "removed", "paused", "resumed")
_ENTRY_ID = re.compile(r"^\d+-\d+$")
_FROM_START = ("start", "all", "0")


@click.command()
@redis_options
@click.argument("name", metavar="QUEUE")
@click.option("--since", metavar="WHEN",
              help="Replay from then before following: a duration back from now (10m, 2h), "
                   "a stream entry id, or 'start' (all the capped stream holds). "
                   "[default: from now on]")
@click.option("--event", "-e", "only", multiple=True, type=click.Choice(EVENT_NAMES),
              metavar="NAME",
              help="Only this event (repeatable): added, active, completed, failed...")
@click.option("--json", "as_json", is_flag=True, help="One JSON object a line.")
def events(target: Target, name: str, since: str | None, only: tuple[str, ...],
           as_json: bool) -> None:
    """Follow QUEUE's events live: one line each, until Ctrl-C (exit 0).

    A line is the event's time (UTC, from its stream entry id), its name, the
    job id and the event's own fields. With --json, each event as one object:
    "event", "job_id", "id" (the entry id) and its fields.
    """
    start = _start(since)

    async def body(inspector: Inspector) -> None:
        await inspector.existing(name)  # a mistyped name is an error, not silence
        last_id = start
        if since is not None and start is None:  # a duration back from Redis' clock
            last_id = str(time_ms(await inspector.client.time()) - DURATION.convert(
                since, None, None) - 1)
        stream = QueueEvents(name, inspector.connector, prefix=target.prefix,
                             last_id=last_id or "$", block=1_000)
        async for event in stream:
            if only and event.get("event") not in only:
                continue
            try:
                click.echo(safe_json(event, indent=False) if as_json else event_line(event))
            except BrokenPipeError:  # the reader went away (`| head`): done
                _quiet_stdout()
                return

    with_inspector(target, body, interrupted=0)


def _start(since: str | None) -> str | None:
    """The stream id to read after: "0" from the start, an entry id as given, or
    None (from now, or a duration back from Redis' clock: resolved once connected)."""
    if since is None:
        return None
    given = since.strip()
    if given.lower() in _FROM_START:
        return "0"
    if _ENTRY_ID.match(given):
        return given
    if not _is_duration(given):
        raise click.BadParameter(
            f"{since!r} is not a duration (10m, 2h), a stream entry id (1733250000000-0) "
            f"or 'start'", param_hint="'--since'")
    return None


def _is_duration(text: str) -> bool:
    try:
        DURATION.convert(text, None, None)
    except click.BadParameter:
        return False
    return True


def event_line(event: dict[str, Any]) -> str:
    """One event as a line: time, name, job id and its other fields, safe for a terminal."""
    entry = str(event.get("id", ""))
    when = _entry_time(entry)
    rest = " ".join(f"{key}={_value(value)}" for key, value in event.items()
                    if key not in ("id", "event", "job_id"))
    parts: Sequence[str] = (when, f"{event.get('event', '?'):<16}",
                            str(event.get("job_id") or "-"), rest)
    return safe("  ".join(p for p in parts if p))


def _entry_time(entry: str) -> str:
    ms = entry.partition("-")[0]
    if not ms.isdigit():
        return "-"
    moment = datetime.fromtimestamp(int(ms) / 1000, UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{int(ms) % 1000:03d}"


def _value(value: Any) -> str:
    return value if isinstance(value, str) else safe_json(value, indent=False)


def _quiet_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's last flush raises nothing."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
