"""Job groups: fairness and limits per tenant within one queue.

``queue.add(..., group="tenant-123")`` puts a job in its group's own list.
Workers take turns between groups with work (round-robin), so a tenant that
adds 10,000 jobs delays another tenant's one job by at most one turn.
``set_group_concurrency`` and ``set_group_limit`` (admin writes:
:mod:`conveyor.admin`) bound each group on its own. :class:`QueueGroups`, the
group reads, is mixed into :class:`conveyor.Queue`.
"""

from __future__ import annotations

from dataclasses import dataclass

from ._queue_base import QueueCore
from ._stream import text

__all__ = ["GroupInfo", "QueueGroups"]


@dataclass(frozen=True, slots=True)
class GroupInfo:
    """One group of a queue as it is now."""

    name: str
    #: Jobs of the group ready to run.
    waiting: int
    #: Jobs of the group running now.
    active: int
    #: "ready" (in the rotation), "busy" (at its concurrency cap), "limited"
    #: (at its rate limit) or "idle" (nothing waiting).
    status: str


class QueueGroups(QueueCore):
    """Group reads of a queue."""

    async def get_groups(self) -> list[GroupInfo]:
        """Every group with waiting or running jobs, by name."""
        k = self.keys
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.zrange(k.key("groups"), 0, -1)
            pipe.smembers(k.key("groups:busy"))
            pipe.zrange(k.key("groups:limited"), 0, -1)
            pipe.hgetall(k.key("groups:active"))
            ready, busy, limited, active = await pipe.execute()
        status: dict[str, str] = {text(g): "ready" for g in ready}
        status.update({text(g): "busy" for g in busy})
        status.update({text(g): "limited" for g in limited})
        running = {text(g): int(n) for g, n in active.items()}
        names = sorted(set(status) | set(running))
        async with self.client.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.llen(k.group(name))
            lengths = await pipe.execute()
        return [
            GroupInfo(name, int(waiting), running.get(name, 0),
                      status.get(name, "idle") if waiting else "idle")
            for name, waiting in zip(names, lengths, strict=True)
            if waiting or running.get(name)
        ]

    async def get_group_jobs(self, group: str, start: int = 0, end: int = -1) -> list[str]:
        """Ids of a group's waiting jobs, in the order they will run."""
        return [text(i) for i in await self.client.lrange(self.keys.group(group), start, end)]
