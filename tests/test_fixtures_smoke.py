"""Smoke tests for the test scaffolding itself."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from helpers import wait_for
from redis_server import RedisServer


async def test_private_server_is_used(
    redis_server: RedisServer, redis_url: str, redis: aioredis.Redis
) -> None:
    assert redis_server.port != 6379
    assert redis_url == f"redis://127.0.0.1:{redis_server.port}/0"
    info = await redis.info("server")
    assert int(info["tcp_port"]) == redis_server.port
    assert await redis.dbsize() == 0  # flushed before each test


async def test_kill_and_restart_keeps_data(
    redis_server: RedisServer, redis: aioredis.Redis, queue_name: str
) -> None:
    port = redis_server.port
    await redis.set(f"{queue_name}:k", "v")
    redis_server.kill()
    assert not redis_server.running
    redis_server.start()
    assert redis_server.port == port
    async with aioredis.Redis.from_url(redis_server.url) as fresh:
        assert await fresh.get(f"{queue_name}:k") == b"v"

    redis_server.restart()  # graceful stop + start, same port and dir
    async with aioredis.Redis.from_url(redis_server.url) as fresh:
        assert await fresh.get(f"{queue_name}:k") == b"v"


def test_a_test_may_leave_the_server_killed(redis_server: RedisServer) -> None:
    redis_server.kill()
    assert not redis_server.running


async def test_redis_url_fixture_restarts_a_killed_server(
    redis_server: RedisServer, redis: aioredis.Redis
) -> None:
    assert redis_server.running
    assert await redis.ping()


def test_queue_names_are_unique(queue_name: str) -> None:
    assert queue_name.startswith("q-")
    assert len(queue_name) == 10


async def test_wait_for_returns_truthy_value() -> None:
    calls = 0

    def pred() -> int:
        nonlocal calls
        calls += 1
        return calls if calls >= 3 else 0

    assert await wait_for(pred, timeout=5) == 3

    async def apred() -> str:
        return "ok"

    assert await wait_for(apred) == "ok"


async def test_wait_for_times_out() -> None:
    with pytest.raises(AssertionError, match=r"not met within 0\.1s"):
        await wait_for(lambda: False, timeout=0.1, interval=0.01)
