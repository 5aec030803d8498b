"""Partitioned queues: one logical queue over N hash slots (conveyor.partitions)."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
import redis.asyncio as aioredis
from chaos.redis_cluster import RedisCluster

from conveyor import Job, Queue, QueueEvents, ValidationError, Worker
from conveyor._partition_worker import SlotShare
from conveyor.keys import registry_key
from conveyor.partitions import (
    MAX_PARTITIONS,
    PartitionedQueue,
    partition_for,
    partition_names,
    partition_slot,
)
from conveyor.sync import Queue as BlockingQueue
from helpers import running, wait_for

SLOTS = 16384


# -- where partitions live: pure functions -------------------------------------------


@pytest.mark.parametrize("n", [2, 3, 5, 8, 16, 100, MAX_PARTITIONS])
def test_partition_i_hashes_to_the_middle_of_the_i_th_nth_of_the_slot_space(n: int) -> None:
    names = partition_names("events", n)
    assert len(set(names)) == n
    for i, name in enumerate(names):
        low, high = SLOTS * i / n, SLOTS * (i + 1) / n
        assert low + (high - low) / 4 - 1 <= partition_slot(name) < high - (high - low) / 4 + 1
    assert names == partition_names("events", n)  # every client computes the same


@pytest.mark.parametrize(("n", "masters"), [(3, 3), (6, 3), (8, 3), (8, 4), (16, 5)])
def test_partitions_spread_evenly_over_masters_of_an_even_cluster_split(
    n: int, masters: int
) -> None:
    # redis-cli --cluster create gives master m the m-th masters-th of the slots
    bounds = [round(SLOTS * m / masters) for m in range(masters + 1)]
    per_master = [0] * masters
    for name in partition_names("orders", n):
        slot = partition_slot(name)
        per_master[next(m for m in range(masters) if bounds[m] <= slot < bounds[m + 1])] += 1
    assert max(per_master) - min(per_master) <= 1, per_master


async def test_on_a_cluster_the_partitions_keys_live_on_every_master(
    redis_cluster: RedisCluster,
) -> None:
    url = redis_cluster.flush()
    async with Queue("events", url, partitions=8) as queue:
        await queue.add_bulk([{"name": "x", "data": i} for i in range(16)])
        by_master: dict[int, list[str]] = {}
        for part in queue.partitions:
            by_master.setdefault(redis_cluster.owner(part.keys.base), []).append(part.name)
        assert sorted(len(names) for names in by_master.values()) == [2, 3, 3], by_master
        for port, names in by_master.items():
            with redis_cluster.client(port) as node:  # where the keys really are
                for name in names:
                    part = queue.partitions[int(name.split("#")[1].split(".")[0])]
                    assert node.llen(part.keys.wait) == 2
                    slot = int(node.execute_command("CLUSTER KEYSLOT", part.keys.wait))
                    assert node.execute_command("CLUSTER COUNTKEYSINSLOT", slot) > 0
        assert await queue.get_job_counts("waiting") == {"waiting": 16}


def test_a_partition_is_named_after_its_queue_and_index() -> None:
    names = partition_names("q", 4)
    assert [name.split("#")[0] for name in names] == ["q"] * 4
    assert [name.split("#")[1].split(".")[0] for name in names] == ["0", "1", "2", "3"]


def test_routing_keys_hash_stably_and_generated_ids_name_their_partition() -> None:
    assert partition_for("tenant-7", 8) == partition_for("tenant-7", 8)
    assert {partition_for(f"k{i}", 8) for i in range(200)} == set(range(8))
    assert partition_for("5~abc", 8) == 5
    assert partition_for("9~abc", 8) == partition_for("9~abc", 8) < 8  # no partition 9: hashed


@pytest.mark.parametrize("bad", [0, 1, MAX_PARTITIONS + 1, "8", 2.0, True])
def test_a_bad_partition_count_is_refused_naming_the_field(redis_url: str, bad: Any) -> None:
    with pytest.raises(ValidationError) as info:
        Queue("q", redis_url, partitions=bad)
    assert info.value.field == "partitions"


# -- the count, stored ---------------------------------------------------------------------


async def test_the_count_is_stored_and_a_different_one_refused(
    redis_url: str, redis: aioredis.Redis, queue_name: str
) -> None:
    async with Queue(queue_name, redis_url, partitions=4) as queue:
        assert isinstance(queue, PartitionedQueue)
        await queue.add("x")
    assert await redis.hget(f"conveyor:{{{queue_name}}}:meta", "partitions") == b"4"
    async with Queue(queue_name, redis_url, partitions=8) as other:
        with pytest.raises(ValidationError) as info:
            await other.add("x")
        assert info.value.field == "partitions"
        with pytest.raises(ValidationError):
            await other.get_job_counts()
    async with Queue(queue_name, redis_url) as plain:
        with pytest.raises(ValidationError) as info:
            await plain.add("x")
        assert info.value.field == "partitions"
    async with Queue(queue_name, redis_url, partitions=4) as queue:
        assert (await queue.get_job_counts("waiting"))["waiting"] == 1  # nothing half-written


async def test_a_plain_queue_keeps_its_keys(redis: aioredis.Redis, queue: Queue) -> None:
    await queue.add("x")
    keys = {k.decode() for k in await redis.keys("*")}
    assert all(k == "conveyor:queues" or k.startswith(f"conveyor:{{{queue.name}}}:")
               for k in keys)
    assert await redis.hget(queue.keys.meta, "partitions") is None


async def test_the_registry_lists_the_logical_queue_once(
    redis_url: str, redis: aioredis.Redis, queue_name: str
) -> None:
    async with Queue(queue_name, redis_url, partitions=4) as queue:
        await queue.add_bulk([{"name": "x"} for _ in range(8)])
        async with running(Worker(queue_name, _noop, connection=redis_url)):
            await wait_for(lambda: _counts(queue, "completed", 8))
    assert await redis.smembers(registry_key("conveyor")) == {queue_name.encode()}


# -- adding and reading ----------------------------------------------------------------------


@pytest.mark.cluster
async def test_jobs_spread_round_robin_and_are_found_by_id(redis_url: str, queue_name: str) -> None:
    async with Queue(queue_name, redis_url, partitions=4) as queue:
        jobs = [await queue.add("x", i) for i in range(8)]
        assert [partition_for(job.id, 4) for job in jobs] == [0, 1, 2, 3, 0, 1, 2, 3]
        for job in jobs:
            found = await queue.get_job(job.id)
            assert found is not None and found.data == job.data
            assert await queue.get_job_state(job.id) == "waiting"
        assert await queue.get_job("nope") is None
        per_partition = [await p.get_job_counts("waiting") for p in queue.partitions]
        assert [c["waiting"] for c in per_partition] == [2, 2, 2, 2]
        assert await queue.get_job_counts("waiting") == {"waiting": 8}


async def test_a_group_or_partition_key_keeps_its_jobs_in_one_partition(
    redis_url: str, queue_name: str
) -> None:
    async with Queue(queue_name, redis_url, partitions=8) as queue:
        grouped = [await queue.add("x", group="tenant-1") for _ in range(5)]
        keyed = [await queue.add("x", partition_key="user-9") for _ in range(5)]
        assert len({partition_for(j.id, 8) for j in grouped}) == 1
        assert len({partition_for(j.id, 8) for j in keyed}) == 1
        assert {g.name for g in await queue.get_groups()} == {"tenant-1"}
        assert len(await queue.get_group_jobs("tenant-1")) == 5


async def test_an_explicit_id_is_idempotent_and_found_even_beside_a_group(
    redis_url: str, queue_name: str
) -> None:
    async with Queue(queue_name, redis_url, partitions=8) as queue:
        first = await queue.add("x", 1, job_id="order-42")
        again = await queue.add("x", 2, job_id="order-42")
        assert again.data == 1
        assert await queue.get_job_counts("waiting") == {"waiting": 1}
        await queue.add("y", job_id="with-group", group="g-elsewhere")
        found = await queue.get_job("with-group")
        assert found is not None and found.name == "y"
        assert first.id == "order-42"


async def test_deduplication_holds_across_partitions(redis_url: str, queue_name: str) -> None:
    async with Queue(queue_name, redis_url, partitions=8) as queue:
        a = await queue.add("x", deduplication={"id": "d1"})
        b = await queue.add("x", deduplication={"id": "d1"})
        assert a.id == b.id
        assert await queue.get_deduplication_job_id("d1") == a.id


async def test_add_bulk_returns_jobs_in_order(redis_url: str, queue_name: str) -> None:
    async with Queue(queue_name, redis_url, partitions=4) as queue:
        jobs = await queue.add_bulk([{"name": "x", "data": i} for i in range(10)]
                                    + [{"name": "k", "partition_key": "p"}])
        assert [j.data for j in jobs[:10]] == list(range(10))
        assert (await queue.get_job_counts())["waiting"] == 11


async def test_get_jobs_merges_partitions_newest_first(redis_url: str, queue_name: str) -> None:
    async with Queue(queue_name, redis_url, partitions=4) as queue:
        for i in range(6):
            await queue.add("x", i)
        jobs = await queue.get_jobs("waiting")
        assert sorted(j.data for j in jobs) == list(range(6))
        stamps = [j.timestamp for j in jobs]
        assert stamps == sorted(stamps, reverse=True)
        assert len(await queue.get_jobs(["waiting"], 1, 3)) == 3


# -- admin over the partitions -----------------------------------------------------------------


@pytest.mark.cluster
async def test_admin_calls_span_partitions(
    redis_url: str, redis: aioredis.Redis, queue_name: str
) -> None:
    async with Queue(queue_name, redis_url, partitions=4) as queue:
        await queue.add_bulk([{"name": "x"} for _ in range(8)])
        await queue.add_bulk([{"name": "later", "delay": 60_000} for _ in range(4)])
        await queue.pause()
        assert await queue.is_paused()
        assert all([await p.is_paused() for p in queue.partitions])
        await queue.resume()
        assert not await queue.is_paused()
        assert await queue.promote_jobs() == 4
        assert await queue.drain() == 12
        job = await queue.add("one")
        assert await queue.remove(job.id)
        job = await queue.add("edited", {"v": 1})
        await queue.update_data(job.id, {"v": 2})  # found in its partition
        assert (await queue.get_job(job.id)).data == {"v": 2}  # type: ignore[union-attr]
        assert await queue.remove(job.id)
        job = await queue.add("two")
        assert await queue.cancel(job.id)
        assert await queue.get_job(job.id) is None
        await queue.add_bulk([{"name": "x"} for _ in range(4)])
        assert len(await queue.clean(0, 0, "waiting")) == 4
        await queue.add_bulk([{"name": "x"} for _ in range(4)])
        await queue.obliterate()
    assert await redis.keys(f"conveyor:{{{queue_name}*") == []


async def test_failed_jobs_are_retried_over_partitions(redis_url: str, queue_name: str) -> None:
    async def fail(job: Job) -> None:
        raise RuntimeError("no")

    async with Queue(queue_name, redis_url, partitions=4) as queue:
        jobs = await queue.add_bulk([{"name": "x"} for _ in range(6)])
        async with running(Worker(queue_name, fail, connection=redis_url, concurrency=3)):
            await wait_for(lambda: _counts(queue, "failed", 6))
        assert await queue.get_dead_letter_count() == 6
        assert len(await queue.get_dead_letter()) == 6
        await queue.retry_job(jobs[0].id)
        assert await queue.get_job_state(jobs[0].id) == "waiting"
        assert await queue.retry_jobs("failed") == 5
        assert (await queue.get_job_counts("waiting"))["waiting"] == 6


# -- workers -----------------------------------------------------------------------------------


async def _noop(job: Job) -> None:
    return None


async def _counts(queue: Queue, state: str, n: int) -> bool:
    return (await queue.get_job_counts(state))[state] >= n


@pytest.mark.cluster
async def test_a_plain_worker_discovers_the_partitions_and_runs_them_all(
    redis_url: str, queue_name: str
) -> None:
    seen: list[str] = []

    async def record(job: Job) -> str:
        seen.append(job.queue.name)
        return job.id

    async with Queue(queue_name, redis_url, partitions=8) as queue:
        await queue.add_bulk([{"name": "x"} for _ in range(40)])
        worker = Worker(queue_name, record, connection=redis_url, concurrency=4)
        async with running(worker):
            await wait_for(lambda: _counts(queue, "completed", 40))
            assert [w.id for w in await queue.get_workers()] == [worker.id]
        assert set(seen) == set(partition_names(queue_name, 8))
        assert (await queue.get_job_counts("completed"))["completed"] == 40


async def test_a_worker_with_a_different_count_is_refused(redis_url: str, queue_name: str) -> None:
    async with Queue(queue_name, redis_url, partitions=4) as queue:
        await queue.add("x")
    worker = Worker(queue_name, _noop, connection=redis_url, partitions=8)
    with pytest.raises(ValidationError) as info:
        await worker.run()
    assert info.value.field == "partitions"


async def test_a_flooded_partition_does_not_starve_a_quiet_one(
    redis_url: str, queue_name: str
) -> None:
    order: list[str] = []

    async def record(job: Job) -> None:
        order.append(job.name)

    async with Queue(queue_name, redis_url, partitions=4) as queue:
        await queue.add_bulk([{"name": "flood", "partition_key": "a"} for _ in range(1000)])
        quiet = next(k for k in ("b", "c", "d", "e", "f")
                     if partition_for(k, 4) != partition_for("a", 4))
        async with running(Worker(queue_name, record, connection=redis_url, concurrency=1)):
            await wait_for(lambda: len(order) >= 20)
            await queue.add_bulk([{"name": "quiet", "partition_key": quiet} for _ in range(3)])
            added_at = len(order)
            await wait_for(lambda: order.count("quiet") == 3, timeout=30)
            await wait_for(lambda: _counts(queue, "completed", 1003), timeout=60)
    last_quiet = max(i for i, name in enumerate(order) if name == "quiet")
    # one job a turn: the quiet jobs alternate with the flood once their marker woke the loop
    assert last_quiet - added_at < 40, f"quiet ran {last_quiet - added_at} jobs after it came"


@pytest.mark.cluster
async def test_the_concurrency_is_shared_by_the_partitions(
    redis_url: str, queue_name: str
) -> None:
    running_now = 0
    most = 0
    release = asyncio.Event()

    async def hold(job: Job) -> None:
        nonlocal running_now, most
        running_now += 1
        most = max(most, running_now)
        await release.wait()
        running_now -= 1

    async with Queue(queue_name, redis_url, partitions=8) as queue:
        await queue.add_bulk([{"name": "x"} for _ in range(24)])
        async with running(Worker(queue_name, hold, connection=redis_url, concurrency=3)):
            await wait_for(lambda: running_now == 3)
            await wait_for(lambda: _counts(queue, "active", 3))
            assert (await queue.get_job_counts("active"))["active"] == 3
            release.set()
            await wait_for(lambda: _counts(queue, "completed", 24))
    assert most == 3


@pytest.mark.cluster
async def test_an_idle_worker_wakes_for_a_job_in_any_partition(
    redis_url: str, queue_name: str
) -> None:
    async with Queue(queue_name, redis_url, partitions=8) as queue:
        await queue.add("first")
        worker = Worker(queue_name, _noop, connection=redis_url, block_timeout=60_000)
        async with running(worker):
            await wait_for(lambda: _counts(queue, "completed", 1))
            await wait_for(lambda: all(loop._idle or loop._block_task for loop in worker._loops))
            for key in ("k1", "k2", "k3"):
                job = await queue.add("later", partition_key=key)
                # far sooner than the 60 s block timeout: the partition's marker woke it
                await wait_for(lambda j=job: _is_done(queue, j.id), timeout=5)


async def _is_done(queue: Queue, job_id: str) -> bool:
    return await queue.get_job_state(job_id) == "completed"


async def test_priorities_and_delays_hold_within_a_partition(
    redis_url: str, queue_name: str
) -> None:
    order: list[int] = []

    async def record(job: Job) -> None:
        order.append(job.data)

    async with Queue(queue_name, redis_url, partitions=4) as queue:
        # Not due while the others run, however slow the machine: it is made due
        # (promoted) once they have.
        later = await queue.add("x", 99, partition_key="p", delay=3_600_000)
        for priority in (5, 1, 3):
            await queue.add("x", priority, partition_key="p", priority=priority)
        async with running(Worker(queue_name, record, connection=redis_url)):
            await wait_for(lambda: len(order) == 3)
            assert await queue.get_job_state(later.id) == "delayed"
            await later.promote()
            await wait_for(lambda: len(order) == 4)
    assert order == [1, 3, 5, 99]


def test_slots_are_dealt_fewest_held_first_then_least_recently_served() -> None:
    """SlotShare.grant (water filling) against dealing the free slots one by one."""
    rng = random.Random(7)  # noqa: S311 - a reproducible spread of cases, not a secret
    for _ in range(300):
        concurrency = rng.randint(1, 40)
        share = SlotShare(concurrency)
        loops = [Worker(f"q#{i}", _noop, connection="redis://127.0.0.1:1/0")
                 for i in range(rng.randint(2, 6))]
        share.members.extend(loops)
        budget = concurrency
        for loop in loops:
            loop._reserved = rng.randint(0, max(0, budget // 2))
            budget -= loop._reserved
            loop._idle = rng.random() < 0.3
        for loop in rng.sample(loops, len(loops)):
            share.served(loop)
        for me in loops:
            wanting = [m for m in loops if m is me or not m._idle]
            load = {id(m): m._reserved for m in wanting}
            expected = 0
            for _ in range(concurrency - sum(m._reserved for m in loops)):
                nxt = min(wanting, key=lambda m: (load[id(m)], share._served[id(m)]))
                load[id(nxt)] += 1
                expected += nxt is me
            assert share.grant(me) == expected


async def test_queue_events_follow_every_partition(redis_url: str, queue_name: str) -> None:
    seen: list[dict[str, Any]] = []
    async with Queue(queue_name, redis_url, partitions=4) as queue:
        await queue.add("before")  # stores the count; "$" starts after it
        events = QueueEvents(queue_name, redis_url, block=100)

        async def consume() -> None:
            async for event in events:
                seen.append(event)

        task = asyncio.create_task(consume())
        try:
            await wait_for(lambda: len(events.last_ids) == 4 or task.done())
            jobs = await queue.add_bulk([{"name": "x"} for _ in range(8)])
            async with running(Worker(queue_name, _noop, connection=redis_url)):
                await wait_for(lambda: {e["job_id"] for e in seen
                                        if e["event"] == "completed"} >= {j.id for j in jobs})
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await events.close()
    assert {e["job_id"] for e in seen if e["event"] == "added"} == {j.id for j in jobs}


def test_the_blocking_queue_adds_to_partitions_and_refuses_a_plain_add(
    redis_url: str, queue_name: str
) -> None:
    with BlockingQueue(queue_name, redis_url, partitions=4) as queue:
        jobs = [queue.add("x", i) for i in range(4)]
        assert sorted(partition_for(j.id, 4) for j in jobs) == [0, 1, 2, 3]
        assert queue.get_job_counts("waiting") == {"waiting": 4}
    with BlockingQueue(queue_name, redis_url) as plain:
        with pytest.raises(ValidationError) as info:
            plain.add("x")
        assert info.value.field == "partitions"


async def test_a_flow_into_a_partitioned_queue_is_refused_before_anything_is_added(
    redis_url: str, queue_name: str, flow: Any
) -> None:
    async with Queue(queue_name, redis_url, partitions=4) as queue:
        await queue.add("x")
        with pytest.raises(ValidationError) as info:
            await flow.add({"name": "parent", "queue_name": "plain-parent",
                            "children": [{"name": "child", "queue_name": queue_name}]})
        assert info.value.field == "partitions"
        assert (await queue.get_job_counts("waiting"))["waiting"] == 1
    async with Queue("plain-parent", redis_url) as parent:
        assert sum((await parent.get_job_counts()).values()) == 0


async def test_an_empty_job_id_generates_one(redis_url: str, queue_name: str) -> None:
    async with Queue(queue_name, redis_url, partitions=4) as queue:
        a, b = await queue.add("a", job_id=""), await queue.add("b", job_id="")
        assert a.id and b.id and a.id != b.id


async def test_worker_rate_limit_holds_every_partition(redis_url: str, queue_name: str) -> None:
    async with Queue(queue_name, redis_url, partitions=4) as queue:
        await queue.add("first")
        worker = Worker(queue_name, _noop, connection=redis_url)
        async with running(worker):
            await wait_for(lambda: _counts(queue, "completed", 1))
            await worker.rate_limit(60_000)
            assert all([await p.client.hget(p.keys.meta, "limited_until") is not None
                        for p in queue.partitions])
            assert all(loop._limited() for loop in worker._loops)


async def test_a_plain_queue_with_jobs_cannot_be_partitioned(
    redis_url: str, redis: aioredis.Redis, queue: Queue
) -> None:
    await queue.add("plain")
    async with Queue(queue.name, redis_url, partitions=4) as partitioned:
        with pytest.raises(ValidationError) as info:
            await partitioned.add("x")
        assert info.value.field == "partitions"
    assert await redis.hget(queue.keys.meta, "partitions") is None
    await queue.add("still plain")
