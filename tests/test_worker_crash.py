"""Worker processes that die or are told to stop mid-job (see tests/worker_proc.py)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pytest
import redis.asyncio as aioredis

from conveyor import Job, Queue, Worker
from helpers import queue_state_is, wait_for
from worker_proc import command, release_key, started_key

# Short locks so a dead worker's job comes back within about a second.
LOCKS = {"lock_duration": 1000, "stalled_interval": 500}


@dataclass
class WorkerProc:
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    async def exited(self) -> int:
        """Wait for the process to exit; its return code."""
        await wait_for(lambda: self.proc.poll() is not None, timeout=20,
                       message=f"worker process {self.pid} exits")
        return self.proc.returncode


class Spawn(Protocol):
    def __call__(self, **options: Any) -> WorkerProc: ...


@pytest.fixture
def spawn(redis_url: str, queue_name: str, tmp_path: Path) -> Iterator[Spawn]:
    """spawn(**options): a worker subprocess on the test's queue, killed at teardown."""
    procs: list[WorkerProc] = []

    def start(**options: Any) -> WorkerProc:
        log = tmp_path / f"worker-{len(procs)}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                command(redis_url, queue_name, **{**LOCKS, **options}),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        procs.append(WorkerProc(proc, log))
        return procs[-1]

    try:
        yield start
    finally:
        for p in procs:
            if p.proc.poll() is None:
                p.proc.kill()
            p.proc.wait(timeout=10)


async def started(redis: aioredis.Redis, queue: Queue) -> list[str]:
    """``<pid>:<job id>`` of each job the worker processes started, in order."""
    return [e.decode() for e in await redis.lrange(started_key(queue.name), 0, -1)]


async def test_sigkill_mid_job_the_job_comes_back_and_completes(
    queue: Queue, spawn: Spawn, redis: aioredis.Redis, redis_url: str
) -> None:
    doomed = spawn()
    job = await queue.add("precious", {"n": 1}, attempts=1)
    await wait_for(lambda: started(redis, queue), message="subprocess took the job")
    assert await started(redis, queue) == [f"{doomed.pid}:{job.id}"]

    doomed.proc.send_signal(signal.SIGKILL)
    assert await doomed.exited() == -signal.SIGKILL
    assert await job.get_state() == "active"  # still held by the dead worker's lock

    stalled: list[str] = []

    async def rescue(job: Job) -> dict[str, Any]:
        return {"rescued": job.id, "data": job.data}

    rescuer = Worker(queue.name, rescue, connection=redis_url, **LOCKS)
    rescuer.on("stalled", stalled.append)
    task = asyncio.create_task(rescuer.run())
    try:
        result = await job.wait_until_finished(timeout=15)
    finally:
        await rescuer.close()
        await task
    assert result == {"rescued": job.id, "data": {"n": 1}}
    assert stalled == [job.id]
    await job.refresh()
    assert job.stalled_count == 1
    assert job.attempts_made == 1  # the crashed run did not use up the only attempt
    counts = await queue.get_job_counts()
    assert counts["completed"] == 1
    assert sum(counts.values()) == 1  # never lost, never duplicated


async def test_sigkill_mid_job_another_worker_process_takes_over(
    queue: Queue, spawn: Spawn, redis: aioredis.Redis
) -> None:
    first = spawn()
    job = await queue.add("precious")
    await wait_for(lambda: started(redis, queue))
    first.proc.send_signal(signal.SIGKILL)
    assert await first.exited() == -signal.SIGKILL

    await redis.rpush(release_key(queue.name), "go")  # the next run may finish
    second = spawn()
    assert await job.wait_until_finished(timeout=15) == {"pid": second.pid, "job": job.id}
    assert await started(redis, queue) == [f"{first.pid}:{job.id}", f"{second.pid}:{job.id}"]
    second.proc.send_signal(signal.SIGTERM)
    assert await second.exited() == 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_sigterm_mid_job_lets_the_job_finish_then_exits_0(
    queue: Queue, spawn: Spawn, redis: aioredis.Redis, sig: signal.Signals
) -> None:
    worker = spawn()
    job = await queue.add("in-flight")
    behind = await queue.add("behind")  # concurrency 1: this one waits
    await wait_for(lambda: started(redis, queue))

    worker.proc.send_signal(sig)
    await wait_for(lambda: f"{sig.name}: finishing 1 running job" in worker.output(),
                   message="worker acknowledged the signal")
    assert worker.proc.poll() is None  # still running: the job is not abandoned
    assert await job.get_state() == "active"

    await redis.rpush(release_key(queue.name), "go")
    assert await worker.exited() == 0, worker.output()
    assert await job.get_state() == "completed"
    await job.refresh()
    assert job.return_value == {"pid": worker.pid, "job": job.id}
    assert job.attempts_made == 1
    # A stopping worker takes no new job.
    assert await behind.get_state() == "waiting"
    assert await started(redis, queue) == [f"{worker.pid}:{job.id}"]
    assert "Traceback" not in worker.output()


async def test_sigterm_stops_every_worker_of_the_process(
    queue: Queue, spawn: Spawn, redis: aioredis.Redis, redis_url: str
) -> None:
    """Two workers on one event loop: the signal reaches both, each finishes its job."""
    other = Queue(f"{queue.name}-other", redis_url)
    try:
        proc = spawn(also=other.name)
        jobs = [await queue.add("first-queue"), await other.add("second-queue")]
        await wait_for(lambda: started(redis, queue))
        await wait_for(lambda: started(redis, other))
        proc.proc.send_signal(signal.SIGTERM)
        await wait_for(lambda: proc.output().count("SIGTERM: finishing 1 running job") == 2,
                       message="both workers acknowledged the signal")
        assert await queue.get_job_counts("active") == {"active": 1}
        assert await other.get_job_counts("active") == {"active": 1}
        for q in (queue, other):
            await redis.rpush(release_key(q.name), "go")
        assert await proc.exited() == 0, proc.output()
        assert [await job.get_state() for job in jobs] == ["completed", "completed"]
        assert proc.output().count("stopped") == 2
    finally:
        await other.close()


async def test_second_sigterm_hands_the_job_back_at_once(
    queue: Queue, spawn: Spawn, redis: aioredis.Redis
) -> None:
    worker = spawn()
    job = await queue.add("in-flight", attempts=2)
    await wait_for(lambda: started(redis, queue))
    worker.proc.send_signal(signal.SIGTERM)
    await wait_for(lambda: "SIGTERM: finishing" in worker.output())
    worker.proc.send_signal(signal.SIGTERM)
    assert await worker.exited() == 0, worker.output()
    assert "SIGTERM again" in worker.output()
    assert await job.get_state() == "waiting"
    await job.refresh()
    assert job.attempts_made == 0
    assert await queue.get_job_counts("failed", "active") == {"failed": 0, "active": 0}


async def test_job_stalling_more_than_max_stalled_count_fails(
    queue: Queue, spawn: Spawn, redis: aioredis.Redis, redis_url: str
) -> None:
    job = await queue.add("cursed", attempts=3)
    pids = []
    for n in (1, 2):  # two workers die holding it
        proc = spawn(max_stalled_count=1)
        pids.append(proc.pid)
        await wait_for(lambda n=n: len_is(started(redis, queue), n), timeout=15,
                       message=f"run {n} started")
        proc.proc.send_signal(signal.SIGKILL)
        assert await proc.exited() == -signal.SIGKILL
    assert await started(redis, queue) == [f"{pid}:{job.id}" for pid in pids]
    await job.refresh()
    assert job.stalled_count == 1  # the first stall was forgiven

    runs: list[str] = []
    stalled: list[str] = []

    async def never(job: Job) -> None:
        runs.append(job.id)

    checker = Worker(queue.name, never, connection=redis_url, max_stalled_count=1, **LOCKS)
    checker.on("stalled", stalled.append)
    task = asyncio.create_task(checker.run())
    try:
        await wait_for(lambda: queue_state_is(queue, job.id, "failed"), timeout=15)
    finally:
        await checker.close()
        await task
    await job.refresh()
    assert job.failed_reason is not None and "stalled" in job.failed_reason
    assert job.failed_reason == "job stalled more than max_stalled_count (1) times"
    assert job.stalled_count == 2
    assert job.attempts_made == 1
    assert runs == []  # the failed job was never handed to a processor again
    assert stalled == [job.id]
    events = [
        {k.decode(): v.decode() for k, v in raw.items()}
        for _, raw in await redis.xrange(queue.keys.events)
    ]
    assert [e["stalled_count"] for e in events if e["event"] == "stalled"] == ["1", "2"]
    assert [e["failed_reason"] for e in events if e["event"] == "failed"] == [
        job.failed_reason
    ]


async def len_is(items: Any, n: int) -> bool:
    return len(await items) == n
