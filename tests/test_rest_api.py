"""The REST API (conveyor.web.create_app): every endpoint, its envelope and its
errors, in-process through httpx, and once through a real uvicorn."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from conveyor import Job, Queue
from conveyor.embedded import free_port
from conveyor.options import MAX_DURATION_MS
from conveyor.web import check_listen, create_app, serve, serve_async
from helpers import StartWorker, finished, refused_port, wait_for
from web_support import API, api_client, asgi_client, data, error


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(redis_url) as found:
        yield found


async def fail(job: Job) -> Any:
    raise RuntimeError(f"boom {job.id}")


async def succeed(job: Job) -> Any:
    return {"done": job.data}


async def all_finished(queue: Queue, ids: list[str]) -> bool:
    return all([await finished(queue, i) for i in ids])


async def failed_jobs(queue: Queue, start_worker: StartWorker, n: int) -> list[str]:
    ids = [(await queue.add("bad", i)).id for i in range(n)]
    worker = start_worker(fail, concurrency=10)
    await wait_for(lambda: all_finished(queue, ids))
    await worker.close()
    return ids


# -- our own family -------------------------------------------------------------------


@pytest.mark.cluster  # on one server and on a Redis Cluster
async def test_queues_and_a_queue_summary(client: httpx.AsyncClient, queue: Queue) -> None:
    await queue.add("a")
    await queue.add("b", delay=60_000)
    [summary] = data(await client.get(f"{API}/queues"))
    assert summary["name"] == queue.name
    assert summary["counts"]["waiting"] == 1 and summary["counts"]["delayed"] == 1
    assert summary["counts"]["paused"] is False and summary["total"] == 2
    one = data(await client.get(f"{API}/queues/{queue.name}"))
    assert one["counts"] == summary["counts"]
    assert (data(await client.get(f"{API}/health"))) == {"redis": "ok", "queues": 1}


async def test_missing_queue_job_or_route_is_a_404_envelope(
    client: httpx.AsyncClient, queue: Queue
) -> None:
    await queue.add("a")
    for path in ("/queues/nope", "/queues/nope/jobs", "/queues/nope/workers",
                 "/queues/bad{name", "/queue/metrics/nope", "/queue/dead-letter/nope",
                 "/queues/nope/throughput", "/queues/nope/schedulers"):
        found = error(await client.get(API + path), 404, "queue_not_found")
        assert "nope" in found["message"] or "bad" in found["message"]
    error(await client.get(f"{API}/queues/{queue.name}/jobs/404"), 404, "job_not_found")
    error(await client.post(f"{API}/queues/{queue.name}/jobs/404/retry"), 404, "job_not_found")
    error(await client.post(f"{API}/queue/retry/{queue.name}/404"), 404, "job_not_found")
    error(await client.delete(f"{API}/queues/{queue.name}/jobs/404"), 404, "job_not_found")
    error(await client.post(f"{API}/queues/nope/pause"), 404, "queue_not_found")
    error(await client.get(f"{API}/no/such/route"), 404, "not_found")
    error(await client.put(f"{API}/queues"), 405, "method_not_allowed")


async def test_bad_params_and_bodies_are_422_naming_the_field(
    client: httpx.AsyncClient, queue: Queue
) -> None:
    await queue.add("a")
    jobs = f"{API}/queues/{queue.name}/jobs"
    assert error(await client.get(jobs, params={"state": "nope"}), 422,
                 "validation_error")["field"] == "state"
    assert error(await client.get(jobs, params={"count": 0}), 422,
                 "validation_error")["field"] == "count"
    assert error(await client.get(jobs, params={"start": "x"}), 422,
                 "validation_error")["field"] == "start"
    clean = f"{API}/queues/{queue.name}/clean"
    assert error(await client.post(clean, json={"limit": 0}), 422,
                 "validation_error")["field"] == "limit"
    assert error(await client.post(clean, json={"state": "gone"}), 422,
                 "validation_error")["field"] == "state"
    assert error(await client.post(clean, json={"grace": 1}), 422,
                 "validation_error")["field"] == "grace"
    error(await client.post(clean, content=b"{not json",
                            headers={"content-type": "application/json"}),
          422, "validation_error")
    assert error(await client.post(jobs, json={"data": 1}), 422,
                 "validation_error")["field"] == "name"
    assert error(await client.post(jobs, json={"name": "x", "options": {"colour": 1}}), 422,
                 "validation_error")["field"] == "options.colour"
    found = error(await client.post(jobs, json={"name": "x", "options": {"attempts": 0}}), 422,
                  "validation_error")
    assert found["field"] == "attempts" and "attempts" in found["message"]
    assert error(await client.post(f"{API}/queues/bad:name/jobs", json={"name": "x"}), 422,
                 "validation_error")["field"] == "name"
    assert error(await client.get(f"{API}/queues/{queue.name}/throughput",
                                  params={"minutes": 5000}), 422,
                 "validation_error")["field"] == "minutes"
    assert error(await client.get(f"{API}/queue/dead-letter/{queue.name}",
                                  params={"pageSize": 0}), 422,
                 "validation_error")["field"] == "pageSize"


@pytest.mark.cluster  # on one server and on a Redis Cluster
async def test_enqueue_read_promote_retry_and_remove_a_job(
    client: httpx.AsyncClient, queue: Queue, start_worker: StartWorker
) -> None:
    jobs = f"{API}/queues/{queue.name}/jobs"
    made = data(await client.post(jobs, json={
        "name": "report", "data": {"month": 5}, "options": {"delay": 600_000, "attempts": 2}}),
        201)
    assert made["state"] == "delayed" and made["attempts"] == 2 and made["delay"] == 600_000
    assert made["timestamp"].endswith("Z") and isinstance(made["timestamp_ms"], int)
    job_id = made["id"]
    detail = data(await client.get(f"{jobs}/{job_id}"))
    assert detail["data"] == {"month": 5} and detail["opts"]["attempts"] == 2
    assert [e["event"] for e in detail["timeline"]] == ["added", "delayed until"]
    error(await client.post(f"{jobs}/{job_id}/retry"), 409, "job_state_conflict")
    promoted = data(await client.post(f"{jobs}/{job_id}/promote"))
    assert promoted == {"queue": queue.name, "id": job_id, "state": "waiting"}
    error(await client.post(f"{jobs}/{job_id}/promote"), 409, "job_state_conflict")

    start_worker(succeed)
    await wait_for(lambda: finished(queue, job_id))
    detail = data(await client.get(f"{jobs}/{job_id}"))
    assert detail["state"] == "completed" and detail["return_value"] == {"done": {"month": 5}}
    assert (data(await client.post(f"{jobs}/{job_id}/retry")))["id"] == job_id
    await wait_for(lambda: finished(queue, job_id))
    assert data(await client.delete(f"{jobs}/{job_id}")) == {
        "queue": queue.name, "id": job_id, "state": None}
    assert await queue.get_job(job_id) is None


async def test_enqueue_with_an_empty_job_id_generates_one(
    client: httpx.AsyncClient, queue: Queue
) -> None:
    jobs = f"{API}/queues/{queue.name}/jobs"
    first = data(await client.post(jobs, json={"name": "a", "options": {"job_id": ""}}),
                       201)
    second = data(await client.post(jobs, json={"name": "b", "options": {"job_id": ""}}),
                        201)
    assert first["id"] and second["id"] and first["id"] != second["id"]


@pytest.mark.parametrize(("options", "field"), [
    ({"delay": 10**15}, "delay"),
    ({"attempts": 2**31}, "attempts"),
    ({"backoff": {"type": "fixed", "delay": 10**20}}, "backoff.delay"),
    ({"timeout": 10**20}, "timeout"),
    ({"deduplication": {"id": "d", "ttl": 10**20}}, "deduplication.ttl"),
    ({"remove_on_fail": {"age": 10**20}}, "remove_on_fail.age"),
    ({"remove_on_complete": {"count": 10**30}}, "remove_on_complete.count"),
])
async def test_enqueue_with_a_number_out_of_bounds_is_a_422_naming_the_field(
    client: httpx.AsyncClient, queue: Queue, options: dict[str, Any], field: str
) -> None:
    jobs = f"{API}/queues/{queue.name}/jobs"
    found = error(await client.post(jobs, json={"name": "x", "options": options}), 422,
                  "validation_error")
    assert found["field"] == field
    assert await queue.get_job_counts("waiting", "delayed") == {"waiting": 0, "delayed": 0}


async def test_enqueue_with_a_number_that_is_not_finite_is_a_422(
    client: httpx.AsyncClient, queue: Queue
) -> None:
    jobs = f"{API}/queues/{queue.name}/jobs"
    for options in (b'{"delay": 1e400}', b'{"remove_on_fail": {"age": 1e400}}',
                    b'{"remove_on_fail": {"age": NaN}}'):
        response = await client.post(jobs, content=b'{"name": "x", "options": ' + options + b"}",
                                     headers={"content-type": "application/json"})
        error(response, 422, "validation_error")


async def test_a_job_with_a_far_due_time_is_shown(
    client: httpx.AsyncClient, queue: Queue, redis: Any
) -> None:
    jobs = f"{API}/queues/{queue.name}/jobs"
    longest = await queue.add("far", delay=MAX_DURATION_MS)
    # written before delays were bounded (or by another client): past year 9999
    absurd = await queue.add("absurd", delay=60_000)
    await redis.hset(queue.keys.job(absurd.id), "opts", b'{"delay":1000000000000000}')

    for job in (longest, absurd):
        detail = data(await client.get(f"{jobs}/{job.id}"))
        assert detail["state"] == "delayed"
        assert [e["event"] for e in detail["timeline"]] == ["added", "delayed until"]
    detail = data(await client.get(f"{jobs}/{longest.id}"))
    assert detail["timeline"][1]["at"].startswith("203")
    page = data(await client.get(jobs, params={"state": "delayed"}))
    assert {j["id"] for j in page["jobs"]} == {longest.id, absurd.id}
    assert (await queue.get_job(absurd.id)) is not None


async def test_removing_a_running_job_is_a_409(
    client: httpx.AsyncClient, queue: Queue, start_worker: StartWorker
) -> None:
    release = asyncio.Event()

    async def hold(job: Job) -> Any:
        await release.wait()

    job = await queue.add("long")
    start_worker(hold)
    await wait_for(lambda: _state_is(queue, job.id, "active"))
    found = error(await client.delete(f"{API}/queues/{queue.name}/jobs/{job.id}"), 409,
                  "job_state_conflict")
    assert "active" in found["message"]
    page = data(await client.get(f"{API}/queues/{queue.name}/jobs",
                                       params={"state": "active"}))
    assert [j["id"] for j in page["jobs"]] == [job.id] and page["jobs"][0]["processed_on"]
    release.set()
    await wait_for(lambda: finished(queue, job.id))


async def _state_is(queue: Queue, job_id: str, state: str) -> bool:
    return await queue.get_job_state(job_id) == state


@pytest.mark.cluster  # on one server and on a Redis Cluster
async def test_job_pages(client: httpx.AsyncClient, queue: Queue) -> None:
    ids = [(await queue.add("n", i)).id for i in range(7)]
    page = data(await client.get(f"{API}/queues/{queue.name}/jobs",
                                       params={"state": "waiting", "start": 5, "count": 5}))
    assert page["total"] == 7 and page["start"] == 5 and page["count"] == 5
    assert [j["id"] for j in page["jobs"]] == ids[::-1][5:]


@pytest.mark.cluster  # on one server and on a Redis Cluster
async def test_pause_resume_retry_all_and_clean(
    client: httpx.AsyncClient, queue: Queue, start_worker: StartWorker
) -> None:
    ids = await failed_jobs(queue, start_worker, 5)
    paused = data(await client.post(f"{API}/queues/{queue.name}/pause"))
    assert paused["is_paused"] is True and paused["counts"]["paused"] is True
    assert data(await client.post(f"{API}/queues/{queue.name}/retry")) == {"retried": 5}
    assert (await queue.get_job_counts("waiting"))["waiting"] == 5
    resumed = data(await client.post(f"{API}/queues/{queue.name}/resume"))
    assert resumed["is_paused"] is False
    assert data(await client.post(f"{API}/queues/{queue.name}/clean",
                                        json={"state": "waiting", "limit": 2})) == {"removed": 2}
    assert data(await client.post(f"{API}/queues/{queue.name}/clean",
                                        json={"state": "waiting"})) == {"removed": 3}
    assert data(await client.post(f"{API}/queues/{queue.name}/retry",
                                        json={"state": "completed"})) == {"retried": 0}
    assert all([await queue.get_job(i) is None for i in ids])


@pytest.mark.cluster  # on one server and on a Redis Cluster
async def test_throughput_schedulers_and_workers(
    client: httpx.AsyncClient, queue: Queue, start_worker: StartWorker
) -> None:
    await failed_jobs(queue, start_worker, 2)
    minutes = (data(await client.get(f"{API}/queues/{queue.name}/throughput",
                                           params={"minutes": 10})))["minutes"]
    assert len(minutes) == 10 and sum(m["failed"] for m in minutes) == 2
    assert minutes[-1]["at"].endswith("Z")
    await queue.upsert_job_scheduler("tick", every=60_000, data={"x": 1})
    [tick] = data(await client.get(f"{API}/queues/{queue.name}/schedulers"))
    assert tick["id"] == "tick" and tick["every_ms"] == 60_000 and tick["next_run"]
    assert data(await client.get(f"{API}/queues/{queue.name}/workers")) == []
    start_worker(succeed, concurrency=3)
    workers = await wait_for(lambda: _workers(client, queue.name))
    assert workers[0]["concurrency"] == 3 and workers[0]["started_at"].endswith("Z")


async def _workers(client: httpx.AsyncClient, name: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = data(await client.get(f"{API}/queues/{name}/workers"))
    return found


# -- the BullMQ-seed family -------------------------------------------------------------


@pytest.mark.cluster  # on one server and on a Redis Cluster
async def test_seed_metrics_dead_letter_retry_clean_and_dashboard(
    client: httpx.AsyncClient, queue: Queue, start_worker: StartWorker, redis_url: str
) -> None:
    ids = await failed_jobs(queue, start_worker, 3)
    async with Queue("other", redis_url) as other:
        await other.add("x")
    metrics = data(await client.get(f"{API}/queue/metrics"))
    by_name = {q["queueName"]: q for q in metrics["queues"]}
    assert by_name[queue.name] == {"queueName": queue.name, "waiting": 0, "active": 0,
                                   "completed": 0, "failed": 3, "delayed": 0, "total": 3}
    assert metrics["totals"] == {"waiting": 1, "active": 0, "completed": 0, "failed": 3,
                                 "delayed": 0, "total": 4}
    one = data(await client.get(f"{API}/queue/metrics/{queue.name}"))
    assert one["queueName"] == queue.name and one["failed"] == 3 and one["paused"] is False
    assert one["failedPerMinute"] == pytest.approx(3 / 5) and set(one["waitMs"]) == {"p50", "p95"}

    page = data(await client.get(f"{API}/queue/dead-letter/{queue.name}",
                                       params={"page": 2, "pageSize": 2}))
    assert page["total"] == 3 and page["page"] == 2 and page["pageSize"] == 2
    [oldest] = page["jobs"]
    assert oldest["id"] in ids
    assert "boom" in oldest["failedReason"] and oldest["attemptsMade"] == 1
    assert oldest["finishedOn"].endswith("Z") and isinstance(oldest["finishedOnMs"], int)

    board = data(await client.get(f"{API}/queue/dashboard"))
    assert board["status"] == "critical"  # "other" waits with no worker
    assert {q["queueName"]: q["status"] for q in board["queues"]} == {
        queue.name: "warning", "other": "critical"}
    assert board["statistics"]["totals"]["failed"] == 3
    assert {a["jobId"] for a in board["alerts"]} == set(ids)
    assert all(a["queueName"] == queue.name for a in board["alerts"])
    assert {p["queueName"] for p in board["performance"]} == {queue.name, "other"}

    retried = data(await client.post(f"{API}/queue/retry/{queue.name}/{ids[0]}"))
    assert retried == {"queueName": queue.name, "jobId": ids[0], "state": "waiting"}
    assert data(await client.post(f"{API}/queue/clean/{queue.name}")) == {
        "queueName": queue.name, "removed": 2}
    assert data(await client.post(f"{API}/queue/clean/{queue.name}",
                                        json={"state": "waiting", "graceMs": 0, "limit": 5})) \
        == {"queueName": queue.name, "removed": 1}


# -- auth, the dashboard's page, mounting ------------------------------------------------


async def test_a_token_guards_the_api_and_metrics_but_not_the_page(
    redis_url: str, queue: Queue
) -> None:
    await queue.add("a")
    app = create_app(redis_url, token="s3cret")
    async with asgi_client(app) as client:
        for path in (f"{API}/queues", f"{API}/health", "/metrics"):
            found = error(await client.get(path), 401, "unauthorized")
            assert "Bearer" in found["message"]
            error(await client.get(path, headers={"Authorization": "Bearer nope"}),
                  401, "unauthorized")
            error(await client.get(path, headers={"Authorization": "Basic czNjcmV0"}),
                  401, "unauthorized")
        response = await client.get(f"{API}/queues")
        assert response.headers["www-authenticate"] == "Bearer"
        good = {"Authorization": "Bearer s3cret"}
        assert len(data(await client.get(f"{API}/queues", headers=good))) == 1
        assert (await client.get("/metrics", headers=good)).status_code == 200
        assert (await client.get("/")).status_code == 200
        assert (await client.get("/static/app.js")).status_code == 200
        schema = (await client.get(f"{API}/openapi.json")).json()
        assert "/api/v1/queues/{queue}/jobs" in schema["paths"]
    await app.state.conveyor.close()


async def test_the_page_knows_its_base_path_when_mounted(redis_url: str, queue: Queue) -> None:
    await queue.add("a")
    parent = FastAPI()
    child = create_app(redis_url)
    parent.mount("/jobs", child)
    async with asgi_client(parent) as client:
        page = await client.get("/jobs/")
        assert page.status_code == 200 and '<base href="/jobs/">' in page.text
        assert page.headers["content-type"].startswith("text/html")
        assert (await client.get("/jobs")).status_code in (307, 308)
        assert (await client.get("/jobs/static/app.css")).status_code == 200
        [summary] = data(await client.get("/jobs/api/v1/queues"))
        assert summary["name"] == queue.name
        assert "/jobs/api/v1/openapi.json" in (await client.get("/jobs/api/v1/docs")).text
    async with asgi_client(child) as client:
        assert '<base href="/">' in (await client.get("/")).text
    await child.state.conveyor.close()


async def test_without_the_dashboard_only_the_api_is_served(redis_url: str) -> None:
    app = create_app(redis_url, dashboard=False)
    async with asgi_client(app) as client:
        error(await client.get("/"), 404, "not_found")
        assert data(await client.get(f"{API}/queues")) == []
    await app.state.conveyor.close()


async def test_redis_down_is_a_503_not_a_crash() -> None:
    app = create_app(f"redis://127.0.0.1:{refused_port()}/0")
    async with asgi_client(app) as client:
        error(await client.get(f"{API}/health"), 503, "redis_unavailable")
        error(await client.get(f"{API}/queues/x"), 503, "redis_unavailable")
    await app.state.conveyor.close()


def test_create_app_refuses_a_bad_token_or_queue_name() -> None:
    with pytest.raises(ValueError, match="token"):
        create_app(token="")
    with pytest.raises(ValueError, match="name"):
        create_app(queues=["bad:name"])


# -- a real server ---------------------------------------------------------------------


def test_serving_beyond_loopback_needs_a_token() -> None:
    for host in ("0.0.0.0", "::", "192.168.1.10", "example.com", ""):
        with pytest.raises(ValueError, match="without a token"):
            check_listen(host, None)
        check_listen(host, "a-token-of-16-ch")  # beyond loopback: 16 characters or more
    for host in ("127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"):
        check_listen(host, None)
    with pytest.raises(ValueError, match="without a token"):
        serve(create_app(), host="0.0.0.0", port=free_port())
    with pytest.raises(ValueError, match="differs"):
        serve(create_app(token="a"), host="0.0.0.0", port=free_port(), token="b")


async def test_through_a_real_uvicorn(redis_url: str, queue: Queue,
                                      start_worker: StartWorker) -> None:
    job = await queue.add("real", {"n": 1})
    app = create_app(redis_url)
    port = free_port()
    # A token given to serve() is enforced by an app built without one.
    server = asyncio.create_task(serve_async(app, "127.0.0.1", port, token="t0k",
                                             log_level="warning"))
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base) as client:
            async def up() -> bool:
                try:
                    return (await client.get("/")).status_code == 200
                except httpx.TransportError:
                    return False

            await wait_for(up)
            error(await client.get(f"{API}/queues"), 401, "unauthorized")
            auth = {"Authorization": "Bearer t0k"}
            detail = data(await client.get(f"{API}/queues/{queue.name}/jobs/{job.id}",
                                                 headers=auth))
            assert detail["data"] == {"n": 1} and detail["state"] == "waiting"
            start_worker(succeed)
            await wait_for(lambda: finished(queue, job.id))
            metrics = await client.get("/metrics", headers=auth)
            assert f'conveyor_jobs{{queue="{queue.name}",state="completed"}} 1.0' in metrics.text
            # Over the 1 MiB body limit: refused before the body is read.
            error(await client.post(f"{API}/queues/{queue.name}/jobs", headers=auth,
                                    json={"name": "x", "data": {"big": "x" * 2_000_000}}),
                  413, "body_too_large")
    finally:
        server.cancel()
        with pytest.raises(asyncio.CancelledError):
            await server


async def test_seed_queue_entries_name_the_queue_first_as_the_seed_shows(
    client: httpx.AsyncClient, queue: Queue
) -> None:
    await queue.add("x")
    counts = ["waiting", "active", "completed", "failed", "delayed", "total"]
    metrics = data(await client.get(f"{API}/queue/metrics"))
    assert [list(q) for q in metrics["queues"]] == [["queueName", *counts]]
    assert list(metrics["totals"]) == counts
    one = data(await client.get(f"{API}/queue/metrics/{queue.name}"))
    assert list(one)[:7] == ["queueName", *counts]
    board = data(await client.get(f"{API}/queue/dashboard"))
    assert list(board["statistics"]["queues"][0])[:7] == ["queueName", *counts]
