"""The pass/fail health check behind ``conveyor health``: a queue passes when its
health (:mod:`conveyor.inspection.health`, what ``conveyor stats`` shows) is not
critical and it keeps every limit given (:class:`HealthLimits`). Each queue
costs its summary, its health and, with ``max_oldest_wait_ms``, one more
pipelined read of the jobs at both ends of its wait list and its prioritized
set: bounded, whatever the queue's size.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field, replace
from operator import methodcaller
from typing import Any

import orjson

from .._cluster import pipelined
from .._render import View
from .._stream import text
from ..errors import ValidationError
from ..options import check_count
from ..queue import Queue
from .health import RATE_MINUTES, HealthThresholds
from .inspector import Inspector
from .reads import ready_ends
from .views import HealthStatus

__all__ = ["HealthLimits", "QueueCheck", "check_queue", "oldest_wait_ms"]

#: A threshold no count or rate reaches.
_NEVER = 2**62


@dataclass(frozen=True, slots=True)
class HealthLimits:
    """Limits a queue must keep to pass :func:`check_queue` (``None``: not checked)."""

    #: Most jobs waiting to run (waiting + prioritized).
    max_waiting: int | None = None
    #: Longest a job ready to run may have waited, ms.
    max_oldest_wait_ms: int | None = None
    #: Highest share of jobs failed for good among those finished in the last 5 minutes.
    max_failed_rate: float | None = None
    #: Fewest live workers serving the queue.
    min_workers: int = 1

    def __post_init__(self) -> None:
        for name in ("max_waiting", "max_oldest_wait_ms"):
            value = getattr(self, name)
            if value is not None:
                check_count(name, value, 0)
        check_count("min_workers", self.min_workers, 0)
        rate = self.max_failed_rate
        if rate is not None and (not isinstance(rate, int | float) or isinstance(rate, bool)
                                 or not 0 <= rate <= 1):
            raise ValidationError("max_failed_rate", f"must be a number from 0 to 1, got "
                                  f"{rate!r}", rate)

    def thresholds(self, base: HealthThresholds) -> HealthThresholds:
        """``base`` made consistent with these limits, for the inspector that
        judges health: a queue allowed no worker is not critical for lacking
        one, and a limit given replaces the health's own rule on the same
        count (which would say it again, at another threshold)."""
        return replace(
            base, require_worker=self.min_workers > 0,
            max_waiting=base.max_waiting if self.max_waiting is None else _NEVER,
            max_failure_rate=base.max_failure_rate if self.max_failed_rate is None else _NEVER)


@dataclass(frozen=True, slots=True)
class QueueCheck(View):
    """One queue's result: ``healthy`` unless its health is critical or a limit is
    broken; ``reasons`` says why (and its health's warnings)."""

    queue: str
    healthy: bool
    #: The queue's health as ``conveyor stats`` shows it.
    status: HealthStatus
    reasons: list[str]
    workers: int
    waiting: int
    paused: bool
    #: How long the longest-waiting ready job has waited (None: none waits or not read).
    oldest_wait_ms: int | None
    #: failed / (completed + failed) over the last 5 minutes (None: none finished).
    failed_rate: float | None = field(default=None)


async def check_queue(inspector: Inspector, name: str, limits: HealthLimits) -> QueueCheck:
    """Check queue ``name`` against ``limits`` (QueueNotFoundError if there is none);
    its health is judged by ``inspector.thresholds`` (see :meth:`HealthLimits.thresholds`)."""
    summary, health = await asyncio.gather(inspector.summary(name), inspector.health(name))
    queue = await inspector.existing(name)
    waiting = summary.counts["waiting"] + summary.counts["prioritized"]
    broken: list[str] = []
    if summary.workers < limits.min_workers:
        broken.append(f"{_count(summary.workers, 'live worker')} (need {limits.min_workers})")
    if limits.max_waiting is not None and waiting > limits.max_waiting:
        broken.append(f"{_count(waiting, 'job')} waiting (limit {limits.max_waiting})")
    oldest = await oldest_wait_ms(queue) if limits.max_oldest_wait_ms is not None else None
    if oldest is not None and limits.max_oldest_wait_ms is not None and (
            oldest > limits.max_oldest_wait_ms):
        broken.append(f"a job has waited {_seconds(oldest)} (limit "
                      f"{_seconds(limits.max_oldest_wait_ms)})")
    finished = summary.completed_per_min + summary.failed_per_min
    rate = summary.failed_per_min / finished if finished else None
    if rate is not None and limits.max_failed_rate is not None and rate > limits.max_failed_rate:
        broken.append(f"{rate:.0%} of jobs failed in the last {RATE_MINUTES} minutes "
                      f"(limit {limits.max_failed_rate:.0%})")
    healthy = not broken and health.status != "critical"
    return QueueCheck(
        queue=name, healthy=healthy, status=health.status,
        reasons=broken + [r for r in health.reasons if r not in broken],
        workers=summary.workers, waiting=waiting, paused=summary.is_paused,
        oldest_wait_ms=oldest, failed_rate=None if rate is None else round(rate, 4),
    )


async def oldest_wait_ms(queue: Queue) -> int | None:
    """How long the longest-waiting of the jobs at both ends of the wait list and
    of the prioritized set (of each partition) has been ready, by Redis' clock;
    None if none is. A job is ready from when it was added, or from when it fell
    due if it was delayed. (Between the ends of a list nothing waits longer than
    both: the wait list is filled at its tail and LIFO jobs at its head.)"""
    now, ends = await ready_ends(queue)
    if not ends:
        return None
    found = _raised(await pipelined([
        (part.client, methodcaller("hmget", part.keys.job(job_id), "ts", "opts"))
        for part, job_id in ends]))
    ready = [r for r in (_ready_since(reply) for reply in found) if r is not None]
    return max(0, now - min(ready)) if ready else None


def _ready_since(reply: Any) -> int | None:
    """When a job (its ``ts`` and ``opts``) became ready; None for a job gone or corrupt."""
    if not isinstance(reply, list) or not isinstance(reply[0], bytes | str):
        return None
    ts = text(reply[0])
    if not ts.isdigit():
        return None
    try:
        delay = orjson.loads(reply[1] or b"{}").get("delay", 0)
    except (orjson.JSONDecodeError, AttributeError):
        delay = 0
    return int(ts) + (delay if isinstance(delay, int) else 0)


def _raised(replies: list[Any]) -> list[Any]:
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    return replies


def _count(n: int, what: str) -> str:
    return f"{n} {what}" + ("" if n == 1 else "s")


def _seconds(ms: int) -> str:
    return f"{ms / 1000:g}s" if ms < 60_000 else f"{ms / 60_000:.1f}min"
