"""Worker: running processors (async and plain ``def``), concurrency and worker events."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from conveyor import Job, Queue, SyncJob, Worker
from helpers import StartWorker, finished, wait_for

# Each test runs on one Redis server and on a Redis Cluster (conftest.py).
pytestmark = pytest.mark.cluster


async def test_async_processor_return_value_is_stored(
    queue: Queue, start_worker: StartWorker
) -> None:
    async def add(job: Job) -> dict[str, Any]:
        return {"sum": job.data["a"] + job.data["b"], "name": job.name}

    start_worker(add)
    job = await queue.add("adder", {"a": 2, "b": 3})
    assert await job.wait_until_finished(timeout=10) == {"sum": 5, "name": "adder"}

    stored = await queue.get_job(job.id)
    assert stored is not None
    assert await stored.get_state() == "completed"
    assert stored.return_value == {"sum": 5, "name": "adder"}
    assert stored.attempts_made == 1
    assert stored.failed_reason is None
    assert stored.processed_on is not None and stored.finished_on is not None
    assert stored.finished_on >= stored.processed_on >= stored.timestamp
    assert stored.token is None  # the lock is gone once finished


async def test_async_processor_returning_none_completes(
    queue: Queue, start_worker: StartWorker
) -> None:
    async def nothing(job: Job) -> None:
        return None

    start_worker(nothing)
    job = await queue.add("n")
    assert await job.wait_until_finished(timeout=10) is None
    assert await job.get_state() == "completed"


async def test_sync_processor_runs_in_a_thread_and_loop_stays_responsive(
    queue: Queue, start_worker: StartWorker
) -> None:
    started = threading.Event()
    release = threading.Event()
    seen: dict[str, Any] = {}

    def double(job: SyncJob) -> int:
        seen["thread"] = threading.current_thread()
        seen["job"] = job
        started.set()
        if not release.wait(20):
            raise RuntimeError("never released")
        return int(job.data["x"]) * 2

    start_worker(double)
    try:
        job = await queue.add("double", {"x": 21})
        # Both of these run on the event loop while the processor blocks its thread.
        await wait_for(started.is_set, message="sync processor started")
        assert await queue.get_job_state(job.id) == "active"
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            for _ in range(3):
                ticks += 1
                await asyncio.sleep(0)

        await asyncio.wait_for(ticker(), 5)
        assert ticks == 3
        assert not release.is_set()
    finally:
        release.set()
    assert await job.wait_until_finished(timeout=10) == 42
    assert seen["thread"] is not threading.main_thread()
    assert seen["thread"] is not threading.current_thread()
    assert isinstance(seen["job"], SyncJob)
    assert seen["job"].id == job.id and seen["job"].data == {"x": 21}


async def test_sync_processor_can_update_progress_and_log(
    queue: Queue, start_worker: StartWorker
) -> None:
    def work(job: SyncJob) -> int:
        job.update_progress(50)
        job.log("half way")
        job.update_progress({"step": 2, "of": 2})
        lines = job.log("done")
        assert job.progress == {"step": 2, "of": 2}
        return lines

    progress: list[tuple[str, Any]] = []
    worker = start_worker(work)
    worker.on("progress", lambda job, value: progress.append((job.id, value)))
    job = await queue.add("work")
    assert await job.wait_until_finished(timeout=10) == 2
    await job.refresh()
    assert job.progress == {"step": 2, "of": 2}
    assert await job.get_logs() == ["half way", "done"]
    assert progress == [(job.id, 50), (job.id, {"step": 2, "of": 2})]


async def test_sync_processor_exception_fails_the_job(
    queue: Queue, start_worker: StartWorker
) -> None:
    def broken(job: SyncJob) -> None:
        raise KeyError("missing-thing")

    start_worker(broken)
    job = await queue.add("b")
    await wait_for(lambda: finished(queue, job.id))
    await job.refresh()
    assert await job.get_state() == "failed"
    assert job.failed_reason == "KeyError: 'missing-thing'"
    assert any("broken" in entry for entry in job.stacktrace)


@pytest.mark.parametrize("concurrency", [1, 3])
async def test_async_concurrency_runs_exactly_n_at_once(
    queue: Queue, start_worker: StartWorker, concurrency: int
) -> None:
    gate = asyncio.Event()
    full = asyncio.Event()
    current = peak = 0

    async def gated(job: Job) -> str:
        nonlocal current, peak
        current += 1
        peak = max(peak, current)
        if current == concurrency:
            full.set()
        try:
            await gate.wait()
        finally:
            current -= 1
        return job.id

    jobs = await queue.add_bulk([{"name": "g", "data": i} for i in range(concurrency * 3)])
    start_worker(gated, concurrency=concurrency)
    await wait_for(full.is_set, message=f"{concurrency} jobs running at once")
    counts = await queue.get_job_counts("active", "waiting")
    assert counts == {"active": concurrency, "waiting": concurrency * 2}
    assert peak == concurrency
    gate.set()
    for job in jobs:
        assert await job.wait_until_finished(timeout=10) == job.id
    assert peak == concurrency


async def test_sync_concurrency_uses_n_threads(
    queue: Queue, start_worker: StartWorker
) -> None:
    n = 3
    barrier = threading.Barrier(n)  # passes only if n processors block at once
    lock = threading.Lock()
    current = peak = 0
    threads: set[str] = set()

    def meet(job: SyncJob) -> int:
        nonlocal current, peak
        with lock:
            current += 1
            peak = max(peak, current)
            threads.add(threading.current_thread().name)
        try:
            return barrier.wait(timeout=20)
        finally:
            with lock:
                current -= 1

    jobs = await queue.add_bulk([{"name": "m", "data": i} for i in range(n)])
    start_worker(meet, concurrency=n)
    results = [await job.wait_until_finished(timeout=30) for job in jobs]
    assert sorted(results) == list(range(n))  # every party got a distinct arrival index
    assert peak == n
    assert len(threads) == n


async def test_worker_events_fire_with_the_right_arguments(
    queue: Queue, start_worker: StartWorker
) -> None:
    async def proc(job: Job) -> int:
        if job.data.get("fail"):
            raise ValueError("boom")
        await job.update_progress(10)
        return int(job.data["n"])

    log: dict[str, list[Any]] = {k: [] for k in ("active", "completed", "failed", "progress")}
    drained: list[str] = []

    async def on_completed(job: Job, result: Any) -> None:  # async listener
        await asyncio.sleep(0)
        log["completed"].append((job, result))

    async def on_progress(job: Job, value: Any) -> None:
        log["progress"].append((job.id, value))

    ok = await queue.add("ok", {"n": 7})
    bad = await queue.add("bad", {"fail": True})
    worker = Worker(queue.name, proc, connection=queue.client)
    worker.on("active", lambda job: log["active"].append((job.id, job.token)))
    worker.on("completed", on_completed)
    worker.on("failed", lambda job, error: log["failed"].append((job, error)))
    worker.on("progress", on_progress)
    worker.on("drained", lambda: drained.append("drained"))
    task = asyncio.create_task(worker.run())
    try:
        await wait_for(lambda: log["completed"] and log["failed"] and drained)
    finally:
        await worker.close()
        await task

    assert [job_id for job_id, _ in log["active"]] == [ok.id, bad.id]
    assert all(token for _, token in log["active"])
    [(done, result)] = log["completed"]
    assert isinstance(done, Job) and done.id == ok.id and result == 7
    assert done.attempts_made == 1
    [(failed, error)] = log["failed"]
    assert failed.id == bad.id and failed.attempts_made == 1
    assert isinstance(error, ValueError) and str(error) == "boom"
    assert log["progress"] == [(ok.id, 10)]
    assert drained == ["drained"]


async def test_failing_listener_does_not_stop_the_worker(
    queue: Queue, start_worker: StartWorker
) -> None:
    async def proc(job: Job) -> str:
        return job.name

    errors: list[BaseException] = []

    def explode(job: Job, result: Any) -> None:
        raise RuntimeError(f"listener broke on {result}")

    async def explode_async(job: Job) -> None:
        raise RuntimeError("async listener broke")

    worker = start_worker(proc)
    worker.on("completed", explode)
    worker.on("active", explode_async)
    worker.on("error", errors.append)
    first = await queue.add("first")
    assert await first.wait_until_finished(timeout=10) == "first"
    second = await queue.add("second")
    assert await second.wait_until_finished(timeout=10) == "second"
    await wait_for(lambda: len(errors) >= 4)
    messages = sorted(str(e) for e in errors)
    assert messages == [
        "async listener broke",
        "async listener broke",
        "listener broke on first",
        "listener broke on second",
    ]


async def test_unknown_event_is_refused(redis_url: str, queue_name: str) -> None:
    async def proc(job: Job) -> None:
        return None

    worker = Worker(queue_name, proc, connection=redis_url)
    with pytest.raises(ValueError, match="unknown event 'finished'"):
        worker.on("finished", print)
    await worker.close()


@pytest.mark.parametrize(
    ("value", "kind"),
    [({1, 2}, "set"), (object(), "object"), (b"raw", "bytes")],
)
async def test_non_json_return_value_fails_the_job_at_once_as_unrecoverable(
    queue: Queue, start_worker: StartWorker, value: Any, kind: str
) -> None:
    """A programming error: retrying would repeat the processor's side effects for nothing."""
    runs: list[int] = []

    async def proc(job: Job) -> Any:
        runs.append(job.attempts_made)
        return value

    start_worker(proc)
    job = await queue.add("nonjson", attempts=3)
    await wait_for(lambda: finished(queue, job.id))
    await job.refresh()
    assert await job.get_state() == "failed"
    assert job.failed_reason is not None
    assert job.failed_reason.startswith(
        "UnrecoverableError: return value does not serialize to JSON"
    )
    assert kind in job.failed_reason
    assert job.return_value is None
    assert job.attempts_made == 1
    assert runs == [0]


async def test_run_twice_is_refused(queue: Queue, start_worker: StartWorker) -> None:
    async def proc(job: Job) -> None:
        return None

    worker = start_worker(proc)
    await asyncio.sleep(0)  # let run() begin
    with pytest.raises(RuntimeError, match="already"):
        await worker.run()


@pytest.mark.parametrize("kind", ["async", "sync"])
async def test_jobs_longer_than_the_lock_keep_their_locks(
    queue: Queue, start_worker: StartWorker, kind: str
) -> None:
    """Every running job's lock is renewed: none is taken for stalled while it runs."""
    n = 3
    release = threading.Event()
    running: set[str] = set()

    async def hold_async(job: Job) -> str:
        running.add(job.id)
        await asyncio.to_thread(release.wait, 20)
        return job.id

    def hold_sync(job: SyncJob) -> str:
        running.add(job.id)
        release.wait(20)
        return job.id

    stalled: list[str] = []
    worker = start_worker(
        hold_async if kind == "async" else hold_sync,
        concurrency=n, lock_duration=400, stalled_interval=150,
    )
    worker.on("stalled", stalled.append)
    checks = 0
    real_check = worker.queue.scripts.move_stalled_jobs

    async def counted_check(*args: Any) -> Any:
        nonlocal checks
        checks += 1
        return await real_check(*args)

    worker.queue.scripts.move_stalled_jobs = counted_check  # type: ignore[method-assign]
    try:
        jobs = await queue.add_bulk([{"name": "long"} for _ in range(n)])
        await wait_for(lambda: len(running) == n)
        # Checks are at least 150 ms apart: 6 of them span more than twice the lock.
        seen = checks
        await wait_for(lambda: checks >= seen + 6, timeout=20, message="stalled checks ran")
        assert stalled == []
        assert await queue.get_job_counts("active", "waiting") == {"active": n, "waiting": 0}
    finally:
        release.set()
    for job in jobs:
        assert await job.wait_until_finished(timeout=10) == job.id
        await job.refresh()
        assert job.stalled_count == 0 and job.attempts_made == 1


async def test_delayed_jobs_of_one_add_bulk_run_in_the_order_added(
    queue: Queue, start_worker: StartWorker
) -> None:
    ran: list[int] = []

    async def record(job: Job) -> None:
        ran.append(job.data)

    jobs = await queue.add_bulk([{"name": "later", "data": i, "delay": 200} for i in range(25)])
    start_worker(record, concurrency=1)
    await jobs[-1].wait_until_finished(timeout=10)
    await wait_for(lambda: len(ran) == 25)
    assert ran == list(range(25))
