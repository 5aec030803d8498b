"""``conveyor health``: exit 0 when every queue is healthy, 1 when one is not, 2
when it cannot tell; run as a real process against the suite's redis-server."""

from __future__ import annotations

import uuid

import pytest
import redis.asyncio as aioredis

from cli_process import NOWHERE, conveyor
from conveyor import Job, Queue
from helpers import StartWorker, wait_for

MINUTE = 60_000


async def all_finished(queue: Queue, n: int) -> bool:
    counts = await queue.get_job_counts("completed", "failed")
    return sum(counts.values()) == n


@pytest.mark.cluster
async def test_a_queue_without_a_live_worker_fails_until_one_runs(
    redis_url: str, queue: Queue, start_worker: StartWorker
) -> None:
    await queue.add("send")
    failing = await conveyor("health", queue.name, "--redis", redis_url)
    assert (failing.code, failing.err) == (1, "")
    assert failing.out == (f"FAIL  {queue.name}  0 workers, 1 waiting: 0 live workers (need 1); "
                           "1 job waiting and no worker is running\n")

    start_worker(lambda job: None)
    await wait_for(lambda: all_finished(queue, 1))
    passing = await conveyor("health", queue.name, "--redis", redis_url)
    assert (passing.code, passing.out) == (0, f"OK    {queue.name}  1 worker, 0 waiting\n")
    wants_two = await conveyor("health", queue.name, "--require-workers", "2",
                               "--redis", redis_url)
    assert wants_two.code == 1
    assert wants_two.out.endswith(": 1 live worker (need 2)\n")


async def test_max_waiting(redis_url: str, queue: Queue) -> None:
    await queue.add_bulk([{"name": "a"}] * 3)
    over = await conveyor("health", queue.name, "--require-workers", "0", "--max-waiting", "2",
                          "--redis", redis_url)
    assert over.code == 1
    assert over.out == f"FAIL  {queue.name}  0 workers, 3 waiting: 3 jobs waiting (limit 2)\n"
    within = await conveyor("health", queue.name, "--require-workers", "0", "--max-waiting",
                            "3", "--redis", redis_url)
    assert (within.code, within.out) == (0, f"OK    {queue.name}  0 workers, 3 waiting\n")


async def test_max_failed_rate(redis_url: str, queue: Queue, start_worker: StartWorker) -> None:
    async def half_fail(job: Job) -> None:
        if job.data["fail"]:
            raise RuntimeError("boom")

    start_worker(half_fail)
    await queue.add_bulk([{"name": "a", "data": {"fail": n % 2 == 0}} for n in range(4)])
    await wait_for(lambda: all_finished(queue, 4))
    over = await conveyor("health", queue.name, "--max-failed-rate", "0.4", "--redis", redis_url)
    assert over.code == 1
    assert "50% of jobs failed in the last 5 minutes (limit 40%)" in over.out
    within = await conveyor("health", queue.name, "--max-failed-rate", "0.5", "--json",
                            "--redis", redis_url)
    assert within.code == 0
    [found] = within.json()["queues"]
    assert (found["healthy"], found["failed_rate"], found["status"]) == (True, 0.5, "ok")
    # Without the limit, the health's own rule warns from 10%: a warning passes.
    warned = await conveyor("health", queue.name, "--redis", redis_url)
    assert warned.code == 0
    assert warned.out == (f"OK    {queue.name}  1 worker, 0 waiting: 50% of jobs failed in "
                          "the last 5 minutes (warning from 10%)\n")


async def test_max_oldest_wait(redis_url: str, queue: Queue, redis: aioredis.Redis) -> None:
    old = await queue.add("old")
    await queue.add("new")
    now_s, _ = await redis.time()
    # As if `old` had been added ten minutes ago.
    await redis.hset(queue.keys.job(old.id), "ts", (int(now_s) * 1000) - 10 * MINUTE)
    over = await conveyor("health", queue.name, "--require-workers", "0", "--max-oldest-wait",
                          "5m", "--json", "--redis", redis_url)
    assert over.code == 1
    [found] = over.json()["queues"]
    assert 10 * MINUTE <= found["oldest_wait_ms"] < 11 * MINUTE
    assert found["reasons"][0].startswith("a job has waited 10.0min (limit 5.0min)")
    within = await conveyor("health", queue.name, "--require-workers", "0",
                            "--max-oldest-wait", "1h", "--redis", redis_url)
    assert within.code == 1  # still critical: it waited 5 minutes and none completed
    assert "a job has waited" not in within.out
    assert "jobs have waited over 5 minutes and none completed meanwhile" in within.out


async def test_every_queue_of_the_prefix_one_line_each(redis_url: str) -> None:
    prefix = f"hc{uuid.uuid4().hex[:8]}"
    async with Queue("busy", redis_url, prefix=prefix) as busy, \
            Queue("idle", redis_url, prefix=prefix) as idle:
        await busy.add("a")
        await idle.add("b")
        await idle.pause()
        done = await conveyor("health", "--prefix", prefix, "--redis", redis_url)
    assert done.code == 1
    assert done.out.splitlines() == [
        "FAIL  busy  0 workers, 1 waiting: 0 live workers (need 1); 1 job waiting and no "
        "worker is running",
        "FAIL  idle  0 workers, 1 waiting, paused: 0 live workers (need 1); the queue is paused",
    ]


@pytest.mark.parametrize(("args", "says"), [
    (["--redis", NOWHERE], "Error: cannot connect to Redis at redis://127.0.0.1:1/0"),
    (["no-such-queue"], "Error: queue 'no-such-queue' not found"),
    (["--prefix", "nothing-here"], "Error: no queues found under prefix 'nothing-here'"),
    (["--max-failed-rate", "2"], "Error: Invalid value for '--max-failed-rate'"),
    (["--max-oldest-wait", "soon"], "Error: Invalid value for '--max-oldest-wait'"),
])
async def test_what_cannot_be_checked_exits_2_with_one_line(
    redis_url: str, args: list[str], says: str
) -> None:
    done = await conveyor("health", "--redis", redis_url, *args)
    assert done.code == 2
    assert done.one_error_line().startswith(says)
    assert done.out == ""


@pytest.mark.cluster
async def test_a_partitioned_queue_is_checked_over_its_partitions(
    redis_url: str, queue_name: str
) -> None:
    async with Queue(queue_name, redis_url, partitions=3) as queue:
        await queue.add_bulk([{"name": "a", "data": {"n": n}} for n in range(4)])
    over = await conveyor("health", queue_name, "--require-workers", "0", "--max-waiting", "3",
                          "--max-oldest-wait", "1h", "--json", "--redis", redis_url)
    assert over.code == 1
    [found] = over.json()["queues"]
    assert (found["waiting"], found["reasons"]) == (4, ["4 jobs waiting (limit 3)"])
    assert 0 <= found["oldest_wait_ms"] < MINUTE
