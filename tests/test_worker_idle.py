"""Worker: an idle worker blocks on Redis instead of polling, and wakes for new work.

Commands are counted with ``INFO commandstats`` on the private server; each
idle cycle of a worker is one ``BZPOPMIN`` (the block) and nothing else: a block
that times out without a wake-up marker means there is no work to look for.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.asyncio as aioredis

from conveyor import Job, Queue, Worker
from helpers import StartWorker, command_calls, queue_state_is, running, wait_for

# Each test runs on one Redis server and on a Redis Cluster (conftest.py).
pytestmark = pytest.mark.cluster


@pytest.fixture
def start_worker(start_worker: StartWorker) -> StartWorker:
    """The shared start_worker, with the stalled check pushed out of the way."""

    def start(processor: Any, **options: Any) -> Worker:
        options.setdefault("stalled_interval", 600_000)  # keep its side calls out of the counts
        return start_worker(processor, **options)

    return start


class Stats:
    """Calls per command on the server since the snapshot."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis
        self.base: dict[str, int] = {}

    async def _read(self) -> dict[str, int]:
        return await command_calls(self.redis)

    async def snapshot(self) -> None:
        self.base = await self._read()

    async def delta(self) -> dict[str, int]:
        now = await self._read()
        return {k: n - self.base.get(k, 0) for k, n in now.items() if n != self.base.get(k, 0)}

    async def calls(self, command: str) -> int:
        return (await self.delta()).get(command, 0)


async def echo(job: Job) -> Any:
    return job.data


async def test_idle_worker_blocks_instead_of_polling(
    queue: Queue, start_worker: StartWorker, redis: aioredis.Redis
) -> None:
    drained = asyncio.Event()
    worker = start_worker(echo, block_timeout=200)
    worker.on("drained", drained.set)
    await wait_for(drained.is_set)
    stats = Stats(redis)
    await stats.snapshot()

    cycles = 5  # let the block time out several times, counting it on the server
    await wait_for(lambda: stats_at_least(stats, "bzpopmin", cycles), timeout=20)
    delta = await stats.delta()
    delta.pop("info", None)  # our own reads
    blocks = delta.pop("bzpopmin")
    assert blocks >= cycles
    assert delta == {}, f"commands while idle besides the blocking wait: {delta}"


async def test_drained_fires_once_while_idle_not_every_block_cycle(
    queue: Queue, start_worker: StartWorker, redis: aioredis.Redis
) -> None:
    drained: list[int] = []
    worker = start_worker(echo, block_timeout=100)
    worker.on("drained", lambda: drained.append(1))
    await wait_for(lambda: drained)
    stats = Stats(redis)
    await stats.snapshot()
    await wait_for(lambda: stats_at_least(stats, "bzpopmin", 4), timeout=20)
    assert len(drained) == 1

    job = await queue.add("one more")
    await job.wait_until_finished(timeout=10)
    await wait_for(lambda: len(drained) == 2, message="drained again after the new job")
    await stats.snapshot()
    await wait_for(lambda: stats_at_least(stats, "bzpopmin", 3), timeout=20)
    assert len(drained) == 2


async def test_new_job_wakes_an_idle_worker_long_before_its_block_timeout(
    queue: Queue, start_worker: StartWorker, redis: aioredis.Redis
) -> None:
    drained = asyncio.Event()
    worker = start_worker(echo, block_timeout=60_000)
    worker.on("drained", drained.set)
    await wait_for(drained.is_set)
    stats = Stats(redis)
    await stats.snapshot()
    job = await queue.add("wake up", {"a": 1})
    # Well inside the 60 s block: only the marker can have woken the worker.
    await wait_for(lambda: queue_state_is(queue, job.id, "completed"), timeout=10)
    assert (await queue.get_job(job.id)).return_value == {"a": 1}  # type: ignore[union-attr]
    delta = await stats.delta()
    assert delta.get("bzpopmin", 0) <= 2  # woke once and went back to blocking


async def test_delayed_job_wakes_an_idle_worker_when_due(
    queue: Queue, start_worker: StartWorker
) -> None:
    drained = asyncio.Event()
    worker = start_worker(echo, block_timeout=60_000)
    worker.on("drained", drained.set)
    await wait_for(drained.is_set)
    job = await queue.add("later", "due", delay=300)
    assert await job.get_state() == "delayed"
    assert await job.wait_until_finished(timeout=10) == "due"
    await job.refresh()
    assert job.processed_on is not None and job.processed_on - job.timestamp >= 300


async def test_paused_queue_moves_delayed_jobs_to_waiting_when_due_and_resume_runs_them(
    queue: Queue, start_worker: StartWorker
) -> None:
    await queue.pause()
    drained = asyncio.Event()
    worker = start_worker(echo, block_timeout=60_000)
    worker.on("drained", drained.set)
    await wait_for(drained.is_set)
    job = await queue.add("later", "due", delay=1000)
    assert await job.get_state() == "delayed"

    async def waiting() -> bool:
        return await job.get_state() == "waiting"

    # Well before the block timeout, or the 60 s recheck, would make the worker look.
    await wait_for(waiting, timeout=5, message="due job moved to waiting while paused")
    assert await queue.get_job_counts("active", "completed") == {"active": 0, "completed": 0}
    await queue.resume()
    assert await job.wait_until_finished(timeout=10) == "due"


async def test_paused_queue_idle_worker_does_not_spin_and_resume_wakes_it(
    queue: Queue, start_worker: StartWorker, redis: aioredis.Redis
) -> None:
    await queue.pause()
    job = await queue.add("held")
    drained = asyncio.Event()
    worker = start_worker(echo, block_timeout=200)
    worker.on("drained", drained.set)
    await wait_for(drained.is_set)
    stats = Stats(redis)
    await stats.snapshot()
    await wait_for(lambda: stats_at_least(stats, "bzpopmin", 4), timeout=20)
    delta = await stats.delta()
    assert delta.get("evalsha", 0) <= delta["bzpopmin"] + 1
    assert await job.get_state() == "waiting"

    await queue.resume()
    assert await job.wait_until_finished(timeout=10) is None


async def test_idle_workers_share_work_added_later(
    queue: Queue, start_worker: StartWorker
) -> None:
    ran: dict[str, list[str]] = {"a": [], "b": []}
    gate = asyncio.Event()

    def processor(name: str) -> Any:
        async def proc(job: Job) -> str:
            ran[name].append(job.id)
            await gate.wait()
            return name

        return proc

    drained = [asyncio.Event(), asyncio.Event()]
    for event, name in zip(drained, ("a", "b"), strict=True):
        start_worker(processor(name), block_timeout=60_000).on("drained", event.set)
    await wait_for(lambda: all(e.is_set() for e in drained))
    jobs = await queue.add_bulk([{"name": "j"}, {"name": "j"}])
    # Each worker runs one at a time, so both must have woken to hold both jobs.
    await wait_for(lambda: len(ran["a"]) == 1 and len(ran["b"]) == 1)
    gate.set()
    assert sorted([await j.wait_until_finished(timeout=10) for j in jobs]) == ["a", "b"]


async def stats_at_least(stats: Stats, command: str, n: int) -> bool:
    return await stats.calls(command) >= n


async def test_job_added_as_the_worker_goes_idle_is_not_missed(
    queue: Queue, start_worker: StartWorker
) -> None:
    # Each job is added the moment the previous one completes, so the add often
    # lands while the worker reports that completion (the report also looks
    # for work) and its blocking wait pops the add's wake-up marker. A worker
    # that then concluded "no work" from the report would block for its whole
    # 60 s block_timeout with the job waiting.
    start_worker(echo, concurrency=10, block_timeout=60_000)
    for i in range(300):
        job = await queue.add("next", i)
        assert await job.wait_until_finished(timeout=10) == i


async def test_wake_up_taken_while_a_report_is_in_flight_is_not_lost(
    queue: Queue, start_worker: StartWorker, redis: aioredis.Redis
) -> None:
    # Force the race the test above hits by chance: the worker's report of a
    # finished job finds no more work, and before the worker handles that reply
    # a job is added and the worker's blocking wait takes its wake-up marker.
    # The stale "no work" must not send the worker back to a 60 s block.
    gate = asyncio.Event()

    async def gated(job: Job) -> Any:
        await gate.wait()
        return job.data

    first = await queue.add("first", 1)
    worker = start_worker(gated, concurrency=2, block_timeout=60_000)
    idle = asyncio.Event()
    worker.on("drained", idle.set)  # its free slot found nothing: it blocks
    report = worker.queue.scripts.move_to_finished
    raced: list[Job] = []

    async def report_then_race(*args: Any, **kwargs: Any) -> Any:
        wakeups = worker._wakeups
        reply = await report(*args, **kwargs)
        if not raced:
            raced.append(await queue.add("raced", 2))
            await wait_for(lambda: worker._wakeups > wakeups, message="the wait took the marker")
        return reply

    worker.queue.scripts.move_to_finished = report_then_race  # type: ignore[method-assign]
    await wait_for(idle.is_set)
    gate.set()
    assert await first.wait_until_finished(timeout=10) == 1
    await wait_for(lambda: raced)
    assert await raced[0].wait_until_finished(timeout=10) == 2


async def _woken_by_work(queue: Queue, worker: Worker) -> None:
    """Run one job through ``worker`` so its next waits carry a fetch with them."""
    job = await queue.add("warm-up", 0)
    assert await job.wait_until_finished(timeout=10) == 0
    # Inside a wait-and-fetch already sent (not between two of them), so a test
    # that patches the client affects the next wait only.
    await wait_for(lambda: worker._maybe_stranded, message="worker waiting again")


async def test_job_added_to_a_recently_busy_worker_starts_with_one_call(
    queue: Queue, start_worker: StartWorker, redis: aioredis.Redis
) -> None:
    worker = start_worker(echo, concurrency=5, block_timeout=60_000)
    await _woken_by_work(queue, worker)
    results: list[Any] = []
    worker.on("completed", lambda job, result: results.append(result))
    stats = Stats(redis)
    await stats.snapshot()

    for i in range(1, 11):
        await queue.add("next", i)
        await wait_for(lambda i=i: results[-1:] == [i])

    delta = await stats.delta()
    # Per job three scripts: its add, the fetch pipelined behind the wait that
    # the add woke, and the report of its result. No separate fetch.
    assert delta["evalsha"] <= 3 * 10 + 1, delta
    assert delta["bzpopmin"] >= 10


async def test_close_hands_back_a_job_taken_by_a_wait_it_cancels(
    queue: Queue, start_worker: StartWorker, redis_url: str, queue_name: str
) -> None:
    worker = start_worker(echo, concurrency=5, block_timeout=60_000)
    await _woken_by_work(queue, worker)
    await _stall_replies_of_next_wait(worker)

    job = await queue.add("taken as it stops", "x")
    # Redis ran the wait's fetch (the job is active under this worker's lock),
    # but the worker has not read the reply when it is told to stop.
    await wait_for(lambda: queue_state_is(queue, job.id, "active"))
    await worker.close()

    assert await job.get_state() == "waiting"
    await job.refresh()
    assert job.attempts_made == 0
    async with running(Worker(queue_name, echo, connection=redis_url)):
        assert await job.wait_until_finished(timeout=10) == "x"


async def _stall_replies_of_next_wait(worker: Worker) -> None:
    """Make the worker's next wait-and-fetch hang after Redis answered it."""
    client = worker.queue.client
    make_pipeline = client.pipeline
    waiting = asyncio.Event()

    def pipeline(*args: Any, **kwargs: Any) -> Any:
        pipe = make_pipeline(*args, **kwargs)
        execute = pipe.execute

        async def execute_then_hang(*a: Any, **k: Any) -> Any:
            waiting.set()
            await execute(*a, **k)
            await asyncio.Event().wait()

        pipe.execute = execute_then_hang  # type: ignore[method-assign]
        return pipe

    client.pipeline = pipeline  # type: ignore[method-assign]
    # The wait in progress was sent before the patch: wake it so the next one is patched.
    flush = await worker.queue.add("flush", "f")
    assert await flush.wait_until_finished(timeout=10) == "f"
    await wait_for(waiting.is_set, message="a patched wait-and-fetch in progress")


async def test_scripts_lost_while_waiting_are_reloaded_and_the_job_runs(
    queue: Queue, start_worker: StartWorker, redis: aioredis.Redis
) -> None:
    worker = start_worker(echo, concurrency=5, block_timeout=60_000)
    await _woken_by_work(queue, worker)
    await redis.script_flush()  # as after a restart of Redis without persistence

    job = await queue.add("after flush", "ok")
    assert await job.wait_until_finished(timeout=10) == "ok"
