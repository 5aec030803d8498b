"""The task API: tasks, typed enqueue, options, schedules, the worker side."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import redis.asyncio as aioredis

from conveyor import ValidationError, Worker
from conveyor.app import Conveyor, TaskArgumentsError, current_job, current_sync_job
from conveyor.inspection import Inspector
from helpers import finished, wait_for, workers_running
from redis_server import RedisServer

# Each test runs on one Redis server and on a Redis Cluster (conftest.py).
pytestmark = pytest.mark.cluster

RunWorker = Callable[..., Worker]


@pytest.fixture
async def app(redis_url: str) -> AsyncIterator[Conveyor]:
    async with Conveyor(redis_url) as app:
        yield app


@pytest.fixture
async def run_worker(app: Conveyor) -> AsyncIterator[RunWorker]:
    """run_worker(queue, **options): a running worker of the app's queue."""

    def make(queue: str, **options: Any) -> Worker:
        return app.worker(queue, **{"handle_signals": False, **options})

    async with workers_running(make) as start:
        yield start


async def job_keys(redis: aioredis.Redis) -> list[bytes]:
    return [key async for key in redis.scan_iter("*")]


# -- enqueue and run ------------------------------------------------------------


async def test_enqueue_stores_the_bound_arguments_and_a_worker_runs_the_function(
    app: Conveyor, run_worker: RunWorker, queue_name: str
) -> None:
    calls: list[tuple[str, str, bool]] = []

    @app.task(queue=queue_name, attempts=3)
    async def send_email(to: str, subject: str, urgent: bool = False) -> dict[str, str]:
        calls.append((to, subject, urgent))
        return {"sent": to}

    job = await send_email.enqueue("ada@example.com", subject="Hi")

    assert job.name == "send_email"
    assert job.data == {"to": "ada@example.com", "subject": "Hi"}  # defaults stay out
    assert job.opts.attempts == 3
    run_worker(queue_name)
    assert await job.wait_until_finished(timeout=10) == {"sent": "ada@example.com"}
    assert calls == [("ada@example.com", "Hi", False)]


async def test_a_task_is_still_a_plain_function(app: Conveyor) -> None:
    @app.task
    async def add(a: int, b: int) -> int:
        return a + b

    @app.task
    def mul(a: int, b: int) -> int:
        """Multiplies."""
        return a * b

    assert await add(2, 3) == 5
    assert mul(2, 3) == 6
    assert mul.__name__ == "mul" and mul.__doc__ == "Multiplies."
    assert add.queue == "default" and mul.name == "mul"


async def test_plain_def_tasks_run_in_worker_threads_with_a_blocking_job(
    app: Conveyor, run_worker: RunWorker, queue_name: str
) -> None:
    @app.task(queue=queue_name)
    def resize(path: str, width: int) -> dict[str, Any]:
        job = current_sync_job()
        job.update_progress(50)
        job.log(f"resizing {path}")
        return {"thread": threading.current_thread().name, "width": width}

    run_worker(queue_name, concurrency=2)
    job = await resize.enqueue("a.png", 300)

    result = await job.wait_until_finished(timeout=10)
    assert result["width"] == 300
    assert result["thread"].startswith("conveyor")
    assert result["thread"] != threading.current_thread().name
    await job.refresh()
    assert job.progress == 50
    assert await job.get_logs() == ["resizing a.png"]


async def test_current_job_inside_an_async_task(
    app: Conveyor, run_worker: RunWorker, queue_name: str
) -> None:
    @app.task(queue=queue_name)
    async def report(kind: str) -> str:
        job = current_job()
        await job.update_progress({"step": kind})
        return job.id

    run_worker(queue_name)
    job = await report.enqueue(kind="daily")
    assert await job.wait_until_finished(timeout=10) == job.id
    assert (await job.refresh()).progress == {"step": "daily"}
    with pytest.raises(RuntimeError, match="only available inside"):
        current_job()


async def test_tasks_of_one_queue_share_a_worker_and_are_told_apart_by_name(
    app: Conveyor, run_worker: RunWorker, queue_name: str
) -> None:
    @app.task(queue=queue_name)
    async def first() -> str:
        return "first"

    @app.task(queue=queue_name, name="second-task")
    def second() -> str:
        return "second"

    run_worker(queue_name, concurrency=4)
    a, b = await first.enqueue(), await second.enqueue()
    assert b.name == "second-task"
    assert await a.wait_until_finished(timeout=10) == "first"
    assert await b.wait_until_finished(timeout=10) == "second"


async def test_with_options_applies_to_one_enqueue_only(
    app: Conveyor, queue_name: str
) -> None:
    @app.task(queue=queue_name, priority=5)
    async def report(kind: str) -> None:
        return None

    delayed = await report.with_options(delay=60_000, job_id="daily-1").enqueue("daily")
    plain = await report.enqueue("weekly")

    queue = app.queue(queue_name)
    assert delayed.id == "daily-1"
    assert await queue.get_job_state("daily-1") == "delayed"
    assert delayed.opts.priority == 5  # the task's own options still apply
    assert await queue.get_job_state(plain.id) == "prioritized"
    assert plain.opts.delay == 0
    chained = report.with_options(priority=1).with_options(lifo=False)
    assert chained.options == {"priority": 1, "lifo": False}


async def test_a_task_with_an_empty_job_id_gets_a_generated_one(
    app: Conveyor, queue_name: str
) -> None:
    @app.task(queue=queue_name, job_id="")
    async def report(kind: str) -> None:
        return None

    first = await report.enqueue("daily")
    second = await report.with_options(job_id="").enqueue("weekly")
    assert first.id and second.id and first.id != second.id
    assert await app.queue(queue_name).get_job_counts("waiting") == {"waiting": 2}


async def test_enqueue_sync_from_synchronous_code(
    app: Conveyor, run_worker: RunWorker, queue_name: str
) -> None:
    @app.task(queue=queue_name)
    async def send_email(to: str) -> str:
        return to

    def django_view() -> str:
        job = send_email.enqueue_sync(to="ada@example.com")
        return job.id

    run_worker(queue_name)
    job_id = await asyncio.to_thread(django_view)
    job = await app.queue(queue_name).get_job(job_id)
    assert job is not None and job.data == {"to": "ada@example.com"}
    assert await job.wait_until_finished(timeout=10) == "ada@example.com"


async def test_an_app_on_a_client_of_its_own(redis: aioredis.Redis, queue_name: str) -> None:
    app = Conveyor(connection=redis)

    @app.task(queue=queue_name)
    async def ping() -> str:
        return "pong"

    job = await ping.enqueue()
    assert await app.queue(queue_name).get_job_state(job.id) == "waiting"
    await app.close()
    assert await redis.ping()  # the caller's client stays open
    with pytest.raises(ValidationError, match="enqueue_sync needs"):
        ping.enqueue_sync()


# -- refused before anything is written -------------------------------------------


async def test_arguments_that_do_not_fit_are_refused_before_redis_is_touched(
    app: Conveyor, redis: aioredis.Redis, queue_name: str
) -> None:
    @app.task(queue=queue_name)
    async def send_email(to: str, subject: str) -> None:
        return None

    enqueue: Any = send_email.enqueue  # the calls below are wrong on purpose
    with pytest.raises(TaskArgumentsError, match=r"send_email\(\) missing a required") as bad:
        await enqueue(to="a@b.c")
    assert bad.value.field == "subject"
    with pytest.raises(TypeError, match="unexpected keyword argument 'cc'"):
        await enqueue(to="a@b.c", subject="Hi", cc="x")
    with pytest.raises(TypeError, match="too many positional") as bad:
        await enqueue("a", "b", "c")
    assert bad.value.field == "arguments"  # type: ignore[attr-defined]
    with pytest.raises(ValidationError) as refused:
        await enqueue(to={1, 2}, subject="Hi")  # a set is no JSON
    assert refused.value.field == "to"
    with pytest.raises(ValidationError) as refused:
        await send_email.with_options(delay=-1).enqueue("a", "b")
    assert refused.value.field == "delay"
    with pytest.raises(ValidationError) as refused:
        send_email.with_options(**{"retries": 3})  # type: ignore[typeddict-unknown-key]
    assert refused.value.field == "retries"
    assert await job_keys(redis) == []


def test_task_definitions_are_checked_when_registered(app: Conveyor) -> None:
    options: Any = {"retries": 3}
    with pytest.raises(ValidationError) as refused:
        app.task(queue="email", **options)
    assert refused.value.field == "retries"
    assert "unknown task option" in str(refused.value)
    with pytest.raises(ValidationError) as refused:
        app.task(queue="bad:name")
    assert refused.value.field == "queue"
    with pytest.raises(ValidationError) as refused:
        app.task(attempts=0)
    assert refused.value.field == "attempts"

    def positional(a: int, /) -> None: ...

    def star(*args: int) -> None: ...

    for fn in (positional, star):
        with pytest.raises(ValidationError, match="stored by name"):
            app.task(fn)

    @app.task(queue="email")
    def send() -> None: ...

    with pytest.raises(ValidationError, match="already registered"):
        app.task(queue="email", name="send")(lambda: None)
    app.task(queue="other", name="send")(lambda: None)  # another queue: fine


def test_keyword_arguments_of_a_var_keyword_task_are_flattened(app: Conveyor) -> None:
    @app.task
    def notify(user: str, **extra: str) -> None: ...

    assert notify.arguments("ada", channel="sms") == {"user": "ada", "channel": "sms"}
    with pytest.raises(TaskArgumentsError, match="reserved"):
        notify.arguments("ada", **{"$trace": "x"})


# -- the worker side of bad jobs ----------------------------------------------------


async def test_a_job_no_task_knows_fails_at_once_with_a_clear_reason(
    app: Conveyor, run_worker: RunWorker, queue_name: str
) -> None:
    @app.task(queue=queue_name)
    async def known(n: int) -> int:
        return n

    run_worker(queue_name)
    queue = app.queue(queue_name)
    stranger = await queue.add("unknown", {"n": 1}, attempts=3)
    misfit = await queue.add("known", {"m": 1}, attempts=3)
    not_kwargs = await queue.add("known", [1], attempts=3)

    for job in (stranger, misfit, not_kwargs):
        assert await wait_for(lambda job=job: finished(queue, job.id)) == "failed"
    stranger, misfit, not_kwargs = [await job.refresh() for job in (stranger, misfit, not_kwargs)]
    assert stranger.failed_reason == (
        f"UnrecoverableError: no task named 'unknown' on queue {queue_name!r} "
        "(its tasks: known)"
    )
    assert stranger.attempts_made == 1  # no retries: it can never succeed here
    assert misfit.failed_reason is not None
    assert "arguments do not fit known()" in misfit.failed_reason
    assert "missing a required argument: 'n'" in misfit.failed_reason
    assert not_kwargs.failed_reason is not None
    assert "JSON object of keyword arguments" in not_kwargs.failed_reason


async def test_a_failing_task_is_retried_with_the_task_options(
    app: Conveyor, run_worker: RunWorker, queue_name: str
) -> None:
    runs: list[int] = []

    @app.task(queue=queue_name, attempts=2)
    async def flaky() -> str:
        runs.append(current_job().attempts_made)
        if len(runs) == 1:
            raise RuntimeError("first try fails")
        return "ok"

    run_worker(queue_name)
    job = await flaky.enqueue()
    assert await job.wait_until_finished(timeout=10) == "ok"
    assert runs == [0, 1]


# -- schedules ------------------------------------------------------------------------


async def test_every_on_a_task_is_upserted_when_its_worker_starts_and_runs(
    app: Conveyor, run_worker: RunWorker, queue_name: str
) -> None:
    ticks: list[str] = []

    @app.every(timedelta(milliseconds=300), kwargs={"label": "tick"}, attempts=2)
    @app.task(queue=queue_name, priority=3)
    async def heartbeat(label: str) -> None:
        ticks.append(label)

    queue = app.queue(queue_name)
    assert await queue.get_job_schedulers() == []  # nothing before a worker starts
    run_worker(queue_name)

    await wait_for(lambda: len(ticks) >= 2, timeout=15)
    [scheduler] = await queue.get_job_schedulers()
    assert scheduler.id == "heartbeat"
    assert scheduler.job_name == "heartbeat" and scheduler.every == 300
    assert scheduler.data == {"label": "tick"}
    assert scheduler.opts.attempts == 2 and scheduler.opts.priority == 3


async def test_cron_uses_the_task_queue_and_name(app: Conveyor, queue_name: str) -> None:
    @app.cron("0 9 * * *", tz="Europe/Berlin")
    @app.task(queue=queue_name)
    async def daily_report() -> None:
        return None

    @app.cron("30 7 * * MON", queue=queue_name, scheduler_id="weekly", kwargs={"n": 7})
    def plain_function(n: int) -> int:
        return n

    upserted = await app.upsert_schedulers()
    assert sorted(s.id for s in upserted) == ["daily_report", "weekly"]
    queue = app.queue(queue_name)
    daily = await queue.get_job_scheduler("daily_report")
    assert daily is not None and daily.cron == "0 9 * * *" and daily.tz == "Europe/Berlin"
    assert daily.next_run is not None
    assert daily.next_run.astimezone(ZoneInfo("Europe/Berlin")).hour == 9
    weekly = await queue.get_job_scheduler("weekly")
    assert weekly is not None and weekly.job_name == "plain_function"
    assert weekly.data == {"n": 7}
    assert app.get_task(queue_name, "plain_function") is plain_function
    # Upserting again at the next start does not double anything.
    await app.upsert_schedulers([queue_name])
    assert len(await queue.get_job_schedulers()) == 2


def test_schedules_are_checked_when_declared(app: Conveyor) -> None:
    @app.task(queue="reports")
    async def report(kind: str) -> None:
        return None

    with pytest.raises(ValidationError) as refused:
        app.cron("61 * * * *")(report)
    assert refused.value.field == "cron"
    with pytest.raises(ValidationError) as refused:
        app.cron("0 9 * * *", tz="Mars/Olympus")(report)
    assert refused.value.field == "tz"
    with pytest.raises(ValidationError) as refused:
        app.cron("0 9 * * *", queue="email", kwargs={"kind": "x"})(report)
    assert refused.value.field == "queue"
    with pytest.raises(TaskArgumentsError, match="missing a required argument: 'kind'"):
        app.cron("0 9 * * *")(report)
    with pytest.raises(ValidationError) as refused:
        app.every(0, kwargs={"kind": "x"})(report)
    assert refused.value.field == "every"
    options: Any = {"delay": 5}
    with pytest.raises(ValidationError) as refused:
        app.every(1000, **options)
    assert refused.value.field == "delay"
    app.every(1000, kwargs={"kind": "a"})(report)
    with pytest.raises(ValidationError, match="give each schedule"):
        app.every(2000, kwargs={"kind": "b"})(report)
    app.every(2000, kwargs={"kind": "b"}, scheduler_id="report-b")(report)


async def test_a_worker_started_before_redis_upserts_its_schedules_once_redis_is_up(
    queue_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="conveyor.app")
    server = RedisServer()  # its port is chosen, the server not started yet
    app = Conveyor(server.url)
    ticks: list[int] = []

    @app.every(200, queue=queue_name)
    async def tick() -> None:
        ticks.append(1)

    worker = app.worker(queue_name, handle_signals=False)
    running = asyncio.create_task(worker.run())
    try:
        await wait_for(lambda: "no connection to Redis" in caplog.text, timeout=20)
        await asyncio.to_thread(server.start)
        await wait_for(lambda: ticks, timeout=30, message="a scheduled job ran")
    finally:
        await worker.close(timeout=2)
        await running
        await app.close()
        server.close()


# -- running an app -----------------------------------------------------------------


async def test_run_serves_every_queue_in_one_loop_and_stops_when_cancelled(
    app: Conveyor, queue_name: str
) -> None:
    email, reports = f"{queue_name}-email", f"{queue_name}-reports"

    @app.task(queue=email)
    async def send(to: str) -> str:
        return to

    @app.task(queue=reports)
    def build(kind: str) -> str:
        return kind

    runner = asyncio.create_task(app.run(concurrency=5, handle_signals=False))
    a, b = await send.enqueue("ada"), await build.enqueue("daily")
    assert await a.wait_until_finished(timeout=10) == "ada"
    assert await b.wait_until_finished(timeout=10) == "daily"
    workers = await app.queue(email).get_workers()
    assert [w.concurrency for w in workers] == [5]

    runner.cancel()
    with pytest.raises(asyncio.CancelledError):
        await runner
    assert await app.queue(email).get_workers() == []
    assert await app.queue(reports).get_workers() == []


async def test_configure_worker_gives_a_queue_its_own_worker_settings(
    app: Conveyor, queue_name: str
) -> None:
    email, payments = f"{queue_name}-email", f"{queue_name}-payments"
    calls: list[int] = []

    @app.task(queue=email)
    async def send(to: str) -> str:
        return to

    @app.task(queue=payments, attempts=3, backoff={"type": "custom"})
    async def capture(order: int) -> None:
        calls.append(order)
        raise RuntimeError("declined")

    def by_attempt(attempts_made: int, error: BaseException, job: Any) -> int:
        return attempts_made * 60_000

    app.configure_worker(email, concurrency=5, limiter={"max": 100, "duration": 1000})
    app.configure_worker(payments, concurrency=3, backoff_strategy=by_attempt)
    assert app.worker_options(payments) == {"concurrency": 3, "backoff_strategy": by_attempt}
    assert app.worker(email).limiter == (100, 1000)
    assert app.worker(email, concurrency=2).concurrency == 2  # an argument wins
    with pytest.raises(ValidationError, match="not an option of a worker"):
        app.configure_worker(email, prefix="other")

    runner = asyncio.create_task(app.run(handle_signals=False))
    job = await capture.enqueue(7)
    await wait_for(lambda: has_delay(job), timeout=10)
    async with Inspector(app.connection) as inspector:  # type: ignore[arg-type]
        detail = await inspector.job(payments, job.id)
    assert detail.summary.due is not None and detail.summary.processed_on is not None
    # The configured strategy: 1 minute after the first failure.
    assert 60_000 <= detail.summary.due - detail.summary.processed_on < 65_000
    await wait_for(lambda: app.queue(email).get_workers(), timeout=10)
    assert [w.concurrency for w in await app.queue(email).get_workers()] == [5]
    assert [w.concurrency for w in await app.queue(payments).get_workers()] == [3]
    runner.cancel()
    with pytest.raises(asyncio.CancelledError):
        await runner


async def has_delay(job: Any) -> bool:
    return await job.get_state() == "delayed"


async def test_run_refuses_queues_without_tasks(app: Conveyor) -> None:
    with pytest.raises(ValidationError, match="no tasks"):
        await app.run()

    @app.task(queue="email")
    async def send() -> None: ...

    with pytest.raises(ValidationError, match="no task runs on queue 'reports'"):
        await app.run(["email", "reports"])


# -- static typing --------------------------------------------------------------------


def test_enqueue_is_typed_like_the_function() -> None:
    """mypy --strict accepts the right calls and refuses each line marked ``# error``."""
    cases = Path(__file__).parent / "typing_cases" / "app_tasks.py"
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(cases)],
        capture_output=True, text=True, timeout=300, check=False,
    )
    flagged = {
        int(line.split(":")[1])
        for line in result.stdout.splitlines()
        if ": error:" in line
    }
    expected = {
        number
        for number, line in enumerate(cases.read_text().splitlines(), start=1)
        if "# error:" in line
    }
    assert flagged == expected, result.stdout
