"""Concurrent adds on one Queue share round trips: while one add is in flight
the next gather and go as one add_jobs call (conveyor._autobatch), each caller
still getting its own job or its own error. Round trips are counted by Redis
itself (INFO commandstats: one EVALSHA per script call)."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import pytest
import redis.asyncio as aioredis
from chaos.reply_dropper import ReplyDropper
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError, ResponseError

from conveyor import Job, Queue
from conveyor._stream import decode_entry
from conveyor.errors import ValidationError
from conveyor.scripts import source
from helpers import wait_for
from redis_server import RedisServer


async def _script_calls(redis: aioredis.Redis) -> int:
    info: dict[str, Any] = await redis.info("commandstats")
    return int(info.get("cmdstat_evalsha", {}).get("calls", 0))


async def _warm(queue: Queue) -> None:
    """One add first: the queue is registered and the script loaded, so what
    follows costs only its script calls."""
    assert await queue.remove((await queue.add("warm-up")).id)


async def _events(redis: aioredis.Redis, queue: Queue) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for entry_id, entry in await redis.xrange(queue.keys.events):
        found.extend((e["event"], e["job_id"]) for e in decode_entry(entry_id, entry))
    return found


@pytest.mark.cluster
async def test_concurrent_adds_make_one_job_each(queue: Queue) -> None:
    jobs = await asyncio.gather(*(queue.add("n", {"i": i}) for i in range(300)))

    assert [job.data for job in jobs] == [{"i": i} for i in range(300)]
    assert sorted(int(job.id) for job in jobs) == list(range(1, 301))
    # FIFO: the wait list holds them in the order Redis added them (their ids);
    # concurrent calls have no order between them, but a batch keeps call order.
    stored = await queue.get_jobs("waiting", asc=True)
    assert [(job.id, job.data) for job in stored] == sorted(
        ((job.id, job.data) for job in jobs), key=lambda pair: int(pair[0])
    )
    first_batch = [int(job.id) for job in jobs[1:51]]  # all in the first batch
    assert first_batch == list(range(first_batch[0], first_batch[0] + 50))


async def test_concurrent_adds_share_round_trips(queue: Queue, redis: aioredis.Redis) -> None:
    await _warm(queue)
    before = await _script_calls(redis)
    await asyncio.gather(*(queue.add("n", i) for i in range(200)))
    # The first goes alone, at once; the 199 that came while it was in flight go
    # in two batches, one sent at once, one when the lone add returned.
    assert await _script_calls(redis) - before == 3
    assert await queue.get_job_counts("waiting") == {"waiting": 200}


async def test_adds_one_by_one_each_go_out_alone(queue: Queue, redis: aioredis.Redis) -> None:
    await _warm(queue)
    before = await _script_calls(redis)
    for i in range(5):
        job = await queue.add("n", i)
        assert await queue.get_job(job.id) is not None  # in Redis when add returns
    assert await _script_calls(redis) - before == 5


async def test_a_batch_holds_at_most_a_thousand_jobs(queue: Queue, redis: aioredis.Redis) -> None:
    await _warm(queue)
    before = await _script_calls(redis)
    jobs = await asyncio.gather(*(queue.add("n", i) for i in range(2_500)))
    assert await _script_calls(redis) - before == 4  # 1 alone, then 1,000 + 1,000 + 499
    assert len({job.id for job in jobs}) == 2_500
    assert await queue.get_job_counts("waiting") == {"waiting": 2_500}


async def test_batches_keep_going_while_producers_keep_adding(
    queue: Queue, redis: aioredis.Redis
) -> None:
    await _warm(queue)
    before = await _script_calls(redis)

    async def produce(p: int) -> list[Job]:
        return [await queue.add("n", [p, i]) for i in range(20)]

    made = await asyncio.gather(*(produce(p) for p in range(50)))
    calls = await _script_calls(redis) - before
    assert calls <= 100  # 1,000 adds in batches of about 25 (one by one: 1,000 calls)
    assert sorted(job.data for jobs in made for job in jobs) == sorted(
        [p, i] for p in range(50) for i in range(20)
    )
    for jobs in made:  # each producer's jobs were added in its order
        assert [int(job.id) for job in jobs] == sorted(int(job.id) for job in jobs)
    assert await queue.get_job_counts("waiting") == {"waiting": 1_000}


async def test_a_bad_option_fails_its_call_at_once_and_no_neighbour(queue: Queue) -> None:
    call = queue.add("bad", delay=-1)
    with pytest.raises(ValidationError) as info:
        call.send(None)  # refused in the call's first step, before anything is sent
    assert info.value.field == "delay"

    results = await asyncio.gather(
        queue.add("a", 1), queue.add("b", 2), queue.add("bad", priority="high"),
        queue.add("c", 3), return_exceptions=True,
    )
    assert isinstance(results[2], ValidationError) and results[2].field == "priority"
    assert [r.data for r in results if isinstance(r, Job)] == [1, 2, 3]
    assert await queue.get_job_counts("waiting") == {"waiting": 3}


async def test_a_job_redis_refuses_fails_only_its_own_caller(
    queue: Queue, redis: aioredis.Redis
) -> None:
    await _warm(queue)
    await redis.rpush(queue.keys.deduplication("broken"), "not a job id")  # a corrupt key
    before = await _script_calls(redis)

    results = await asyncio.gather(
        queue.add("first", 0),
        queue.add("a", 1),
        queue.add("b", 2),
        queue.add("refused", 3, deduplication={"id": "broken"}),
        queue.add("c", 4),
        queue.add("d", 5),
        return_exceptions=True,
    )

    # The first alone, the five others in at most two calls, in order: the
    # refused job, third of them, shared its call with a neighbour.
    assert await _script_calls(redis) - before <= 3
    assert isinstance(results[3], ResponseError) and "WRONGTYPE" in str(results[3])
    assert [r.data for r in results if isinstance(r, Job)] == [0, 1, 2, 4, 5]
    stored = await queue.get_jobs("waiting", asc=True)
    assert sorted(job.data for job in stored) == [0, 1, 2, 4, 5]
    with pytest.raises(ResponseError, match="WRONGTYPE"):  # alone, refused the same way
        await queue.add("refused", 4, deduplication={"id": "broken"})


@pytest.mark.cluster(False)
async def test_a_refusal_by_the_server_fails_the_whole_call_with_its_own_error() -> None:
    """A master demoted to a replica (a failover) refuses writes: adds fail with
    redis-py's ReadOnlyError, which makes a sentinel connection find the new
    master, not as refusals of single jobs (a plain ResponseError)."""
    with RedisServer() as old, RedisServer() as new:
        async with Queue("demoted", old.url) as queue:
            await queue.add("before", 0)  # registered while it was the master
            await queue.client.replicaof("127.0.0.1", new.port)
            for job_id in ("", "given"):  # generated or given ids: different first writes
                results = await asyncio.gather(
                    *(queue.add("job", i, job_id=f"{job_id}{i}" if job_id else None)
                      for i in range(3)), return_exceptions=True)
                assert all(isinstance(r, ReadOnlyError) for r in results), results


async def test_an_id_that_exists_returns_its_job_in_a_batch_too(
    queue: Queue, redis: aioredis.Redis
) -> None:
    await queue.add("original", "kept", job_id="taken")
    jobs = await asyncio.gather(
        queue.add("a", 1), queue.add("again", "ignored", job_id="taken"), queue.add("b", 2),
        queue.add("again", "ignored too", job_id="taken"),
    )
    again = [("taken", "original", "kept")] * 2
    assert [(job.id, job.name, job.data) for job in jobs[1::2]] == again
    assert [job.data for job in jobs[::2]] == [1, 2]
    events = await _events(redis, queue)
    assert events.count(("duplicated", "taken")) == 2
    for job in jobs[::2]:
        assert ("added", job.id) in events and ("waiting", job.id) in events


async def test_two_adds_with_one_deduplication_id_in_one_batch_make_one_job(
    queue: Queue, redis: aioredis.Redis
) -> None:
    await _warm(queue)
    before = await _script_calls(redis)
    first, kept, duplicate = await asyncio.gather(
        queue.add("other", 0),
        queue.add("d", 1, deduplication={"id": "k"}),
        queue.add("d", 2, deduplication={"id": "k"}),
    )
    assert await _script_calls(redis) - before == 2  # the two shared a batch
    assert duplicate.id == kept.id and duplicate.data == 1
    assert await queue.get_deduplication_job_id("k") == kept.id
    assert await queue.get_job_counts("waiting") == {"waiting": 2}
    events = await _events(redis, queue)
    assert ("deduplicated", kept.id) in events
    assert ("added", first.id) in events and ("added", kept.id) in events


async def test_lost_replies_of_batches_make_one_job_per_call(
    redis_url: str, queue: Queue
) -> None:
    await queue.client.script_load(source("add_jobs"))
    trigger = hashlib.sha1(source("add_jobs").encode()).hexdigest().encode()
    async with ReplyDropper(redis_url, trigger) as proxy, Queue(queue.name, proxy.url) as via:
        jobs = await asyncio.gather(*(via.add("n", i) for i in range(150)))
        more = await asyncio.gather(*(via.add("m", i) for i in range(150)))
        assert proxy.dropped >= 4  # each call's first send: at least 2 batches of each gather
    added = jobs + more
    assert [job.data for job in added] == list(range(150)) * 2
    assert len({job.id for job in added}) == 300
    stored = await queue.get_jobs("waiting", asc=True)
    assert [(job.id, job.data) for job in stored] == [(job.id, job.data) for job in added]


async def _blocked_clients(redis: aioredis.Redis) -> int:
    return int((await redis.info("clients"))["blocked_clients"])


async def _two_calls_held(redis: aioredis.Redis, queue: Queue) -> list[asyncio.Task[Job]]:
    """With writes paused at the server: a lone add, then four more whose calls
    are held there too. Two calls are then in flight (the most a queue sends at
    once): the lone add's and a batch starting with the first of the four; the
    last of the four is still gathering."""
    lone = asyncio.create_task(queue.add("lone", -1))
    await wait_for(lambda: _blocked_clients(redis))
    tasks = [lone, *(asyncio.create_task(queue.add("n", i)) for i in range(4))]

    async def both_held() -> bool:
        return await _blocked_clients(redis) == 2

    await wait_for(both_held)
    return tasks


async def test_a_caller_cancelled_while_gathering_adds_nothing_and_others_go_on(
    queue: Queue, redis: aioredis.Redis
) -> None:
    await _warm(queue)
    await redis.client_pause(30_000, all=False)  # writes wait: calls stay in flight
    try:
        tasks = await _two_calls_held(redis, queue)
        tasks[-1].cancel()  # gathering, not sent
    finally:
        await redis.client_unpause()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(results[-1], asyncio.CancelledError)
    assert [r.data for r in results if isinstance(r, Job)] == [-1, 0, 1, 2]
    stored = await queue.get_jobs("waiting", asc=True)
    assert sorted(job.data for job in stored) == [-1, 0, 1, 2]


async def test_a_caller_cancelled_once_its_batch_was_sent_has_its_job_all_the_same(
    queue: Queue, redis: aioredis.Redis
) -> None:
    await _warm(queue)
    await redis.client_pause(30_000, all=False)
    try:
        tasks = await _two_calls_held(redis, queue)
        tasks[1].cancel()  # its job is in the batch held at the server
    finally:
        await redis.client_unpause()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(results[1], asyncio.CancelledError)
    assert [r.data for r in results if isinstance(r, Job)] == [-1, 1, 2, 3]
    stored = await queue.get_jobs("waiting", asc=True)
    assert sorted(job.data for job in stored) == [-1, 0, 1, 2, 3]


async def test_a_call_that_fails_as_a_whole_fails_each_of_its_callers(
    redis_url: str, queue: Queue
) -> None:
    await queue.client.script_load(source("add_jobs"))
    trigger = hashlib.sha1(source("add_jobs").encode()).hexdigest().encode()
    # Every reply lost, retries included: each call runs (once: its token) and fails.
    async with (
        ReplyDropper(redis_url, trigger, every=1) as proxy,
        Queue(queue.name, proxy.url) as via,
    ):
        results = await asyncio.gather(
            *(via.add("n", i) for i in range(10)), return_exceptions=True
        )
        assert proxy.dropped >= 2
    assert all(isinstance(r, RedisConnectionError) for r in results), results
    stored = await queue.get_jobs("waiting", asc=True)
    assert sorted(job.data for job in stored) == list(range(10))
