"""A durable add sent again after a lost reply: the add script replays its first
run's reply (the call token) and must still make the WAIT that follows cover
that first run's writes, though the replay itself changes nothing."""

from __future__ import annotations

import os
import signal

import pytest
import redis.asyncio as aioredis

from conveyor import Queue
from conveyor._scripts.fetch import new_job_args
from conveyor.errors import DurabilityError
from helpers import wait_for
from redis_server import RedisServer


async def _replica_in_sync(replica: aioredis.Redis) -> bool:
    info = await replica.info("replication")
    return bool(info.get("master_link_status") == "up")


async def _holds(replica: aioredis.Redis, key: str) -> bool:
    return bool(await replica.exists(key))


async def test_a_replayed_durable_add_waits_for_the_replicas_to_hold_the_first_run() -> None:
    with RedisServer() as master, RedisServer() as replica_server:
        replica = aioredis.Redis.from_url(replica_server.url)
        try:
            await replica.replicaof("127.0.0.1", master.port)
            await wait_for(lambda: _replica_in_sync(replica))
            async with Queue("orders", master.url) as plain, Queue(
                "orders", master.url, durable=1, durable_timeout=2_000
            ) as durable:
                await plain.add("warm-up")
                await durable.add("warm-up")  # registered, its connection held by the replica
                token = plain.scripts.calls.new()
                layout = plain.scripts.add_jobs_layout(
                    [new_job_args("", "charge", b"1", b"{}")], token)
                assert replica_server.proc is not None
                os.kill(replica_server.proc.pid, signal.SIGSTOP)  # it acknowledges nothing
                try:
                    # The first run reached the master; its reply (and WAIT) was lost.
                    [[job_id, created, _]] = await plain.scripts.call("add_jobs", *layout)
                    assert created == 1
                    # Sent again with the same token: the reply is replayed, and the
                    # replica still does not hold the job, so it is not durable yet.
                    with pytest.raises(DurabilityError):
                        await durable.scripts.call("add_jobs", *layout)
                finally:
                    os.kill(replica_server.proc.pid, signal.SIGCONT)
                # Once the replica caught up, the replay is confirmed.
                job_key = plain.keys.job(job_id.decode())
                await wait_for(lambda: _holds(replica, job_key))
                [[again, created, _]] = await durable.scripts.call("add_jobs", *layout)
                assert (again, created) == (job_id, 1)
        finally:
            await replica.aclose()
