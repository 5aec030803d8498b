"""Shared fixtures: one private redis-server per test session (never :6379)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from conveyor import FlowProducer, Queue, Worker
from helpers import StartWorker, unique_queue_name, workers_running
from redis_server import RedisServer, flushed


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """URL of the private server, (re)started if a test killed it, and flushed."""
    if not redis_server.running:
        redis_server.start()
    return flushed(redis_server)


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def queue_name() -> str:
    return unique_queue_name()


@pytest.fixture
async def flow(redis_url: str) -> AsyncIterator[FlowProducer]:
    async with FlowProducer(connection=redis_url) as producer:
        yield producer


@pytest.fixture
async def queue(redis_url: str, queue_name: str) -> AsyncIterator[Queue]:
    async with Queue(queue_name, redis_url) as q:
        yield q


@pytest.fixture
async def start_worker(redis_url: str, queue_name: str) -> AsyncIterator[StartWorker]:
    """start_worker(processor, **options): a running Worker, closed at teardown."""

    def make(processor: Any, **options: Any) -> Worker:
        return Worker(queue_name, processor, **{"connection": redis_url, **options})

    async with workers_running(make) as start:
        yield start
