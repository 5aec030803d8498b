"""The REST routes behind the dashboard's flow tree, schedulers page and charts
(conveyor.web.api_views): in-process through httpx, on one server and a cluster."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from conveyor import FlowProducer, Job, Queue, Worker
from helpers import finished, wait_for
from web_support import API, api_client, data, error

pytestmark = pytest.mark.cluster


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(redis_url) as found:
        yield found


async def double_or_fail(job: Job) -> Any:
    if job.data == 3:
        raise RuntimeError("three is refused")
    return job.data * 2


async def test_the_tree_shows_parent_and_children_with_states_and_values(
    client: httpx.AsyncClient, redis_url: str
) -> None:
    tag = uuid.uuid4().hex[:8]
    reports, parts = f"{{{tag}}}reports", f"{{{tag}}}parts"  # one hash slot for the flow
    async with FlowProducer(connection=redis_url) as flow:
        root = await flow.add({
            "name": "report", "queue_name": reports, "children": [
                {"name": "part", "queue_name": parts, "data": 1},
                {"name": "part", "queue_name": parts, "data": 2, "opts": {"delay": 3_600_000}},
                {"name": "part", "queue_name": parts, "data": 3,
                 "opts": {"ignore_dependency_on_failure": True}},
            ],
        })
    one, later, three = (c.job for c in root.children)
    async with Queue(parts, redis_url) as queue:
        worker = Worker(parts, double_or_fail, connection=redis_url, handle_signals=False)
        task = asyncio.create_task(worker.run())
        try:
            await wait_for(lambda: finished(queue, one.id))
            await wait_for(lambda: finished(queue, three.id))
        finally:
            await worker.close()
            await task

    tree = data(await client.get(f"{API}/queues/{reports}/tree/{root.job.id}"))
    assert tree["ancestors"] == []
    assert (tree["job"]["name"], tree["job"]["state"], tree["job"]["children_total"]) == (
        "report", "waiting-children", 3)
    assert tree["children_total"] == 3
    children = {c["id"]: c for c in tree["children"]}
    assert (children[one.id]["state"], children[one.id]["value"]) == ("completed", 2)
    assert (children[later.id]["state"], children[later.id]["value"]) == ("delayed", None)
    assert children[three.id]["state"] == "failed"
    assert "three is refused" in children[three.id]["ignored_failure"]
    assert {c["queue"] for c in tree["children"]} == {parts}

    page = data(await client.get(f"{API}/queues/{reports}/tree/{root.job.id}?start=2&count=2"))
    assert (len(page["children"]), page["children_total"], page["start"]) == (1, 3, 2)

    up = data(await client.get(f"{API}/queues/{parts}/tree/{one.id}"))
    assert [(a["queue"], a["id"], a["state"]) for a in up["ancestors"]] == [
        (reports, root.job.id, "waiting-children")]
    assert up["children"] == [] and up["job"]["state"] == "completed"

    error(await client.get(f"{API}/queues/{reports}/tree/nope"), 404, "job_not_found")
    error(await client.get(f"{API}/queues/{reports}/tree/{root.job.id}?count=0"), 422,
          "validation_error")


async def test_a_tree_read_while_children_complete_never_shows_one_completed_without_its_value(
    client: httpx.AsyncClient, redis_url: str
) -> None:
    """Each read is one moment: a child is completed with its value, or shown as it
    was before, never completed with no value (the states and the values used to be
    read at different times)."""
    tag = uuid.uuid4().hex[:8]
    reports, parts = f"{{{tag}}}reports", f"{{{tag}}}parts"
    async with FlowProducer(connection=redis_url) as flow:
        root = await flow.add({"name": "report", "queue_name": reports, "children": [
            {"name": "part", "queue_name": parts, "data": i} for i in range(1, 61)]})
    url = f"{API}/queues/{reports}/tree/{root.job.id}?count=60"
    async def tenfold(job: Job) -> int:
        return int(job.data) * 10

    worker = Worker(parts, tenfold, connection=redis_url, concurrency=2, handle_signals=False)
    task = asyncio.create_task(worker.run())
    reads = 0
    try:
        while True:
            children = data(await client.get(url))["children"]
            reads += 1
            for child in children:
                # completed with its value, or shown as before: no value yet
                assert (child["value"] is not None) == (child["state"] == "completed"), child
            if all(child["state"] == "completed" for child in children):
                break
    finally:
        await worker.close()
        await task
    assert reads > 1  # some reads saw children still running
    assert sorted(child["value"] for child in children) == [i * 10 for i in range(1, 61)]


async def test_schedulers_are_created_run_now_and_removed(
    client: httpx.AsyncClient, queue: Queue
) -> None:
    base = f"{API}/queues/{queue.name}/schedulers"
    made = data(await client.put(f"{base}/hourly", json={
        "every_ms": 3_600_000, "job_name": "tick", "data": {"n": 1},
        "options": {"attempts": 2}}))
    assert (made["id"], made["every_ms"], made["job_name"], made["count"]) == (
        "hourly", 3_600_000, "tick", 1)
    next_run = made["next_run_ms"]

    ran = data(await client.post(f"{base}/hourly/run"))
    assert ran["job_id"].startswith("sched-hourly-") and ran["state"] == "waiting"
    job = await queue.get_job(ran["job_id"])
    assert job is not None and (job.name, job.data, job.opts.attempts) == ("tick", {"n": 1}, 2)

    [listed] = data(await client.get(base))
    assert listed["next_run_ms"] == next_run and listed["count"] == 1  # schedule unchanged
    assert [(r["id"], r["manual"], r["state"]) for r in listed["last_runs"]] == [
        (ran["job_id"], True, "waiting")]

    edited = data(await client.put(f"{base}/hourly", json={
        "cron": "0 9 * * *", "tz": "Europe/Berlin", "job_name": "tick"}))
    assert (edited["cron"], edited["tz"], edited["every_ms"]) == ("0 9 * * *", "Europe/Berlin",
                                                                 None)

    both = error(await client.put(f"{base}/x", json={"every_ms": 5, "cron": "* * * * *"}),
                 422, "validation_error")
    assert both["field"] in ("every", "cron")
    error(await client.put(f"{base}/x", json={"every_ms": 1000, "nope": 1}), 422,
          "validation_error")
    error(await client.put(f"{base}/x", json={"cron": "61 * * * *"}), 422, "validation_error")

    assert data(await client.delete(f"{base}/hourly"))["removed"] is True
    assert data(await client.get(base)) == []
    error(await client.delete(f"{base}/hourly"), 404, "scheduler_not_found")
    error(await client.post(f"{base}/hourly/run"), 404, "scheduler_not_found")


async def test_a_scheduler_id_with_a_slash_is_run_by_its_last_segment(
    client: httpx.AsyncClient, queue: Queue
) -> None:
    base = f"{API}/queues/{queue.name}/schedulers"
    data(await client.put(f"{base}/team/nightly", json={"every_ms": 86_400_000}))
    ran = data(await client.post(f"{base}/team/nightly/run"))
    assert ran["scheduler_id"] == "team/nightly"
    assert data(await client.delete(f"{base}/team%2Fnightly"))["removed"] is True


async def test_the_series_has_failure_rate_and_timings_per_minute(
    client: httpx.AsyncClient, queue: Queue, start_worker: Any
) -> None:
    ids = [(await queue.add("n", n)).id for n in (1, 2, 3, 4)]
    start_worker(double_or_fail)
    for job_id in ids:
        await wait_for(lambda job_id=job_id: finished(queue, job_id))
    series = data(await client.get(f"{API}/queues/{queue.name}/series?minutes=5"))
    minutes = series["minutes"]
    assert len(minutes) == 5 and minutes[-1]["at_ms"] > minutes[0]["at_ms"]
    assert sum(m["completed"] for m in minutes) == 3
    assert sum(m["failed"] for m in minutes) == 1
    busy = [m for m in minutes if m["completed"] + m["failed"]]
    assert all(0 < m["failure_rate"] < 1 or m["failure_rate"] in (0, 1) for m in busy)
    assert any(m["failure_rate"] for m in busy)
    assert any(m["processing_p50_ms"] is not None and m["processing_p95_ms"] is not None
               and m["wait_p95_ms"] is not None for m in busy)
    quiet = [m for m in minutes if not m["completed"] + m["failed"]]
    assert all(m["failure_rate"] is None for m in quiet)
    error(await client.get(f"{API}/queues/nope/series"), 404, "queue_not_found")
    error(await client.get(f"{API}/queues/{queue.name}/series?minutes=181"), 422,
          "validation_error")


async def test_schedulers_of_a_partitioned_queue_live_in_their_partition(
    client: httpx.AsyncClient, redis_url: str, queue_name: str
) -> None:
    async with Queue(queue_name, redis_url, partitions=4) as queue:
        await queue.add("seed")  # the queue and its partition count exist
        base = f"{API}/queues/{queue_name}/schedulers"
        data(await client.put(f"{base}/daily", json={"cron": "0 3 * * *", "job_name": "d"}))
        made = await queue.get_job_scheduler("daily")
        assert made is not None and made.job_name == "d"
        ran = data(await client.post(f"{base}/daily/run"))
        assert await queue.get_job_state(ran["job_id"]) == "waiting"
        [listed] = data(await client.get(base))
        assert [(r["id"], r["manual"]) for r in listed["last_runs"]] == [(ran["job_id"], True)]
        assert data(await client.delete(f"{base}/daily"))["removed"] is True
        assert await queue.get_job_scheduler("daily") is None
