"""Shared fixtures: one private redis-server per test session (never :6379)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from chaos.redis_cluster import RedisCluster
from redis.asyncio.cluster import RedisCluster as RedisClusterClient

from conveyor import FlowProducer, Queue, Worker
from helpers import StartWorker, unique_queue_name, workers_running
from redis_server import RedisServer, flushed

# pytest-xdist's workers set COLUMNS=80 and LINES=24; the CLI reads a set COLUMNS
# as a terminal's width and narrows its tables (dropping columns), while a plain
# `pytest` leaves them unset (piped output: every column). The CLI tests, in
# process or in subprocesses, see the piped case either way.
for _name in ("COLUMNS", "LINES"):
    os.environ.pop(_name, None)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "cluster: run the test on one Redis server and on a 3-master Redis Cluster "
        "(the redis_url fixture is parametrized: [server] and [cluster]); cluster(False) "
        "opts a test of a marked module out")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    marker = metafunc.definition.get_closest_marker("cluster")
    # A test opts out of its module's mark with @pytest.mark.cluster(False).
    if "redis_url" in metafunc.fixturenames and marker and marker.args != (False,):
        metafunc.parametrize("backend", ["server", "cluster"], indirect=True)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisCluster]:
    """Three masters, started the first time a test asks (see chaos/redis_cluster.py)."""
    with RedisCluster() as cluster:
        yield cluster


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    """"server" (one Redis) or "cluster": what ``redis_url`` names."""
    return str(getattr(request, "param", "server"))


@pytest.fixture
def redis_url(request: pytest.FixtureRequest, backend: str) -> str:
    """URL of the private server, (re)started if a test killed it, and flushed;
    for a test marked ``cluster``, also the private cluster's (flushed)."""
    if backend == "cluster":
        cluster: RedisCluster = request.getfixturevalue("redis_cluster")
        return cluster.flush()
    server: RedisServer = request.getfixturevalue("redis_server")
    if not server.running:
        server.start()
    return flushed(server)


@pytest.fixture
async def redis(redis_url: str, backend: str, request: pytest.FixtureRequest
                ) -> AsyncIterator[aioredis.Redis]:
    """A plain client of the test's Redis; on the cluster a RedisCluster client
    (single-key commands and same-slot multi-key ones work as on one server)."""
    if backend == "cluster":
        cluster: RedisCluster = request.getfixturevalue("redis_cluster")
        client: Any = RedisClusterClient(host="127.0.0.1", port=cluster.ports[0])
    else:
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


# -- the browser tests' shared fixtures (Debian's chromium through Playwright) --------
# A module may define its own (another chromium flag, a page watching CSP, a
# dashboard with options); these are the plain ones. Playwright is imported only
# when a test asks for them.


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless chromium for a test module."""
    from browser_support import chromium

    with chromium() as launched:
        yield launched


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh 1280px page; any uncaught JavaScript error fails the test."""
    from browser_support import fresh_page

    with fresh_page(browser) as fresh:
        yield fresh


@pytest.fixture
def dashboard(redis_url: str) -> Iterator[Any]:
    """create_app on the test's Redis, served by uvicorn on a free port."""
    from browser_support import dashboard_servers
    from conveyor.web.app import create_app

    with dashboard_servers(redis_url) as start:
        yield start(lambda: create_app(redis_url))
