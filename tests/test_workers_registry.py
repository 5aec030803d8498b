"""The worker registry: Queue.get_workers lists the live workers of a queue."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import conveyor.workers
from conveyor import Job, Queue, ValidationError
from helpers import StartWorker, wait_for


async def idle(job: Job) -> Any:
    return None


async def worker_ids(queue: Queue) -> list[str]:
    return [w.id for w in await queue.get_workers()]


async def test_two_running_workers_are_listed_and_one_that_closes_is_dropped(
    queue: Queue, start_worker: StartWorker
) -> None:
    before = datetime.now(UTC)
    first = start_worker(idle, concurrency=3, name="first")
    await wait_for(lambda: worker_ids(queue))
    second = start_worker(idle, concurrency=7, name="second")
    await wait_for(lambda: len_is(worker_ids(queue), 2))

    workers = await queue.get_workers()
    assert [w.id for w in workers] == ["first", second.id]  # oldest first
    assert [w.concurrency for w in workers] == [3, 7]
    for info in workers:
        assert info.hostname == socket.gethostname()
        assert info.pid == os.getpid()
        assert info.running == 0 and info.running_job_ids == ()
        assert info.started_at.tzinfo is UTC
        assert before - timedelta(seconds=5) < info.started_at <= info.last_heartbeat
        assert info.last_heartbeat < datetime.now(UTC) + timedelta(seconds=5)
    assert [w.id for w in await queue.get_workers(1, 1)] == [second.id]

    await first.close()
    assert await worker_ids(queue) == [second.id]


async def len_is(ids: Any, n: int) -> bool:
    return len(await ids) == n


@pytest.fixture
def fast_heartbeat(monkeypatch: pytest.MonkeyPatch) -> None:
    """Heartbeats every 200 ms (entries then live 600 ms)."""
    monkeypatch.setattr(conveyor.workers, "HEARTBEAT_INTERVAL_MS", 200)


async def test_heartbeat_reports_the_running_jobs(
    queue: Queue, start_worker: StartWorker, fast_heartbeat: None
) -> None:
    gate = asyncio.Event()

    async def held(job: Job) -> Any:
        await gate.wait()

    worker = start_worker(held, concurrency=4)
    await wait_for(lambda: worker_ids(queue))
    [info] = await queue.get_workers()
    jobs = await queue.add_bulk([{"name": "a"}, {"name": "b"}])

    async def running_ids() -> Any:
        workers = await queue.get_workers()
        ids = {j.id for j in jobs}
        return workers[0] if workers and set(workers[0].running_job_ids) == ids else None

    later = await wait_for(running_ids)
    assert later.running == 2
    assert later.started_at == info.started_at
    assert later.last_heartbeat > info.last_heartbeat
    gate.set()
    await wait_for(lambda: worker_has_no_jobs(queue))
    await worker.close()
    assert await queue.get_workers() == []


async def worker_has_no_jobs(queue: Queue) -> bool:
    workers = await queue.get_workers()
    return bool(workers) and workers[0].running == 0


_CRASHING_WORKER = textwrap.dedent("""
    import asyncio, sys
    import conveyor.workers
    from conveyor import Worker

    conveyor.workers.HEARTBEAT_INTERVAL_MS = 200

    async def main() -> None:
        async def process(job):
            return None
        await Worker(sys.argv[2], process, connection=sys.argv[1], name="doomed").run()

    asyncio.run(main())
""")


async def test_a_worker_that_dies_drops_out_when_its_entry_expires(
    queue: Queue, redis_url: str, queue_name: str
) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _CRASHING_WORKER, redis_url, queue_name,
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        await wait_for(lambda: worker_ids(queue), timeout=20)
        [info] = await queue.get_workers()
        assert info.id == "doomed" and info.pid == proc.pid
        # Alive, it outlives its 600 ms ttl by renewing it.
        await wait_for(lambda: heartbeat_after(queue, info.last_heartbeat + timedelta(
            milliseconds=1000)), timeout=10)
        os.kill(proc.pid, signal.SIGKILL)
        await asyncio.wait_for(proc.wait(), timeout=10)
        await wait_for(lambda: no_workers(queue), timeout=10)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def heartbeat_after(queue: Queue, when: datetime) -> bool:
    workers = await queue.get_workers()
    return bool(workers) and workers[0].last_heartbeat >= when


async def no_workers(queue: Queue) -> bool:
    return await queue.get_workers() == []


async def test_workers_of_other_queues_are_not_listed(
    queue: Queue, start_worker: StartWorker, redis_url: str
) -> None:
    start_worker(idle)
    await wait_for(lambda: worker_ids(queue))
    async with Queue(queue.name + "-other", redis_url) as other:
        assert await other.get_workers() == []


@pytest.mark.parametrize(("args", "field"), [(("0",), "start"), ((0, None), "end")])
async def test_get_workers_refuses_bad_bounds(
    queue: Queue, args: tuple[Any, ...], field: str
) -> None:
    with pytest.raises(ValidationError) as info:
        await queue.get_workers(*args)
    assert info.value.field == field


async def test_a_heartbeat_of_an_idle_worker_is_one_set(
    queue: Queue, start_worker: StartWorker, redis: Any, fast_heartbeat: None
) -> None:
    drained = asyncio.Event()
    worker = start_worker(idle, stalled_interval=600_000, block_timeout=60_000)
    worker.on("drained", drained.set)
    await wait_for(drained.is_set)
    await wait_for(lambda: worker_ids(queue))

    async def calls() -> dict[str, int]:
        info = await redis.info("commandstats")
        return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in info.items()}

    before = await calls()

    async def spent() -> dict[str, int]:
        now = await calls()
        return {k: n - before.get(k, 0) for k, n in now.items() if n != before.get(k, 0)}

    await wait_for(lambda: sets_at_least(spent(), 3), timeout=10)
    delta = await spent()
    delta.pop("info", None)
    assert set(delta) <= {"set", "bzpopmin"}, delta


async def sets_at_least(spent: Any, n: int) -> bool:
    return (await spent).get("set", 0) >= n
