"""Clients conveyor creates pack commands with hiredis: the same bytes on the
wire and the same errors for bad arguments as redis-py's own packer."""

from __future__ import annotations

import asyncio

import pytest
from redis.exceptions import DataError
from redis.exceptions import TimeoutError as RedisTimeoutError

from conveyor import Queue
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


async def test_a_queue_from_a_url_waits_for_a_free_connection_under_many_concurrent_calls(
    redis_url: str, queue_name: str
) -> None:
    async with Queue(queue_name, redis_url) as queue:
        jobs = await asyncio.gather(*(queue.add("a", i) for i in range(500)))
        assert len({job.id for job in jobs}) == 500
        ids = [job.id for job in jobs] * 8
        removed = await asyncio.gather(*(queue.remove(job_id) for job_id in ids))
        assert removed.count(True) == 500
        assert len(removed) == 4_000
        assert queue.client.connection_pool.max_connections <= 100


async def test_a_server_that_never_answers_the_handshake_is_a_timeout() -> None:
    """A client's connect, handshake included, is bounded by its connect
    timeout (5 s; 0.2 s here): no read timeout must not mean waiting forever."""
    accepted: list[asyncio.StreamWriter] = []

    async def hold(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)  # accept, then never answer

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client, _ = make_client(f"redis://:pw@127.0.0.1:{port}/3")
    client.connection_pool.connection_kwargs["socket_connect_timeout"] = 0.2
    try:
        with pytest.raises(RedisTimeoutError, match="no answer to the handshake"):
            await asyncio.wait_for(client.ping(), 30)
        assert accepted  # it got as far as the handshake
    finally:
        await client.aclose()
        server.close()
        for writer in accepted:
            writer.close()
