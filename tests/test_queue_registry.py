"""The queue registry (``<prefix>:queues``): every queue added to or worked on is named
there, so the CLI, the REST API and the dashboard can list queues without a SCAN."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from conveyor import FlowProducer, Job, Queue
from conveyor.sync import Queue as SyncQueue
from helpers import StartWorker, wait_for


async def names(redis: aioredis.Redis, prefix: str = "conveyor") -> set[str]:
    return {m.decode() for m in await redis.smembers(f"{prefix}:queues")}


async def test_add_add_bulk_and_a_blocking_add_name_their_queue(
    redis_url: str, redis: aioredis.Redis
) -> None:
    async with Queue("emails", redis_url) as emails, Queue("reports", redis_url) as reports:
        assert await names(redis) == set()
        await emails.add("welcome")
        await reports.add_bulk([{"name": "monthly"}])
    with SyncQueue("webhooks", redis_url) as hooks:
        hooks.add("ping")
    async with Queue("other", redis_url, prefix="tenant") as other:
        await other.add("x")
    assert await names(redis) == {"emails", "reports", "webhooks"}
    assert await names(redis, "tenant") == {"other"}


async def test_a_worker_a_flow_and_a_scheduler_name_their_queues(
    redis_url: str, redis: aioredis.Redis, queue: Queue, start_worker: StartWorker
) -> None:
    async def idle(job: Job) -> Any:
        return None

    start_worker(idle)
    await wait_for(lambda: queue.get_workers())
    assert await names(redis) == {queue.name}

    async with FlowProducer(connection=redis_url) as flows:
        await flows.add({"name": "parent", "queue_name": "parents",
                         "children": [{"name": "child", "queue_name": "children"}]})
    async with Queue("nightly", redis_url) as nightly:
        await nightly.upsert_job_scheduler("report", every=60_000, job_name="report")
    assert await names(redis) == {queue.name, "parents", "children", "nightly"}
