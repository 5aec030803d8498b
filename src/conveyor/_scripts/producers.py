"""Scripts that make jobs from a description: a flow's tree (``add_flow``) and
job schedulers (upsert, advance, remove, run now)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .._stream import text
from ..keys import QueueKeys
from .base import ScriptsBase

__all__ = ["FlowJob", "ProducerScripts"]

#: A node for add_flow: (parent's 1-based index or 0, queue's 1-based index, id or "",
#: name, data JSON, opts JSON, delay, priority, lifo 0/1, attempts).
FlowJob = tuple[int, int, str, str, bytes, bytes, int, int, int, int]


class ProducerScripts(ScriptsBase):
    """add_flow and the job scheduler scripts."""

    async def add_flow(
        self,
        queues: Sequence[QueueKeys],
        nodes: Sequence[FlowJob],
        paths: Sequence[str],
        events_maxlen: int,
    ) -> Any:
        """Add the nodes of flows atomically: ``[timestamp, ids, created]``. Safe to
        send twice. A node whose given id exists refuses the whole call, the error
        naming it by its entry of ``paths`` (its place in the caller's trees)."""
        args: list[Any] = [events_maxlen, len(queues), *(k.base for k in queues), len(nodes)]
        for node in nodes:
            args.extend(node)
        call = self.calls.for_ids(node[2] for node in nodes)
        args.extend(self.calls.tail(call))
        reply = await self.call("add_flow", [k.id for k in queues], args)
        self.calls.answered(call)
        if int(reply[0]) == -1:
            index = int(reply[1]) - 1
            node = nodes[index]
            raise self.error(
                "add_flow", -1, node[2], queue=queues[node[1] - 1].queue,
                path=paths[index] or "tree",
            )
        return reply

    async def upsert_job_scheduler(
        self,
        scheduler_id: str,
        spec: bytes,
        name: str,
        data: bytes,
        opts: bytes,
        priority: int,
        attempts: int,
        lifo: bool,
        limit: int,
        first: str,
        following: str,
    ) -> Any:
        """Create or replace a scheduler and its first job: ``[jobs made so far,
        first job's id or "", first slot or "", ...]`` (see the script's header)."""
        k = self.keys
        return await self.call(
            "upsert_job_scheduler",
            [k.schedulers, k.scheduler(scheduler_id), k.wait, k.prioritized,
             k.priority_counter, k.delayed, k.meta, k.marker, k.events, k.schedulers_marker],
            [k.base, self.maxlen, scheduler_id, spec, name, data, opts, priority, attempts,
             int(lifo), limit, first, following],
        )

    async def remove_job_scheduler(self, scheduler_id: str) -> bool:
        """Delete a scheduler and its pending job; whether it existed."""
        k = self.keys
        return bool(int(await self.call(
            "remove_job_scheduler",
            [k.schedulers, k.scheduler(scheduler_id), k.wait, k.prioritized, k.delayed,
             k.events],
            [k.base, self.maxlen, scheduler_id],
        )))

    async def run_job_scheduler_now(self, scheduler_id: str) -> str | None:
        """Make one extra job of a scheduler now, ready at once, leaving its
        schedule as it is; the job's id, ``None`` if there is no such scheduler."""
        k = self.keys
        reply = await self.call(
            "run_job_scheduler_now",
            [k.scheduler(scheduler_id), k.wait, k.prioritized, k.priority_counter, k.delayed,
             k.meta, k.marker, k.events],
            [k.base, self.maxlen, scheduler_id],
        )
        return text(reply[0]) if reply else None

    async def advance_job_scheduler(
        self,
        scheduler_id: str,
        generation: str,
        expected: str,
        missed: str,
        limit: int,
        future: str,
        following: str,
        missed_slots: Sequence[int],
    ) -> Any:
        """Make a due scheduler's next jobs, if it is still at generation
        ``generation`` and slot ``expected`` (another process may have been first)."""
        k = self.keys
        return await self.call(
            "advance_job_scheduler",
            [k.schedulers, k.scheduler(scheduler_id), k.wait, k.prioritized,
             k.priority_counter, k.delayed, k.meta, k.marker, k.events],
            [k.base, self.maxlen, scheduler_id, generation, expected, missed, limit, future,
             following, *missed_slots],
        )
