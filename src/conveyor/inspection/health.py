"""The health policy: when a queue is "ok", "warning" or "critical", and the
sentences that say why. It judges a :class:`QueueSummary`; the one Redis read it
may need (has the oldest waiting job stalled?) is the inspector's, asked only
when the summary alone cannot decide."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from .views import HealthStatus, QueueHealth, QueueSummary

__all__ = ["RATE_MINUTES", "HealthThresholds", "judge", "worst"]

#: Minutes the per-minute rates and the failure rate of a summary average over.
RATE_MINUTES = 5
_RANK = {"ok": 0, "warning": 1, "critical": 2}


@dataclass(frozen=True, slots=True)
class HealthThresholds:
    """When a queue's health turns "warning" or "critical" (see :meth:`Inspector.health`)."""

    #: Waiting jobs (waiting + prioritized): warning from this many, critical from twice.
    max_waiting: int = 1000
    #: failed / (completed + failed) over the last 5 minutes: warning from this rate.
    max_failure_rate: float = 0.1
    #: Critical when work has waited this long and no job completed meanwhile.
    stalled_minutes: float = 5
    #: Critical when work waits and no live worker serves the queue.
    require_worker: bool = True


async def judge(
    summary: QueueSummary, t: HealthThresholds, stalled: Callable[[], Awaitable[bool]]
) -> QueueHealth:
    """The queue's health by ``t``; ``stalled()`` says whether work has waited
    ``t.stalled_minutes`` with no job completed (awaited only if it matters)."""
    reasons: list[tuple[HealthStatus, str]] = []
    waiting = summary.counts["waiting"] + summary.counts["prioritized"]
    if waiting >= 2 * t.max_waiting:
        reasons.append(("critical", f"{_jobs(waiting)} waiting (critical from "
                                    f"{2 * t.max_waiting})"))
    elif waiting >= t.max_waiting:
        reasons.append(("warning", f"{_jobs(waiting)} waiting (warning from {t.max_waiting})"))
    finished = summary.completed_per_min + summary.failed_per_min
    if finished and summary.failed_per_min / finished >= t.max_failure_rate:
        rate = summary.failed_per_min / finished
        reasons.append(("warning", f"{rate:.0%} of jobs failed in the last "
                                   f"{RATE_MINUTES} minutes (warning from "
                                   f"{t.max_failure_rate:.0%})"))
    if summary.is_paused:
        reasons.append(("warning", "the queue is paused"))
    elif waiting:
        if t.require_worker and not summary.workers:
            reasons.append(("critical", f"{_jobs(waiting)} waiting and no worker is running"))
        elif await stalled():
            reasons.append(("critical", f"jobs have waited over {t.stalled_minutes:g} "
                                        f"minutes and none completed meanwhile"))
    return QueueHealth(summary.name, worst(s for s, _ in reasons),
                       [reason for _, reason in reasons])


def worst(statuses: Iterable[HealthStatus]) -> HealthStatus:
    """The gravest of ``statuses`` ("ok" for none)."""
    return max(statuses, key=_RANK.__getitem__, default="ok")


def _jobs(n: int) -> str:
    return "1 job" if n == 1 else f"{n} jobs"
