"""Redis Sentinel and durable adds, against a private master, replica and three
sentinels (chaos/sentinel_setup.py): ``redis+sentinel://`` URLs and
``Sentinel(...).master_for(...)`` clients work everywhere a connection is
taken; a durable queue's adds wait for a replica (``WAIT`` on the same
connection) and say so when it does not come; and across a forced
``SENTINEL FAILOVER`` work carries on with no restart, with no acknowledged
durable add lost."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis as redis_sync
from chaos.sentinel_setup import SENTINEL_LOGIN, SERVER_LOGIN, SERVICE, SentinelSetup, Tls
from click.testing import CliRunner
from redis.asyncio.connection import SSLConnection
from redis.asyncio.sentinel import MasterNotFoundError, Sentinel
from redis.exceptions import AuthenticationError

from conveyor import (
    ConveyorError,
    DurabilityError,
    FlowProducer,
    Job,
    JobStateError,
    Queue,
    QueueEvents,
    Worker,
)
from conveyor._sentinel import parse_sentinel_url
from conveyor.cli import main
from conveyor.connection import REDIS_DOWN
from conveyor.errors import ValidationError
from conveyor.inspection import Inspector
from conveyor.sync import Queue as SyncQueue
from conveyor.web import create_app
from helpers import running, unique_queue_name, wait_for
from web_support import asgi_client

KEEP_ALL = {"remove_on_complete": 1_000_000}


@pytest.fixture(scope="module")
def setup() -> Iterator[SentinelSetup]:
    with SentinelSetup() as servers:
        yield servers


async def _done(job: Job) -> str:
    return job.name


# -- connecting ----------------------------------------------------------------


def test_a_sentinel_url_names_sentinels_service_database_and_logins() -> None:
    target = parse_sentinel_url(
        "redis+sentinel://app:p%40ss@10.0.0.1:26380,[::1],sentinel-3:1/main/2"
        "?sentinel_password=s3&socket_connect_timeout=2")
    assert target.sentinels == [("10.0.0.1", 26380), ("::1", 26379), ("sentinel-3", 1)]
    assert (target.service, target.ssl) == ("main", False)
    assert target.server == {"username": "app", "password": "p@ss", "db": 2,
                             "socket_connect_timeout": 2.0}
    assert target.sentinel == {"password": "s3"}
    tls = parse_sentinel_url("rediss+sentinel://h/main?ssl_cert_reqs=none")
    assert tls.ssl and tls.sentinel == {"ssl": True, "ssl_cert_reqs": "none"}
    for bad in ("redis+sentinel://h", "redis+sentinel://h/", "redis+sentinel:///main",
                "redis+sentinel://h:port/main", "redis+sentinel://h/main/x",
                "redis+sentinel://h/main?sentinel_ssl=maybe",
                "redis+sentinel://h/main?socket_connect_timeout=soon"):
        with pytest.raises(ValidationError) as caught:
            Queue("q", bad)
        assert caught.value.field == "connection"


async def test_queue_worker_flows_and_sync_queue_work_through_a_sentinel_url(
    setup: SentinelSetup,
) -> None:
    url = setup.url()
    name = unique_queue_name()
    async with Queue(name, url) as queue, FlowProducer(url) as flows:
        job = await queue.add("plain")
        flow = await flows.add({"name": "parent", "queue_name": name,
                                "children": [{"name": "child", "queue_name": name}]})
        with SyncQueue(name, url) as sync_queue:
            synced = sync_queue.add("sync")
            sync_queue.add_bulk([{"name": "sync-bulk"}])
        async with running(Worker(name, _done, connection=url, handle_signals=False)):
            for job_id in (job.id, flow.job.id, synced.id):
                await wait_for(lambda j=job_id: _state_is(queue, j, "completed"), timeout=10)
        # written on the master the sentinels name
        with setup.client(setup.master) as master:
            assert master.exists(queue.keys.job(job.id))


async def test_the_urls_logins_reach_the_servers_and_the_sentinels(
    setup: SentinelSetup,
) -> None:
    user, password = SERVER_LOGIN
    watcher, secret = SENTINEL_LOGIN
    query = f"sentinel_username={watcher}&sentinel_password={secret}"
    url = setup.url(login=f"{user}:{password}@", query=query)
    async with Queue(unique_queue_name(), url) as queue:
        await queue.add("x")
        assert await queue.client.execute_command("ACL", "WHOAMI") == user.encode()
        manager = queue.client.connection_pool.sentinel_manager
        assert await manager.sentinels[0].execute_command("ACL", "WHOAMI") == watcher.encode()
    wrong_server = setup.url(login=f"{user}:nope@", query=query)
    async with Queue(unique_queue_name(), wrong_server) as queue:
        with pytest.raises(AuthenticationError):
            await queue.add("x")
    wrong_sentinel = setup.url(query=f"sentinel_username={watcher}&sentinel_password=nope")
    async with Queue(unique_queue_name(), wrong_sentinel) as queue:
        with pytest.raises(MasterNotFoundError):  # no sentinel would answer
            await queue.add("x")


async def test_a_sentinel_url_client_waits_for_a_free_connection_under_many_calls(
    setup: SentinelSetup,
) -> None:
    """conveyor's pool behaviours hold on the sentinel-managed pool: 4,000
    concurrent calls take turns on at most 100 connections instead of failing
    with "Too many connections"."""
    async with Queue(unique_queue_name(), setup.url()) as queue:
        jobs = await asyncio.gather(*(queue.add("a", i) for i in range(500)))
        removed = await asyncio.gather(*(queue.remove(job.id) for job in jobs * 8))
        assert removed.count(True) == 500
        assert queue.client.connection_pool.max_connections <= 100


async def test_a_client_made_by_sentinel_master_for_is_taken_as_is(
    setup: SentinelSetup,
) -> None:
    sentinel = Sentinel([("127.0.0.1", s.port) for s in setup.sentinels])
    client = sentinel.master_for(SERVICE)
    name = unique_queue_name()
    try:
        async with Queue(name, client, durable=1) as queue:
            job = await queue.add("x")
            async with running(Worker(name, _done, connection=client, handle_signals=False)):
                await wait_for(lambda: _state_is(queue, job.id, "completed"), timeout=10)
        assert await client.ping()  # the caller's client stays open
    finally:
        await client.aclose()
        await sentinel.aclose()


async def test_events_the_inspector_and_the_web_app_read_through_a_sentinel_url(
    setup: SentinelSetup,
) -> None:
    url = setup.url()
    name = unique_queue_name()
    async with Queue(name, url) as queue:
        job = await queue.add("seen")
    events = QueueEvents(name, url, last_id="0", block=100)
    async with asyncio.timeout(10):
        async for event in events:
            if event["event"] == "waiting" and event["job_id"] == job.id:
                break
    await events.close()
    async with Inspector(url) as inspector:
        assert name in await inspector.discover()
    app = create_app(url)
    async with asgi_client(app) as client:
        reply = await client.get(f"/api/v1/queues/{name}/jobs/{job.id}")
        assert reply.status_code == 200 and reply.json()["data"]["id"] == job.id
        assert (await client.get("/metrics")).status_code == 200
    await app.state.conveyor.close()


def test_the_cli_reads_a_sentinel_url(setup: SentinelSetup) -> None:
    name = unique_queue_name()
    result = CliRunner().invoke(main, ["enqueue", name, "x", "--redis", setup.url()])
    assert result.exit_code == 0, result.output
    with setup.client(setup.master) as master:
        assert master.llen(f"conveyor:{{{name}}}:wait") == 1
    bad = "redis+sentinel://app:s3cret@h1,h2:x/main?sentinel_password=t0ken"
    refused = CliRunner().invoke(main, ["stats", "--redis", bad])
    assert refused.exit_code == 2 and "is not a Redis URL" in refused.output
    assert "s3cret" not in refused.output and "t0ken" not in refused.output


# -- durable adds --------------------------------------------------------------


async def test_durable_adds_bulks_and_flows_return_once_a_replica_holds_them(
    setup: SentinelSetup,
) -> None:
    name = unique_queue_name()
    url = setup.url()
    async with Queue(name, url, durable=1) as queue, FlowProducer(url, durable=1) as flows:
        added = [await queue.add("one"),
                 *await queue.add_bulk([{"name": "bulk", "data": i} for i in range(3)]),
                 # more than one script call: MULTI, the calls, EXEC, then WAIT
                 *await queue.add_bulk([{"name": "big", "data": i} for i in range(1200)]),
                 (await flows.add({"name": "flow", "queue_name": name})).job]
        with setup.client(setup.master) as master:
            master.script_flush()  # NOSCRIPT: loaded, then the pipeline is sent again
        added += [await queue.add("reloaded"),
                  *await queue.add_bulk([{"name": "reloaded"}] * 1100)]
    with SyncQueue(name, url, durable=1) as sync_queue:
        added += [sync_queue.add("sync").job,
                  *(j.job for j in sync_queue.add_bulk([{"name": "sb"}] * 1200))]
    # WAIT's answer was 1, so the replica had every one of them as the call returned
    with setup.client(setup.replica) as replica, replica.pipeline() as pipe:
        for job in added:
            pipe.exists(queue.keys.job(job.id))
        assert all(pipe.execute())


async def test_an_add_short_of_replicas_says_it_is_on_the_master_only(
    setup: SentinelSetup,
) -> None:
    name = unique_queue_name()
    url = setup.url()
    async with Queue(name, url, durable=2, durable_timeout=50) as queue:
        with pytest.raises(DurabilityError) as caught:
            await queue.add("x", job_id="only-on-master")
        assert (caught.value.wanted, caught.value.acked) == (2, 1)
        assert caught.value.job_ids == ["only-on-master"]
        assert "added on the master but confirmed by 1 of the 2" in str(caught.value)
        assert await queue.get_job("only-on-master") is not None  # written, not confirmed
        with pytest.raises(DurabilityError):
            await queue.add_bulk([{"name": "b"}] * 1100)
        assert await queue.get_job_counts("waiting") == {"waiting": 1101}
    async with FlowProducer(url, durable=2, durable_timeout=50) as flows:
        with pytest.raises(DurabilityError):
            await flows.add({"name": "flow", "queue_name": name})
        with pytest.raises(JobStateError):  # refused, not written: its own error
            await flows.add({"name": "p", "queue_name": name, "children": [
                {"name": "c", "queue_name": name, "opts": {"job_id": "only-on-master"}}]})
    with SyncQueue(name, url, durable=2, durable_timeout=50) as sync_queue:
        with pytest.raises(DurabilityError) as caught:
            sync_queue.add("y", job_id="sync-only-on-master")
        assert caught.value.job_ids == ["sync-only-on-master"]
        with pytest.raises(DurabilityError):
            sync_queue.add_bulk([{"name": "b"}] * 1100)


@pytest.mark.parametrize(("options", "field"), [
    ({"durable": -1}, "durable"), ({"durable": "1"}, "durable"),
    ({"durable": 1, "durable_timeout": 0}, "durable_timeout"),
    ({"durable": 1, "durable_timeout": -5}, "durable_timeout"),
])
def test_bad_durability_options_are_refused_naming_the_field(
    options: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        Queue("q", "redis://127.0.0.1:1/0", **options)
    assert caught.value.field == field
    with pytest.raises(ValidationError):
        FlowProducer("redis://127.0.0.1:1/0", **options)


# -- failover ------------------------------------------------------------------


class _Producer:
    """Adds a job every 10 ms (about 100/s) with ids of its own, and keeps the
    ids whose add returned: the acknowledged ones."""

    def __init__(self, queue: Queue) -> None:
        self.queue = queue
        self.acked: list[str] = []
        self.refused = 0
        self.stop = False

    async def run(self) -> None:
        n = 0
        while not self.stop:
            n += 1
            try:
                job = await self.queue.add("work", job_id=f"{self.queue.name}-{n}")
            except (ConveyorError, *REDIS_DOWN):
                self.refused += 1
            else:
                self.acked.append(job.id)
            await asyncio.sleep(0.01)  # pacing, not waiting for a condition


async def _state_is(queue: Queue, job_id: str, state: str) -> bool:
    return await queue.get_job_state(job_id) == state


def _present(client: redis_sync.Redis, queue: Queue, ids: list[str]) -> list[bool]:
    with client.pipeline(transaction=False) as pipe:
        for job_id in ids:
            pipe.exists(queue.keys.job(job_id))
        return [bool(n) for n in pipe.execute()]


@pytest.fixture
async def failover_setup() -> AsyncIterator[SentinelSetup]:
    setup = await asyncio.to_thread(SentinelSetup().__enter__)
    try:
        yield setup
    finally:
        await asyncio.to_thread(setup.close)


async def test_a_forced_failover_loses_no_durable_add_and_work_carries_on(
    failover_setup: SentinelSetup,
) -> None:
    setup = failover_setup
    url = setup.url()
    started = time.monotonic()
    async with Queue("durable", url, durable=1, durable_timeout=200,
                     default_job_options=KEEP_ALL) as durable, \
            Queue("plain", url, default_job_options=KEEP_ALL) as plain:
        producers = [_Producer(durable), _Producer(plain)]
        workers = [Worker(q.name, _done, connection=url, handle_signals=False,
                          lock_duration=2000, stalled_interval=1000)
                   for q in (durable, plain)]
        tasks = [asyncio.create_task(p.run()) for p in producers]
        probe = Queue("probe", url, durable=1, durable_timeout=100)
        await probe.add("connects", job_id="probe-0")  # a connection to the old master
        async with running(workers[0]), running(workers[1]), probe:
            await wait_for(lambda: all(len(p.acked) >= 50 for p in producers), timeout=10)
            await asyncio.to_thread(setup.failover)
            await asyncio.to_thread(setup.wait, setup.announced, "the sentinels to switch")
            # The old master, still up, has lost its replica: a durable add there is
            # refused, and the client asks the sentinels again, so its next add goes
            # to the new master (refused too while that has no replica yet).
            for job_id in ("probe-1", "probe-2"):
                with contextlib.suppress(DurabilityError):
                    await probe.add("after", job_id=job_id)
            with setup.client(setup.replica) as new_master:
                assert new_master.exists(probe.keys.job("probe-2"))
            # the sentinels name the replica, and the old master now replicates it
            await asyncio.to_thread(setup.wait, setup.switched, "the failover to end", 25)
            after = [len(p.acked) for p in producers]
            await wait_for(lambda: all(len(p.acked) >= n + 30
                                       for p, n in zip(producers, after, strict=True)),
                           timeout=10, message="adds after the failover")
            for producer in producers:
                producer.stop = True
            await asyncio.gather(*tasks)
            # jobs added after the failover complete, on the same workers
            for producer, n in zip(producers, after, strict=True):
                later = producer.acked[n:]
                await wait_for(lambda q=producer.queue, ids=later: _all_completed(q, ids),
                               timeout=15, message=f"{producer.queue.name}: later jobs done")
    with setup.client(setup.replica) as new_master:
        lost = [[job_id for job_id, ok in
                 zip(p.acked, _present(new_master, p.queue, p.acked), strict=True) if not ok]
                for p in producers]
    print(f"\nfailover at ~100 adds/s per queue, {time.monotonic() - started:.1f} s: "
          f"durable: {len(lost[0])} of {len(producers[0].acked)} acknowledged adds lost "
          f"({producers[0].refused} refused); without durability: {len(lost[1])} of "
          f"{len(producers[1].acked)} lost ({producers[1].refused} refused)")
    assert lost[0] == []
    assert len(producers[0].acked) >= 80


async def _all_completed(queue: Queue, ids: list[str]) -> bool:
    async with queue.client.pipeline(transaction=False) as pipe:
        for job_id in ids:
            pipe.zscore(queue.keys.completed, job_id)
        return all(score is not None for score in await pipe.execute())


async def test_a_rediss_sentinel_url_speaks_tls_to_the_sentinels_and_the_servers(
    tmp_path: Path,
) -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    issued = ca.issue_cert("127.0.0.1")
    tls = Tls(tmp_path / "ca.pem", tmp_path / "server.pem", tmp_path / "server.key")
    ca.cert_pem.write_to_path(str(tls.ca))
    issued.cert_chain_pems[0].write_to_path(str(tls.cert))
    issued.private_key_pem.write_to_path(str(tls.key))
    with SentinelSetup(tls) as setup:  # only the setup's own checks use plain ports
        url = setup.url()
        assert url.startswith("rediss+sentinel://")
        name = unique_queue_name()
        async with Queue(name, url, durable=1) as queue:
            job = await queue.add("over-tls")  # durable: the replica synced over TLS
            pool = queue.client.connection_pool
            assert issubclass(pool.connection_class, SSLConnection)
            assert all(s.connection_pool.connection_kwargs.get("ssl_ca_certs") == str(tls.ca)
                       for s in pool.sentinel_manager.sentinels)
            async with running(Worker(name, _done, connection=url, handle_signals=False)):
                await wait_for(lambda: _state_is(queue, job.id, "completed"), timeout=10)
        with SyncQueue(name, url) as sync_queue:
            assert sync_queue.add("sync-over-tls").id
        untrusted = url.split("?")[0]  # the system's CAs do not know this one
        async with Queue(name, untrusted) as queue:
            with pytest.raises(MasterNotFoundError):
                await queue.add("refused")
