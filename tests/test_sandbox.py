"""Sandboxed processors (``Worker(sandbox=True)``): each attempt runs in a child
process that a timeout or cancel kills, and whose crash fails only the attempt."""

from __future__ import annotations

import asyncio
import os
import pathlib
from typing import Any

import pytest

from conveyor import Job, JobFailedError, Queue, ValidationError, Worker
from helpers import StartWorker, wait_for
from sandbox_processors import app, async_report, by_name


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


async def _warm_child(queue: Queue) -> int:
    """Run one job, so the child has started (its imports do not count against a
    job's timeout then); returns the child's pid."""
    pid: int = await (await queue.add("pid")).wait_until_finished(timeout=30)
    return pid


async def _failed_reason(job: Job) -> str:
    with pytest.raises(JobFailedError) as info:
        await job.wait_until_finished(timeout=30)
    return info.value.failed_reason or ""


async def test_a_sandboxed_job_that_times_out_is_killed_before_its_side_effect(
    queue: Queue, start_worker: StartWorker, tmp_path: pathlib.Path
) -> None:
    pid_file, done_file = tmp_path / "pid", tmp_path / "done"
    start_worker(by_name, sandbox=True)
    await _warm_child(queue)
    job = await queue.add(
        "sleep-then-write",
        {"pid_file": str(pid_file), "done_file": str(done_file), "seconds": 30},
        timeout=500,
    )
    assert "timed out after 500 ms" in await _failed_reason(job)
    pid = int(pid_file.read_text())
    assert pid != os.getpid()
    await wait_for(lambda: _gone(pid), message="the child was killed")
    assert not done_file.exists()  # and a dead process writes nothing later


async def test_cancelling_a_sandboxed_job_kills_its_process(
    queue: Queue, start_worker: StartWorker, tmp_path: pathlib.Path
) -> None:
    pid_file, done_file = tmp_path / "pid", tmp_path / "done"
    start_worker(by_name, sandbox=True)
    job = await queue.add(
        "sleep-then-write",
        {"pid_file": str(pid_file), "done_file": str(done_file), "seconds": 30},
    )
    await wait_for(lambda: pid_file.exists() and pid_file.read_text())
    pid = int(pid_file.read_text())
    assert await queue.cancel(job.id, "operator said stop")
    assert await _failed_reason(job) == "cancelled: operator said stop"
    await wait_for(lambda: _gone(pid), message="the child was killed")
    assert not done_file.exists()


@pytest.mark.parametrize(
    ("crash", "reason"),
    [
        ("exit", "exited with code 3"),
        ("segfault", "was killed by SIGSEGV"),
        ("sigkill", "was killed by SIGKILL (out of memory?"),
    ],
)
async def test_a_crashed_sandboxed_process_fails_the_attempt_and_the_next_job_runs(
    queue: Queue, start_worker: StartWorker, crash: str, reason: str
) -> None:
    start_worker(by_name, sandbox=True)
    crashing = await queue.add(crash, attempts=1)
    after = await queue.add("pid")
    failed_reason = await _failed_reason(crashing)
    assert failed_reason.startswith("SandboxCrashError: the sandboxed process (pid ")
    assert reason in failed_reason
    assert await after.wait_until_finished(timeout=30) != os.getpid()


async def test_max_jobs_per_child_replaces_the_child_after_that_many_jobs(
    queue: Queue, start_worker: StartWorker
) -> None:
    start_worker(by_name, sandbox=True, max_jobs_per_child=2)
    pids = []
    for _ in range(4):  # one at a time: each job shows the child it ran in
        job = await queue.add("pid")
        pids.append(await job.wait_until_finished(timeout=30))
    assert pids[0] == pids[1] != pids[2] == pids[3]


async def test_max_memory_per_child_replaces_a_child_that_allocated_past_the_limit(
    queue: Queue, start_worker: StartWorker
) -> None:
    start_worker(by_name, sandbox=True, max_memory_per_child=200 * 1024)
    small = await (await queue.add("pid")).wait_until_finished(timeout=30)
    big = await (await queue.add("allocate", {"mib": 256})).wait_until_finished(timeout=30)
    after = await (await queue.add("pid")).wait_until_finished(timeout=30)
    assert small == big  # under the limit, the child stays
    assert after != big  # past it, the child is replaced after its job


async def test_a_big_worker_process_does_not_make_its_children_look_big(
    queue: Queue, start_worker: StartWorker
) -> None:
    # Linux keeps ru_maxrss across exec: a child would start with the peak of
    # the worker that forked it, and be retired after every job.
    hog = b"x" * (300 * 1024 * 1024)
    start_worker(by_name, sandbox=True, max_memory_per_child=200 * 1024)
    first = await (await queue.add("pid")).wait_until_finished(timeout=30)
    second = await (await queue.add("pid")).wait_until_finished(timeout=30)
    assert len(hog) and first == second


async def test_progress_logs_and_the_return_value_of_a_sandboxed_job_reach_redis(
    queue: Queue, start_worker: StartWorker
) -> None:
    seen: list[Any] = []
    worker = start_worker(by_name, sandbox=True)
    worker.on("progress", lambda job, progress: seen.append(progress))
    job = await queue.add("report")
    result = await job.wait_until_finished(timeout=30)
    assert result["answer"] == 42 and result["pid"] != os.getpid()
    await job.refresh()
    assert job.progress == {"done": 50}
    assert await job.get_logs() == [f"child {result['pid']} at work", "half way"]
    assert seen == [{"done": 50}]  # the worker's listeners hear the child's progress


async def test_an_async_def_processor_runs_in_the_sandbox_too(
    queue: Queue, start_worker: StartWorker
) -> None:
    start_worker(async_report, sandbox=True)
    job = await queue.add("report")
    result = await job.wait_until_finished(timeout=30)
    assert result["pid"] != os.getpid()
    await job.refresh()
    assert job.progress == 75
    assert await job.get_logs() == ["from an async def"]


async def test_a_processor_given_as_module_and_function_name_runs_in_the_sandbox(
    queue: Queue, start_worker: StartWorker
) -> None:
    start_worker("sandbox_processors:by_name", sandbox=True)
    job = await queue.add("pid")
    assert await job.wait_until_finished(timeout=30) != os.getpid()


async def test_an_error_raised_in_the_sandbox_keeps_its_type_and_the_childs_stack(
    queue: Queue, start_worker: StartWorker
) -> None:
    start_worker(by_name, sandbox=True)
    job = await queue.add("unrecoverable", attempts=3)
    assert await _failed_reason(job) == "UnrecoverableError: the input can never work"
    await job.refresh()
    assert job.attempts_made == 1  # UnrecoverableError: no retries
    assert "sandbox_processors.py" in job.stacktrace[0]  # where the child raised it


async def test_sandboxed_tasks_run_in_a_child_and_the_others_in_the_worker(
    redis_url: str,
) -> None:
    app.connection = redis_url
    try:
        from sandbox_processors import pid_of_async_task, pid_of_def_task, pid_of_thread_task

        run = asyncio.create_task(app.run(["sandboxed-tasks"], concurrency=2))
        jobs = [
            await pid_of_def_task.enqueue(tag="a"),
            await pid_of_async_task.enqueue(tag="b"),
            await pid_of_thread_task.enqueue(),
        ]
        by_def, by_async, by_thread = [await j.wait_until_finished(timeout=30) for j in jobs]
        assert by_def["pid"] != os.getpid() and by_async["pid"] != os.getpid()
        assert by_thread == os.getpid()
        assert await jobs[0].get_logs() == ["def task a"]
        assert await jobs[1].get_logs() == ["async task b"]
        await app.stop()
        await run
    finally:
        await app.close()


def test_a_sandboxed_processor_must_be_importable_by_name(redis_url: str) -> None:
    def local(job: Any) -> None:
        return None

    for processor in (local, lambda job: None, "sandbox_processors:no_such_function", "nocolon"):
        with pytest.raises(ValidationError) as info:
            Worker("q", processor, connection=redis_url, sandbox=True)
        assert info.value.field == "processor"


def test_child_limits_without_a_sandbox_are_refused(redis_url: str) -> None:
    with pytest.raises(ValidationError) as info:
        Worker("q", by_name, connection=redis_url, max_jobs_per_child=10)
    assert info.value.field == "max_jobs_per_child"
    with pytest.raises(ValidationError) as info:
        Worker("q", by_name, connection=redis_url, sandbox=True, max_memory_per_child=0)
    assert info.value.field == "max_memory_per_child"


async def test_close_with_a_timeout_kills_a_running_sandboxed_job_and_hands_it_back(
    queue: Queue, redis_url: str, queue_name: str, tmp_path: pathlib.Path
) -> None:
    pid_file, done_file = tmp_path / "pid", tmp_path / "done"
    worker = Worker(queue_name, by_name, connection=redis_url, sandbox=True)
    run = asyncio.create_task(worker.run())
    job = await queue.add(
        "sleep-then-write",
        {"pid_file": str(pid_file), "done_file": str(done_file), "seconds": 30},
    )
    await wait_for(lambda: pid_file.exists() and pid_file.read_text())
    pid = int(pid_file.read_text())
    await worker.close(timeout=0.2)
    await run
    assert _gone(pid)  # close() returns after the pool reaped its children
    assert not done_file.exists()
    assert await job.get_state() == "waiting"
    await job.refresh()
    assert job.attempts_made == 0


async def test_a_worker_of_the_app_with_sandbox_runs_every_task_in_a_child(
    redis_url: str,
) -> None:
    app.connection = redis_url
    try:
        from sandbox_processors import pid_of_thread_task

        worker = app.worker("sandboxed-tasks", sandbox=True, max_jobs_per_child=1)
        run = asyncio.create_task(worker.run())
        first = await (await pid_of_thread_task.enqueue()).wait_until_finished(timeout=30)
        second = await (await pid_of_thread_task.enqueue()).wait_until_finished(timeout=30)
        assert os.getpid() != first != second  # in children, one job each
        await worker.close()
        await run
    finally:
        await app.close()


def test_a_sandboxed_task_must_be_a_module_level_function() -> None:
    def local() -> None:
        return None

    with pytest.raises(ValidationError) as info:
        app.task(queue="elsewhere", sandbox=True)(local)
    assert info.value.field == "sandbox"


async def test_a_return_value_that_cannot_leave_the_child_fails_the_job_and_keeps_the_child(
    queue: Queue, start_worker: StartWorker
) -> None:
    start_worker(by_name, sandbox=True)
    pid = await _warm_child(queue)
    job = await queue.add("unpicklable", attempts=3)
    reason = await _failed_reason(job)
    assert reason.startswith("UnrecoverableError: return value does not serialize")
    await job.refresh()
    assert job.attempts_made == 1  # a programming error: no retries
    assert await _warm_child(queue) == pid  # the child is fine: it stays


async def test_a_rate_limit_raised_in_the_sandbox_hands_the_job_back_without_an_attempt(
    queue: Queue, start_worker: StartWorker, tmp_path: pathlib.Path
) -> None:
    start_worker(by_name, sandbox=True)
    job = await queue.add("rate-limited-once", {"flag": str(tmp_path / "flag")}, attempts=1)
    assert await job.wait_until_finished(timeout=30) == "ran after the limit"
    await job.refresh()
    assert job.attempts_made == 1  # the limited run did not use the only attempt
