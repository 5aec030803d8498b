"""What one Prometheus scrape costs Redis, counted with ``INFO commandstats`` on a
private redis-server: the same number of commands per queue whether a queue
holds 10 jobs or 1000, has one worker or three, one schedule or twenty (the
formula is the one docs/guides/metrics.md and conveyor.web.prometheus state)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis as redis_sync
from prometheus_client.parser import text_string_to_metric_families

from conveyor import FlowProducer, Queue
from conveyor.inspection import Inspector
from conveyor.web.prometheus import render_metrics
from helpers import wait_for
from redis_server import RedisServer, flushed

WORKER = '''
import asyncio
import sys

from conveyor import Worker


async def work(job):
    if job.name == "bad":
        raise RuntimeError("boom")
    if job.name == "hang":  # still active when this process is killed
        await asyncio.Event().wait()


async def main():
    url, names = sys.argv[1], sys.argv[2].split(",")
    workers = [Worker(name, work, connection=url, concurrency=20, handle_signals=False)
               for name in names]
    await asyncio.gather(*(worker.run() for worker in workers))


asyncio.run(main())
'''

#: Commands that measure or set up a connection (the pool pings each new one),
#: not the scrape's.
NOT_THE_SCRAPE = ("info", "config|resetstat", "ping", "hello", "select", "client|setinfo",
                  "client|setname")
GROUPS = 3


def scrape_formula(queues: int, unread_minutes: int) -> int:
    """The documented cost of a scrape: SMEMBERS of the registry and one TIME,
    then per queue one pipeline of 16 + r commands (EXISTS, 7 counts, 2 HVALS,
    HMGET, 5 reads of workers and groups, an HGETALL per minute of timings
    not read before), and one more with an EXISTS (the queue has workers) and
    an LLEN per group with jobs."""
    return 2 + queues * (16 + unread_minutes + 1 + GROUPS)


@dataclass(frozen=True)
class Scenario:
    jobs: int
    workers: int
    schedulers: int

    def split(self) -> dict[str, int]:
        """How many jobs of each kind a queue gets (about ``jobs`` in all)."""
        tenth = max(self.jobs // 10, 1)
        return {"ok": 3 * tenth, "bad": tenth, "hang": 2, "waiting": tenth,
                "prioritized": tenth, "delayed": tenth, "parents": tenth,
                "grouped": max(tenth, GROUPS)}


@pytest.fixture(scope="module")
def private_redis() -> Iterator[RedisServer]:
    """A server nothing else talks to, so its command counts are the scrape's."""
    with RedisServer() as server:
        yield server


@pytest.fixture
def url(private_redis: RedisServer) -> str:
    return flushed(private_redis)


@pytest.fixture
async def queues(url: str, request: pytest.FixtureRequest) -> AsyncIterator[list[Queue]]:
    made = [Queue(f"cost-{i}", url) for i in range(request.param)]
    try:
        yield made
    finally:
        for queue in made:
            await queue.close()


def start_workers(url: str, names: list[str], count: int, tmp_path: Path) -> list[
        subprocess.Popen[bytes]]:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    return [subprocess.Popen([sys.executable, str(script), url, ",".join(names)],
                             env=os.environ.copy()) for _ in range(count)]


async def populate(url: str, queues: list[Queue], scenario: Scenario, tmp_path: Path) -> None:
    """Jobs in every state, live workers and job schedulers on every queue.

    Worker processes run the ok/bad/hang jobs and are then killed: their
    heartbeats keep them live for 45 s, and nothing else talks to Redis while
    the test counts."""
    split = scenario.split()
    for queue in queues:
        await queue.add_bulk([{"name": kind, "data": i} for kind in ("ok", "bad", "hang")
                              for i in range(split[kind])])
    procs = start_workers(url, [q.name for q in queues], scenario.workers, tmp_path)
    try:
        for queue in queues:
            await wait_for(lambda q=queue: processed(q, split), timeout=60,
                           message=f"jobs of {queue.name} processed")
            await wait_for(lambda q=queue: workers_are(q, scenario.workers), timeout=30)
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
    flows = FlowProducer(url)
    for queue in queues:
        await queue.add_bulk(
            [{"name": "w", "data": i} for i in range(split["waiting"])]
            + [{"name": "p", "data": i, "priority": 1 + i % 5}
               for i in range(split["prioritized"])]
            + [{"name": "d", "data": i, "delay": 3_600_000} for i in range(split["delayed"])]
            + [{"name": "g", "data": i, "group": f"g{i % GROUPS}"}
               for i in range(split["grouped"])]
        )
        await flows.add_bulk([{"name": "parent", "queue_name": queue.name, "children": [
            {"name": "child", "queue_name": queue.name}]} for _ in range(split["parents"])])
        for i in range(scenario.schedulers):
            await queue.upsert_job_scheduler(f"s{i}", every=3_600_000)
    await flows.close()


async def processed(queue: Queue, split: dict[str, int]) -> bool:
    counts = await queue.get_job_counts("completed", "failed", "active")
    return counts == {"completed": split["ok"], "failed": split["bad"], "active": split["hang"]}


async def workers_are(queue: Queue, n: int) -> bool:
    return len(await queue.get_workers()) == n


async def count_scrape(url: str, inspector: Inspector) -> tuple[int, dict[str, int], str]:
    """Commands (total and by name) that one scrape sent, and its exposition."""
    with redis_sync.Redis.from_url(url) as admin:
        admin.config_resetstat()
        body = await render_metrics(inspector)
        stats = admin.info("commandstats")
    calls = {name.removeprefix("cmdstat_"): int(stat["calls"]) for name, stat in stats.items()}
    calls = {name: n for name, n in calls.items() if name not in NOT_THE_SCRAPE}
    return sum(calls.values()), calls, body.decode()


def redis_minute(url: str) -> int:
    with redis_sync.Redis.from_url(url) as admin:
        seconds, micros = admin.time()
    return (seconds * 1000 + micros // 1000) // 60_000


def gauge(body: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    raise AssertionError(f"no sample {name} {labels}")


@pytest.mark.parametrize("queues", [1, 10], indirect=True, ids=["1 queue", "10 queues"])
@pytest.mark.parametrize("scenario", [Scenario(10, 1, 1), Scenario(1000, 3, 20)],
                         ids=["10 jobs, 1 worker, 1 schedule",
                              "1000 jobs, 3 workers, 20 schedules"])
async def test_a_scrape_costs_the_documented_commands_per_queue_whatever_the_queue_holds(
    url: str, queues: list[Queue], scenario: Scenario, tmp_path: Path
) -> None:
    await populate(url, queues, scenario, tmp_path)
    for _ in range(3):  # until both scrapes fall in one minute
        before = redis_minute(url)
        async with Inspector(url) as inspector:
            total, calls, body = await count_scrape(url, inspector)
            again, calls_again, body_again = await count_scrape(url, inspector)
        if redis_minute(url) == before:
            break
    # The first reads the 180 minutes of timings; the second the current one only.
    assert total == scrape_formula(len(queues), 180), calls
    assert again == scrape_formula(len(queues), 1), calls_again
    assert body_again == body
    split = scenario.split()
    for queue in queues:  # the scrape saw what the test made
        assert gauge(body, "conveyor_workers", queue=queue.name) == scenario.workers
        assert gauge(body, "conveyor_jobs", queue=queue.name, state="completed") == split["ok"]
        assert gauge(body, "conveyor_jobs", queue=queue.name, state="delayed") == (
            split["delayed"] + scenario.schedulers)
        assert gauge(body, "conveyor_jobs", queue=queue.name,
                     state="waiting-children") == split["parents"]
        assert gauge(body, "conveyor_jobs", queue=queue.name, state="waiting") == (
            split["waiting"] + split["parents"] + split["grouped"])


def processing_count(body: bytes, queue: Queue) -> float:
    return gauge(body.decode(), "conveyor_job_processing_seconds_count", queue=queue.name)


async def test_kept_minutes_of_an_obliterated_queue_are_not_reported(url: str) -> None:
    async with Queue("cost-0", url) as queue, Inspector(url) as inspector:
        await queue.add("x")
        minute = redis_minute(url)
        # Timings as workers write them (keys.py): an ended minute and the current one.
        await queue.client.hset(queue.keys.metrics_times(minute - 5), "p8", 3)
        await queue.client.hset(queue.keys.metrics_times(minute), "p8", 1)
        assert processing_count(await render_metrics(inspector), queue) == 4
        await queue.client.hincrby(queue.keys.metrics_times(minute), "p8", 1)
        assert processing_count(await render_metrics(inspector), queue) == 5
        await queue.obliterate()
        await queue.add("x")
        assert processing_count(await render_metrics(inspector), queue) == 0
