"""Clients conveyor creates pack commands with hiredis: the same bytes on the
wire and the same errors for bad arguments as redis-py's own packer."""

from __future__ import annotations

import asyncio

import pytest
from redis.exceptions import DataError

from conveyor.connection import make_client


async def test_values_round_trip(redis_url: str) -> None:
    client, owned = make_client(redis_url)
    assert owned
    try:
        big = b"x" * 3_000_000  # beyond redis-py's chunking cutoff
        await client.mset({"text": "grüße ✓", "int": 12, "float": 0.1, "big": big})
        assert await client.mget("text", "int", "float") == [
            "grüße ✓".encode(), b"12", b"0.1"
        ]
        assert await client.get("big") == big
        await client.config_resetstat()  # a command name of two words
        async with client.pipeline(transaction=True) as pipe:
            pipe.incr("n").incr("n")
            assert await pipe.execute() == [1, 2]
    finally:
        await client.aclose()


@pytest.mark.parametrize("bad", [True, None, [1], {"a": 1}])
async def test_bad_argument_types_raise_data_error(redis_url: str, bad: object) -> None:
    client, _ = make_client(redis_url)
    try:
        with pytest.raises(DataError):
            await client.set("k", bad)  # type: ignore[arg-type]
        assert await client.exists("k") == 0
    finally:
        await client.aclose()


async def test_a_burst_beyond_the_pool_waits_for_a_connection(redis_url: str,
                                                              queue_name: str) -> None:
    """A web server under a burst (the auction's 200 bidders) adds more jobs at
    once than the client has connections: each add waits for a free one
    instead of failing with redis-py's "Too many connections"."""
    from conveyor import Queue

    async with Queue(queue_name, redis_url) as queue:
        jobs = await asyncio.gather(*(queue.add("bid", {"n": n}) for n in range(300)))
        assert len({job.id for job in jobs}) == 300
        assert (await queue.get_job_counts("waiting"))["waiting"] == 300
