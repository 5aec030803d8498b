"""dead_letter_queue=: a job that fails for good is forwarded to another queue."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from conveyor import Job, Queue, ValidationError, Worker
from helpers import StartWorker, wait_for

# Each test runs on one Redis server and on a Redis Cluster (conftest.py).
pytestmark = pytest.mark.cluster


async def test_an_exhausted_job_is_forwarded_and_handled_there(
    queue: Queue, redis_url: str, start_worker: StartWorker
) -> None:
    dead_name = f"{{{queue.name}}}dead"  # the slot of queue's keys (for a cluster)
    attempts_seen: list[int] = []

    def charge(job: Any) -> None:
        attempts_seen.append(job.attempts_made)
        raise RuntimeError("card declined")

    job = await queue.add("charge", {"order": 7}, attempts=2, dead_letter_queue=dead_name)
    start_worker(charge)
    async with Queue(dead_name, redis_url) as dead:
        await wait_for(lambda: _waiting(dead, 1))
        assert attempts_seen == [0, 1]  # forwarded only once the attempts ran out
        assert await queue.get_job_state(job.id) == "failed"  # kept in its own dead-letter set
        [forwarded] = await dead.get_jobs("waiting")
        assert forwarded.name == "charge" and forwarded.data == {"order": 7}
        assert forwarded.dead_letter_of is not None
        assert forwarded.dead_letter_of["queue"] == queue.name
        assert forwarded.dead_letter_of["id"] == job.id
        assert forwarded.dead_letter_of["failed_reason"] == "RuntimeError: card declined"
        assert forwarded.dead_letter_of["attempts_made"] == 2

        handled: list[Any] = []

        async def handle(dead_job: Job) -> None:
            handled.append((dead_job.data, dead_job.dead_letter_of))

        worker = Worker(dead_name, handle, connection=redis_url)
        task = asyncio.create_task(worker.run())
        await wait_for(lambda: len(handled) == 1)
        await worker.close()
        await task
        assert handled[0][0] == {"order": 7}


async def _waiting(queue: Queue, n: int) -> bool:
    return (await queue.get_job_counts("waiting"))["waiting"] == n


async def test_jobs_without_the_option_are_not_forwarded(
    queue: Queue, start_worker: StartWorker, redis_url: str
) -> None:
    def fail(job: Any) -> None:
        raise RuntimeError("x")

    job = await queue.add("x")
    start_worker(fail)
    await wait_for(lambda: _failed(queue, job.id))
    stream = await queue.client.xrange(queue.keys.events)
    assert not any(fields.get(b"event") == b"dead_lettered" for _, fields in stream)


async def _failed(queue: Queue, job_id: str) -> bool:
    return await queue.get_job_state(job_id) == "failed"


@pytest.mark.parametrize("name", ["", "a:b", "x{y}", 5])
async def test_a_bad_dead_letter_queue_names_the_field(queue: Queue, name: Any) -> None:
    with pytest.raises(ValidationError) as err:
        await queue.add("x", dead_letter_queue=name)
    assert err.value.field == "dead_letter_queue"
