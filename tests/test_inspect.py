"""conveyor.inspection: the layer the CLI, the REST API and the dashboard share."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

import conveyor.admin as admin_module
import conveyor.inspection.inspector as inspector_module
from conveyor import Job, JobStateError, Queue, ValidationError
from conveyor.inspection import (
    HealthThresholds,
    Inspector,
    JobNotFoundError,
    QueueNotFoundError,
    iso,
)
from helpers import StartWorker, commands_processed, finished, reset_stats, wait_for

# Each test runs on one Redis server and on a Redis Cluster (conftest.py).
pytestmark = pytest.mark.cluster


@pytest.fixture
async def inspector(redis_url: str) -> AsyncIterator[Inspector]:
    async with Inspector(redis_url) as found:
        yield found


async def fail(job: Job) -> Any:
    raise RuntimeError(f"boom {job.data}")


async def succeed(job: Job) -> Any:
    await job.log("working")
    await job.update_progress(100)
    return {"ok": job.data}


async def fail_bad(job: Job) -> Any:
    return await (fail(job) if job.name == "bad" else succeed(job))


async def all_finished(queue: Queue, ids: list[str]) -> bool:
    return all([await finished(queue, i) for i in ids])


def test_iso_is_utc_with_milliseconds() -> None:
    assert iso(0) == "1970-01-01T00:00:00.000Z"
    assert iso(1_795_990_503_120) == "2026-11-29T22:15:03.120Z"
    assert iso(None) is None


async def test_queue_names_come_from_the_registry_explicit_names_and_one_scan(
    redis_url: str, redis: aioredis.Redis
) -> None:
    async with Queue("emails", redis_url) as emails:
        await emails.add("welcome")
    # A queue made before the registry existed: only its own keys name it.
    await redis.hset("conveyor:{legacy}:meta", "paused", "1")
    await redis.srem("conveyor:queues", "legacy")
    async with Inspector(redis_url, queues=["reports"]) as inspector:
        assert await inspector.queue_names() == ["emails", "reports"]
        assert await inspector.discover() == ["emails", "legacy", "reports"]
        assert {m.decode() for m in await redis.smembers("conveyor:queues")} == {
            "emails", "legacy"}
        async with Queue("later", redis_url) as later:
            await later.add("x")
        assert await inspector.queue_names() == ["emails", "later", "legacy", "reports"]
    # With no registry at all (queues older than it), the first listing discovers.
    await redis.delete("conveyor:queues")
    async with Inspector(redis_url) as inspector:
        assert await inspector.queue_names() == ["emails", "later", "legacy"]
    async with Inspector(redis_url, prefix="other") as other:
        assert await other.queue_names() == []


async def test_summary_counts_every_state_without_reading_jobs(
    inspector: Inspector, queue: Queue
) -> None:
    await queue.add("a")
    await queue.add("b", priority=3)
    await queue.add("c", delay=60_000)
    await queue.set_global_concurrency(4)
    summary = await inspector.summary(queue.name)
    assert summary.counts == {"waiting": 1, "prioritized": 1, "delayed": 1, "active": 0,
                              "completed": 0, "failed": 0, "waiting_children": 0}
    assert summary.total == 3
    assert summary.workers == 0
    assert summary.global_concurrency == 4
    assert summary.last_completed_ms is None
    assert not summary.is_paused
    as_dict = summary.to_dict()
    assert as_dict["counts"]["paused"] is False
    assert as_dict["last_completed"] is None
    assert as_dict["wait_ms"] == {"p50": None, "p95": None}
    assert [s.name for s in await inspector.summaries()] == [queue.name]


async def test_a_missing_queue_raises_queue_not_found(inspector: Inspector) -> None:
    for call in (inspector.summary("nope"), inspector.jobs("nope", "failed"),
                 inspector.job("nope", "1"), inspector.pause("nope"),
                 inspector.retry_all("nope"), inspector.workers("bad:name")):
        with pytest.raises(QueueNotFoundError):
            await call


async def test_rates_timings_workers_and_throughput_after_work(
    inspector: Inspector, queue: Queue, start_worker: StartWorker
) -> None:
    good = [(await queue.add("ok", i)).id for i in range(6)]
    bad = [(await queue.add("bad", i)).id for i in range(2)]
    start_worker(fail_bad)
    await wait_for(lambda: all_finished(queue, good + bad))
    await wait_for(lambda: inspector.workers(queue.name))
    summary = await inspector.summary(queue.name)
    assert summary.counts["completed"] == 6 and summary.counts["failed"] == 2
    assert summary.completed_per_min == pytest.approx(6 / 5)
    assert summary.failed_per_min == pytest.approx(2 / 5)
    assert summary.processing_p50_ms is not None and summary.wait_p95_ms is not None
    assert summary.last_completed_ms is not None
    assert summary.workers == 1
    [worker] = await inspector.workers(queue.name)
    assert worker.to_dict()["last_heartbeat"].endswith("Z")
    throughput = await inspector.throughput(queue.name, minutes=3)
    assert len(throughput.minutes) == 3
    assert sum(m["completed"] for m in throughput.minutes) == 6
    assert sum(m["failed"] for m in throughput.minutes) == 2
    assert throughput.minutes[-1]["at"].endswith(":00.000Z")
    with pytest.raises(ValidationError):
        await inspector.throughput(queue.name, minutes=0)


async def test_jobs_pages_newest_first_with_the_states_total(
    inspector: Inspector, queue: Queue
) -> None:
    ids = [(await queue.add("job", {"n": i})).id for i in range(25)]
    page = await inspector.jobs(queue.name, "waiting", start=0, count=10)
    assert page.total == 25
    assert [job.id for job in page.jobs] == ids[::-1][:10]
    last = await inspector.jobs(queue.name, "waiting", start=20, count=10)
    assert [job.id for job in last.jobs] == ids[::-1][20:]
    assert last.to_dict()["jobs"][0]["timestamp"].endswith("Z")
    assert (await inspector.jobs(queue.name, "waiting_children")).total == 0
    for bad in ({"state": "nope"}, {"state": "waiting", "count": 0},
                {"state": "waiting", "start": -1}):
        with pytest.raises(ValidationError):
            await inspector.jobs(queue.name, **bad)


async def test_job_detail_has_data_logs_error_and_timeline(
    inspector: Inspector, queue: Queue, start_worker: StartWorker
) -> None:
    job = await queue.add("charge", {"amount": 5}, attempts=2, backoff=1)
    start_worker(fail)
    await wait_for(lambda: finished(queue, job.id))
    detail = await inspector.job(queue.name, job.id)
    assert detail.summary.state == "failed"
    assert detail.summary.attempts_made == 2 and detail.summary.attempts == 2
    assert detail.data == {"amount": 5}
    assert detail.opts["attempts"] == 2
    assert "boom" in (detail.summary.failed_reason or "")
    assert "RuntimeError" in detail.stacktrace[-1]
    events = [e["event"] for e in detail.timeline]
    assert events[0] == "added" and events[-1] == "failed" and "started" in events
    out = detail.to_dict()
    assert out["finished_on"].endswith("Z") and isinstance(out["finished_on_ms"], int)
    with pytest.raises(JobNotFoundError):
        await inspector.job(queue.name, "missing")


async def test_job_detail_shows_when_a_delayed_job_is_due_after_its_delay_changed(
    inspector: Inspector, queue: Queue
) -> None:
    job = await queue.add("later", delay=60_000)
    due = await job.change_delay(3_600_000)
    detail = await inspector.job(queue.name, job.id)
    assert [(e["event"], e["at_ms"]) for e in detail.timeline] == [
        ("added", job.timestamp), ("delayed until", due)
    ]
    assert detail.summary.due == due
    [listed] = (await inspector.jobs(queue.name, "delayed")).jobs
    assert listed.due == due and listed.to_dict()["due_ms"] == due


async def test_job_detail_keeps_the_newest_200_log_lines(
    inspector: Inspector, queue: Queue
) -> None:
    job = await queue.add("chatty")
    for i in range(205):
        await job.log(f"line {i}")
    detail = await inspector.job(queue.name, job.id)
    assert detail.logs_total == 205
    assert len(detail.logs) == 200 and detail.logs[-1] == "line 204"


async def test_retry_promote_remove_pause_resume(
    inspector: Inspector, queue: Queue, start_worker: StartWorker
) -> None:
    job = await queue.add("once")
    delayed = await queue.add("later", delay=600_000)
    with pytest.raises(JobStateError):
        await inspector.retry(queue.name, job.id)
    await inspector.promote(queue.name, delayed.id)
    assert await queue.get_job_state(delayed.id) == "waiting"
    with pytest.raises(JobStateError):
        await inspector.promote(queue.name, delayed.id)
    await inspector.remove(queue.name, delayed.id)
    assert await queue.get_job(delayed.id) is None
    with pytest.raises(JobNotFoundError):
        await inspector.remove(queue.name, delayed.id)
    with pytest.raises(JobNotFoundError):
        await inspector.retry(queue.name, "missing")

    await inspector.pause(queue.name)
    assert (await inspector.summary(queue.name)).is_paused
    start_worker(succeed)
    await inspector.resume(queue.name)
    await wait_for(lambda: finished(queue, job.id))
    await inspector.retry(queue.name, job.id)
    await wait_for(lambda: finished(queue, job.id))
    assert (await inspector.job(queue.name, job.id)).summary.state == "completed"


async def test_retry_all_and_clean_run_in_batches_reporting_progress(
    inspector: Inspector, queue: Queue, start_worker: StartWorker,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(inspector_module, "BATCH", 4)  # retry_all's batch
    monkeypatch.setattr(admin_module, "BATCH", 4)  # Queue.clean's
    ids = [(await queue.add("bad", i)).id for i in range(10)]
    worker = start_worker(fail, concurrency=10)
    await wait_for(lambda: all_finished(queue, ids))
    await worker.close()
    seen: list[tuple[int, int]] = []
    assert await inspector.retry_all(queue.name, progress=lambda d, t: seen.append((d, t))) == 10
    assert seen == [(4, 10), (8, 10), (10, 10)]
    assert (await inspector.summary(queue.name)).counts["waiting"] == 10

    seen.clear()
    removed = await inspector.clean(queue.name, state="waiting", limit=9,
                                    progress=lambda d, t: seen.append((d, t)))
    assert removed == 9
    assert seen == [(4, 9), (8, 9), (9, 9)]
    assert await inspector.clean(queue.name, state="waiting", grace_ms=3_600_000) == 0
    assert await inspector.clean(queue.name, state="waiting") == 1
    with pytest.raises(ValidationError):
        await inspector.retry_all(queue.name, state="waiting")
    with pytest.raises(ValidationError):
        await inspector.clean(queue.name, state="nope")


async def test_enqueue_validates_options_and_makes_the_queue(
    inspector: Inspector, redis_url: str
) -> None:
    job = await inspector.enqueue("fresh", "hello", {"to": "ada"},
                                  {"delay": 60_000, "attempts": 3, "job_id": "h1"})
    assert job.id == "h1"
    summary = await inspector.job_summary("fresh", job)
    assert summary.state == "delayed" and summary.attempts == 3
    assert "fresh" in await inspector.queue_names()
    with pytest.raises(ValidationError, match=r"options\.colour"):
        await inspector.enqueue("fresh", "x", None, {"colour": "red"})
    with pytest.raises(ValidationError):
        await inspector.enqueue("fresh", "x", None, {"attempts": 0})
    with pytest.raises(ValidationError):
        await inspector.enqueue("bad:name", "x", None, {})


async def test_schedulers_are_listed_with_their_next_run(
    inspector: Inspector, queue: Queue
) -> None:
    await queue.upsert_job_scheduler("nightly", cron="0 3 * * *", tz="Europe/Berlin",
                                     data={"kind": "report"})
    [info] = await inspector.schedulers(queue.name)
    out = info.to_dict()
    assert out["id"] == "nightly" and out["cron"] == "0 3 * * *"
    assert out["tz"] == "Europe/Berlin" and out["data"] == {"kind": "report"}
    assert out["next_run"].endswith("Z") and out["next_run_ms"] > 0


async def test_health_warns_then_goes_critical(redis_url: str, queue: Queue,
                                               start_worker: StartWorker) -> None:
    thresholds = HealthThresholds(max_waiting=2, stalled_minutes=0.005)
    async with Inspector(redis_url, thresholds=thresholds) as inspector:
        await queue.add("a")
        health = await inspector.health(queue.name)
        assert health.status == "critical"
        assert health.reasons == ["1 job waiting and no worker is running"]
        await queue.add("b")
        await queue.pause()
        health = await inspector.health(queue.name)
        assert health.status == "warning"
        assert health.reasons == ["2 jobs waiting (warning from 2)", "the queue is paused"]
        await queue.add_bulk([{"name": "c"}, {"name": "d"}])
        assert (await inspector.health(queue.name)).status == "critical"

        health = await inspector.health(queue.name)
        assert health.reasons[0] == "4 jobs waiting (critical from 4)"

        start_worker(succeed)
        await queue.resume()

        async def all_done() -> bool:
            return (await queue.get_job_counts("completed"))["completed"] == 4

        await wait_for(all_done)
        assert (await inspector.health(queue.name)).to_dict() == {
            "queue": queue.name, "status": "ok", "reasons": []}


async def test_health_stalled_and_failure_rate(redis_url: str, queue: Queue,
                                               start_worker: StartWorker) -> None:
    thresholds = HealthThresholds(stalled_minutes=0.005, require_worker=False)
    async with Inspector(redis_url, thresholds=thresholds) as inspector:
        await queue.add("waits")

        async def critical() -> list[str]:
            health = await inspector.health(queue.name)
            return health.reasons if health.status == "critical" else []

        reasons = await wait_for(critical)
        assert reasons == ["jobs have waited over 0.005 minutes and none completed meanwhile"]
        bad = await queue.add("bad", attempts=1)
        start_worker(fail_bad)
        await wait_for(lambda: finished(queue, bad.id))
        health = await inspector.health(queue.name)
        assert health.status == "warning"
        assert health.reasons == [
            "50% of jobs failed in the last 5 minutes (warning from 10%)"]


async def test_dashboard_lists_health_statistics_alerts_and_performance(
    inspector: Inspector, redis_url: str, queue: Queue, start_worker: StartWorker
) -> None:
    bad = [(await queue.add("bad", i)).id for i in range(3)]
    start_worker(fail)
    await wait_for(lambda: all_finished(queue, bad))
    async with Queue("idle", redis_url) as idle:
        await idle.add("x")
    board = (await inspector.dashboard()).to_dict()
    assert board["health"]["status"] == "critical"
    by_queue = {h["queue"]: h for h in board["health"]["queues"]}
    assert by_queue["idle"]["status"] == "critical"
    assert by_queue[queue.name]["status"] == "warning"
    assert board["statistics"]["totals"]["failed"] == 3
    assert board["statistics"]["totals"]["waiting"] == 1
    assert board["statistics"]["totals"]["total"] == 4
    assert [a["id"] for a in board["alerts"]] == bad[::-1] or \
        sorted(a["id"] for a in board["alerts"]) == sorted(bad)
    assert all(a["queue"] == queue.name and "boom" in a["reason"] for a in board["alerts"])
    perf = {p["queue"]: p for p in board["performance"]}
    assert perf[queue.name]["failed_per_min"] == pytest.approx(3 / 5)


async def test_a_dashboard_refresh_costs_the_same_for_3_or_3000_jobs(
    inspector: Inspector, queue: Queue, redis: aioredis.Redis
) -> None:
    async def commands_of_a_refresh() -> int:
        await inspector.dashboard()  # warm: scripts loaded, queues listed once
        await reset_stats(redis)
        await inspector.dashboard()
        await inspector.summaries()
        return await commands_processed(redis)

    await queue.add_bulk([{"name": "few", "delay": d} for d in (0, 0, 60_000)])
    few = await commands_of_a_refresh()
    await queue.add_bulk([{"name": "many", "delay": 60_000 * (i % 2), "priority": i % 3}
                          for i in range(3000)])
    assert few > 10
    assert await commands_of_a_refresh() == few
