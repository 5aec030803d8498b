"""The last runs of a job scheduler: the jobs it made for its latest slots
(ids ``sched-<scheduler id>-<slot ms>``, the slots computed back from its next
run) and its last "run now" job, those still kept, each with its state now.
No index is kept for them: a read costs a few lookups per scheduler, nothing
on the hot path. A slot skipped while no worker ran (``missed="run_once"``)
made no job and is not listed.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .._render import TIME, View, epoch_ms
from .._schedule import ScheduleSpec
from .._stream import text
from ..connection import time_ms
from ..partitions import PartitionedQueue, partition_for

if TYPE_CHECKING:
    from ..queue import Queue
    from ..schedulers import JobScheduler

__all__ = ["LAST_RUNS", "SchedulerRun", "last_runs"]

#: Runs listed per scheduler.
LAST_RUNS = 5


@dataclass(frozen=True, slots=True)
class SchedulerRun(View):
    """A job a scheduler made: for its slot, or by "run now" (``manual``)."""

    id: str
    #: The slot the job was made for (for a "run now" job: when it was asked).
    slot_ms: int = field(metadata=TIME)
    manual: bool
    state: str | None
    processed_on_ms: int | None = field(metadata=TIME)
    finished_on_ms: int | None = field(metadata=TIME)
    failed_reason: str | None


async def last_runs(queue: Queue, scheduler: JobScheduler, count: int = LAST_RUNS) -> list[
        SchedulerRun]:
    """Up to ``count`` of the scheduler's latest jobs still kept, latest first."""
    spec = ScheduleSpec(scheduler.every, scheduler.cron, scheduler.tz,
                        epoch_ms(scheduler.start_date), epoch_ms(scheduler.end_date),
                        scheduler.limit, scheduler.missed)
    if isinstance(queue, PartitionedQueue):  # a scheduler lives in one partition
        queue = queue.partitions[partition_for(scheduler.id, queue.partition_count)]
    async with queue.client.pipeline(transaction=False) as pipe:
        pipe.time()
        pipe.hget(queue.keys.scheduler(scheduler.id), "man")
        now, manual = await pipe.execute()
    before = epoch_ms(scheduler.next_run) or time_ms(now) + 1
    ids = [f"sched-{scheduler.id}-{slot}" for slot in spec.slots_before(before, count)]
    manual_id = text(manual) if manual else None
    if manual_id and manual_id not in ids:
        ids.append(manual_id)
    jobs = await asyncio.gather(*(queue.get_job(i) for i in ids))
    states = await asyncio.gather(*(queue.get_job_state(j.id) for j in jobs if j is not None))
    runs = [
        SchedulerRun(
            id=job.id, slot_ms=int(job.id.rsplit("-", 1)[1]), manual=job.id == manual_id,
            state=None if state is None else str(state), processed_on_ms=job.processed_on,
            finished_on_ms=job.finished_on, failed_reason=job.failed_reason,
        )
        for job, state in zip([j for j in jobs if j is not None], states, strict=True)
    ]
    runs.sort(key=lambda run: run.slot_ms, reverse=True)
    return runs[:count]
