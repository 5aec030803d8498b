"""The REST routes that change jobs (conveyor.web.api_jobs_edit): add with the
library's own refusals, duplicate, edit data, cancel, bulk actions with an
answer per id, promote all, and every attempt in a job's detail."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from conveyor import Job, Queue
from helpers import StartWorker, finished, queue_state_is, wait_for
from web_support import API, api_client, data, error

pytestmark = pytest.mark.cluster  # on one server and on a Redis Cluster


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(redis_url) as found:
        yield found


def jobs_url(queue: Queue, *rest: str) -> str:
    return "/".join((f"{API}/queues/{queue.name}/jobs", *rest))


async def test_adding_a_job_with_bad_options_answers_the_librarys_message(
    client: httpx.AsyncClient, queue: Queue
) -> None:
    for options, field, words in (({"attempts": 0}, "attempts", "attempts: "),
                                  ({"delay": -5}, "delay", "delay: "),
                                  ({"priority": "high"}, "priority", "priority: "),
                                  ({"color": 1}, "options.color", "unknown job option")):
        found = error(await client.post(jobs_url(queue), json={"name": "x", "options": options}),
                      422, "validation_error")
        assert found["field"] == field and words in found["message"], found
    assert await queue.get_job_counts("waiting", "delayed") == {"waiting": 0, "delayed": 0}


async def test_a_body_that_is_not_json_is_refused_and_nothing_changes(
    client: httpx.AsyncClient, queue: Queue
) -> None:
    job = await queue.add("x", {"v": 1})
    headers = {"Content-Type": "application/json"}
    for method, url in (("POST", jobs_url(queue)), ("PUT", jobs_url(queue, job.id, "data")),
                        ("POST", jobs_url(queue, "bulk"))):
        found = error(await client.request(method, url, content=b'{"data": {"v": 2,}}',
                                           headers=headers), 422, "validation_error")
        assert "JSON" in found["message"], found
    assert (await queue.get_job(job.id)).data == {"v": 1}  # type: ignore[union-attr]
    assert await queue.get_job_counts("waiting") == {"waiting": 1}


async def test_duplicate_answers_the_new_job_and_a_404_for_a_missing_one(
    client: httpx.AsyncClient, queue: Queue
) -> None:
    original = await queue.add("mail", {"to": "x"}, attempts=3, delay=60_000)

    copy = data(await client.post(jobs_url(queue, original.id, "duplicate")), 201)

    assert copy["id"] != original.id and copy["name"] == "mail" and copy["attempts"] == 3
    assert copy["state"] == "waiting" and copy["delay"] == 0
    job = await queue.get_job(copy["id"])
    assert job is not None and job.data == {"to": "x"}
    error(await client.post(jobs_url(queue, "nope", "duplicate")), 404, "job_not_found")


async def test_edit_data_of_a_waiting_job_and_409_for_a_finished_one(
    client: httpx.AsyncClient, queue: Queue, start_worker: StartWorker
) -> None:
    waiting = await queue.add("w", {"v": 1}, delay=60_000)
    answer = data(await client.put(jobs_url(queue, waiting.id, "data"), json={"data": [1, 2]}))
    assert answer == {"queue": queue.name, "id": waiting.id, "state": "delayed"}
    assert (await queue.get_job(waiting.id)).data == [1, 2]  # type: ignore[union-attr]

    done = await queue.add("d", {"v": 1})
    start_worker(lambda job: None)
    await wait_for(lambda: finished(queue, done.id))
    found = error(await client.put(jobs_url(queue, done.id, "data"), json={"data": 2}),
                  409, "job_state_conflict")
    assert "is completed" in found["message"]
    assert (await queue.get_job(done.id)).data == {"v": 1}  # type: ignore[union-attr]
    error(await client.put(jobs_url(queue, done.id, "data"), json={}), 422, "validation_error")
    error(await client.put(jobs_url(queue, "gone", "data"), json={"data": 1}),
          404, "job_not_found")


async def test_cancel_a_running_job_then_409_once_it_finished(
    client: httpx.AsyncClient, queue: Queue, start_worker: StartWorker
) -> None:
    async def forever(job: Job) -> Any:
        await asyncio.Event().wait()

    job = await queue.add("long")
    start_worker(forever)
    await wait_for(lambda: queue_state_is(queue, job.id, "active"))

    data(await client.post(jobs_url(queue, job.id, "cancel"), json={"reason": "stop it"}))

    await wait_for(lambda: finished(queue, job.id))
    detail = data(await client.get(jobs_url(queue, job.id)))
    assert detail["state"] == "failed" and detail["failed_reason"] == "cancelled: stop it"
    error(await client.post(jobs_url(queue, job.id, "cancel")), 409, "job_state_conflict")
    error(await client.post(jobs_url(queue, job.id, "cancel"), json={"reason": ""}),
          422, "validation_error")


async def test_bulk_retry_answers_per_id(
    client: httpx.AsyncClient, queue: Queue, start_worker: StartWorker
) -> None:
    async def fail(job: Job) -> Any:
        raise RuntimeError("no")

    ids = [(await queue.add("f", i)).id for i in range(3)]
    worker = start_worker(fail)
    await wait_for(lambda: all_finished(queue, ids))
    await worker.close()

    answer = data(await client.post(jobs_url(queue, "bulk"),
                                     json={"action": "retry", "ids": [*ids, "gone"]}))

    assert answer["action"] == "retry" and answer["done"] == 3
    assert [(r["id"], r["ok"], r["state"]) for r in answer["results"]] == [
        *[(i, True, "waiting") for i in ids], ("gone", False, None)]
    assert answer["results"][3]["error"]["code"] == "job_not_found"
    assert answer["results"][0]["error"] is None
    found = error(await client.post(jobs_url(queue, "bulk"), json={"action": "retry", "ids": []}),
                  422, "validation_error")
    assert found["field"] == "ids"
    error(await client.post(jobs_url(queue, "bulk"), json={"action": "nuke", "ids": ["1"]}),
          422, "validation_error")


async def all_finished(queue: Queue, ids: list[str]) -> bool:
    return all([await finished(queue, i) for i in ids])


async def test_promote_all_delayed(client: httpx.AsyncClient, queue: Queue) -> None:
    for _ in range(4):
        await queue.add("d", delay=60_000)
    assert data(await client.post(f"{API}/queues/{queue.name}/promote")) == {"promoted": 4}
    assert await queue.get_job_counts("waiting") == {"waiting": 4}
    error(await client.post(f"{API}/queues/nope/promote"), 404, "queue_not_found")


async def test_a_jobs_detail_lists_every_attempt(
    client: httpx.AsyncClient, queue: Queue, start_worker: StartWorker
) -> None:
    async def flaky(job: Job) -> Any:
        if job.attempts_made < 2:
            raise RuntimeError(f"boom {job.attempts_made + 1}")
        return "ok"

    job = await queue.add("flaky", attempts=3)
    start_worker(flaky)
    await wait_for(lambda: finished(queue, job.id))

    attempts = data(await client.get(jobs_url(queue, job.id)))["attempt_timeline"]

    assert [(a["attempt"], a["outcome"], a["error"]) for a in attempts] == [
        (1, "failed", "RuntimeError: boom 1"), (2, "failed", "RuntimeError: boom 2"),
        (3, "completed", None)]
    assert all(a["started_on_ms"] <= a["finished_on_ms"] for a in attempts)
