"""Job groups: round-robin between tenants, per-group concurrency and rate limits."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from conveyor import Job, Queue, ValidationError
from helpers import StartWorker, wait_for

# Each test runs on one Redis server and on a Redis Cluster (conftest.py).
pytestmark = pytest.mark.cluster


async def _completed(queue: Queue, n: int) -> bool:
    return (await queue.get_job_counts("completed"))["completed"] == n


async def test_a_noisy_group_does_not_starve_a_quiet_one(
    queue: Queue, start_worker: StartWorker
) -> None:
    order: list[str] = []

    async def process(job: Job) -> None:
        order.append(job.opts.group or "")

    await queue.add_bulk([{"name": "sync", "group": "noisy"} for _ in range(300)])
    await queue.add_bulk([{"name": "sync", "group": "quiet"} for _ in range(3)])
    start_worker(process, concurrency=2)
    await wait_for(lambda: _completed(queue, 303), timeout=20)
    quiet_turns = [i for i, group in enumerate(order) if group == "quiet"]
    # Turns alternate: the quiet tenant's 3 jobs run among the first few, not after 300.
    assert quiet_turns and max(quiet_turns) < 12, quiet_turns


async def test_jobs_without_a_group_and_grouped_jobs_share_the_workers(
    queue: Queue, start_worker: StartWorker
) -> None:
    order: list[str] = []

    async def process(job: Job) -> None:
        order.append(job.opts.group or "-")

    await queue.add_bulk([{"name": "plain"} for _ in range(100)])
    await queue.add_bulk([{"name": "g", "group": "t1"} for _ in range(100)])
    start_worker(process, concurrency=4)
    await wait_for(lambda: _completed(queue, 200), timeout=20)
    first = order[:20]
    assert first.count("-") >= 5 and first.count("t1") >= 5, first


async def test_group_concurrency_caps_each_group(
    queue: Queue, start_worker: StartWorker
) -> None:
    running: dict[str, int] = {}
    most: dict[str, int] = {}
    most_total = 0

    async def process(job: Job) -> None:
        nonlocal most_total
        group = job.opts.group or ""
        running[group] = running.get(group, 0) + 1
        most[group] = max(most.get(group, 0), running[group])
        most_total = max(most_total, sum(running.values()))
        await asyncio.sleep(0.03)
        running[group] -= 1

    await queue.set_group_concurrency(2)
    for group in ("a", "b"):
        await queue.add_bulk([{"name": "n", "group": group} for _ in range(12)])
    start_worker(process, concurrency=10, block_timeout=60_000)
    start_worker(process, concurrency=10, block_timeout=60_000)
    await wait_for(lambda: _completed(queue, 24), timeout=20)
    assert most == {"a": 2, "b": 2}
    assert most_total == 4  # both groups ran side by side at their cap


async def test_a_group_rate_limit_holds_back_only_that_group(
    queue: Queue, start_worker: StartWorker
) -> None:
    await queue.set_group_limit(5, 1000)
    await queue.add_bulk([{"name": "n", "group": "heavy"} for _ in range(12)])
    light = await queue.add_bulk([{"name": "n", "group": "light"} for _ in range(3)])
    start_worker(lambda job: None, concurrency=10)
    await wait_for(lambda: _completed(queue, 15), timeout=15)
    jobs = await queue.get_jobs("completed")
    heavy = sorted(j.processed_on or 0 for j in jobs if j.opts.group == "heavy")
    for i in range(len(heavy) - 5):
        assert heavy[i + 5] - heavy[i] >= 1000
    light_done = [j.processed_on or 0 for j in jobs if j.id in {x.id for x in light}]
    assert max(light_done) - heavy[0] < 900  # not held back by the heavy group's limit


async def test_a_grouped_job_retries_and_delays_within_its_group(
    queue: Queue, start_worker: StartWorker
) -> None:
    tries: dict[str, int] = {}

    def process(job: Any) -> str:
        tries[job.id] = tries.get(job.id, 0) + 1
        if job.name == "r" and tries[job.id] == 1:
            raise RuntimeError("flaky")
        return job.id

    retried = await queue.add("r", group="g", attempts=2)
    delayed = await queue.add("d", group="g", delay=200)
    start_worker(process)
    assert await retried.wait_until_finished(timeout=10) == retried.id
    assert await delayed.wait_until_finished(timeout=10) == delayed.id


async def test_state_counts_and_listing_of_grouped_jobs(queue: Queue) -> None:
    a = await queue.add("x", group="tenant-1")
    await queue.add("x", group="tenant-1")
    await queue.add("x", group="tenant-2")
    await queue.add("plain")
    assert await queue.get_job_state(a.id) == "waiting"
    assert (await queue.get_job_counts("waiting"))["waiting"] == 4
    groups = {g.name: g for g in await queue.get_groups()}
    assert groups["tenant-1"].waiting == 2 and groups["tenant-1"].status == "ready"
    assert await queue.get_group_jobs("tenant-1") == [a.id, str(int(a.id) + 1)]
    assert await queue.remove(a.id)
    assert await queue.get_group_jobs("tenant-1") == [str(int(a.id) + 1)]
    assert await queue.cancel(str(int(a.id) + 1)) is True
    assert [g.name for g in await queue.get_groups()] == ["tenant-2"]


async def test_a_busy_group_frees_its_slot_when_a_job_fails_or_is_handed_back(
    queue: Queue, start_worker: StartWorker
) -> None:
    def fail(job: Any) -> None:
        raise RuntimeError("no")

    await queue.set_group_concurrency(1)
    jobs = await queue.add_bulk([{"name": "n", "group": "g"} for _ in range(3)])
    start_worker(fail, concurrency=5, block_timeout=60_000)
    for job in jobs:
        await wait_for(lambda job=job: _state_is(queue, job.id, "failed"), timeout=5)
    assert [g.active for g in await queue.get_groups()] == []


async def _state_is(queue: Queue, job_id: str, state: str) -> bool:
    return await queue.get_job_state(job_id) == state


@pytest.mark.parametrize(
    ("options", "field"),
    [({"group": "a:b"}, "group"), ({"group": ""}, "group"),
     ({"group": "a", "priority": 3}, "group")],
)
async def test_bad_group_options_name_the_field(
    queue: Queue, options: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValidationError) as err:
        await queue.add("x", **options)
    assert err.value.field == field


async def test_bad_group_limits_name_the_field(queue: Queue) -> None:
    with pytest.raises(ValidationError) as err:
        await queue.set_group_limit(0, 1000)
    assert err.value.field == "max"
    with pytest.raises(ValidationError) as err:
        await queue.set_group_concurrency(-2)
    assert err.value.field == "n"


async def test_drain_removes_grouped_jobs_too(queue: Queue) -> None:
    await queue.add_bulk([{"name": "n", "group": g} for g in ("a", "b", "a")])
    await queue.add("plain")
    assert await queue.drain() == 4
    assert (await queue.get_job_counts("waiting"))["waiting"] == 0
    assert await queue.get_groups() == []


async def test_promoting_and_retrying_in_bulk_keep_jobs_in_their_group(
    queue: Queue, start_worker: StartWorker
) -> None:
    delayed = await queue.add("d", group="g", delay=60_000)
    assert await queue.promote_jobs() == 1
    assert await queue.get_group_jobs("g") == [delayed.id]
    assert await queue.get_jobs("waiting") == []

    def fail(job: Any) -> None:
        raise RuntimeError("x")

    worker = start_worker(fail)
    await wait_for(lambda: _state_is(queue, delayed.id, "failed"))
    await worker.close()
    assert await queue.retry_jobs("failed") == 1
    assert await queue.get_group_jobs("g") == [delayed.id]
