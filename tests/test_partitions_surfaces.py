"""A partitioned queue through the CLI and the REST API: listed once, counted,
paged and administered over all its partitions."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from conveyor import Queue, Worker
from conveyor.cli import main
from conveyor.inspection import HealthThresholds, Inspector
from conveyor.web import create_app
from helpers import running, wait_for
from web_support import API, api_client, asgi_client, data


def cli_json(*args: str) -> Any:
    result = CliRunner().invoke(main, [*args, "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return orjson.loads(result.stdout)


def ok(*args: str) -> str:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


async def _fill(redis_url: str, name: str) -> list[str]:
    async with Queue(name, redis_url, partitions=4) as queue:
        jobs = await queue.add_bulk([{"name": "x", "data": i} for i in range(6)])
        await queue.add("later", delay=3_600_000, job_id="d")
        return [job.id for job in jobs]


@pytest.mark.cluster
def test_the_cli_lists_counts_pages_and_administers_a_partitioned_queue(
    redis_url: str, queue_name: str
) -> None:
    ids = asyncio.run(_fill(redis_url, queue_name))
    r = ("--redis", redis_url)
    [summary] = cli_json("stats", *r)  # the logical queue, not its partitions
    assert summary["name"] == queue_name
    assert summary["counts"]["waiting"] == 6 and summary["counts"]["delayed"] == 1
    page = cli_json("jobs", "list", queue_name, *r)
    assert page["total"] == 6 and {j["id"] for j in page["jobs"]} == set(ids)
    assert cli_json("jobs", "show", queue_name, ids[3], *r)["data"] == 3
    ok("jobs", "promote", queue_name, "d", *r)
    assert cli_json("jobs", "show", queue_name, "d", *r)["state"] == "waiting"
    ok("queue", "pause", queue_name, *r)
    assert cli_json("stats", queue_name, *r)[0]["is_paused"] is True
    ok("queue", "resume", queue_name, *r)
    ok("jobs", "remove", queue_name, ids[0], *r)
    added = cli_json("enqueue", queue_name, "via-cli", *r)
    assert added["created"] is True
    assert cli_json("stats", queue_name, *r)[0]["counts"]["waiting"] == 7  # 6 - 1 + d + new


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(redis_url) as found:
        yield found


async def test_the_rest_api_spans_a_partitioned_queue(
    redis_url: str, queue_name: str, client: httpx.AsyncClient
) -> None:
    ids = await _fill(redis_url, queue_name)
    [summary] = data(await client.get(f"{API}/queues"))
    assert summary["name"] == queue_name and summary["counts"]["waiting"] == 6
    jobs = f"{API}/queues/{queue_name}/jobs"
    page = data(await client.get(jobs, params={"state": "waiting", "start": 2, "count": 3}))
    assert page["total"] == 6 and len(page["jobs"]) == 3
    assert data(await client.get(f"{jobs}/{ids[5]}"))["data"] == 5
    made = data(await client.post(jobs, json={"name": "via-api", "data": 1}), 201)
    assert made["state"] == "waiting"
    async with Queue(queue_name, redis_url, partitions=4) as queue:
        assert await queue.get_job(made["id"]) is not None
    assert data(await client.post(f"{API}/queues/{queue_name}/clean",
                                  json={"state": "waiting", "limit": 2})) == {"removed": 2}
    assert data(await client.get(f"{API}/queues/{queue_name}"))["counts"]["waiting"] == 5


@pytest.mark.cluster
async def test_discovery_lists_a_partitioned_queue_once(
    redis_url: str, queue_name: str, redis: Any
) -> None:
    await _fill(redis_url, queue_name)
    await redis.delete("conveyor:queues")  # a registry lost: the keys are scanned
    async with Inspector(redis_url) as inspector:
        assert await inspector.discover() == [queue_name]


async def _fail(job: Any) -> None:
    raise RuntimeError(f"boom {job.id}")


async def test_the_dashboard_shows_a_partitioned_queues_failures_and_stall(
    redis_url: str, queue_name: str, client: httpx.AsyncClient
) -> None:
    async with Queue(queue_name, redis_url, partitions=4) as queue:
        bad = [job.id for job in await queue.add_bulk([{"name": "bad"} for _ in range(4)])]
        async with running(Worker(queue_name, _fail, connection=redis_url, concurrency=4)):
            await wait_for(lambda: _failed(queue, 4))
        board = data(await client.get(f"{API}/queue/dashboard"))
        assert {a["jobId"] for a in board["alerts"]} == set(bad)
        assert {a["queueName"] for a in board["alerts"]} == {queue_name}
        assert await queue.get_workers() == []  # stopped: left every partition's registry
        await queue.add("waits")
        thresholds = HealthThresholds(stalled_minutes=0.001, require_worker=False)
        async with Inspector(redis_url, thresholds=thresholds) as inspector:

            async def stalled() -> list[str]:
                health = await inspector.health(queue_name)
                return [r for r in health.reasons if "waited" in r]

            assert await wait_for(stalled)


async def _failed(queue: Queue, n: int) -> bool:
    return (await queue.get_job_counts("failed"))["failed"] >= n


async def test_prometheus_reports_a_partitioned_queue_once_with_summed_counts(
    redis_url: str, queue_name: str
) -> None:
    async with Queue(queue_name, redis_url, partitions=4) as queue:
        await queue.add_bulk([{"name": "x"} for _ in range(5)])
        async with running(Worker(queue_name, _noop, connection=redis_url, concurrency=5)):
            await wait_for(lambda: _done(queue, 5))
        await queue.add_bulk([{"name": "x"} for _ in range(3)])
        await queue.pause()
    app = create_app(redis_url)
    async with asgi_client(app) as client:
        response = await client.get("/metrics")
    await app.state.conveyor.close()
    found = {(s.name, frozenset(s.labels.items())): s.value
             for family in text_string_to_metric_families(response.text)
             for s in family.samples}
    queues = {dict(labels).get("queue") for _, labels in found} - {None}
    assert queues == {queue_name}
    assert found["conveyor_jobs", frozenset({("queue", queue_name), ("state", "waiting")})] == 3
    assert found["conveyor_jobs_completed_total", frozenset({("queue", queue_name)})] == 5
    assert found["conveyor_queue_paused", frozenset({("queue", queue_name)})] == 1


async def _noop(job: Any) -> None:
    return None


async def _done(queue: Queue, n: int) -> bool:
    return (await queue.get_job_counts("completed"))["completed"] >= n
