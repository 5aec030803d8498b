"""One shape per answer: a worker is one WorkerInfo from Queue.get_workers to
the JSON, the views render times by one rule, and the BullMQ-style routes say
what our own routes say, in camelCase."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

import conveyor
import conveyor.inspect
from conveyor import Job, Queue
from conveyor.inspection import Inspector
from conveyor.web import create_app
from helpers import StartWorker, wait_for

API = "/api/v1"


async def fail(job: Job) -> Any:
    raise RuntimeError(f"boom {job.id}")


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[httpx.AsyncClient]:
    app: FastAPI = create_app(redis_url)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://localhost") as found:
        yield found
    await app.state.conveyor.close()


async def answer(client: httpx.AsyncClient, path: str) -> Any:
    response = await client.get(API + path)
    assert response.status_code == 200, response.text
    return response.json()["data"]


def test_the_documented_import_path_is_the_inspection_package() -> None:
    assert conveyor.inspect.Inspector is Inspector
    assert conveyor.inspect.WorkerInfo is conveyor.WorkerInfo


async def test_a_worker_is_one_workerinfo_from_the_queue_to_the_json(
    redis_url: str, queue: Queue, start_worker: StartWorker
) -> None:
    start_worker(fail)

    async def registered() -> bool:
        return bool(await queue.get_workers())

    await wait_for(registered)
    async with Inspector(redis_url) as inspector:
        [seen] = await inspector.workers(queue.name)
    [listed] = await queue.get_workers()
    assert type(seen) is conveyor.WorkerInfo
    assert seen.id == listed.id
    out = seen.to_dict()
    assert out["started_at_ms"] == round(listed.started_at.timestamp() * 1000)
    assert out["started_at"].endswith("Z") and out["running"] == 0
    assert out["running_job_ids"] == []


async def test_the_seed_routes_say_what_our_routes_say(
    client: httpx.AsyncClient, queue: Queue, start_worker: StartWorker
) -> None:
    for i in range(3):
        await queue.add("bad", i)
    await queue.add("later", None, delay=600_000)
    worker = start_worker(fail)

    async def failed() -> bool:
        return (await queue.get_job_counts("failed"))["failed"] == 3

    await wait_for(failed)
    await worker.close()
    ours = await answer(client, f"/queues/{queue.name}")
    seed = await answer(client, f"/queue/metrics/{queue.name}")
    assert seed["queueName"] == ours["name"]
    for state in ("waiting", "active", "completed", "failed", "delayed", "prioritized"):
        assert seed[state] == ours["counts"][state]
    assert seed["waitingChildren"] == ours["counts"]["waiting_children"]
    assert seed["total"] == ours["total"] and seed["paused"] == ours["is_paused"]
    assert seed["completedPerMinute"] == ours["completed_per_min"]
    assert seed["failedPerMinute"] == ours["failed_per_min"]
    assert seed["waitMs"] == ours["wait_ms"] and seed["processingMs"] == ours["processing_ms"]

    page = await answer(client, f"/queues/{queue.name}/jobs?state=failed&count=50")
    dead = await answer(client, f"/queue/dead-letter/{queue.name}?pageSize=50")
    assert [j["id"] for j in dead["jobs"]] == [j["id"] for j in page["jobs"]]
    assert [(j["failedReason"], j["finishedOnMs"]) for j in dead["jobs"]] == [
        (j["failed_reason"], j["finished_on_ms"]) for j in page["jobs"]]


async def test_each_answer_schema_lists_exactly_what_its_view_renders(
    redis_url: str, queue: Queue, start_worker: StartWorker
) -> None:
    from conveyor.web import schemas

    await queue.add("bad", 1)
    await queue.add("later", None, delay=600_000)
    await queue.upsert_job_scheduler("nightly", cron="0 3 * * *")
    start_worker(fail)

    async def ready() -> bool:
        return bool(await queue.get_workers()) and bool(
            (await queue.get_job_counts("failed"))["failed"])

    await wait_for(ready)
    async with Inspector(redis_url) as inspector:
        summary = await inspector.summary(queue.name)
        [failed] = (await inspector.jobs(queue.name, "failed")).jobs
        delayed = await inspector.jobs(queue.name, "delayed")
        pairs: list[tuple[dict[str, Any], type[Any]]] = [
            (summary.to_dict(), schemas.QueueSummary),
            (summary.to_dict()["counts"], schemas.Counts),
            (failed.to_dict(), schemas.JobSummary),
            (delayed.jobs[0].to_dict(), schemas.JobSummary),
            (delayed.to_dict(), schemas.JobPage),
            ((await inspector.job(queue.name, failed.id)).to_dict(), schemas.JobDetail),
            ((await inspector.schedulers(queue.name))[0].to_dict(), schemas.Scheduler),
            ((await inspector.workers(queue.name))[0].to_dict(), schemas.Worker),
            ((await inspector.throughput(queue.name, 1)).minutes[0], schemas.ThroughputMinute),
        ]
    for rendered, model in pairs:
        assert set(rendered) <= set(model.model_fields), model
        required = {n for n, f in model.model_fields.items() if f.is_required()}
        assert required <= set(rendered), model
