"""List pages read only what they show: a page of jobs with 1 MiB of data (and
failures with a 1 MiB reason and progress) costs Redis little to send, and the
dashboard little memory, through the Inspector, the REST API, the dashboard's
process and the CLI; what a row cuts short says so."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import httpx
import orjson
import pytest
import redis as redis_sync
import redis.asyncio as aioredis
from click.testing import CliRunner

from conveyor import Job, Queue, Worker
from conveyor.cli import main
from conveyor.inspection import Inspector
from guarded_server import Served, dashboard_process
from helpers import running, wait_for
from web_support import api_client

T = TypeVar("T")

MIB = 1024 * 1024
BIG = "x" * (MIB - 16)  # 1 MiB as JSON, just under the default max_data_bytes
WAITING = 150
FAILED = 20
#: What Redis may send for one list call (today's code sends ~150 MiB).
MOST_SENT = 2 * MIB
#: What one answer may weigh (150 rows of a few hundred bytes, 20 with previews).
MOST_ANSWER = 256 * 1024
API = "/api/v1"


async def _fail_big(job: Job) -> None:
    await job.update_progress({"blob": BIG})
    raise ValueError("r" * MIB)


async def fill(queue: Queue, redis_url: str) -> None:
    """FAILED jobs failed with a 1 MiB reason, stack and progress, then WAITING
    jobs of 1 MiB data each (no worker left running)."""
    await queue.add_bulk([{"name": "doomed", "data": BIG} for _ in range(FAILED)])
    async with running(Worker(queue.name, _fail_big, connection=redis_url,
                              handle_signals=False)):
        await wait_for(lambda: _failed_count(queue, FAILED), timeout=60)
    await queue.add_bulk([{"name": "big", "data": BIG} for _ in range(WAITING)])


@pytest.fixture
async def big_queue(queue: Queue, redis_url: str) -> Queue:
    await fill(queue, redis_url)
    return queue


async def _failed_count(queue: Queue, n: int) -> bool:
    return (await queue.get_job_counts("failed"))["failed"] == n


async def sent_by_redis(redis: aioredis.Redis, call: Callable[[], Awaitable[T]]) -> tuple[T, int]:
    """``call()``'s result and the bytes Redis sent all its clients meanwhile."""
    before = (await redis.info("stats"))["total_net_output_bytes"]
    result = await call()
    after = (await redis.info("stats"))["total_net_output_bytes"]
    return result, after - before


# -- the Inspector -------------------------------------------------------------------------


async def test_a_page_of_big_jobs_costs_redis_little_to_send(
    big_queue: Queue, redis: aioredis.Redis, redis_url: str
) -> None:
    async with Inspector(redis_url) as inspector:
        page, sent = await sent_by_redis(
            redis, lambda: inspector.jobs(big_queue.name, "waiting", count=WAITING))
        assert page.total == WAITING and len(page.jobs) == WAITING
        assert {job.name for job in page.jobs} == {"big"}
        assert sent < MOST_SENT, sent
        assert len(orjson.dumps(page.to_dict())) < MOST_ANSWER


async def test_failed_rows_preview_the_reason_and_progress_and_say_so(
    big_queue: Queue, redis: aioredis.Redis, redis_url: str
) -> None:
    async with Inspector(redis_url) as inspector:
        page, sent = await sent_by_redis(
            redis, lambda: inspector.jobs(big_queue.name, "failed", count=FAILED))
        assert sent < MOST_SENT, sent
        assert len(page.jobs) == FAILED
        for row in page.to_dict()["jobs"]:
            assert row["failed_reason"].startswith("ValueError: rrrr")
            assert len(row["failed_reason"]) <= 1024
            assert row["failed_reason_truncated"] is True
            assert row["progress_truncated"] is True
            assert row["progress"].startswith('{"blob":"xxx')
            assert row["name"] == "doomed" and row["name_truncated"] is False
            assert row["attempts_made"] == 1
        # The job itself still has all of it.
        detail = await inspector.job(big_queue.name, page.jobs[0].id)
        assert detail.summary.failed_reason is not None
        assert len(detail.summary.failed_reason) >= MIB
        assert detail.summary.failed_reason_truncated is False
        assert detail.summary.progress == {"blob": BIG}


async def test_the_dashboards_alerts_preview_the_reason(
    big_queue: Queue, redis: aioredis.Redis, redis_url: str
) -> None:
    async with Inspector(redis_url) as inspector:
        board, sent = await sent_by_redis(redis, inspector.dashboard)
        assert sent < MOST_SENT, sent
        assert len(board.alerts) == FAILED
        for alert in board.alerts:
            assert alert["name"] == "doomed"
            assert len(alert["reason"]) <= 1024 and alert["reason_truncated"] is True


# -- the REST API ------------------------------------------------------------------------------


async def test_rest_lists_of_big_jobs_are_small_and_say_truncated(
    big_queue: Queue, redis: aioredis.Redis, redis_url: str
) -> None:
    async with api_client(redis_url) as client:
        q = big_queue.name
        for path, params in (
            (f"/queues/{q}/jobs", {"state": "waiting", "count": WAITING}),
            (f"/queues/{q}/jobs", {"state": "failed", "count": FAILED}),
            (f"/queue/dead-letter/{q}", {"pageSize": FAILED}),
            ("/queue/dashboard", {}),
        ):
            async def get(path: str = path, params: Any = params) -> httpx.Response:
                return await client.get(API + path, params=params)

            response, sent = await sent_by_redis(redis, get)
            assert response.status_code == 200, response.text[:200]
            assert sent < MOST_SENT, (path, params, sent)
            assert len(response.content) < MOST_ANSWER, (path, len(response.content))
        failed = (await client.get(f"{API}/queues/{q}/jobs",
                                   params={"state": "failed"})).json()["data"]["jobs"]
        assert all(j["failed_reason_truncated"] and j["progress_truncated"] for j in failed)
        dead = (await client.get(f"{API}/queue/dead-letter/{q}")).json()["data"]["jobs"]
        assert all(j["failedReasonTruncated"] for j in dead)
        board = (await client.get(f"{API}/queue/dashboard")).json()["data"]
        assert all(a["reasonTruncated"] for a in board["alerts"])
        detail = (await client.get(f"{API}/queues/{q}/jobs/{failed[0]['id']}")).json()
        assert len(detail["data"]["failed_reason"]) >= MIB  # the job page has all of it


@pytest.fixture
def dashboard(redis_url: str) -> Iterator[Served]:
    """``conveyor dashboard`` in a process of its own."""
    with dashboard_process(redis_url) as served:
        yield served


async def test_the_dashboards_memory_does_not_grow_with_the_jobs_data(
    big_queue: Queue, dashboard: Served
) -> None:
    before = dashboard.peak_rss_bytes()
    sizes = []
    async with httpx.AsyncClient(base_url=dashboard.url.rstrip("/") + API, timeout=60) as client:
        for state, count in (("waiting", WAITING), ("failed", FAILED)):
            response = await client.get(f"/queues/{big_queue.name}/jobs",
                                        params={"state": state, "count": count})
            assert response.status_code == 200, response.text[:200]
            sizes.append(len(response.content))
        assert (await client.get("/queue/dashboard")).status_code == 200
    grown = dashboard.peak_rss_bytes() - before
    assert grown < 50 * MIB, f"the dashboard's peak grew by {grown / MIB:.0f} MiB"
    assert max(sizes) < MOST_ANSWER, sizes


# -- the CLI ------------------------------------------------------------------------------------


def test_cli_lists_read_little(redis_url: str, queue_name: str) -> None:
    async def setup() -> None:
        async with Queue(queue_name, redis_url) as queue:
            await fill(queue, redis_url)

    asyncio.run(setup())
    redis = redis_sync.Redis.from_url(redis_url)

    def sent_by(*args: str) -> tuple[str, int]:
        before = redis.info("stats")["total_net_output_bytes"]
        result = CliRunner().invoke(main, [*args, "--redis", redis_url],
                                    catch_exceptions=False)
        sent = redis.info("stats")["total_net_output_bytes"] - before
        assert result.exit_code == 0, result.output[:400]
        return result.stdout, sent

    try:
        out, sent = sent_by("jobs", "list", queue_name, "--state", "failed", "--json")
        assert sent < MOST_SENT, sent
        assert all(j["failed_reason_truncated"] for j in orjson.loads(out)["jobs"])
        out, sent = sent_by("jobs", "list", queue_name, "--count", str(WAITING), "--json")
        assert sent < MOST_SENT, sent
        assert len(orjson.loads(out)["jobs"]) == WAITING
        _, sent = sent_by("jobs", "list", queue_name, "--state", "failed")
        assert sent < MOST_SENT, sent
        _, sent = sent_by("stats")
        assert sent < MOST_SENT, sent
    finally:
        redis.close()
