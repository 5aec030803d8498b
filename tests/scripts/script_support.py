"""Helpers of the script tests: call the scripts with short argument lists and read
a queue's raw Redis keys as plain Python values (str, int, float)."""

from __future__ import annotations

import json
from typing import Any

import redis.asyncio as aioredis

from conveyor import Queue
from conveyor._scripts import Outcome
from conveyor._scripts import outcome as make_outcome
from helpers import wait_for

PRIORITY_SHIFT = 2**31
PRIORITY_HALF = 2**30
DELAY_SHIFT = 1024
KEEP_ALL = "-1:-1"


def prio(priority: int, seq: int) -> int:
    """The prioritized score of a job made ready with sequence number ``seq``."""
    return priority * PRIORITY_SHIFT + PRIORITY_HALF + seq


def prio_head(priority: int, seq: int) -> int:
    """The prioritized score of a job handed back with sequence number ``seq``."""
    return priority * PRIORITY_SHIFT + PRIORITY_HALF - 1 - seq


def s(value: Any) -> Any:
    """Decode bytes (recursively through lists) to str; other values as they are."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, list | tuple):
        return [s(v) for v in value]
    return value


def pairs(flat: list[Any]) -> dict[str, str]:
    """A flat [field, value, ...] reply as a dict of str."""
    it = iter(s(flat))
    return dict(zip(it, it, strict=True))


def token_parts(token: str) -> tuple[str, int, int, int]:
    """A lock token as (worker prefix, attempts started, attempts made, processed on)."""
    prefix, started, made, processed_on = token.rsplit(":", 3)
    return prefix + ":", int(started), int(made), int(processed_on)


def fetched(jobs: list[Any]) -> list[tuple[str, dict[str, str]]]:
    """The jobs part of a fetch reply as [(id, fields), ...]."""
    return [(s(job_id), pairs(fields)) for job_id, fields in jobs]


async def add(
    queue: Queue,
    job_id: str = "",
    *,
    name: str = "job",
    data: bytes = b'{"x":1}',
    opts: bytes = b"{}",
    delay: int = 0,
    priority: int = 0,
    lifo: bool = False,
    attempts: int = 1,
) -> tuple[str, int, int]:
    """add_jobs with one job; returns (id, created, timestamp)."""
    reply = await queue.scripts.add_job(job_id, name, data, opts, delay, priority, lifo, attempts)
    return s(reply[0]), int(reply[1]), int(reply[2])


async def take(
    queue: Queue, n: int = 1, prefix: str = "w:", lock_ms: int = 60_000
) -> list[tuple[str, dict[str, str]]]:
    """move_to_active; returns the jobs taken as [(id, fields), ...]."""
    reply = await queue.scripts.move_to_active(n, prefix, lock_ms)
    return fetched(reply[1])


def outcome(
    job_id: str,
    token: str,
    kind: str,
    value: str = "",
    stack: str = "",
    retry_delay: int = 0,
    keep: str = KEEP_ALL,
    parent: str = "",
    dedup: str = "",
    group: str = "",
) -> Outcome:
    return make_outcome(job_id, token, kind, keep, value, stack, retry_delay, parent, dedup, group)


async def finish(
    queue: Queue,
    *outcomes: Outcome,
    n: int = 0,
    prefix: str = "w:",
    lock_ms: int = 60_000,
    timings: dict[str, int] | None = None,
) -> tuple[list[int], int, list[tuple[str, dict[str, str]]]]:
    """move_to_finished; returns (statuses, next_due, jobs)."""
    reply = await queue.scripts.move_to_finished(
        list(outcomes), n, prefix, lock_ms, timings=timings
    )
    return [int(x) for x in reply[0]], int(reply[1]), fetched(reply[2])


class QueueState:
    """Reads one queue's keys straight from Redis."""

    def __init__(self, redis: aioredis.Redis, queue: Queue) -> None:
        self.redis = redis
        self.keys = queue.keys

    async def now(self) -> int:
        """Redis' clock in ms (the scripts' clock)."""
        sec, usec = await self.redis.time()
        return int(sec) * 1000 + int(usec) // 1000

    async def wait(self) -> list[str]:
        return s(await self.redis.lrange(self.keys.wait, 0, -1))

    async def zset(self, key: str) -> list[tuple[str, float]]:
        return [(s(m), score) for m, score in await self.redis.zrange(key, 0, -1, withscores=True)]

    async def zids(self, key: str) -> list[str]:
        return s(await self.redis.zrange(key, 0, -1))

    async def prioritized(self) -> list[tuple[str, float]]:
        return await self.zset(self.keys.prioritized)

    async def delayed(self) -> list[tuple[str, float]]:
        """[(id, due ms)]: the delayed zset with each score read as its due time."""
        return [(job_id, score // DELAY_SHIFT) for job_id, score in await self.delayed_scores()]

    async def delayed_scores(self) -> list[tuple[str, float]]:
        """The delayed zset's raw scores: due * 1024 + place among those due that ms."""
        return await self.zset(self.keys.delayed)

    async def active(self) -> list[tuple[str, float]]:
        return await self.zset(self.keys.active)

    async def completed(self) -> list[tuple[str, float]]:
        return await self.zset(self.keys.completed)

    async def failed(self) -> list[tuple[str, float]]:
        return await self.zset(self.keys.failed)

    async def marker(self) -> dict[str, float]:
        return dict(await self.zset(self.keys.marker))

    async def meta(self) -> dict[str, str]:
        return {s(k): s(v) for k, v in (await self.redis.hgetall(self.keys.meta)).items()}

    async def job(self, job_id: str) -> dict[str, str]:
        raw = await self.redis.hgetall(self.keys.job(job_id))
        return {s(k): s(v) for k, v in raw.items()}

    async def exists(self, job_id: str) -> bool:
        return bool(await self.redis.exists(self.keys.job(job_id)))

    async def logs(self, job_id: str) -> list[str]:
        return s(await self.redis.lrange(self.keys.logs(job_id), 0, -1))

    async def entries(self) -> list[dict[str, str]]:
        """The event stream's raw entries as field dicts, oldest first."""
        entries = await self.redis.xrange(self.keys.events)
        return [{s(k): s(v) for k, v in fields.items()} for _, fields in entries]

    async def events(self) -> list[dict[str, str]]:
        """One field dict per event, oldest first: a batch entry (``jobs``) is
        expanded into its jobs' events, as readers of the stream see them."""
        out: list[dict[str, str]] = []
        for entry in await self.entries():
            if "jobs" in entry:
                out.extend({"event": entry["event"], **job} for job in json.loads(entry["jobs"]))
            else:
                out.append(entry)
        return out

    async def locks(self) -> dict[str, str]:
        """The locks hash: job id -> lock token."""
        return {s(k): s(v) for k, v in (await self.redis.hgetall(self.keys.locks)).items()}

    async def event_names(self) -> list[tuple[str, str]]:
        return [(e["event"], e["job_id"]) for e in await self.events()]

    async def clear_marker(self) -> None:
        await self.redis.delete(self.keys.marker)

    async def clear_events(self) -> None:
        await self.redis.delete(self.keys.events)

    async def snapshot(self) -> dict[str, Any]:
        """Every key of the queue with its type and contents, to compare before/after;
        but the records of calls (``call:<client>``, includes/calls.lua), which
        belong to the calls, not to the queue's state."""
        out: dict[str, Any] = {}
        calls = self.keys.base + "call:"
        async for key in self.redis.scan_iter(match=self.keys.base + "*"):
            if s(key).startswith(calls):
                continue
            kind = s(await self.redis.type(key))
            value: Any
            if kind == "string":
                value = await self.redis.get(key)
            elif kind == "list":
                value = await self.redis.lrange(key, 0, -1)
            elif kind == "hash":
                value = await self.redis.hgetall(key)
            elif kind == "zset":
                value = await self.redis.zrange(key, 0, -1, withscores=True)
            elif kind == "stream":
                value = await self.redis.xrange(key)
            else:  # pragma: no cover - the scripts make no other types
                value = kind
            out[s(key)] = (kind, value)
        return out

    async def wait_until(self, ms: int) -> None:
        """Wait until Redis' clock reads at least ``ms``."""

        async def reached() -> bool:
            return await self.now() >= ms

        await wait_for(reached, timeout=5, interval=0.002, message=f"redis time >= {ms}")

    async def lapse_locks(self) -> None:
        """Wait (by Redis' clock) until every lock in active has expired."""
        active = await self.active()
        assert active, "no active job"
        await self.wait_until(int(max(score for _, score in active)) + 1)
