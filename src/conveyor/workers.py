"""The worker registry: :class:`WorkerInfo`, one live worker as its last
heartbeat described it, and the registry's writes and reads.
``Queue.get_workers``, the inspector, the REST API and the CLI all use this
one shape.

Workers register themselves: each sends a heartbeat every
``HEARTBEAT_INTERVAL_MS`` (one ``SET``: an idle worker must cost well under one
Redis command per second; the loop is in :mod:`conveyor._upkeep`) that
rewrites ``worker:<id>`` with a time to live of three intervals, so the entry
of a worker that dies expires on its own; a worker that stops cleanly removes
its entry. See ``register_worker.lua``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
from redis.exceptions import RedisError

from ._render import TIME, View
from ._stream import text
from .connection import REDIS_DOWN as _REDIS_DOWN

if TYPE_CHECKING:
    from .queue import Queue

__all__ = [
    "HEARTBEAT_INTERVAL_MS", "WorkerInfo", "read_workers", "register_worker", "renew_worker",
    "unregister_worker", "worker_info",
]

log = logging.getLogger("conveyor.admin")

#: A worker's heartbeat interval; its registry entry lives three intervals.
HEARTBEAT_INTERVAL_MS = 15_000


@dataclass(frozen=True, slots=True)
class WorkerInfo(View):
    """A worker of the queue as its last heartbeat described it (the running
    jobs are up to one heartbeat interval old). ``to_dict()`` adds ``running``
    and renders the times as ISO and ``_ms``."""

    id: str
    hostname: str
    pid: int
    concurrency: int
    running_job_ids: tuple[str, ...]
    started_at: datetime = field(metadata=TIME)
    last_heartbeat: datetime = field(metadata=TIME)

    json_properties = ("running",)

    @property
    def running(self) -> int:
        """Number of jobs the worker was running."""
        return len(self.running_job_ids)


def worker_info(worker_id: str, raw_entry: bytes, now: int, ms_left: int) -> WorkerInfo:
    """A worker's heartbeat entry as a WorkerInfo (``now``: Redis' time in ms;
    ``ms_left``: the entry's time to live)."""
    entry = orjson.loads(raw_entry)
    run = entry["run"]
    if not isinstance(run, list) or not isinstance(entry["host"], str):
        raise TypeError("'run' must be a list and 'host' a str")
    return WorkerInfo(
        id=worker_id,
        hostname=entry["host"],
        pid=int(entry["pid"]),
        concurrency=int(entry["conc"]),
        running_job_ids=tuple(str(job_id) for job_id in run),
        started_at=_utc(entry["started"]),
        last_heartbeat=_utc(now - (int(entry["ttl"]) - ms_left)),
    )


def _utc(ms: int) -> datetime:
    return datetime.fromtimestamp(int(ms) / 1000, tz=UTC)


async def read_workers(queue: Queue, start: int, end: int) -> list[WorkerInfo]:
    """The live workers of ``queue``, oldest first, ``start``..``end`` inclusive
    (``Queue.get_workers`` checks the arguments)."""
    now, entries = await queue.scripts.get_workers(start, end)
    workers = []
    for raw_id, raw_entry, ms_left in entries:
        try:
            workers.append(worker_info(text(raw_id), raw_entry, int(now), int(ms_left)))
        except (ValueError, TypeError, KeyError, OverflowError, OSError) as exc:
            # One unreadable entry must not hide the others (nor break stats).
            log.warning("queue %s: heartbeat of worker %s is unreadable (%s); skipped",
                        queue.name, text(raw_id), exc)
    return workers


async def register_worker(
    queue: Queue, worker_id: str, entry: dict[str, Any], ttl: int, started: int | None
) -> int:
    """Write a worker's entry (and name its queue in the queue registry);
    returns its start time in ms (``started`` if given, else Redis' now)."""
    await queue._register()
    return await queue.scripts.register_worker(worker_id, orjson.dumps(entry), ttl, started)


async def renew_worker(
    queue: Queue, worker_id: str, entry: dict[str, Any], ttl: int, started: int
) -> bool:
    """Rewrite a registered worker's entry: one SET, XX (False: the entry had
    expired, register again)."""
    return bool(await queue.client.set(
        queue.keys.worker(worker_id), orjson.dumps({"started": started, **entry}),
        px=ttl, xx=True,
    ))


async def unregister_worker(queue: Queue, worker_id: str) -> None:
    """A stopping worker leaves the registry (if Redis is away, its entry expires)."""
    with contextlib.suppress(RedisError, *_REDIS_DOWN):
        async with asyncio.timeout(2):
            await queue.scripts.unregister_worker(worker_id)
