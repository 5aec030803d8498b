"""The hot path's scripts: adding jobs, taking them, reporting attempts, renewing
locks and the stalled check. Each argument costs Redis a copy into Lua and
these run per job, so layouts are built with as little as possible."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from redis.asyncio.client import Pipeline

from .._stream import text
from .base import ScriptsBase

__all__ = ["NO_LIMIT", "FetchScripts", "Limit", "NewJob", "Outcome", "new_job_args", "outcome"]

#: A finished attempt for move_to_finished: (id, token, kind, keep, extras, *by kind);
#: see the script's header and :func:`outcome`.
Outcome = tuple[str | int, ...]


def outcome(
    job_id: str,
    token: str,
    kind: str,
    keep: str,
    value: str = "",
    stack: str = "",
    retry_delay: int = 0,
    parent: str = "",
    dedup: str = "",
    group: str = "",
) -> Outcome:
    """One attempt's result as move_to_finished takes it: 6 arguments, 8 for a
    failure (each argument costs Redis a copy into Lua, and this is per job)."""
    extras = ""
    if parent or dedup or group:
        extras = f"{len(parent)}:{len(dedup)}:{parent}{dedup}{group}"
    if kind == "c":
        return (job_id, token, kind, keep, extras, value)
    if kind == "f":
        return (job_id, token, kind, keep, extras, value, stack, retry_delay)
    return (job_id, token, kind, keep, extras, retry_delay)


#: A job for add_jobs: (id or "", name, data JSON, opts JSON, the options the script
#: acts on as one string: see :func:`new_job_args`).
NewJob = tuple[str, str, bytes, bytes, str]


def new_job_args(
    job_id: str,
    name: str,
    data: bytes,
    opts: bytes,
    delay: int = 0,
    priority: int = 0,
    lifo: bool = False,
    attempts: int = 1,
    dedup: str = "",
    group: str = "",
) -> NewJob:
    """A job as add_jobs takes it. The options the script acts on travel as one
    argument, "" for the defaults (each argument costs Redis a Lua string, per
    job): ``delay:priority:lifo:attempts:group:deduplication``, where a group
    holds no ``:`` and deduplication is ``ttl:extend:replace:key`` or ""."""
    if not (delay or priority or lifo or attempts != 1 or dedup or group):
        return (job_id, name, data, opts, "")
    return (job_id, name, data, opts, f"{delay}:{priority}:{int(lifo)}:{attempts}:{group}:{dedup}")
#: A worker's rate limiter for the fetch scripts: (max starts, per window ms); 0: none.
Limit = tuple[int, int]
NO_LIMIT: Limit = (0, 0)


class FetchScripts(ScriptsBase):
    """add_jobs, move_to_active, move_to_finished, extend_locks, move_stalled_jobs."""

    async def add_jobs(
        self, pipe: Pipeline | None, jobs: Sequence[NewJob], call: str | None = None
    ) -> Any:
        """Add jobs; one reply ``[job_id, created, timestamp]`` per job. Safe to
        send twice (a lost reply): without ``pipe``, a call that generates an id
        gets a token. On ``pipe``, pass ``call`` (``calls.for_ids``) and tell
        ``calls.answered(call)`` once the pipeline's reply is in."""
        if pipe is not None:
            return await self.call("add_jobs", *self.add_jobs_layout(jobs, call or ""), pipe)
        call = self.calls.for_ids(job[0] for job in jobs)
        replies = await self.call("add_jobs", *self.add_jobs_layout(jobs, call))
        self.calls.answered(call)
        return replies

    def add_jobs_layout(
        self, jobs: Sequence[NewJob], call: str = ""
    ) -> tuple[list[str], list[Any]]:
        """KEYS and ARGV of add_jobs (also used by the blocking client of conveyor.sync)."""
        k = self.keys
        args: list[Any] = [k.base, self.maxlen, len(jobs)]
        for job in jobs:
            args.extend(job)
        args.extend(self.calls.tail(call))
        keys = [k.wait, k.prioritized, k.priority_counter, k.delayed, k.meta, k.marker,
                k.events, k.id]
        return keys, args

    async def add_job(
        self,
        job_id: str,
        name: str,
        data: bytes,
        opts: bytes,
        delay: int,
        priority: int,
        lifo: bool,
        attempts: int,
        dedup: str = "",
        group: str = "",
    ) -> Any:
        """Add one job; its reply ``[job_id, created, timestamp]``."""
        replies = await self.add_jobs(
            None, [new_job_args(job_id, name, data, opts, delay, priority, lifo, attempts, dedup,
                                group)],
        )
        return replies[0]

    def _fetch_keys(self) -> list[str]:
        k = self.keys
        return [k.wait, k.prioritized, k.priority_counter, k.delayed, k.active, k.locks,
                k.meta, k.marker, k.events, k.limiter]

    async def move_to_active(
        self, n: int, token_prefix: str, lock_ms: int, limit: Limit = NO_LIMIT, call: str = ""
    ) -> Any:
        """Take up to ``n`` jobs; ``limit`` is the worker's limiter (max starts, window
        ms). With a ``call`` token (``calls.new()``; tell ``calls.answered`` when
        the reply is in), a resend after a lost reply returns the same jobs."""
        return await self.call(
            "move_to_active",
            self._fetch_keys(),
            [self.keys.base, n, token_prefix, lock_ms, self.maxlen, *limit,
             *self.calls.tail(call)],
        )

    def queue_move_to_active(
        self,
        pipe: Pipeline,
        n: int,
        token_prefix: str,
        lock_ms: int,
        limit: Limit = NO_LIMIT,
        call: str = "",
    ) -> None:
        """Queue move_to_active on ``pipe`` by its SHA. Unlike a registered script
        in a pipeline, this costs no SCRIPT EXISTS round trip; after a restart of
        Redis the reply is a NoScriptError: :meth:`load` the script, then retry."""
        keys = self._fetch_keys()
        pipe.evalsha(
            self._scripts["move_to_active"].sha, len(keys), *keys,
            self.keys.base, n, token_prefix, lock_ms, self.maxlen, *limit,
            *self.calls.tail(call),
        )

    async def move_to_finished(
        self,
        outcomes: Sequence[Outcome],
        n: int,
        token_prefix: str,
        lock_ms: int,
        limit: Limit = NO_LIMIT,
        timings: Mapping[str, int] | None = None,
        call: str = "",
    ) -> Any:
        """Report outcomes and fetch up to ``n`` jobs; ``timings`` is the worker's
        histogram of the reported attempts (``p<bucket>``/``w<bucket>`` -> count).
        With a ``call`` token, a resend after a lost reply returns the first
        reply (see :meth:`move_to_active`)."""
        args: list[Any] = [self.keys.base, n, token_prefix, lock_ms, self.maxlen, *limit,
                           len(outcomes)]
        for outcome in outcomes:
            args.extend(outcome)
        args.append(len(timings) if timings else 0)
        if timings:
            for field, count in timings.items():
                args.append(field)
                args.append(count)
        args.extend(self.calls.tail(call))
        keys = self._fetch_keys()
        keys[9:9] = [self.keys.completed, self.keys.failed]  # KEYS 10, 11; limiter is 12
        return await self.call("move_to_finished", keys, args)

    async def extend_locks(
        self, locks: Sequence[tuple[str, str]], lock_ms: int
    ) -> tuple[list[str], dict[str, str]]:
        """Renew locks; returns (ids whose lock was lost, {cancelled id: reason})."""
        args: list[Any] = [lock_ms]
        for job_id, token in locks:
            args.append(job_id)
            args.append(token)
        k = self.keys
        lost, cancelled = await self.call("extend_locks", [k.active, k.locks, k.cancels], args)
        pairs = [text(v) for v in cancelled]
        return [text(i) for i in lost], dict(zip(pairs[0::2], pairs[1::2], strict=True))

    async def move_stalled_jobs(
        self, interval_ms: int, max_stalled: int, failed_keep: str
    ) -> Any:
        """Requeue (or fail) jobs whose lock lapsed: ``[[requeued], [failed]]``, or
        ``[]`` when another worker checked within the interval."""
        k = self.keys
        return await self.call(
            "move_stalled_jobs",
            [k.active, k.wait, k.prioritized, k.priority_counter, k.meta, k.marker, k.events,
             k.failed, k.stalled_check, k.locks],
            [k.base, interval_ms, max_stalled, self.maxlen, failed_keep],
        )
