"""Queue.run_job_scheduler_now: "run now" of a job scheduler makes one extra job
from its template that a worker runs at once; the schedule keeps its next run."""

from __future__ import annotations

from typing import Any

import pytest

from conveyor import Job, Queue, ValidationError
from conveyor.sync import Queue as SyncQueue
from helpers import StartWorker, finished, wait_for

# Each test runs on one Redis server and on a Redis Cluster (conftest.py).
pytestmark = pytest.mark.cluster

HOUR = 3_600_000


async def test_run_now_runs_the_template_once_and_keeps_the_schedule(
    queue: Queue, start_worker: StartWorker
) -> None:
    before = await queue.upsert_job_scheduler(
        "report", every=HOUR, job_name="build-report", data={"kind": "daily"}, priority=3)
    seen: list[tuple[str, Any]] = []

    async def process(job: Job) -> str:
        seen.append((job.name, job.data))
        return "built"

    start_worker(process)
    job_id = await queue.run_job_scheduler_now("report")

    assert job_id is not None and job_id.startswith("sched-report-")
    assert await wait_for(lambda: finished(queue, job_id)) == "completed"
    assert seen == [("build-report", {"kind": "daily"})]
    job = await queue.get_job(job_id)
    assert job is not None and job.opts.priority == 3 and job.return_value == "built"
    after = await queue.get_job_scheduler("report")
    assert after is not None
    assert (after.next_run, after.count) == (before.next_run, before.count)


async def test_run_now_of_a_missing_scheduler_is_none(queue: Queue) -> None:
    assert await queue.run_job_scheduler_now("nope") is None
    assert await queue.get_job_counts() == dict.fromkeys(await queue.get_job_counts(), 0)


async def test_run_now_refuses_a_bad_id(queue: Queue) -> None:
    with pytest.raises(ValidationError, match="scheduler_id"):
        await queue.run_job_scheduler_now("a:b")


async def test_run_now_on_a_partitioned_queue(redis_url: str, queue_name: str) -> None:
    async with Queue(queue_name, redis_url, partitions=3) as queue:
        await queue.upsert_job_scheduler("tick", every=HOUR)
        job_id = await queue.run_job_scheduler_now("tick")
        assert job_id is not None
        job = await queue.get_job(job_id)
        assert job is not None and job.name == "tick"
        assert await queue.get_job_state(job_id) == "waiting"


@pytest.mark.cluster(False)
def test_the_sync_twin(redis_url: str, queue_name: str) -> None:
    with SyncQueue(queue_name, redis_url) as queue:
        queue.upsert_job_scheduler("tick", every=HOUR)
        job_id = queue.run_job_scheduler_now("tick")
        assert job_id is not None and queue.get_job_state(job_id) == "waiting"
