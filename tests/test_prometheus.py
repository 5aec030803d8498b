"""Prometheus metrics: /metrics of the app and start_metrics_server, read back with
prometheus_client's own parser."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from prometheus_client.parser import text_string_to_metric_families

from addresses import accepts, non_loopback_ipv4
from conveyor import Job, Queue
from conveyor.web import create_app, start_metrics_server
from helpers import StartWorker, finished, wait_for
from web_support import asgi_client


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """{(sample name, labels): value} of an exposition."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str,
          **labels: str) -> float:
    return found[(name, frozenset(labels.items()))]


async def work(job: Job) -> Any:
    if job.name == "bad":
        raise RuntimeError("boom")
    await asyncio.sleep(0.02)
    return None


async def all_finished(queue: Queue, ids: list[str]) -> bool:
    return all([await finished(queue, i) for i in ids])


async def test_app_metrics_count_states_totals_timings_and_workers(
    redis_url: str, queue: Queue, start_worker: StartWorker
) -> None:
    ids = [(await queue.add("ok", i)).id for i in range(4)] + [(await queue.add("bad")).id]
    start_worker(work, concurrency=5)
    await wait_for(lambda: all_finished(queue, ids))
    await wait_for(lambda: queue.get_workers())
    await queue.add("later", delay=60_000)
    await queue.pause()
    app = create_app(redis_url)
    async with asgi_client(app) as client:
        response = await client.get("/metrics")
    await app.state.conveyor.close()
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    found = samples(response.text)
    q = queue.name
    assert value(found, "conveyor_jobs", queue=q, state="completed") == 4
    assert value(found, "conveyor_jobs", queue=q, state="failed") == 1
    assert value(found, "conveyor_jobs", queue=q, state="delayed") == 1
    assert value(found, "conveyor_jobs", queue=q, state="waiting") == 0
    assert value(found, "conveyor_jobs_completed_total", queue=q) == 4
    assert value(found, "conveyor_jobs_failed_total", queue=q) == 1
    assert value(found, "conveyor_workers", queue=q) == 1
    assert value(found, "conveyor_queue_paused", queue=q) == 1
    # Every finished job was timed; the 20 ms ones lie between 15 and 31 ms.
    assert value(found, "conveyor_job_processing_seconds_count", queue=q) == 5
    assert value(found, "conveyor_job_processing_seconds_bucket", queue=q, le="+Inf") == 5
    assert value(found, "conveyor_job_processing_seconds_bucket", queue=q, le="0.015") <= 1
    assert value(found, "conveyor_job_processing_seconds_bucket", queue=q, le="0.255") == 5
    assert 0.05 < value(found, "conveyor_job_processing_seconds_sum", queue=q) < 1
    assert value(found, "conveyor_job_wait_seconds_count", queue=q) == 5
    help_text = {f.name: f.documentation for f in text_string_to_metric_families(response.text)}
    assert "two weeks" in help_text["conveyor_jobs_completed"]


async def test_metrics_server_on_a_port_of_its_own(
    redis_url: str, queue: Queue, start_worker: StartWorker
) -> None:
    job = await queue.add("ok")
    start_worker(work)
    await wait_for(lambda: finished(queue, job.id))
    server = start_metrics_server(0, redis_url, [queue.name, "declared"], host="127.0.0.1")
    try:
        url = f"http://127.0.0.1:{server.port}/metrics"
        for _ in range(2):  # the second scrape reuses the collector's client
            response = await asyncio.to_thread(httpx.get, url)
            assert response.status_code == 200
            found = samples(response.text)
            assert value(found, "conveyor_jobs_completed_total", queue=queue.name) == 1
            assert value(found, "conveyor_jobs", queue="declared", state="waiting") == 0
    finally:
        await asyncio.to_thread(server.close)


async def test_metrics_server_with_a_client_runs_on_its_loop(
    redis: aioredis.Redis, queue: Queue
) -> None:
    await queue.add("waits")
    server = start_metrics_server(0, redis, host="127.0.0.1")
    try:
        response = await asyncio.to_thread(httpx.get, f"http://127.0.0.1:{server.port}/metrics")
        found = samples(response.text)
        assert value(found, "conveyor_jobs", queue=queue.name, state="waiting") == 1
    finally:
        await asyncio.to_thread(server.close)


def test_metrics_server_with_a_client_needs_its_loop(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    with pytest.raises(ValueError, match="event loop"):
        start_metrics_server(0, client, host="127.0.0.1")


async def test_metrics_server_listens_on_loopback_only_by_default(redis_url: str) -> None:
    server = start_metrics_server(0, redis_url)
    try:
        assert server.host == "127.0.0.1"
        response = await asyncio.to_thread(httpx.get, f"http://127.0.0.1:{server.port}/metrics")
        assert response.status_code == 200
        outside = non_loopback_ipv4()
        if outside is None:
            pytest.skip("this machine has no non-loopback IPv4 address to try the port from")
        assert not await asyncio.to_thread(accepts, outside, server.port)
    finally:
        await asyncio.to_thread(server.close)


async def test_metrics_server_on_every_interface_when_asked(redis_url: str) -> None:
    outside = non_loopback_ipv4()
    if outside is None:
        pytest.skip("this machine has no non-loopback IPv4 address to try the port from")
    server = start_metrics_server(0, redis_url, host="0.0.0.0")
    try:
        response = await asyncio.to_thread(httpx.get, f"http://{outside}:{server.port}/metrics")
        assert response.status_code == 200
        assert "conveyor_jobs" in response.text
    finally:
        await asyncio.to_thread(server.close)
