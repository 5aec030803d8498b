"""Redis Cluster: each queue on the master of its slot, the hash-tag rule for
flows and dead-letter queues, what is refused and why, obliterate, discovery,
the ways to connect, and a queue that keeps working while its slot moves to
another master (MOVED). The common behaviour runs on the cluster through the
modules marked ``cluster`` (see conftest.py)."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from chaos.redis_cluster import RedisCluster
from redis.asyncio.cluster import RedisCluster as RedisClusterClient
from redis.crc import key_slot

from conveyor import Connector, FlowProducer, Job, Queue, ValidationError, Worker, sync
from conveyor.inspection import Inspector
from conveyor.keys import QueueKeys, validate_queue_name
from helpers import running, unique_queue_name, wait_for


@pytest.fixture
def cluster(redis_cluster: RedisCluster) -> RedisCluster:
    redis_cluster.flush()
    return redis_cluster


@pytest.fixture
async def nodes(cluster: RedisCluster) -> AsyncIterator[dict[int, aioredis.Redis]]:
    """A plain client per master, by port."""
    clients = {port: aioredis.Redis(host="127.0.0.1", port=port) for port in cluster.ports}
    try:
        yield clients
    finally:
        for client in clients.values():
            await client.aclose()


def slot_of(name: str) -> int:
    return key_slot(QueueKeys("conveyor", name).base.encode())


def names_in_other_slots(n: int) -> list[str]:
    """``n`` queue names whose keys are in ``n`` different slots."""
    found: dict[int, str] = {}
    while len(found) < n:
        name = unique_queue_name()
        found.setdefault(slot_of(name), name)
    return list(found.values())


async def keys_on(node: aioredis.Redis, pattern: str = "*") -> set[str]:
    return {key.decode() async for key in node.scan_iter(match=pattern, count=1000)}


async def echo(job: Job) -> Any:
    return job.data


# -- a queue per master ---------------------------------------------------------------


async def test_each_queue_lives_on_the_master_of_its_slot(
    cluster: RedisCluster, nodes: dict[int, aioredis.Redis]
) -> None:
    by_master: dict[int, str] = {}
    for i in itertools.count():
        name = f"orders-{i}"
        by_master.setdefault(cluster.owner(QueueKeys("conveyor", name).base), name)
        if len(by_master) == len(cluster.ports):
            break
    async with Connector(cluster.url) as connector:
        for port, name in by_master.items():
            async with Queue(name, connector) as queue:
                job = await queue.add("ship", {"to": port})
                assert await queue.get_job_counts("waiting") == {"waiting": 1}
                assert (await queue.get_job(job.id)).data == {"to": port}  # type: ignore[union-attr]
            others = set(nodes) - {port}
            assert await nodes[port].exists(queue.keys.job(job.id))
            assert not any([await keys_on(nodes[p], f"conveyor:{{{name}}}:*") for p in others])
        # Every queue is named in the one registry, wherever it lives.
        async with Inspector(connector) as inspector:
            assert await inspector.queue_names() == sorted(by_master.values())


async def test_a_worker_runs_the_jobs_of_queues_on_every_master(cluster: RedisCluster) -> None:
    names = names_in_other_slots(3)
    async with Connector(cluster.url) as connector:
        queues = [Queue(name, connector) for name in names]
        jobs = [await queue.add("echo", queue.name) for queue in queues]
        async with (running(Worker(names[0], echo, connection=connector)),
                    running(Worker(names[1], echo, connection=connector)),
                    running(Worker(names[2], echo, connection=connector))):
            for job in jobs:
                assert await job.wait_until_finished(timeout=10) == job.queue.name
        for queue in queues:
            await queue.close()


# -- flows and dead-letter queues: one slot -------------------------------------------------


async def test_a_flow_across_slots_is_refused_before_anything_is_written(
    cluster: RedisCluster, nodes: dict[int, aioredis.Redis]
) -> None:
    parent, child = names_in_other_slots(2)
    async with FlowProducer(cluster.url) as flow:
        with pytest.raises(ValidationError) as refused:
            await flow.add({"name": "p", "queue_name": parent,
                            "children": [{"name": "c", "queue_name": child}]})
    assert refused.value.field == "children[0].queue_name"
    assert "hash slot" in str(refused.value) and f"{{tag}}{child}" in str(refused.value)
    assert all([await node.dbsize() == 0 for node in nodes.values()])


async def test_a_flow_whose_queues_share_a_hash_tag_runs(cluster: RedisCluster) -> None:
    tag = unique_queue_name()
    parent, child = f"{{{tag}}}reports", f"{{{tag}}}fetchers"
    async def report(job: Job) -> Any:
        return await job.get_children_values()

    async with FlowProducer(cluster.url) as flow:
        root = await flow.add({"name": "report", "queue_name": parent, "children": [
            {"name": "fetch", "queue_name": child, "data": 1, "opts": {"job_id": "f"}}]})
        async with (running(Worker(parent, report, connection=cluster.url)),
                    running(Worker(child, echo, connection=cluster.url))):
            values = await root.job.wait_until_finished(timeout=10)
    assert values == {f"{child}:f": 1}


async def test_a_dead_letter_queue_in_another_slot_is_refused(cluster: RedisCluster) -> None:
    name, other = names_in_other_slots(2)
    async with Queue(name, cluster.url) as queue:
        with pytest.raises(ValidationError) as refused:
            await queue.add("charge", dead_letter_queue=other)
        assert refused.value.field == "dead_letter_queue"
        assert await queue.get_job_counts("waiting") == {"waiting": 0}
        # One tag: the dead-letter queue shares the queue's slot.
        await queue.add("charge", dead_letter_queue=f"{{{name}}}dead")


def test_a_queue_name_may_carry_its_own_hash_tag() -> None:
    assert QueueKeys("p", "{shop}emails").base == "p:{shop}emails:"
    assert slot_of("{shop}emails") == slot_of("shop")  # a tag of a queue's name: its slot
    for bad in ("{shop}", "{}emails", "{a}{b}c", "a{b}c", "{a:b}c", "{shop}em ails"):
        with pytest.raises(ValidationError):
            validate_queue_name(bad)


# -- admin on a cluster ---------------------------------------------------------------


async def test_obliterate_deletes_every_key_of_the_queue_only(
    cluster: RedisCluster, nodes: dict[int, aioredis.Redis]
) -> None:
    name, kept = names_in_other_slots(2)
    async with Queue(name, cluster.url) as queue, Queue(kept, cluster.url) as other:
        await queue.add_bulk([{"name": "a", "data": i} for i in range(50)])
        await queue.add("later", delay=60_000)
        await other.add("b")
        await queue.obliterate(force=True)
        assert await other.get_job_counts("waiting") == {"waiting": 1}
    owner = nodes[cluster.owner(queue.keys.base)]
    assert await keys_on(owner, f"conveyor:{{{name}}}:*") == set()
    assert await keys_on(nodes[cluster.owner(other.keys.base)], f"conveyor:{{{kept}}}:*")


async def test_discover_scans_every_master(
    cluster: RedisCluster, nodes: dict[int, aioredis.Redis]
) -> None:
    names = sorted(names_in_other_slots(4))
    for name in names:
        async with Queue(name, cluster.url) as queue:
            await queue.add("x")
    # A registry lost: as for queues made before it existed.
    await nodes[cluster.owner("conveyor:queues")].delete("conveyor:queues")
    async with Inspector(cluster.url) as inspector:
        assert await inspector.discover() == names
        assert [s.name for s in await inspector.summaries()] == names


# -- connecting -------------------------------------------------------------------------


async def test_a_redis_cluster_client_is_accepted_and_left_open(cluster: RedisCluster) -> None:
    client = RedisClusterClient(host="127.0.0.1", port=cluster.ports[1])
    try:
        async with Queue(unique_queue_name(), client) as queue:
            job = await queue.add("x", 1)
            assert (await queue.get_job(job.id)).data == 1  # type: ignore[union-attr]
        assert await client.ping()  # not ours to close
    finally:
        await client.aclose()


def test_cluster_urls_are_read_and_bad_ones_refused() -> None:
    connector = Connector("redis+cluster://user:s%40cret@127.0.0.1:7000,[::1]:7001?protocol=2")
    assert connector.cluster and connector.slots is not None
    assert connector.slots.seeds == [("127.0.0.1", 7000), ("::1", 7001)]
    assert connector.slots.auth == {"username": "user", "password": "s@cret"}
    for bad in ("redis+cluster://", "redis+cluster://h:1/2", "redis+cluster://h:port"):
        with pytest.raises(ValidationError) as refused:
            Connector(bad)
        assert refused.value.field == "connection"


def test_the_blocking_queue_adds_on_the_master_of_its_slot(cluster: RedisCluster) -> None:
    with sync.Queue(unique_queue_name(), cluster.url) as queue:
        jobs = [queue.add("x", i) for i in range(3)] + queue.add_bulk([{"name": "y"}])
        assert queue.get_job_counts("waiting") == {"waiting": 4}
        assert queue.get_job(jobs[1].id).data == 1  # type: ignore[union-attr]
    with redis_on(cluster) as client:
        assert client.sismember("conveyor:queues", queue.name)


def redis_on(cluster: RedisCluster) -> Any:
    import redis.cluster

    return redis.cluster.RedisCluster(host="127.0.0.1", port=cluster.ports[0])


# -- the slot moves -----------------------------------------------------------------------


async def move_slot(slot: int, source: aioredis.Redis, target: aioredis.Redis, port: int,
                    everyone: list[aioredis.Redis]) -> None:
    """Migrate ``slot`` and its keys from ``source`` to ``target`` (listening on
    ``port``), as ``redis-cli --cluster reshard`` does."""
    source_id, target_id = (await source.execute_command("CLUSTER", "MYID"),
                            await target.execute_command("CLUSTER", "MYID"))
    await target.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
    await source.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
    while keys := await source.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100):
        await source.execute_command("MIGRATE", "127.0.0.1", port, "", 0, 5000, "KEYS", *keys)
    for node in everyone:
        await node.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)


async def test_a_queue_follows_its_slot_to_another_master(
    cluster: RedisCluster, nodes: dict[int, aioredis.Redis]
) -> None:
    name = unique_queue_name()
    keys = QueueKeys("conveyor", name)
    before = cluster.owner(keys.base)
    after = next(port for port in cluster.ports if port != before)
    async with Queue(name, cluster.url) as queue:
        first = await queue.add("a", 1)
        done: list[Any] = []

        async def record(job: Job) -> None:
            done.append(job.data)

        worker = Worker(name, record, connection=cluster.url, block_timeout=200)
        async with running(worker):
            await wait_for(lambda: done == [1])
            await move_slot(slot_of(name), nodes[before], nodes[after], after,
                            list(nodes.values()))
            assert cluster.owner(keys.base) == after
            # The queue's and the worker's connections get MOVED and follow.
            second = await queue.add("b", 2)
            await wait_for(lambda: done == [1, 2], timeout=15)
            assert await queue.get_job_state(second.id) == "completed"
        assert await queue.get_job_state(first.id) == "completed"
    assert await nodes[after].exists(keys.job(first.id))
    assert await nodes[before].execute_command("CLUSTER", "COUNTKEYSINSLOT", slot_of(name)) == 0


async def test_close_leaves_a_shared_connector_open(cluster: RedisCluster) -> None:
    async with Connector(cluster.url) as connector:
        async with Queue(unique_queue_name(), connector) as queue:
            await queue.add("x")
        # Another object can still use it: the queue did not close it.
        async with Queue(queue.name, connector) as again:
            assert await again.get_job_counts("waiting") == {"waiting": 1}


async def test_a_queue_follows_a_failover_to_the_promoted_replica() -> None:
    # A cluster of its own (the failover swaps roles), with a password: our
    # connections and our reads of the slot map authenticate.
    with RedisCluster(replica=True, password="s3cret") as cluster:
        name = next(n for n in (unique_queue_name() for _ in range(1000))
                    if cluster.owner(QueueKeys("conveyor", n).base) == cluster.ports[0])
        assert cluster.replica_port is not None
        async with Queue(name, cluster.url) as queue:
            first = await queue.add("a", 1)
            promoted = aioredis.Redis(host="127.0.0.1", port=cluster.replica_port,
                                      password=cluster.password)
            try:
                await promoted.execute_command("CLUSTER", "FAILOVER")  # a planned one

                async def took_over() -> bool:
                    return (await promoted.info("replication"))["role"] == "master"

                await wait_for(took_over, timeout=15)
                # The old master now answers MOVED; the queue's connections follow.
                second = await queue.add("b", 2)
                assert await queue.get_job_counts("waiting") == {"waiting": 2}
                assert await promoted.exists(queue.keys.job(second.id), queue.keys.job(first.id))
            finally:
                await promoted.aclose()
