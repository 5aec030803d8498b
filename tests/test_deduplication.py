"""Deduplication: simple (until the job finishes), throttle (ttl) and debounce
(replace the pending job and restart its delay)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.asyncio as aioredis

from conveyor import Job, Queue, ValidationError
from conveyor._stream import decode_entry
from conveyor.sync import Queue as SyncQueue
from helpers import StartWorker, wait_for

# Each test runs on one Redis server and on a Redis Cluster (conftest.py).
pytestmark = pytest.mark.cluster


async def _events(redis: aioredis.Redis, queue: Queue, name: str) -> list[dict[str, Any]]:
    found = []
    for entry_id, entry in await redis.xrange(queue.keys.events):
        found.extend(e for e in decode_entry(entry_id, entry) if e["event"] == name)
    return found


async def test_simple_keeps_one_job_until_it_finishes(
    queue: Queue, redis: aioredis.Redis, start_worker: StartWorker
) -> None:
    first = await queue.add("report", {"v": 1}, deduplication={"id": "daily-report"})
    second = await queue.add("report", {"v": 2}, deduplication={"id": "daily-report"})
    assert second.id == first.id
    assert second.data == {"v": 1}  # the job as it is: the duplicate changed nothing
    assert await queue.get_job_counts("waiting") == {"waiting": 1}
    assert await queue.get_deduplication_job_id("daily-report") == first.id
    [event] = await _events(redis, queue, "deduplicated")
    assert event["job_id"] == first.id and event["deduplication_id"] == "daily-report"

    start_worker(lambda job: job.data)
    await first.wait_until_finished(timeout=5)
    await wait_for(lambda: _key_free(queue, "daily-report"))
    third = await queue.add("report", {"v": 3}, deduplication={"id": "daily-report"})
    assert third.id != first.id


async def _key_free(queue: Queue, key: str) -> bool:
    return await queue.get_deduplication_job_id(key) is None


async def test_a_failed_job_lets_go_of_its_key(queue: Queue, start_worker: StartWorker) -> None:
    def fail(job: Any) -> None:
        raise RuntimeError("no")

    job = await queue.add("x", deduplication={"id": "k"})
    start_worker(fail)
    await wait_for(lambda: _state(queue, job.id, "failed"))
    again = await queue.add("x", deduplication={"id": "k"})
    assert again.id != job.id


async def _state(queue: Queue, job_id: str, state: str) -> bool:
    return await queue.get_job_state(job_id) == state


async def test_a_removed_job_lets_go_of_its_key(queue: Queue) -> None:
    job = await queue.add("x", deduplication={"id": "k"})
    assert await queue.remove(job.id)
    again = await queue.add("x", deduplication={"id": "k"})
    assert again.id != job.id


@pytest.mark.parametrize("spec", [{"id": "k", "ttl": 60_000}, {"id": "k", "ttl": 60_000,
                                                                "extend": True}])
async def test_a_removed_job_lets_go_of_its_key_even_with_a_ttl(
    queue: Queue, spec: dict[str, Any]
) -> None:
    job = await queue.add("x", deduplication=spec)
    assert await queue.remove(job.id)

    assert await queue.get_deduplication_job_id("k") is None
    again = await queue.add("x", deduplication=spec)
    assert again.id != job.id
    assert await queue.get_job(again.id) is not None


@pytest.mark.parametrize("ttl", [None, 60_000])
async def test_a_drained_job_does_not_hold_its_key(queue: Queue, ttl: int | None) -> None:
    job = await queue.add("x", deduplication={"id": "k", "ttl": ttl})
    assert await queue.drain() == 1

    again = await queue.add("x", deduplication={"id": "k", "ttl": ttl})

    assert again.id != job.id
    assert await queue.get_job_state(again.id) == "waiting"


async def test_throttle_ignores_duplicates_for_the_ttl_even_after_the_job_finished(
    queue: Queue, start_worker: StartWorker
) -> None:
    first = await queue.add("ping", deduplication={"id": "t", "ttl": 600})
    start_worker(lambda job: None)
    await first.wait_until_finished(timeout=5)
    assert (await queue.add("ping", deduplication={"id": "t", "ttl": 600})).id == first.id
    await wait_for(lambda: _key_free(queue, "t"), timeout=5)
    assert (await queue.add("ping", deduplication={"id": "t", "ttl": 600})).id != first.id


async def test_extend_restarts_the_ttl(queue: Queue, redis: aioredis.Redis) -> None:
    spec = {"id": "e", "ttl": 10_000, "extend": True}
    await queue.add("x", deduplication=spec)
    await redis.pexpire(queue.keys.deduplication("e"), 2_000)  # as if 8 s had passed
    await queue.add("x", deduplication=spec)
    assert await redis.pttl(queue.keys.deduplication("e")) > 9_000


async def test_without_extend_the_ttl_runs_from_the_first_add(
    queue: Queue, redis: aioredis.Redis
) -> None:
    spec = {"id": "e", "ttl": 10_000}
    await queue.add("x", deduplication=spec)
    await redis.pexpire(queue.keys.deduplication("e"), 2_000)
    await queue.add("x", deduplication=spec)
    assert await redis.pttl(queue.keys.deduplication("e")) <= 2_000


async def test_debounce_runs_once_with_the_last_data(
    queue: Queue, redis: aioredis.Redis, start_worker: StartWorker
) -> None:
    seen: list[Any] = []

    async def process(job: Job) -> None:
        seen.append(job.data)

    start_worker(process)
    spec = {"id": "search", "ttl": 400, "extend": True, "replace": True}
    jobs = []
    for query in ("c", "ca", "cat"):
        jobs.append(await queue.add("search", query, delay=400, deduplication=spec))
        await asyncio.sleep(0.1)  # typing: each keystroke comes before the delay ends
    assert len({job.id for job in jobs}) == 1
    last_add = await _redis_ms(redis)
    await jobs[0].wait_until_finished(timeout=5)
    assert seen == ["cat"]
    await jobs[0].refresh()
    assert jobs[0].processed_on is not None and jobs[0].processed_on >= last_add + 250
    replaced = [e["replaced"] for e in await _events(redis, queue, "deduplicated")]
    assert replaced == ["1", "1"]


async def _redis_ms(redis: aioredis.Redis) -> int:
    seconds, micros = await redis.time()
    return int(seconds) * 1000 + int(micros) // 1000


async def test_replace_updates_a_waiting_job_but_not_a_running_one(
    queue: Queue, start_worker: StartWorker
) -> None:
    spec = {"id": "r", "ttl": 60_000, "replace": True}
    job = await queue.add("x", 1, deduplication=spec)
    await queue.add("x", 2, deduplication=spec)
    assert (await job.refresh()).data == 2

    release = asyncio.Event()

    async def process(j: Job) -> None:
        await release.wait()

    start_worker(process)
    await wait_for(lambda: _state(queue, job.id, "active"))
    again = await queue.add("x", 3, deduplication=spec)
    assert again.id == job.id and again.data == 2  # running: left as it is
    release.set()


async def test_replace_without_ttl_debounces_until_the_job_finishes(
    queue: Queue, start_worker: StartWorker
) -> None:
    spec = {"id": "r", "replace": True}
    job = await queue.add("x", 1, delay=60_000, deduplication=spec)
    again = await queue.add("x", 2, delay=500, deduplication=spec)

    assert again.id == job.id
    await job.refresh()
    assert job.data == 2
    assert await queue.get_deduplication_job_id("r") == job.id
    start_worker(lambda j: j.data)
    assert await job.wait_until_finished(timeout=5) == 2  # the delay restarted: 0.5 s
    await wait_for(lambda: _key_free(queue, "r"))
    assert (await queue.add("x", 3, deduplication=spec)).id != job.id


async def test_duplicates_in_one_bulk_add_make_one_job(queue: Queue) -> None:
    jobs = await queue.add_bulk(
        [{"name": "n", "data": i, "deduplication": {"id": "same"}} for i in range(5)]
    )
    assert {job.id for job in jobs} == {jobs[0].id}
    assert await queue.get_job_counts("waiting") == {"waiting": 1}


def test_the_blocking_queue_deduplicates_too(redis_url: str, queue_name: str) -> None:
    with SyncQueue(queue_name, redis_url) as queue:
        first = queue.add("x", deduplication={"id": "k"})
        assert queue.add("x", deduplication={"id": "k"}).id == first.id


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ("k", "deduplication"),
        ({"ttl": 5}, "deduplication.id"),
        ({"id": ""}, "deduplication.id"),
        ({"id": "k", "ttl": 0}, "deduplication.ttl"),
        ({"id": "k", "ttl": -5}, "deduplication.ttl"),
        ({"id": "k", "extend": True}, "deduplication.ttl"),
        ({"id": "k", "extend": True, "replace": True}, "deduplication.ttl"),
        ({"id": "k", "ttl": 5, "replace": "yes"}, "deduplication.replace"),
        ({"id": "k", "window": 5}, "deduplication"),
    ],
)
async def test_bad_deduplication_names_the_field(
    queue: Queue, redis: aioredis.Redis, spec: Any, field: str
) -> None:
    with pytest.raises(ValidationError) as err:
        await queue.add("x", deduplication=spec)
    assert err.value.field == field
    assert await redis.keys(queue.keys.base + "*") == []
