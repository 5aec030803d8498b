"""Scripts on a whole queue: pausing, caps and limits, the bounded batches of
clean, drain, obliterate, retry_jobs and promote_jobs, and the worker registry."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .base import ScriptsBase

__all__ = ["AdminScripts"]


class AdminScripts(ScriptsBase):
    """The scripts of queue-wide settings and admin batches."""

    async def set_paused(self, paused: bool) -> Any:
        k = self.keys
        return await self.call(
            "set_paused",
            [k.meta, k.marker, k.wait, k.prioritized, k.delayed, k.events],
            ["pause" if paused else "resume", self.maxlen],
        )

    async def set_global_concurrency(self, n: int) -> None:
        """Cap the jobs running at once across workers (0: no cap)."""
        k = self.keys
        await self.call("set_global_concurrency", [k.meta, k.marker, k.wait, k.prioritized], [n])

    async def rate_limit(self, delay_ms: int) -> int:
        """Make workers wait ``delay_ms``; returns the time (ms) the back-off ends."""
        return int(await self.call("rate_limit", [self.keys.meta], [delay_ms]))

    async def set_group_limits(self, field: str, value: str) -> None:
        """Set ``group_concurrency`` or ``group_limit`` ("max:ms", "0": none)."""
        k = self.keys
        await self.call("set_group_limits", [k.meta, k.marker], [k.base, field, value])

    # -- bounded batches ---------------------------------------------------------------

    async def clean_jobs(
        self, state: str, cutoff: Any, grace_ms: int, n: int, cursor: int, examine: int
    ) -> Any:
        """One batch of clean: ``[removed ids, next cursor (< 0: done), cutoff]``;
        pass the cutoff on to the next batch (``""`` on the first)."""
        k = self.keys
        return await self.call(
            "clean_jobs",
            [k.state_key(state), k.locks, k.cancels, k.events],
            [k.base, state, cutoff, grace_ms, n, cursor, examine, self.maxlen],
        )

    async def drain(self, delayed: bool, n: int) -> int:
        """Remove up to ``n`` waiting (and delayed) jobs; the number removed."""
        k = self.keys
        return int(await self.call(
            "drain", [k.wait, k.prioritized, k.delayed, k.events],
            [k.base, int(delayed), n, self.maxlen],
        ))

    async def obliterate(self, step: str, force: bool, found: Sequence[str] = ()) -> int:
        """One step of obliterate: "start" (refused while jobs are active unless
        ``force``), "keys" (delete ``found``) or "finish"."""
        k = self.keys
        reply = await self.call(
            "obliterate", [k.meta, k.active, k.locks, *found], [step, int(force)]
        )
        return await self.checked("obliterate", reply)

    async def retry_jobs(
        self, state: str, count: int, cutoff: Any, reset_attempts: bool
    ) -> Any:
        """One batch of retry_jobs: ``[jobs moved, cutoff]``; pass the cutoff on to
        the next batch (``""`` on the first)."""
        k = self.keys
        return await self.call(
            "retry_jobs",
            [k.state_key(state), k.wait, k.prioritized, k.priority_counter, k.meta, k.marker,
             k.events],
            [k.base, count, cutoff, int(reset_attempts), self.maxlen],
        )

    async def promote_jobs(self, count: int) -> tuple[int, int]:
        """One batch of promote_jobs: (jobs promoted, delayed jobs left)."""
        k = self.keys
        n, left = await self.call(
            "promote_jobs",
            [k.delayed, k.wait, k.prioritized, k.priority_counter, k.meta, k.marker, k.events],
            [k.base, count, self.maxlen],
        )
        return int(n), int(left)

    # -- the worker registry -------------------------------------------------------------

    async def get_workers(self, start: int, end: int) -> Any:
        """``[Redis' clock ms, [[worker id, entry JSON, ms left of its ttl], ...]]``:
        the live workers, oldest first, ``start``..``end``."""
        k = self.keys
        return await self.call("get_workers", [k.workers], [k.base, start, end])

    async def register_worker(
        self, worker_id: str, entry: bytes, ttl_ms: int, started: int | None
    ) -> int:
        """Register a worker (``started`` None: now); returns its started time (ms)."""
        k = self.keys
        return int(await self.call(
            "register_worker", [k.workers],
            [k.base, worker_id, entry, ttl_ms, "" if started is None else started],
        ))

    async def unregister_worker(self, worker_id: str) -> bool:
        """Remove a worker's entry; whether it was registered."""
        k = self.keys
        return bool(await self.call("unregister_worker", [k.workers], [k.base, worker_id]))
