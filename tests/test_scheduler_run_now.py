"""Queue.run_job_scheduler_now: one extra job now, the schedule left as it is;
a scheduler's last runs (the jobs of its latest slots and its last run now);
ScheduleSpec.slots_before, which finds those slots."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from conveyor import Job, Queue, ValidationError
from conveyor._schedule import ScheduleSpec
from conveyor.inspection import Inspector
from conveyor.sync import Queue as SyncQueue
from helpers import StartWorker, finished, wait_for

pytestmark = pytest.mark.cluster

HOUR = 3_600_000


async def echo(job: Job) -> Any:
    return job.data


async def test_run_now_makes_one_job_a_worker_runs_and_the_schedule_stays(
    queue: Queue, start_worker: StartWorker
) -> None:
    made = await queue.upsert_job_scheduler("hourly", every=HOUR, limit=2, job_name="tick",
                                            data={"n": 1})
    job_id = await queue.run_job_scheduler_now("hourly")
    assert job_id is not None and job_id.startswith("sched-hourly-")
    start_worker(echo)
    assert await wait_for(lambda: finished(queue, job_id)) == "completed"
    job = await queue.get_job(job_id)
    assert job is not None and (job.name, job.return_value) == ("tick", {"n": 1})

    after = await queue.get_job_scheduler("hourly")
    assert after is not None
    assert (after.next_run, after.count) == (made.next_run, made.count)  # limit not spent
    pending = f"sched-hourly-{int(made.next_run.timestamp() * 1000)}"  # type: ignore[union-attr]
    assert await queue.get_job_state(pending) == "delayed"


async def test_run_now_of_a_missing_scheduler_is_none_and_a_bad_id_refused(
    queue: Queue
) -> None:
    assert await queue.run_job_scheduler_now("nope") is None
    with pytest.raises(ValidationError, match="scheduler_id"):
        await queue.run_job_scheduler_now("a:b")


async def test_last_runs_list_the_jobs_of_past_slots_and_the_run_now_job(
    queue: Queue, redis_url: str
) -> None:
    now = datetime.now(UTC)
    start = int(now.timestamp() * 1000) - 3 * HOUR  # three slots passed before now
    await queue.upsert_job_scheduler("s", every=HOUR, start_date=start, immediately=False)
    # Jobs for the past slots, as a worker's scheduler loop would have made them.
    for slot in (start + HOUR, start + 2 * HOUR):
        await queue.add("s", {}, job_id=f"sched-s-{slot}")
    manual = await queue.run_job_scheduler_now("s")

    async with Inspector(redis_url) as inspector:
        [info] = await inspector.schedulers(queue.name)
    runs = [(r.id, r.manual, r.state) for r in info.last_runs]
    assert runs == [
        (manual, True, "waiting"),
        (f"sched-s-{start + 2 * HOUR}", False, "waiting"),
        (f"sched-s-{start + HOUR}", False, "waiting"),
    ]
    assert info.to_dict()["last_runs"][0]["slot_ms"] == int(str(manual).rsplit("-", 1)[1])


@pytest.mark.cluster(False)  # no Redis involved
def test_slots_before_walk_back_from_a_time() -> None:
    every = ScheduleSpec(1000, None, "UTC", 500, None, None, "run_once")
    assert every.slots_before(4500, 3) == [3500, 2500, 1500]
    assert every.slots_before(1600, 5) == [1500, 500]  # none before start
    ends = ScheduleSpec(1000, None, "UTC", None, 2000, None, "run_once")
    assert ends.slots_before(10_000, 2) == [2000, 1000]  # none after end

    berlin = ScheduleSpec(None, "0 9 * * *", "Europe/Berlin", None, None, None, "run_once")
    at = int(datetime(2026, 7, 3, 8, 0, tzinfo=UTC).timestamp() * 1000)  # 10:00 in Berlin
    found = [datetime.fromtimestamp(ms / 1000, UTC) for ms in berlin.slots_before(at, 2)]
    assert found == [datetime(2026, 7, 3, 7, 0, tzinfo=UTC), datetime(2026, 7, 2, 7, 0, tzinfo=UTC)]
    exact = int(datetime(2026, 7, 3, 7, 0, tzinfo=UTC).timestamp() * 1000)
    assert berlin.slots_before(exact, 1) == [exact - 86_400_000]  # strictly before


@pytest.mark.cluster(False)
def test_the_sync_queue_runs_a_scheduler_now(redis_url: str, queue_name: str) -> None:
    with SyncQueue(queue_name, redis_url) as queue:
        queue.upsert_job_scheduler("daily", cron="0 3 * * *")
        job_id = queue.run_job_scheduler_now("daily")
        assert job_id is not None and queue.get_job_state(job_id) == "waiting"
