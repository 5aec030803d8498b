"""A reply lost after Redis ran the command (the connection dropped on its way
back) makes redis-py send the command again: that must never duplicate work.
A proxy (reply_dropper.py) loses the reply of each call's first send."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import pytest

from conveyor import FlowProducer, Queue
from conveyor import sync as conveyor_sync
from conveyor.scripts import source
from reply_dropper import ReplyDropper


async def loaded(queue: Queue, script: str) -> bytes:
    """Load ``script`` (so that a first send runs it) and return its SHA: the
    proxy's trigger."""
    await queue.client.script_load(source(script))
    return hashlib.sha1(source(script).encode()).hexdigest().encode()


async def test_adds_whose_replies_are_lost_create_one_job_each(
    redis_url: str, queue: Queue
) -> None:
    trigger = await loaded(queue, "add_jobs")
    async with ReplyDropper(redis_url, trigger) as proxy, Queue(queue.name, proxy.url) as via:
        jobs = [await via.add("a", i) for i in range(20)]
        assert proxy.dropped == 20
    assert [job.data for job in jobs] == list(range(20))
    assert len({job.id for job in jobs}) == 20
    assert all(job.id.isdigit() for job in jobs)  # generated ids stay numbers
    stored = await queue.get_jobs("waiting", asc=True)
    assert [(job.id, job.data) for job in stored] == [(job.id, job.data) for job in jobs]


async def test_bulk_adds_whose_replies_are_lost_create_each_job_once(
    redis_url: str, queue: Queue
) -> None:
    trigger = await loaded(queue, "add_jobs")
    async with ReplyDropper(redis_url, trigger) as proxy, Queue(queue.name, proxy.url) as via:
        added = []
        for call in range(10):
            added += await via.add_bulk([{"name": "b", "data": [call, i]} for i in range(3)])
        assert proxy.dropped == 10
    assert len({job.id for job in added}) == 30
    assert await queue.get_job_counts("waiting") == {"waiting": 30}


async def test_a_bulk_add_of_several_chunks_whose_reply_is_lost_adds_each_job_once(
    redis_url: str, queue: Queue
) -> None:
    trigger = await loaded(queue, "add_jobs")
    # One drop: each of the pipeline's packets names the script.
    async with (
        ReplyDropper(redis_url, trigger, limit=1) as proxy,
        Queue(queue.name, proxy.url) as via,
    ):
        added = await via.add_bulk([{"name": "b", "data": i} for i in range(2_500)])
        assert proxy.dropped == 1
    assert len({job.id for job in added}) == 2_500
    assert await queue.get_job_counts("waiting") == {"waiting": 2_500}


async def test_a_flow_whose_reply_is_lost_is_added_once(redis_url: str, queue: Queue) -> None:
    trigger = await loaded(queue, "add_flow")
    async with (
        ReplyDropper(redis_url, trigger) as proxy,
        FlowProducer(connection=proxy.url) as producer,
    ):
        roots = [
            await producer.add({
                "name": "parent", "queue_name": queue.name, "data": i,
                "children": [{"name": "child", "queue_name": queue.name, "data": [i, c]}
                             for c in range(2)],
            })
            for i in range(5)
        ]
        assert proxy.dropped == 5
    assert len({root.job.id for root in roots}) == 5
    assert await queue.get_job_counts("waiting", "waiting-children") == {
        "waiting": 10, "waiting-children": 5,
    }


@pytest.mark.parametrize("bulk", [False, True])
async def test_sync_adds_whose_replies_are_lost_create_one_job_each(
    redis_url: str, queue: Queue, bulk: bool
) -> None:
    trigger = await loaded(queue, "add_jobs")
    async with ReplyDropper(redis_url, trigger) as proxy:

        def produce() -> list[Any]:
            with conveyor_sync.Queue(queue.name, proxy.url) as via:
                if bulk:
                    return [via.add_bulk([{"name": "s", "data": i}]) for i in range(10)]
                return [via.add("s", i) for i in range(10)]

        await asyncio.to_thread(produce)
        assert proxy.dropped == 10
    assert await queue.get_job_counts("waiting") == {"waiting": 10}
