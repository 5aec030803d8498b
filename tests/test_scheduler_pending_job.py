"""A job scheduler's pending job (the one it made last, not started yet) is
protected: remove() refuses it, drain() and clean() keep it; promoting it runs
it now and the scheduler makes its next job at once; immediately=True with a
start_date in the future is refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from conveyor import Job, JobStateError, Queue, ValidationError
from helpers import StartWorker, wait_for

HOUR = 3_600_000


async def _pending(queue: Queue, scheduler_id: str = "hourly", **options: object) -> Job:
    await queue.upsert_job_scheduler(scheduler_id, every=HOUR, **options)  # type: ignore[arg-type]
    [job] = await queue.get_jobs(["waiting", "delayed"])
    return job


async def test_removing_a_schedulers_pending_job_is_refused(queue: Queue) -> None:
    job = await _pending(queue)

    with pytest.raises(JobStateError, match="remove_job_scheduler"):
        await job.remove()

    assert await job.get_state() == "delayed"
    assert await queue.remove_job_scheduler("hourly")
    assert await queue.get_job(job.id) is None


@pytest.mark.parametrize("immediately", [False, True])
async def test_drain_keeps_a_schedulers_pending_job(queue: Queue, immediately: bool) -> None:
    job = await _pending(queue, immediately=immediately)
    await queue.add("other")
    await queue.add("later", delay=HOUR)
    await queue.add("urgent", priority=1)

    assert await queue.drain(delayed=True) == 3

    assert await job.get_state() == ("waiting" if immediately else "delayed")
    assert [j.id for j in await queue.get_jobs(["waiting", "delayed", "prioritized"])] == [job.id]


@pytest.mark.parametrize("immediately", [False, True])
async def test_clean_keeps_a_schedulers_pending_job(queue: Queue, immediately: bool) -> None:
    job = await _pending(queue, immediately=immediately)
    other = await queue.add("other", delay=0 if immediately else HOUR)
    state = "waiting" if immediately else "delayed"

    assert await queue.clean(0, 0, state) == [other.id]

    assert await job.get_state() == state


async def test_promoting_the_pending_job_makes_the_next_one_at_once(
    queue: Queue, start_worker: StartWorker
) -> None:
    job = await _pending(queue)
    start_worker(lambda j: j.id)

    await job.promote()

    assert await job.wait_until_finished(timeout=10) == job.id

    async def next_job() -> list[Job]:
        return [j for j in await queue.get_jobs(["delayed"]) if j.id != job.id]

    [following] = await wait_for(next_job)
    slot = int(job.id.rsplit("-", 1)[1])
    assert following.id == f"sched-hourly-{slot + HOUR}"
    [scheduler] = await queue.get_job_schedulers()
    assert scheduler.next_run == datetime.fromtimestamp((slot + HOUR) / 1000, UTC)


async def test_immediately_with_a_start_date_in_the_future_is_refused(queue: Queue) -> None:
    start = datetime.now(UTC) + timedelta(days=1)

    with pytest.raises(ValidationError) as err:
        await queue.upsert_job_scheduler("later", every=HOUR, start_date=start, immediately=True)

    assert err.value.field == "immediately"
    assert await queue.get_job_schedulers() == []
