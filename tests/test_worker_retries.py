"""Worker: failed attempts, backoff between retries, and jobs that fail for good."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
import redis.asyncio as aioredis

from conveyor import Job, JobFailedError, Queue, UnrecoverableError
from conveyor.keys import delayed_due
from conveyor.options import Backoff, backoff_delay
from helpers import StartWorker, finished, wait_for


async def job_events(
    redis: aioredis.Redis, queue: Queue, job_id: str
) -> list[tuple[int, dict[str, str]]]:
    """(stream entry time ms, fields) of every event of one job, oldest first."""
    events = []
    for entry_id, raw in await redis.xrange(queue.keys.events):
        fields = {k.decode(): v.decode() for k, v in raw.items()}
        if fields["job_id"] == job_id:
            events.append((int(entry_id.split(b"-")[0]), fields))
    return events


def fail_until(ok_on_attempt: int) -> Callable[[Job], Any]:
    """An async processor that raises until its ``ok_on_attempt``-th run (1-based)."""

    async def proc(job: Job) -> str:
        if job.attempts_made + 1 < ok_on_attempt:
            raise ValueError(f"attempt {job.attempts_made + 1} failed")
        return f"ok on {job.attempts_made + 1}"

    return proc


async def test_fixed_backoff_delays_between_attempts_then_completes(
    queue: Queue, start_worker: StartWorker, redis: aioredis.Redis
) -> None:
    seen: list[int] = []
    proc = fail_until(3)

    async def recording(job: Job) -> Any:
        seen.append(job.attempts_made)
        return await proc(job)

    start_worker(recording)
    job = await queue.add("flaky", attempts=3, backoff=150)
    assert await job.wait_until_finished(timeout=10) == "ok on 3"
    await job.refresh()
    assert job.attempts_made == 3
    assert seen == [0, 1, 2]
    assert len(job.stacktrace) == 2  # one per failed attempt

    events = await job_events(redis, queue, job.id)
    names = [fields["event"] for _, fields in events]
    assert names == [
        "added", "active",
        "retrying", "delayed", "waiting", "active",
        "retrying", "delayed", "waiting", "active",
        "completed",
    ]  # fmt: skip
    retrying = [(t, f) for t, f in events if f["event"] == "retrying"]
    assert [f["delay"] for _, f in retrying] == ["150", "150"]
    assert [f["attempts_made"] for _, f in retrying] == ["1", "2"]
    assert [f["failed_reason"] for _, f in retrying] == [
        "ValueError: attempt 1 failed",
        "ValueError: attempt 2 failed",
    ]
    # By Redis' clock, no retry started before its backoff ran out.
    actives = [t for t, f in events if f["event"] == "active"]
    for (failed_at, _), restarted_at in zip(retrying, actives[1:], strict=True):
        assert restarted_at - failed_at >= 150


async def test_exponential_backoff_doubles_each_time(
    queue: Queue, start_worker: StartWorker, redis: aioredis.Redis
) -> None:
    start_worker(fail_until(4))
    job = await queue.add(
        "exp", attempts=4, backoff={"type": "exponential", "delay": 100}
    )
    assert await job.wait_until_finished(timeout=10) == "ok on 4"

    events = await job_events(redis, queue, job.id)
    retrying = [(t, f) for t, f in events if f["event"] == "retrying"]
    delayed = [(t, f) for t, f in events if f["event"] == "delayed"]
    expected = [100, 200, 400]  # delay * 2 ** (n - 1)
    assert [int(f["delay"]) for _, f in retrying] == expected
    # The 'delayed' event carries the due time: due - failure time ~= delay.
    for (at, fields), delay in zip(delayed, expected, strict=True):
        assert abs(int(fields["delay"]) - at - delay) <= 5
    actives = [t for t, f in events if f["event"] == "active"]
    for (failed_at, _), restarted_at, delay in zip(retrying, actives[1:], expected, strict=True):
        assert restarted_at - failed_at >= delay


async def test_delayed_retry_is_in_the_delayed_set_while_it_waits(
    queue: Queue, start_worker: StartWorker, redis: aioredis.Redis
) -> None:
    failures: list[int] = []

    async def proc(job: Job) -> None:
        raise ValueError("nope")

    worker = start_worker(proc)
    worker.on("failed", lambda job, error: failures.append(job.attempts_made))
    # Long backoff: the job is certainly still delayed when we look.
    job = await queue.add("slow-retry", attempts=2, backoff=60_000)
    await wait_for(lambda: failures == [1])
    assert await queue.get_job_state(job.id) == "delayed"
    score = await redis.zscore(queue.keys.delayed, job.id)
    [(failed_at, _)] = [
        (t, f) for t, f in await job_events(redis, queue, job.id) if f["event"] == "retrying"
    ]
    assert score is not None and abs(delayed_due(score) - failed_at - 60_000) <= 5
    await job.refresh()
    assert job.attempts_made == 1 and job.failed_reason == "ValueError: nope"


def test_backoff_delay_without_jitter_is_exact() -> None:
    assert [backoff_delay(Backoff("fixed", 250), n) for n in (1, 2, 5)] == [250, 250, 250]
    exp = Backoff("exponential", 100)
    assert [backoff_delay(exp, n) for n in (1, 2, 3, 4, 10)] == [100, 200, 400, 800, 51_200]


def test_exponential_backoff_stops_growing_at_ten_years() -> None:
    ten_years = 3_652 * 86_400_000 + 12 * 3_600_000
    exp = Backoff("exponential", 1000)
    assert backoff_delay(exp, 100_000) == ten_years
    assert backoff_delay(Backoff("exponential", 1000, 0.5), 100_000) <= ten_years


@pytest.mark.parametrize("jitter", [0.1, 0.5, 1.0])
@pytest.mark.parametrize(("kind", "attempts_made", "full"), [
    ("fixed", 3, 1000), ("exponential", 1, 1000), ("exponential", 3, 4000),
])
def test_backoff_jitter_stays_within_bounds(
    kind: Any, attempts_made: int, full: int, jitter: float
) -> None:
    backoff = Backoff(kind, 1000, jitter)
    low = full * (1 - jitter)
    delays = [backoff_delay(backoff, attempts_made) for _ in range(500)]
    assert all(low - 1 <= d <= full for d in delays), (min(delays), max(delays))
    assert len(set(delays)) > 1  # it does vary


def test_backoff_jitter_bounds_are_reached(monkeypatch: pytest.MonkeyPatch) -> None:
    backoff = Backoff("exponential", 1000, 0.5)
    monkeypatch.setattr(random, "random", lambda: 0.0)
    assert backoff_delay(backoff, 2) == 1000  # 2000 * (1 - 0.5)
    monkeypatch.setattr(random, "random", lambda: 0.999999)
    assert 1998 <= backoff_delay(backoff, 2) <= 2000


async def test_jittered_backoff_used_by_the_worker_stays_within_bounds(
    queue: Queue, start_worker: StartWorker, redis: aioredis.Redis
) -> None:
    start_worker(fail_until(3))
    job = await queue.add(
        "jit", attempts=3, backoff={"type": "exponential", "delay": 100, "jitter": 0.5}
    )
    assert await job.wait_until_finished(timeout=10) == "ok on 3"
    retrying = [f for _, f in await job_events(redis, queue, job.id) if f["event"] == "retrying"]
    first, second = (int(f["delay"]) for f in retrying)
    assert 49 <= first <= 100
    assert 99 <= second <= 200


@pytest.mark.parametrize("job_backoff", [None, {"type": "custom"}])
async def test_custom_backoff_strategy_is_used_with_its_arguments(
    queue: Queue, start_worker: StartWorker, redis: aioredis.Redis, job_backoff: Any
) -> None:
    calls: list[tuple[int, type, str, str, int]] = []

    def strategy(attempts_made: int, error: BaseException, job: Job) -> int:
        calls.append((attempts_made, type(error), str(error), job.id, job.attempts_made))
        return 40 * attempts_made

    start_worker(fail_until(3), backoff_strategy=strategy)
    job = await queue.add("custom", attempts=3, backoff=job_backoff)
    assert await job.wait_until_finished(timeout=10) == "ok on 3"
    assert calls == [
        (1, ValueError, "attempt 1 failed", job.id, 0),
        (2, ValueError, "attempt 2 failed", job.id, 1),
    ]
    retrying = [f for _, f in await job_events(redis, queue, job.id) if f["event"] == "retrying"]
    assert [int(f["delay"]) for f in retrying] == [40, 80]


async def test_an_async_custom_backoff_strategy_is_awaited(
    queue: Queue, start_worker: StartWorker, redis: aioredis.Redis
) -> None:
    async def strategy(attempts_made: int, error: BaseException, job: Job) -> int:
        return 45 * attempts_made

    start_worker(fail_until(3), backoff_strategy=strategy)
    job = await queue.add("async-custom", attempts=3)
    assert await job.wait_until_finished(timeout=10) == "ok on 3"
    retrying = [f for _, f in await job_events(redis, queue, job.id) if f["event"] == "retrying"]
    assert [int(f["delay"]) for f in retrying] == [45, 90]


async def test_custom_backoff_strategy_may_return_a_timedelta(
    queue: Queue, start_worker: StartWorker, redis: aioredis.Redis
) -> None:
    start_worker(
        fail_until(2), backoff_strategy=lambda n, e, j: timedelta(milliseconds=30)
    )
    job = await queue.add("td", attempts=2)
    assert await job.wait_until_finished(timeout=10) == "ok on 2"
    retrying = [f for _, f in await job_events(redis, queue, job.id) if f["event"] == "retrying"]
    assert [int(f["delay"]) for f in retrying] == [30]


async def test_custom_backoff_strategy_returning_none_stops_retries(
    queue: Queue, start_worker: StartWorker
) -> None:
    runs: list[int] = []

    async def proc(job: Job) -> None:
        runs.append(job.attempts_made)
        raise ValueError("permanent")

    start_worker(proc, backoff_strategy=lambda n, e, j: None)
    job = await queue.add("none", attempts=5)
    await wait_for(lambda: finished(queue, job.id))
    await job.refresh()
    assert await job.get_state() == "failed"
    assert runs == [0]
    assert job.attempts_made == 1
    assert job.failed_reason == "ValueError: permanent"


@pytest.mark.parametrize("bad", [RuntimeError("strategy broke"), 2.5, "soon", True])
async def test_broken_custom_backoff_strategy_retries_at_once(
    queue: Queue, start_worker: StartWorker, bad: Any
) -> None:
    """A strategy that raises or returns nonsense must not strand the job in active."""

    def strategy(attempts_made: int, error: BaseException, job: Job) -> Any:
        if isinstance(bad, BaseException):
            raise bad
        return bad

    start_worker(fail_until(2), backoff_strategy=strategy)
    job = await queue.add("broken-strategy", attempts=2)
    assert await job.wait_until_finished(timeout=10) == "ok on 2"
    await job.refresh()
    assert job.attempts_made == 2


@pytest.mark.parametrize("stop", [-1, timedelta(milliseconds=-5)])
async def test_custom_backoff_strategy_returning_a_negative_delay_stops_retries(
    queue: Queue, start_worker: StartWorker, stop: Any
) -> None:
    start_worker(fail_until(2), backoff_strategy=lambda n, e, j: stop)
    job = await queue.add("negative", attempts=3)
    with pytest.raises(JobFailedError, match="attempt 1 failed"):
        await job.wait_until_finished(timeout=10)
    await job.refresh()
    assert job.attempts_made == 1


async def test_job_backoff_wins_over_the_worker_strategy(
    queue: Queue, start_worker: StartWorker, redis: aioredis.Redis
) -> None:
    calls: list[int] = []

    def strategy(n: int, error: BaseException, job: Job) -> int:
        calls.append(n)
        return 5

    start_worker(fail_until(2), backoff_strategy=strategy)
    job = await queue.add("fixed", attempts=2, backoff=70)
    assert await job.wait_until_finished(timeout=10) == "ok on 2"
    retrying = [f for _, f in await job_events(redis, queue, job.id) if f["event"] == "retrying"]
    assert [int(f["delay"]) for f in retrying] == [70]
    assert calls == []


async def test_unrecoverable_error_fails_at_once(
    queue: Queue, start_worker: StartWorker, redis: aioredis.Redis
) -> None:
    runs: list[int] = []

    async def proc(job: Job) -> None:
        runs.append(job.attempts_made)
        raise UnrecoverableError("card declined")

    start_worker(proc)
    job = await queue.add("pay", attempts=5, backoff=10)
    with pytest.raises(JobFailedError) as info:
        await job.wait_until_finished(timeout=10)
    assert info.value.failed_reason == "UnrecoverableError: card declined"
    await job.refresh()
    assert await job.get_state() == "failed"
    assert runs == [0]
    assert job.attempts_made == 1
    names = [f["event"] for _, f in await job_events(redis, queue, job.id)]
    assert "retrying" not in names and names[-1] == "failed"


async def test_exhausted_job_lands_in_failed_with_reason_and_stacktraces(
    queue: Queue, start_worker: StartWorker, redis: aioredis.Redis
) -> None:
    async def always_broken(job: Job) -> None:
        raise ValueError(f"bad input #{job.attempts_made + 1}")

    failed_events: list[tuple[int, str]] = []
    worker = start_worker(always_broken)
    worker.on("failed", lambda job, error: failed_events.append((job.attempts_made, str(error))))
    job = await queue.add("doomed", attempts=2)
    with pytest.raises(JobFailedError) as info:
        await job.wait_until_finished(timeout=10)
    assert info.value.failed_reason == "ValueError: bad input #2"

    await job.refresh()
    assert await job.get_state() == "failed"
    assert await redis.zscore(queue.keys.failed, job.id) is not None
    assert job.failed_reason == "ValueError: bad input #2"
    assert job.attempts_made == 2
    assert job.finished_on is not None
    assert isinstance(job.stacktrace, list) and len(job.stacktrace) == 2
    for n, trace in enumerate(job.stacktrace, start=1):
        assert isinstance(trace, str)
        assert trace.startswith("Traceback (most recent call last):")
        assert "in always_broken" in trace
        assert trace.rstrip().endswith(f"ValueError: bad input #{n}")
    assert failed_events == [(1, "bad input #1"), (2, "bad input #2")]
    assert await queue.get_job_counts("failed", "waiting", "delayed", "active") == {
        "failed": 1, "waiting": 0, "delayed": 0, "active": 0,
    }  # fmt: skip
