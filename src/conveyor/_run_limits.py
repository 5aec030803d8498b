"""When a worker stops by itself: ``burst`` (once its queue has nothing ready)
and ``max_jobs`` (once it has taken that many jobs). Part of the worker's loop
(:mod:`conveyor.worker`), which holds a :class:`RunLimits` only when one of
them is set, so a worker without them pays one ``is None`` a fetch.

Stopping is the graceful stop of :meth:`conveyor.Worker.close`: no more
fetches, running jobs finish and are reported, then ``run()`` returns.

Burst: a fetch that finds nothing makes the worker idle; a burst worker then
stops instead of blocking on the queue's marker, once nothing runs and nothing
is left to report (a job that failed with attempts left may be back in the
queue: the report that carries it fetches again). Delayed jobs that are due
are moved to the queue by that fetch and run; those not yet due do not keep
the worker alive.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from .options import check_count

if TYPE_CHECKING:
    from .worker import Worker

__all__ = ["RunLimits", "share_limits"]

log = logging.getLogger("conveyor.worker")


class RunLimits:
    """The ``burst`` and ``max_jobs`` of one worker, or of several sharing
    one budget of jobs (the loops of a partitioned queue; the workers of
    :meth:`conveyor.app.Conveyor.run`)."""

    def __init__(self, burst: bool, max_jobs: int | None) -> None:
        if max_jobs is not None:
            check_count("max_jobs", max_jobs, 1)
        self.burst = burst
        self.max_jobs = max_jobs
        self.taken = 0
        self.workers: list[Worker] = []

    @classmethod
    def of(cls, worker: Worker, burst: bool, max_jobs: int | None) -> RunLimits | None:
        """The limits of a worker (``None`` without either)."""
        if not burst and max_jobs is None:
            return None
        limits = cls(burst, max_jobs)
        limits.workers.append(worker)
        return limits

    def adopt(self, worker: Worker) -> None:
        """Make ``worker`` stop by these limits, sharing their job budget."""
        worker._limits = self
        self.workers.append(worker)

    def cap(self, free: int) -> int:
        """``free`` slots, fewer if the budget has fewer jobs left than that
        (counting the slots promised to fetches in flight)."""
        if self.max_jobs is None:
            return free
        promised = sum(worker._reserved for worker in self.workers)
        return max(0, min(free, self.max_jobs - self.taken - promised))

    def fetched(self, worker: Worker, n: int, found: int) -> None:
        """A call of ``worker`` that fetched for ``n`` slots took ``found`` jobs
        (``n`` 0: a report only)."""
        if self.burst:
            # Only a fetch that found nothing makes a burst worker idle: a report
            # may have put a job back in the queue, so after one, look again.
            worker._idle = n > 0 and not found
        if self.max_jobs is not None and found:
            self.taken += found
            if self.taken >= self.max_jobs:
                for member in self.workers:
                    _stop(member, f"took {self.max_jobs} job(s) (max_jobs)")

    def drained(self, worker: Worker) -> bool:
        """For an idle burst worker: whether it stopped (nothing runs, nothing
        waits to be reported, no rate limit holds a fetch back)."""
        if (worker._running or worker._outcomes or worker._calls or worker._resends
                or worker._limited()):
            return False
        _stop(worker, "queue drained (burst)")
        return True


def share_limits(workers: list[Worker]) -> None:
    """Make ``workers`` share the first one's limits: ``max_jobs`` jobs in all."""
    if workers and workers[0]._limits is not None:
        for worker in workers[1:]:
            workers[0]._limits.adopt(worker)


def _stop(worker: Worker, reason: str) -> None:
    if not worker._closing:
        log.info("worker %s on %r: %s; stopping", worker.id, worker.queue.name, reason)
        worker._closing = True
        worker._wake.set()
