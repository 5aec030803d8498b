"""Editing jobs as an operator: Queue.update_data on a job that has not started,
every attempt of a job on its timeline, and the inspection actions the REST API
and dashboard use (duplicate, cancel, bulk actions, promote all)."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest

from conveyor import Job, JobNotFoundError, JobStateError, Queue, ValidationError
from conveyor.inspection import Inspector, actions
from helpers import StartWorker, finished, queue_state_is, wait_for

pytestmark = pytest.mark.cluster  # on one server and on a Redis Cluster


@pytest.fixture
async def inspector(redis_url: str) -> AsyncIterator[Inspector]:
    async with Inspector(redis_url) as found:
        yield found


async def succeed(job: Job) -> Any:
    return job.data


# -- Queue.update_data ------------------------------------------------------------------


@pytest.mark.parametrize("options", [{}, {"delay": 60_000}, {"priority": 3}])
async def test_update_data_replaces_the_data_of_a_job_that_has_not_started(
    queue: Queue, options: dict[str, Any]
) -> None:
    job = await queue.add("report", {"v": 1}, **options)
    state = await queue.get_job_state(job.id)

    await queue.update_data(job.id, {"v": 2, "fixed": True})

    found = await queue.get_job(job.id)
    assert found is not None and found.data == {"v": 2, "fixed": True}
    assert await queue.get_job_state(job.id) == state


async def test_update_data_refuses_a_running_or_finished_job_and_keeps_its_data(
    queue: Queue, start_worker: StartWorker
) -> None:
    release = asyncio.Event()

    async def hold_the_second(job: Job) -> Any:
        if job.name == "running":
            await release.wait()

    done = await queue.add("done", {"v": 1})
    running = await queue.add("running", {"v": 1})
    start_worker(hold_the_second)
    await wait_for(lambda: finished(queue, done.id))
    await wait_for(lambda: queue_state_is(queue, running.id, "active"))
    try:
        with pytest.raises(JobStateError, match=r"job '.*' is completed; only the data of a "
                           r"job that has not started"):
            await queue.update_data(done.id, {"v": 2})
        with pytest.raises(JobStateError, match="is active"):
            await queue.update_data(running.id, [1])
    finally:
        release.set()
    await wait_for(lambda: finished(queue, running.id))
    for job in (done, running):
        assert (await queue.get_job(job.id)).data == {"v": 1}  # type: ignore[union-attr]


async def test_update_data_of_a_missing_job_or_unserializable_data_is_refused(
    queue: Queue,
) -> None:
    job = await queue.add("a", 1)
    with pytest.raises(JobNotFoundError):
        await queue.update_data("nope", 1)
    with pytest.raises(ValidationError, match="data"):
        await queue.update_data(job.id, {1, 2})
    assert (await queue.get_job(job.id)).data == 1  # type: ignore[union-attr]


# -- the whole timeline of a job ----------------------------------------------------------


async def test_the_timeline_lists_every_attempt_of_a_job_that_failed_twice_then_succeeded(
    queue: Queue, start_worker: StartWorker, inspector: Inspector
) -> None:
    async def flaky(job: Job) -> Any:
        if job.attempts_made < 2:
            raise RuntimeError(f"boom {job.attempts_made + 1}")
        return "ok"

    job = await queue.add("flaky", attempts=3)
    start_worker(flaky)
    await wait_for(lambda: finished(queue, job.id))

    detail = (await inspector.job(queue.name, job.id)).to_dict()
    attempts = detail["attempt_timeline"]
    assert [(a["attempt"], a["outcome"], a["error"]) for a in attempts] == [
        (1, "failed", "RuntimeError: boom 1"), (2, "failed", "RuntimeError: boom 2"),
        (3, "completed", None)]
    times = [t for a in attempts for t in (a["started_on_ms"], a["finished_on_ms"])]
    assert times == sorted(times) and times[0] >= detail["timestamp_ms"]
    assert attempts[-1]["finished_on_ms"] == detail["finished_on_ms"]
    assert attempts[0]["started_on"].endswith("Z")


async def test_a_running_attempt_shows_as_running_after_the_failed_ones(
    queue: Queue, start_worker: StartWorker, inspector: Inspector
) -> None:
    release = asyncio.Event()

    async def fail_then_hold(job: Job) -> Any:
        if job.attempts_made == 0:
            raise ValueError("first try")
        await release.wait()

    job = await queue.add("x", attempts=2)
    start_worker(fail_then_hold)
    try:
        await wait_for(lambda: _second_attempt_running(queue, job.id))
        attempts = (await inspector.job(queue.name, job.id)).to_dict()["attempt_timeline"]
        assert [(a["attempt"], a["outcome"], a["finished_on"]) for a in attempts][1] == (
            2, "running", None)
        assert attempts[0]["error"] == "ValueError: first try"
    finally:
        release.set()


async def _second_attempt_running(queue: Queue, job_id: str) -> bool:
    job = await queue.get_job(job_id)
    return (job is not None and job.attempts_made == 1
            and await queue.get_job_state(job_id) == "active")


async def test_a_job_that_failed_for_good_lists_its_attempts_once(
    queue: Queue, start_worker: StartWorker, inspector: Inspector
) -> None:
    async def fail(job: Job) -> Any:
        raise RuntimeError(f"no {job.attempts_made}")

    job = await queue.add("x", attempts=2)
    start_worker(fail)
    await wait_for(lambda: finished(queue, job.id))
    attempts = (await inspector.job(queue.name, job.id)).to_dict()["attempt_timeline"]
    assert [(a["attempt"], a["outcome"], a["error"]) for a in attempts] == [
        (1, "failed", "RuntimeError: no 0"), (2, "failed", "RuntimeError: no 1")]


async def test_an_attempt_whose_worker_vanished_shows_as_stalled_before_the_one_that_completed(
    queue: Queue, start_worker: StartWorker, inspector: Inspector
) -> None:
    job = await queue.add("x", attempts=2)
    # A worker that takes the job and is never heard of again: its lock lapses.
    await queue.scripts.move_to_active(1, "gone:", 1)
    assert await queue.get_job_state(job.id) == "active"

    async def requeued() -> bool:
        await queue.scripts.move_stalled_jobs(1, 1, "-1:-1")
        return await queue.get_job_state(job.id) == "waiting"

    await wait_for(requeued)
    start_worker(succeed)
    await wait_for(lambda: finished(queue, job.id))

    attempts = (await inspector.job(queue.name, job.id)).to_dict()["attempt_timeline"]
    assert [(a["attempt"], a["outcome"], a["error"]) for a in attempts] == [
        (1, "stalled", "its worker stopped renewing the lock"), (1, "completed", None)]
    assert attempts[0]["finished_on_ms"] <= attempts[1]["started_on_ms"]


async def test_a_completed_job_run_again_lists_both_completed_attempts(
    queue: Queue, start_worker: StartWorker, inspector: Inspector
) -> None:
    job = await queue.add("x", {"n": 1})
    start_worker(succeed)
    await wait_for(lambda: finished(queue, job.id))
    await queue.retry_job(job.id)
    await wait_for(lambda: finished(queue, job.id))

    attempts = (await inspector.job(queue.name, job.id)).to_dict()["attempt_timeline"]
    assert [(a["attempt"], a["outcome"], a["error"]) for a in attempts] == [
        (1, "completed", None), (2, "completed", None)]
    assert attempts[0]["finished_on_ms"] <= attempts[1]["started_on_ms"]


@pytest.mark.parametrize("garbage", [b"{not json", b"\xff\xfe", b'{"a": 1}', b'[[1, "x"]]'])
async def test_an_unreadable_attempt_history_falls_back_to_the_last_attempt(
    queue: Queue, start_worker: StartWorker, inspector: Inspector, garbage: bytes
) -> None:
    async def fail(job: Job) -> Any:
        raise RuntimeError("no")

    job = await queue.add("x")
    start_worker(fail)
    await wait_for(lambda: finished(queue, job.id))
    await queue.client.hset(queue.keys.job(job.id), "ath", garbage)

    attempts = (await inspector.job(queue.name, job.id)).to_dict()["attempt_timeline"]
    assert [(a["attempt"], a["outcome"], a["error"]) for a in attempts] == [
        (1, "failed", "RuntimeError: no")]


@pytest.mark.cluster(False)
async def test_conveyor_jobs_show_lists_every_attempt(
    queue: Queue, start_worker: StartWorker, redis_url: str
) -> None:
    async def flaky(job: Job) -> Any:
        if job.attempts_made < 2:
            raise RuntimeError(f"boom {job.attempts_made + 1}")
        return "ok"

    job = await queue.add("flaky", attempts=3)
    start_worker(flaky)
    await wait_for(lambda: finished(queue, job.id))

    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "conveyor", "jobs", "show", queue.name, job.id,
        "--redis", redis_url, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "COLUMNS": "200"})
    out, err = await process.communicate()

    assert process.returncode == 0, err.decode()
    lines = out.decode().splitlines()
    at = lines.index("attempts")
    assert [line.split()[0] for line in lines[at + 1:at + 4]] == ["#1", "#2", "#3"]
    assert lines[at + 1].endswith(": RuntimeError: boom 1")
    assert "completed in" in lines[at + 3]


# -- the inspection actions -----------------------------------------------------------------


async def test_duplicate_adds_a_job_with_the_same_name_data_and_options_that_runs_now(
    queue: Queue, inspector: Inspector
) -> None:
    original = await queue.add("mail", {"to": "a@b.c"}, delay=60_000, priority=4, attempts=5,
                               backoff={"type": "exponential", "delay": 100},
                               deduplication={"id": "k"})
    copy = await actions.duplicate(inspector, queue.name, original.id)

    assert copy.id != original.id and copy.name == "mail" and copy.data == {"to": "a@b.c"}
    assert copy.opts.to_json() == {"priority": 4, "attempts": 5,
                                   "backoff": {"type": "exponential", "delay": 100, "jitter": 0}}
    assert await queue.get_job_state(copy.id) == "prioritized"
    with pytest.raises(JobNotFoundError):
        await actions.duplicate(inspector, queue.name, "nope")


async def test_bulk_retries_the_failed_and_says_why_it_did_not_retry_the_others(
    queue: Queue, start_worker: StartWorker, inspector: Inspector
) -> None:
    async def fail(job: Job) -> Any:
        raise RuntimeError("no")

    failed = [(await queue.add("f", i)).id for i in range(3)]
    worker = start_worker(fail)
    await wait_for(lambda: all_finished(queue, failed))
    await worker.close()
    waiting = (await queue.add("w")).id

    found = await actions.bulk(inspector, queue.name, "retry", [*failed, waiting, "gone"])

    assert [(o.id, o.ok, o.state, o.code) for o in found] == [
        *[(i, True, "waiting", None) for i in failed],
        (waiting, False, "waiting", "job_state_conflict"),
        ("gone", False, None, "job_not_found")]
    assert "only failed or completed jobs retry" in (found[3].message or "")


async def all_finished(queue: Queue, ids: list[str]) -> bool:
    return all([await finished(queue, i) for i in ids])


async def test_bulk_promote_remove_and_its_refusals(queue: Queue, inspector: Inspector) -> None:
    delayed = [(await queue.add("d", delay=60_000)).id for _ in range(2)]
    plain = (await queue.add("p")).id

    promoted = await actions.bulk(inspector, queue.name, "promote", [*delayed, plain])
    assert [(o.ok, o.state) for o in promoted] == [(True, "waiting"), (True, "waiting"),
                                                   (False, "waiting")]
    removed = await actions.bulk(inspector, queue.name, "remove", [delayed[0], plain])
    assert [(o.ok, o.state) for o in removed] == [(True, None), (True, None)]
    assert await queue.get_job_counts("waiting") == {"waiting": 1}

    for bad, field in ((("retry", []), "ids"), (("retry", ["a", "a"]), "ids"),
                       (("explode", ["a"]), "action")):
        with pytest.raises(ValidationError) as refused:
            await actions.bulk(inspector, queue.name, *bad)  # type: ignore[arg-type]
        assert refused.value.field == field


async def test_promote_all_and_cancel(
    queue: Queue, start_worker: StartWorker, inspector: Inspector
) -> None:
    for _ in range(3):
        await queue.add("d", delay=60_000)
    assert await actions.promote_all(inspector, queue.name) == 3
    assert await queue.get_job_counts("delayed", "waiting") == {"delayed": 0, "waiting": 3}

    started = asyncio.Event()

    async def forever(job: Job) -> Any:
        started.set()
        await asyncio.Event().wait()

    await queue.drain()
    job = await queue.add("long")
    start_worker(forever)
    await started.wait()
    await actions.cancel(inspector, queue.name, job.id, "operator said so")
    await wait_for(lambda: finished(queue, job.id))
    found = await queue.get_job(job.id)
    assert found is not None and found.failed_reason == "cancelled: operator said so"
    with pytest.raises(JobStateError, match="already finished"):
        await actions.cancel(inspector, queue.name, job.id, "again")
