"""A chunked add_bulk (more than BULK_CHUNK jobs, one MULTI/EXEC) and a durable
add run their scripts once: the pipeline is not sent a second time after a
good reply (a second run would find every given id taken and report the jobs
as existing ones)."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from conveyor import Queue
from conveyor._prepare import BULK_CHUNK


async def _script_calls(redis: aioredis.Redis) -> int:
    stats: dict[str, Any] = await redis.info("commandstats")
    return sum(int(stats.get(f"cmdstat_{name}", {}).get("calls", 0))
               for name in ("evalsha", "eval"))


async def test_a_chunked_add_bulk_with_given_ids_adds_each_job_once(
    redis_url: str, redis: aioredis.Redis, queue_name: str
) -> None:
    n = BULK_CHUNK + 1  # two chunks, one transaction
    async with Queue(queue_name, redis_url) as queue:
        await queue.add("warm-up")  # registered, its script loaded
        await redis.config_resetstat()
        jobs = await queue.add_bulk(
            [{"name": "x", "data": i, "job_id": f"id-{i}"} for i in range(n)])
        assert await _script_calls(redis) == 2  # one add_jobs call per chunk
        assert [job.data for job in jobs] == list(range(n))
        assert all(job.timestamp for job in jobs)  # made now, not read back as existing
        events = await redis.xrange(queue.keys.events)
        assert not [e for _, e in events if e.get(b"event") == b"duplicated"]
