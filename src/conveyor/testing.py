"""A pytest plugin for testing applications that use conveyor.

Installed with conveyor, pytest loads it by itself (the ``pytest11`` entry
point ``conveyor.testing``); ``pytest_plugins = ["conveyor.testing"]`` in a
root ``conftest.py`` names it explicitly, and ``-p no:conveyor.testing``
turns it off. It gives

- fixtures of a private ``redis-server`` on a free loopback port, never the
  Redis the machine runs: ``conveyor_redis_url`` (one server for the session,
  emptied before each test), ``conveyor_redis_server`` (that server, a
  :class:`~conveyor.embedded.RedisServer`) and ``conveyor_isolated_redis_server``
  (a server of the test's own, for a test that stops or breaks it). A test
  using them is skipped, saying why, when no ``redis-server`` can be found;
- :func:`run_until_empty`: run a worker on a queue until nothing is left to
  run, and get the jobs it ran;
- :func:`assert_enqueued`, :func:`assert_not_enqueued` and
  :func:`enqueued_jobs`: what a test checks of the jobs its code added.

The helpers are coroutines (conveyor's :class:`~conveyor.Queue` is asyncio),
for tests run by an asyncio plugin such as pytest-asyncio or anyio; the
assertions have twins for a :class:`conveyor.sync.Queue` in plain ``def``
tests (``assert_enqueued_sync``...).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar
from unittest.mock import ANY

import pytest
import redis as redis_sync

from . import sync
from .app import Conveyor
from .embedded import RedisServer, find_redis_server
from .job import Job
from .keys import JobState
from .queue import Queue
from .worker import Worker

__all__ = [
    "ENQUEUED_STATES",
    "assert_enqueued",
    "assert_enqueued_sync",
    "assert_not_enqueued",
    "assert_not_enqueued_sync",
    "enqueued_jobs",
    "enqueued_jobs_sync",
    "run_until_empty",
]

#: The states of a job that was added and has not run yet.
ENQUEUED_STATES = (JobState.WAITING, JobState.PRIORITIZED, JobState.DELAYED,
                   JobState.WAITING_CHILDREN)
# What run_until_empty waits to see at zero: jobs a worker can take now, or is running.
_RUNNABLE_STATES = (JobState.WAITING, JobState.PRIORITIZED, JobState.ACTIVE)
_POLL_S = 0.02
# A job as the async or the sync queue gives it.
J = TypeVar("J", Job, sync.SyncJob)
# Jobs an assertion's message lists.
_SHOWN = 10


def _started_server() -> RedisServer:
    """A started private server, or the test skipped with the reason."""
    try:
        binary = find_redis_server()
    except RuntimeError as exc:
        pytest.skip(f"conveyor.testing: {exc}")
    if not os.access(binary, os.X_OK):
        pytest.skip(f"conveyor.testing: no redis-server at {binary} (from "
                    "$CONVEYOR_REDIS_SERVER, or on PATH)")
    server = RedisServer(binary=binary)
    try:
        server.start()
    except BaseException:
        server.close()  # its temporary directory
        raise
    return server


@pytest.fixture(scope="session")
def conveyor_redis_server() -> Iterator[RedisServer]:
    """A private redis-server for the whole test session (started on first use)."""
    server = _started_server()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def conveyor_redis_url(conveyor_redis_server: RedisServer) -> str:
    """The URL of the session's private Redis, emptied (FLUSHALL) for this test;
    started again if an earlier test stopped it."""
    if not conveyor_redis_server.running:
        conveyor_redis_server.start()
    with redis_sync.Redis.from_url(conveyor_redis_server.url) as client:
        client.flushall()
    return conveyor_redis_server.url


@pytest.fixture
def conveyor_isolated_redis_server() -> Iterator[RedisServer]:
    """A private redis-server for this test alone (its ``url``; ``kill()``,
    ``restart()``...), removed with its data after the test."""
    server = _started_server()
    try:
        yield server
    finally:
        server.close()


async def run_until_empty(
    queue: Queue,
    processor: Any,
    *,
    delayed: bool = False,
    timeout: float = 30.0,
    **worker_options: Any,
) -> list[Job]:
    """Run a :class:`~conveyor.Worker` of ``queue`` with ``processor`` (a job's
    function, or a :class:`~conveyor.app.Conveyor` app: its tasks) until no
    job is waiting or active (nor delayed, with ``delayed=True``: retries with
    a backoff, jobs added with a delay), then close it; the jobs it finished,
    one per job, as their last attempt left them (``return_value``,
    ``failed_reason``, ``attempts_made``), in the order they finished.

    ``worker_options`` go to the worker (``concurrency=``...); it uses the
    queue's connection (an app's worker, the app's). Raises
    :class:`TimeoutError` if the queue is not empty after ``timeout`` seconds
    (the worker is closed first: the jobs it was running go back to the queue).
    """
    states = (*_RUNNABLE_STATES, JobState.DELAYED) if delayed else _RUNNABLE_STATES
    finished: dict[str, Job] = {}

    def record(job: Job, _result: Any) -> None:
        finished.pop(job.id, None)  # a retried job moves to the end
        finished[job.id] = job

    deadline = time.monotonic() + timeout
    while True:
        if isinstance(processor, Conveyor):
            worker = processor.worker(queue.name, **{"handle_signals": False, **worker_options})
        else:
            worker = Worker(queue.name, processor, **{
                "connection": queue.connector, "prefix": queue.prefix,
                "handle_signals": False, **worker_options,
            })
        worker.on("completed", record)
        worker.on("failed", record)
        running = asyncio.create_task(worker.run())
        empty = False
        try:
            empty = await _wait_empty(queue, states, running, deadline)
        finally:
            # Given up: jobs still running go back to the queue at once.
            await worker.close(timeout=None if empty else 0)
            await running  # a worker that broke down raises here
        # Closed, the worker has reported every attempt it ran and moves no job
        # any more: a second look sees a retry that landed after the first one.
        counts = await queue.get_job_counts(*states)
        if not any(counts.values()):
            return list(finished.values())
        if not empty:
            raise TimeoutError(f"queue {queue.name!r} not empty after {timeout} s: {counts}")


async def _wait_empty(
    queue: Queue, states: tuple[str, ...], running: asyncio.Task[None], deadline: float
) -> bool:
    """Poll until ``states`` hold no job (True), the deadline passes or the
    worker's task ends (False)."""
    while not running.done():
        if not any((await queue.get_job_counts(*states)).values()):
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(_POLL_S)
    return False


async def enqueued_jobs(
    queue: Queue, name: str | None = None, states: Iterable[str] = ENQUEUED_STATES
) -> list[Job]:
    """The jobs of ``queue`` in ``states`` (by default those not run yet),
    named ``name`` if given, oldest first within each state."""
    jobs = await queue.get_jobs(list(states), asc=True)
    return [job for job in jobs if name is None or job.name == name]


async def assert_enqueued(
    queue: Queue, name: str | None = None, data: Any = ANY, *, count: int | None = None
) -> list[Job]:
    """Assert that ``queue`` holds a job not run yet named ``name`` (any name
    if None) whose data equals ``data`` (any data by default; ``unittest.mock.ANY``
    also matches inside it) -- exactly ``count`` such jobs if given -- and
    return them. The AssertionError lists what the queue holds."""
    return _check_enqueued(queue.name, await enqueued_jobs(queue), name, data, count)


async def assert_not_enqueued(queue: Queue, name: str | None = None, data: Any = ANY) -> None:
    """Assert that ``queue`` holds no job not run yet named ``name`` (any if
    None) with data equal to ``data`` (any by default)."""
    _check_not_enqueued(queue.name, await enqueued_jobs(queue), name, data)


def enqueued_jobs_sync(
    queue: sync.Queue, name: str | None = None, states: Iterable[str] = ENQUEUED_STATES
) -> list[sync.SyncJob]:
    """:func:`enqueued_jobs` of a :class:`conveyor.sync.Queue` (for sync tests)."""
    jobs = queue.get_jobs(list(states), asc=True)
    return [job for job in jobs if name is None or job.name == name]


def assert_enqueued_sync(
    queue: sync.Queue, name: str | None = None, data: Any = ANY, *, count: int | None = None
) -> list[sync.SyncJob]:
    """:func:`assert_enqueued` of a :class:`conveyor.sync.Queue` (for sync tests)."""
    return _check_enqueued(queue.name, enqueued_jobs_sync(queue), name, data, count)


def assert_not_enqueued_sync(queue: sync.Queue, name: str | None = None,
                             data: Any = ANY) -> None:
    """:func:`assert_not_enqueued` of a :class:`conveyor.sync.Queue` (for sync tests)."""
    _check_not_enqueued(queue.name, enqueued_jobs_sync(queue), name, data)


def _check_enqueued(
    queue: str, jobs: list[J], name: str | None, data: Any, count: int | None
) -> list[J]:
    matching = _matching(jobs, name, data)
    if (not matching) if count is None else len(matching) != count:
        wanted = "a job" if count is None else f"{count} job(s)"
        raise AssertionError(f"expected {wanted} {_described(name, data)} in queue "
                             f"{queue!r}, found {len(matching)}; {_holdings(jobs)}")
    return matching


def _check_not_enqueued(queue: str, jobs: list[J], name: str | None, data: Any) -> None:
    if matching := _matching(jobs, name, data):
        raise AssertionError(f"expected no job {_described(name, data)} in queue {queue!r}, "
                             f"found {len(matching)}; {_holdings(jobs)}")


def _matching(jobs: list[J], name: str | None, data: Any) -> list[J]:
    return [job for job in jobs if (name is None or job.name == name) and data == job.data]


def _described(name: str | None, data: Any) -> str:
    named = "of any name" if name is None else f"named {name!r}"
    return named if data is ANY else f"{named} with data {data!r}"


def _holdings(jobs: list[J]) -> str:
    if not jobs:
        return "the queue holds no job that has not run"
    shown = ", ".join(f"{job.name!r} {job.data!r}" for job in jobs[:_SHOWN])
    more = f" and {len(jobs) - _SHOWN} more" if len(jobs) > _SHOWN else ""
    return f"the queue holds: {shown}{more}"
