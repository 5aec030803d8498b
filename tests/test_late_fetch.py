"""A worker whose fetch is answered after the fetched jobs' locks lapsed (a
slow network, or a process paused with SIGSTOP: the chaos suite's zombie)
must not run them: by then the stalled-job check may have handed them to
another worker, and running them again is a duplicate no fault explains."""

from __future__ import annotations

import hashlib
import logging

import pytest
from chaos.reply_dropper import ReplyDropper

from conveyor import Job, Queue, Worker
from conveyor.scripts import source
from helpers import running, wait_for

LOCK_MS = 1000


async def test_a_fetch_answered_after_its_locks_lapsed_runs_none_of_its_jobs(
    redis_url: str, queue: Queue, caplog: pytest.LogCaptureFixture
) -> None:
    await queue.client.script_load(source("move_to_active"))
    trigger = hashlib.sha1(source("move_to_active").encode()).hexdigest().encode()
    runs: list[tuple[str, str]] = []

    def processor(tag: str) -> object:
        async def process(job: Job) -> str:
            runs.append((tag, job.id))
            return tag
        return process

    locks = {"lock_duration": LOCK_MS, "stalled_interval": 300}
    caplog.set_level(logging.WARNING, logger="conveyor.worker")
    # The late worker's first fetch is answered 3 lock durations late.
    async with ReplyDropper(redis_url, trigger, hold=3 * LOCK_MS / 1000, limit=1) as proxy:
        late = Worker(queue.name, processor("late"), connection=proxy.url, **locks)
        async with running(late):
            job = await queue.add("once")
            await wait_for(lambda: proxy.dropped == 1, message="the late worker fetched")
            assert await job.get_state() == "active"  # Redis ran the fetch
            rescuer = Worker(queue.name, processor("rescuer"), connection=redis_url, **locks)
            async with running(rescuer):
                assert await job.wait_until_finished(timeout=15) == "rescuer"
            await wait_for(lambda: proxy.held == 1, timeout=15, message="the late reply came")
            await wait_for(lambda: "past its lock: not run" in caplog.text, timeout=15,
                           message="the late worker set the stale job aside")
    assert runs == [("rescuer", job.id)]
    await job.refresh()
    assert job.return_value == "rescuer"
    assert await job.get_state() == "completed"
