"""A reply lost after Redis ran the command (the connection dropped on its way
back) makes redis-py send the command again: that must never duplicate work.
A proxy (reply_dropper.py) loses the reply of each call's first send."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import pytest
from chaos.reply_dropper import ReplyDropper

from conveyor import FlowProducer, Job, Queue, Worker
from conveyor import sync as conveyor_sync
from conveyor.scripts import source
from helpers import running, wait_for


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


@pytest.mark.parametrize(
    ("script", "drops"),
    [
        ("move_to_finished", {}),
        ("move_to_active", {}),
        # Every send of a call lost, redis-py's retries too: the worker sends it again.
        ("move_to_finished", {"every": 1, "limit": 8}),
        ("move_to_active", {"every": 1, "limit": 8}),
    ],
)
async def test_a_worker_whose_report_and_fetch_replies_are_lost_runs_each_job_once(
    redis_url: str,
    queue: Queue,
    caplog: pytest.LogCaptureFixture,
    script: str,
    drops: dict[str, int],
) -> None:
    """Results already recorded are not "lock lost", listeners hear of each job
    once, and jobs the lost call took are run, not left to stall."""
    trigger = await loaded(queue, script)
    await queue.add_bulk([{"name": "j", "data": i} for i in range(20)])
    runs: list[int] = []
    completed: list[str] = []

    async def proc(job: Job) -> int:
        runs.append(job.data)
        return int(job.data)

    async with ReplyDropper(redis_url, trigger, **drops) as proxy:
        worker = Worker(queue.name, proc, connection=proxy.url, concurrency=4,
                        max_stalled_count=0, lock_duration=5_000, stalled_interval=300,
                        block_timeout=200)  # a resent wait blocks again: keep it < the lock
        worker.on("completed", lambda job, result: completed.append(job.id))
        async with running(worker):
            await wait_for(lambda: finished_count(queue), timeout=20)
        assert proxy.dropped >= 1
    assert await queue.get_job_counts("completed", "failed", "active") == {
        "completed": 20, "failed": 0, "active": 0,
    }
    assert sorted(runs) == list(range(20))
    assert sorted(completed, key=int) == [str(i) for i in range(1, 21)]
    assert "lock was lost" not in caplog.text
    assert all(job.stalled_count == 0 for job in await queue.get_jobs("completed"))


async def finished_count(queue: Queue) -> bool:
    counts = await queue.get_job_counts("completed", "failed")
    return counts["completed"] + counts["failed"] == 20


async def test_an_idle_worker_whose_wait_and_fetch_replies_are_all_lost_runs_each_job_once(
    redis_url: str, queue: Queue
) -> None:
    """The fetch pipelined behind the blocking wait: when every send of it is
    lost (redis-py gave up), the worker asks again by its token."""
    trigger = await loaded(queue, "move_to_active")
    runs: list[int] = []

    async def proc(job: Job) -> None:
        runs.append(job.data)

    # Only the pipeline of a wait and a fetch (a plain wait or fetch goes through).
    pipelined = (b"BZPOPMIN", trigger)
    async with ReplyDropper(redis_url, pipelined, every=1, limit=8) as proxy:
        worker = Worker(queue.name, proc, connection=proxy.url, max_stalled_count=0,
                        lock_duration=5_000, stalled_interval=300, block_timeout=200)
        async with running(worker):
            for i in range(10):  # one at a time, each to a worker waiting for work
                await queue.add("j", i)
                await wait_for(lambda i=i: len(runs) > i, timeout=15)
        assert proxy.dropped == 8
    assert sorted(runs) == list(range(10))
    assert await queue.get_job_counts("completed", "failed") == {"completed": 10, "failed": 0}
