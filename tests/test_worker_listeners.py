"""Worker: what ``completed`` and ``failed`` listeners receive (the finished job,
as BullMQ's listeners do), and the failures they hear of."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from conveyor import Job, Queue, UnrecoverableError
from conveyor._stream import decode_entry
from helpers import StartWorker, wait_for


async def test_completed_listeners_receive_the_job_with_its_return_value_and_finish_time(
    queue: Queue, start_worker: StartWorker
) -> None:
    async def proc(job: Job) -> dict[str, int]:
        return {"n": job.data}

    seen: list[tuple[Job, Any]] = []
    worker = start_worker(proc)
    worker.on("completed", lambda job, result: seen.append((job, result)))
    added = await queue.add("one", 7)
    await wait_for(lambda: seen)

    [(job, result)] = seen
    stored = await queue.get_job(added.id)
    assert stored is not None
    assert result == {"n": 7}
    assert job.return_value == {"n": 7}
    assert job.finished_on is not None and job.finished_on == stored.finished_on
    assert job.attempts_made == 1


async def test_failed_listeners_receive_the_job_with_its_reason_stacktrace_and_finish_time(
    queue: Queue, start_worker: StartWorker
) -> None:
    async def proc(job: Job) -> None:
        raise ValueError(f"attempt {job.attempts_made + 1}")

    seen: list[tuple[Job, str | None, list[str], int | None]] = []
    worker = start_worker(proc)
    worker.on("failed", lambda job, error: seen.append(
        (job, job.failed_reason, list(job.stacktrace), job.finished_on)
    ))
    added = await queue.add("two", attempts=2)
    await wait_for(lambda: len(seen) == 2)

    stored = await queue.get_job(added.id)
    assert stored is not None
    (_, reason1, stack1, finished1), (_, reason2, stack2, finished2) = seen
    assert reason1 == "ValueError: attempt 1"
    assert len(stack1) == 1 and "attempt 1" in stack1[0]
    assert finished1 is None  # the first failure was retried: not finished
    assert reason2 == stored.failed_reason == "ValueError: attempt 2"
    assert stack2 == stored.stacktrace and len(stack2) == 2
    assert finished2 is not None and finished2 == stored.finished_on


async def test_a_job_failed_by_the_stalled_check_emits_the_workers_failed_event(
    queue: Queue, start_worker: StartWorker
) -> None:
    added = await queue.add("cursed")
    # A worker that died holding it: taken with a lock of 1 ms, never renewed.
    await queue.scripts.move_to_active(1, "dead-worker:", 1)

    async def never(job: Job) -> None:
        raise AssertionError("a job that stalled for good must not run")

    failures: list[tuple[Job, BaseException]] = []
    worker = start_worker(never, max_stalled_count=0, stalled_interval=50)
    worker.on("failed", lambda job, error: failures.append((job, error)))
    await wait_for(lambda: failures)

    [(job, error)] = failures
    assert job.id == added.id
    assert isinstance(error, UnrecoverableError)
    assert job.failed_reason == str(error)
    assert job.failed_reason == "job stalled more than max_stalled_count (0) times"
    assert job.finished_on is not None
    assert await queue.get_job_state(added.id) == "failed"


async def test_a_large_return_value_stays_out_of_the_event_and_is_still_awaited(
    queue: Queue, start_worker: StartWorker
) -> None:
    big = "z" * 100_000

    async def proc(job: Job) -> str:
        return big

    start_worker(proc)
    job = await queue.add("big")
    assert await job.wait_until_finished(timeout=10) == big
    events = [e async for e in _events(queue)]
    [done] = [e for e in events if e["event"] == "completed"]
    assert "return_value" not in done
    assert int(done["return_value_bytes"]) == len(big) + 2


async def _events(queue: Queue) -> AsyncIterator[dict[str, Any]]:
    for entry_id, entry in await queue.client.xrange(queue.keys.events):
        for event in decode_entry(entry_id, entry):
            yield event
