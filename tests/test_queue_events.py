"""QueueEvents: following a queue's capped event stream."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from conveyor import Job, Queue, QueueEvents, ValidationError, Worker
from helpers import running, wait_for

# Each test runs on one Redis server and on a Redis Cluster (conftest.py).
pytestmark = pytest.mark.cluster


@contextlib.asynccontextmanager
async def collecting(events: QueueEvents) -> AsyncIterator[list[dict[str, Any]]]:
    """Iterate ``events`` in a task; yields the list it appends to. With last_id "$",
    waits until the start position is pinned so nothing added afterwards is missed."""
    seen: list[dict[str, Any]] = []

    async def consume() -> None:
        async for event in events:
            seen.append(event)

    task = asyncio.create_task(consume())
    try:
        await wait_for(lambda: events.last_id != "$" or task.done(), message="stream pinned")
        yield seen
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        if not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]
        await events.close()


def of(seen: list[dict[str, Any]], job_id: str) -> list[dict[str, Any]]:
    return [e for e in seen if e.get("job_id") == job_id]


def names(events: list[dict[str, Any]]) -> list[str]:
    return [e["event"] for e in events]


async def process(job: Job) -> Any:
    if job.data == "fail":
        raise RuntimeError("boom")
    await job.update_progress({"pct": 50})
    return {"ok": [1, 2], "data": job.data}


async def test_lifecycle_events_of_a_completed_and_a_failed_job(
    queue: Queue, redis_url: str, queue_name: str
) -> None:
    async with collecting(QueueEvents(queue_name, redis_url, block=200)) as seen:
        ok = await queue.add("good", "x")
        bad = await queue.add("bad", "fail")
        async with running(Worker(queue_name, process, connection=redis_url)):
            await wait_for(
                lambda: {"completed", "failed"} <= {e["event"] for e in seen},
                message="completed and failed events",
            )

    assert names(of(seen, ok.id)) == ["added", "waiting", "active", "progress", "completed"]
    added, _, _, progress, completed = of(seen, ok.id)
    assert added["name"] == "good"
    assert progress["progress"] == {"pct": 50}
    assert completed["return_value"] == {"ok": [1, 2], "data": "x"}
    assert completed["attempts_made"] == 1
    assert all(isinstance(e["id"], str) and "-" in e["id"] for e in seen)
    ids = [e["id"] for e in seen]
    assert ids == sorted(ids, key=lambda i: tuple(int(p) for p in i.split("-")))

    assert names(of(seen, bad.id)) == ["added", "waiting", "active", "failed"]
    failed = of(seen, bad.id)[-1]
    assert failed["failed_reason"] == "RuntimeError: boom"
    assert failed["attempts_made"] == 1


async def test_retry_delay_and_remove_events(
    queue: Queue, redis_url: str, queue_name: str
) -> None:
    async with collecting(QueueEvents(queue_name, redis_url, block=200)) as seen:
        later = await queue.add("later", delay=60_000)
        retried = await queue.add("bad", "fail", attempts=2, backoff=1)
        async with running(Worker(queue_name, process, connection=redis_url)):
            await wait_for(lambda: "failed" in names(of(seen, retried.id)))
        await queue.remove(later.id)
        await queue.pause()
        await queue.resume()
        await wait_for(lambda: "resumed" in names(seen))

    assert names(of(seen, later.id)) == ["added", "delayed", "removed"]
    delayed = of(seen, later.id)[1]
    assert delayed["delay"] == later.timestamp + 60_000  # the due time, Redis ms

    flow = names(of(seen, retried.id))
    assert flow[:5] == ["added", "waiting", "active", "retrying", "delayed"]
    assert flow[-2:] == ["active", "failed"]
    retrying = of(seen, retried.id)[3]
    assert retrying["attempts_made"] == 1
    assert retrying["failed_reason"] == "RuntimeError: boom"
    assert retrying["delay"] == 1
    assert of(seen, retried.id)[-1]["attempts_made"] == 2

    queue_events = [e for e in seen if e["event"] in ("paused", "resumed")]
    assert names(queue_events) == ["paused", "resumed"]
    assert all(e["job_id"] == "" for e in queue_events)


async def test_dollar_starts_with_new_events_only(queue: Queue, queue_name: str,
                                                  redis_url: str) -> None:
    before = await queue.add("before")
    async with collecting(QueueEvents(queue_name, redis_url, block=200)) as seen:
        after = await queue.add("after")
        await wait_for(lambda: len(seen) >= 2)
    assert [e["job_id"] for e in seen] == [after.id, after.id]  # added, waiting
    assert before.id != after.id


async def test_replay_from_the_start(queue: Queue, queue_name: str, redis_url: str) -> None:
    jobs = [await queue.add(f"j{i}") for i in range(3)]
    async with collecting(QueueEvents(queue_name, redis_url, last_id="0", block=200)) as seen:
        await wait_for(lambda: len(seen) >= 6)
    assert [(e["event"], e["job_id"]) for e in seen] == [
        (event, j.id) for j in jobs for event in ("added", "waiting")
    ]


async def test_resume_from_an_entry_id(queue: Queue, queue_name: str, redis_url: str) -> None:
    await queue.add("a")
    async with collecting(QueueEvents(queue_name, redis_url, last_id="0", block=200)) as seen:
        await wait_for(lambda: seen)
    mark = seen[0]["id"]
    b = await queue.add("b")
    async with collecting(QueueEvents(queue_name, redis_url, last_id=mark, block=200)) as rest:
        await wait_for(lambda: len(rest) >= 2)
    assert [e["job_id"] for e in rest] == [b.id, b.id]  # added, waiting


async def test_events_with_a_shared_client(
    queue: Queue, queue_name: str, redis: aioredis.Redis
) -> None:
    events = QueueEvents(queue_name, redis, last_id="0", block=100)
    async with collecting(events) as seen:
        job = await queue.add("x")
        await wait_for(lambda: seen)
    assert seen[0]["job_id"] == job.id
    assert await redis.ping()  # a client we passed in is not closed for us


@pytest.mark.cluster(False)  # builds a client from a plain URL
async def test_events_with_a_decoding_client(queue: Queue, queue_name: str,
                                             redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    async with client, collecting(QueueEvents(queue_name, client, last_id="0", block=100)) as seen:
        job = await queue.add("x")
        await job.update_progress(7)
        await wait_for(lambda: len(seen) >= 3)
    assert names(seen) == ["added", "waiting", "progress"]
    assert seen[2]["progress"] == 7


async def test_events_as_async_context_manager(queue_name: str, redis_url: str) -> None:
    async with QueueEvents(queue_name, redis_url) as events:
        assert events.name == queue_name


def test_bad_queue_name_is_refused(redis_url: str) -> None:
    with pytest.raises(ValidationError) as info:
        QueueEvents("no:colons", redis_url)
    assert info.value.field == "name"


async def test_events_stream_is_capped(
    redis_url: str, queue_name: str, redis: aioredis.Redis
) -> None:
    async with Queue(queue_name, redis_url, events_maxlen=50) as queue:
        await queue.add_bulk([{"name": "x"}] * 500)
        for _ in range(100):
            await queue.add("y")
        length = await redis.xlen(queue.keys.events)
        # MAXLEN ~ trims whole stream nodes (100 entries by default): near the cap,
        # never below it, far below the 600 events written.
        assert 50 <= length <= 250
        assert await queue.get_job_counts("waiting") == {"waiting": 600}


async def test_events_stream_cap_applies_to_admin_calls(
    redis_url: str, queue_name: str, redis: aioredis.Redis
) -> None:
    async with Queue(queue_name, redis_url, events_maxlen=20) as queue:
        for _ in range(150):
            await queue.pause()
            await queue.resume()
        assert await redis.xlen(queue.keys.events) <= 220


async def test_cancelling_the_consumer_always_stops_it(
    queue: Queue, queue_name: str, redis_url: str
) -> None:
    """A cancel that lands while the client sends the next XREAD still stops the loop
    (on Python 3.11 redis-py's send can swallow it). Cancels at several points just
    after an event was delivered, when the next XREAD is being sent."""
    async with QueueEvents(queue_name, redis_url, last_id="0", block=100) as events:
        for i in range(12):
            got = asyncio.Event()

            async def consume(got: asyncio.Event = got) -> None:
                async for _ in events:
                    got.set()

            task = asyncio.create_task(consume())
            await queue.add(f"j{i}")
            await got.wait()
            for _ in range(i % 6):
                await asyncio.sleep(0)
            task.cancel()
            done, _ = await asyncio.wait([task], timeout=5)
            assert done, f"consumer ignored cancel() in round {i}"
            assert task.cancelled()
