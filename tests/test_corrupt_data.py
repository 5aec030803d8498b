"""A corrupt job hash (or worker heartbeat entry) harms that job (or entry) alone:
a worker fails it with a clear reason and runs the rest of its batch; lists,
job pages, ``conveyor stats`` and ``/metrics`` still answer."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import pytest
import redis as redis_sync
import redis.asyncio as aioredis
from click.testing import CliRunner

from conveyor import Job, JobFailedError, Queue, ValidationError
from conveyor.cli import main
from helpers import StartWorker, finished, queue_state_is, wait_for
from web_support import api_client

Corrupt = Callable[[aioredis.Redis, str], Awaitable[Any]]


def hset(field: str, value: bytes) -> Corrupt:
    async def corrupt(redis: aioredis.Redis, key: str) -> None:
        await redis.hset(key, field, value)
    return corrupt


async def _a_string(redis: aioredis.Redis, key: str) -> None:
    await redis.delete(key)
    await redis.set(key, "not a hash")


async def _a_list(redis: aioredis.Redis, key: str) -> None:
    await redis.delete(key)
    await redis.rpush(key, "not", "a", "hash")


CORRUPTIONS: dict[str, Corrupt] = {
    "attempts-made-not-a-number": hset("atm", b"x"),
    "attempts-started-not-a-number": hset("ats", b"many"),
    "timestamp-not-a-number": hset("ts", b"yesterday"),
    "data-not-json": hset("data", b"{oops"),
    "opts-not-json": hset("opts", b"{oops"),
    "opts-of-the-wrong-shape": hset("opts", b'{"backoff": 5, "remove_on_fail": [1]}'),
    "opts-a-list": hset("opts", b"[1, 2]"),
    "progress-not-json": hset("pr", b"{"),
    "stacktrace-not-json": hset("st", b"nope"),
    "name-not-utf8": hset("name", b"caf\xe9"),
    "failed-reason-not-utf8": hset("fr", b"\xff\xfe boom"),
    "key-is-a-string": _a_string,
    "key-is-a-list": _a_list,
}


async def _corrupt_second_of_three(
    queue: Queue, redis: aioredis.Redis, corruption: str
) -> tuple[Job, Job, Job]:
    a, b, c = [await queue.add(name, {"n": name}) for name in "abc"]
    await CORRUPTIONS[corruption](redis, queue.keys.job(b.id))
    return a, b, c


# -- the worker ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "corruption", [name for name in CORRUPTIONS if name != "attempts-started-not-a-number"]
)
async def test_a_corrupt_job_fails_alone_and_the_rest_of_its_batch_runs(
    queue: Queue, redis: aioredis.Redis, start_worker: StartWorker, corruption: str
) -> None:
    a, b, c = await _corrupt_second_of_three(queue, redis, corruption)
    ran: list[str] = []
    failures: list[tuple[str, str]] = []

    async def process(job: Job) -> str:
        ran.append(job.id)
        return "done"

    worker = start_worker(process, concurrency=3)  # one fetch takes all three
    worker.on("failed", lambda job, exc: failures.append((job.id, str(exc))))
    await wait_for(lambda: queue_state_is(queue, b.id, "failed"), message="b failed")
    await wait_for(lambda: finished(queue, a.id))
    await wait_for(lambda: finished(queue, c.id))
    assert await queue.get_job_state(a.id) == await queue.get_job_state(c.id) == "completed"
    assert sorted(ran) == sorted([a.id, c.id])

    # the worker's loop lives on
    d = await queue.add("d")
    await wait_for(lambda: finished(queue, d.id))

    job = await queue.get_job(b.id)
    assert job is not None
    [event] = [e for e in await _events(redis, queue) if e.get(b"job_id") == b.id.encode()
               and e[b"event"] == b"failed"]
    assert b"corrupt job" in event[b"failed_reason"]
    if corruption.startswith("key-is"):
        # failed by the fetch itself: no worker ever held it
        assert job.corrupt is not None and "not a hash" in job.corrupt
        assert failures == []
    else:
        [(failed_id, reason)] = failures
        assert failed_id == b.id and "corrupt job" in reason
        assert job.failed_reason is not None and "corrupt job" in job.failed_reason
        assert job.attempts_made == 1


async def _events(redis: aioredis.Redis, queue: Queue) -> list[dict[bytes, bytes]]:
    return [fields for _, fields in await redis.xrange(queue.keys.events)]


async def test_a_job_whose_attempts_started_is_unreadable_runs_counted_from_zero(
    queue: Queue, redis: aioredis.Redis, start_worker: StartWorker
) -> None:
    a, b, c = await _corrupt_second_of_three(queue, redis, "attempts-started-not-a-number")
    async def attempt_number(job: Job) -> int:
        return job.attempts_started

    start_worker(attempt_number, concurrency=3)
    for job in (a, b, c):
        assert await job.wait_until_finished(timeout=10) == 1


async def test_a_corrupt_job_is_not_retried(
    queue: Queue, redis: aioredis.Redis, start_worker: StartWorker
) -> None:
    job = await queue.add("x", attempts=5)
    await redis.hset(queue.keys.job(job.id), "data", b"{oops")
    start_worker(lambda j: None)
    await wait_for(lambda: queue_state_is(queue, job.id, "failed"))
    found = await queue.get_job(job.id)
    assert found is not None and found.attempts_made == 1
    assert found.failed_reason is not None and "data" in found.failed_reason


# -- reading ------------------------------------------------------------------------------


@pytest.mark.parametrize("corruption", CORRUPTIONS)
async def test_get_jobs_and_get_job_show_a_corrupt_job_beside_the_others(
    queue: Queue, redis: aioredis.Redis, corruption: str
) -> None:
    a, b, c = await _corrupt_second_of_three(queue, redis, corruption)

    jobs = await queue.get_jobs("waiting", asc=True)

    assert [j.id for j in jobs] == [a.id, b.id, c.id]
    assert [j.corrupt for j in jobs][::2] == [None, None]
    assert jobs[0].data == {"n": "a"} and jobs[2].data == {"n": "c"}
    found = await queue.get_job(b.id)
    assert found is not None and found.id == b.id
    assert found.corrupt is not None and found.corrupt == jobs[1].corrupt
    await found.refresh()  # refresh is as forgiving
    assert found.corrupt is not None


async def test_the_readable_fields_of_a_corrupt_job_are_kept(
    queue: Queue, redis: aioredis.Redis
) -> None:
    job = await queue.add("report", {"month": 5}, attempts=3)
    await redis.hset(queue.keys.job(job.id), "atm", b"x")
    found = await queue.get_job(job.id)
    assert found is not None
    assert (found.name, found.data, found.opts.attempts) == ("report", {"month": 5}, 3)
    assert found.timestamp == job.timestamp
    assert found.corrupt == "atm: not an integer: 'x'"


async def test_get_job_of_an_id_no_job_can_have_is_refused(queue: Queue) -> None:
    job = await queue.add("x")
    await job.log("a line")  # job:<id>:logs is a list
    with pytest.raises(ValidationError, match=r"^job_id: may not contain ':'"):
        await queue.get_job(f"{job.id}:logs")


# -- REST, dashboard API, CLI, /metrics ------------------------------------------------------

API = "/api/v1"


@pytest.mark.parametrize("corruption",
                         ["opts-not-json", "key-is-a-string", "timestamp-not-a-number"])
async def test_rest_lists_and_job_pages_show_a_corrupt_job(
    queue: Queue, redis: aioredis.Redis, redis_url: str, corruption: str
) -> None:
    a, b, c = await _corrupt_second_of_three(queue, redis, corruption)
    await queue.add("d", delay=60_000)  # a delayed job's ts is read by the dashboard
    await redis.hset(queue.keys.job(a.id), "ts", b"not a time")
    async with api_client(redis_url) as client:
        page = await client.get(f"{API}/queues/{queue.name}/jobs", params={"state": "waiting"})
        assert page.status_code == 200, page.text
        listed = page.json()["data"]["jobs"]
        assert {j["id"] for j in listed} == {a.id, b.id, c.id}
        [shown] = [j for j in listed if j["id"] == b.id]
        assert shown["corrupt"]
        detail = await client.get(f"{API}/queues/{queue.name}/jobs/{b.id}")
        assert detail.status_code == 200, detail.text
        assert detail.json()["data"]["corrupt"]
        for path in ("/queue/dashboard", "/queue/metrics", f"/queue/metrics/{queue.name}",
                     "/queues", f"/queues/{queue.name}", f"/queue/dead-letter/{queue.name}"):
            response = await client.get(API + path)
            assert response.status_code == 200, (path, response.text)
        assert (await client.get("/metrics")).status_code == 200


async def test_a_failed_corrupt_job_is_shown_in_the_dashboard_alerts(
    queue: Queue, redis: aioredis.Redis, redis_url: str, start_worker: StartWorker
) -> None:
    job = await queue.add("x")
    await _a_string(redis, queue.keys.job(job.id))
    start_worker(lambda j: None)
    await wait_for(lambda: queue_state_is(queue, job.id, "failed"))
    async with api_client(redis_url) as client:
        board = await client.get(f"{API}/queue/dashboard")
        assert board.status_code == 200, board.text
        assert [a["jobId"] for a in board.json()["data"]["alerts"]] == [job.id]
        dead = await client.get(f"{API}/queue/dead-letter/{queue.name}")
        assert dead.status_code == 200, dead.text


def _cli(*args: str) -> str:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_cli_lists_shows_and_counts_beside_a_corrupt_job_and_heartbeat(
    redis_url: str, queue_name: str
) -> None:
    r = ("--redis", redis_url)
    ids = [orjson.loads(_cli("enqueue", queue_name, name, "--json", *r))["id"] for name in "abcd"]
    base = f"conveyor:{{{queue_name}}}:"
    with redis_sync.Redis.from_url(redis_url) as client:
        client.hset(base + f"job:{ids[1]}", "data", b"{oops")
        client.delete(base + f"job:{ids[2]}")
        client.set(base + f"job:{ids[2]}", "not a hash")
        client.hset(base + f"job:{ids[3]}", "name", b"caf\xe9")  # not UTF-8
        _corrupt_heartbeats(client, base)

    listed = _cli("jobs", "list", queue_name, *r)
    assert f"1-4 of 4 waiting jobs in '{queue_name}'" in listed
    for job_id in ids:
        assert _cli("jobs", "show", queue_name, job_id, *r)
    shown = orjson.loads(_cli("jobs", "show", queue_name, ids[1], "--json", *r))
    assert "data" in shown["corrupt"]
    shown = orjson.loads(_cli("jobs", "show", queue_name, ids[3], "--json", *r))
    assert "name: not UTF-8" in shown["corrupt"]
    [summary] = [s for s in orjson.loads(_cli("stats", "--json", *r)) if s["name"] == queue_name]
    assert summary["counts"]["waiting"] == 4
    assert summary["workers"] == 1  # the readable one
    assert queue_name in _cli("stats", queue_name, *r)
    workers = orjson.loads(_cli("queue", "workers", queue_name, "--json", *r))
    assert [w["id"] for w in workers] == ["fine"]


def _corrupt_heartbeats(client: redis_sync.Redis, base: str) -> None:
    """Four worker entries: one readable, one not JSON, one JSON of the wrong
    shape, one a key of the wrong type."""
    now = int(client.time()[0]) * 1000
    good = {"host": "h", "pid": 1, "conc": 1, "run": [], "ttl": 60_000, "started": now}
    entries: dict[str, Any] = {"fine": orjson.dumps(good), "garbled": b"{oops",
                               "shapeless": b'{"host": 5, "run": 7}'}
    for worker_id, entry in entries.items():
        client.set(base + f"worker:{worker_id}", entry, px=60_000)
    client.hset(base + "worker:hashed", "x", "y")
    client.zadd(base + "workers", {worker_id: now for worker_id in [*entries, "hashed"]})


async def test_get_workers_skips_a_corrupt_heartbeat_entry(
    queue: Queue, redis: aioredis.Redis, redis_url: str
) -> None:
    await queue.add("x")  # the queue exists
    with redis_sync.Redis.from_url(redis_url) as client:
        _corrupt_heartbeats(client, queue.keys.base)
    assert [w.id for w in await queue.get_workers()] == ["fine"]
    async with api_client(redis_url) as client:
        metrics = await client.get("/metrics")
        assert metrics.status_code == 200, metrics.text
        workers = await client.get(f"{API}/queues/{queue.name}/workers")
        assert workers.status_code == 200, workers.text
        assert [w["id"] for w in workers.json()["data"]] == ["fine"]


@pytest.mark.parametrize("corruption", ["data-not-json", "key-is-a-string"])
async def test_waiting_for_a_corrupt_job_raises_its_failure(
    queue: Queue, redis: aioredis.Redis, start_worker: StartWorker, corruption: str
) -> None:
    job = await queue.add("x")
    await CORRUPTIONS[corruption](redis, queue.keys.job(job.id))
    start_worker(lambda j: None)
    with pytest.raises(JobFailedError, match="corrupt job"):
        await job.wait_until_finished(timeout=10)


# -- administering ------------------------------------------------------------------------


async def _failed_with_a_key_that_is_not_a_hash(
    queue: Queue, redis: aioredis.Redis, start_worker: StartWorker
) -> tuple[Job, Job]:
    """Two failed jobs: one readable, one whose key became a string."""
    good, bad = await queue.add("good", attempts=1), await queue.add("bad", attempts=1)
    await _a_string(redis, queue.keys.job(bad.id))

    def boom(job: Job) -> None:
        raise RuntimeError("boom")

    start_worker(boom)
    for job in (good, bad):
        await wait_for(lambda job=job: queue_state_is(queue, job.id, "failed"))
    return good, bad


async def test_remove_deletes_a_job_whose_key_is_not_a_hash(
    queue: Queue, redis: aioredis.Redis, start_worker: StartWorker
) -> None:
    _, bad = await _failed_with_a_key_that_is_not_a_hash(queue, redis, start_worker)
    assert await queue.remove(bad.id)
    assert await queue.get_job_state(bad.id) is None
    assert not await redis.exists(queue.keys.job(bad.id))


async def test_retry_sends_a_job_whose_key_is_not_a_hash_back_to_be_failed_again(
    queue: Queue, redis: aioredis.Redis, start_worker: StartWorker
) -> None:
    good, bad = await _failed_with_a_key_that_is_not_a_hash(queue, redis, start_worker)
    await queue.pause()  # keep the workers off while looking
    await queue.retry_jobs()
    assert await queue.get_job_state(good.id) == "waiting"
    assert await queue.get_job_state(bad.id) == "waiting"
    await queue.resume()
    await wait_for(lambda: _attempts_made_is(queue, good.id, 2))
    await wait_for(lambda: queue_state_is(queue, bad.id, "failed"))
    assert await redis.type(queue.keys.job(bad.id)) == b"string"  # left as found

    await queue.pause()
    await queue.retry_job(bad.id)
    assert await queue.get_job_state(bad.id) == "waiting"


async def test_clean_removes_a_job_whose_key_is_not_a_hash(
    queue: Queue, redis: aioredis.Redis, start_worker: StartWorker
) -> None:
    good, bad = await _failed_with_a_key_that_is_not_a_hash(queue, redis, start_worker)
    assert sorted(await queue.clean(0, 100, "failed")) == sorted([good.id, bad.id])
    assert not await redis.exists(queue.keys.job(bad.id))


async def _attempts_made_is(queue: Queue, job_id: str, n: int) -> bool:
    job = await queue.get_job(job_id)
    return job is not None and job.attempts_made == n
