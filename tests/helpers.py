"""Test helpers. ``wait_for`` is the sanctioned way to wait for a condition."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import inspect
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from redis.asyncio.cluster import RedisCluster as RedisClusterClient

from conveyor import Queue, Worker

# start_worker(processor, **options) -> a running Worker (the ``start_worker`` fixture).
StartWorker = Callable[..., Worker]


async def wait_for(
    predicate: Callable[[], Any | Awaitable[Any]],
    timeout: float = 10.0,
    interval: float = 0.01,
    message: str | None = None,
) -> Any:
    """Poll ``predicate`` (sync or async) until it returns something truthy.

    Returns that truthy value. Raises ``AssertionError`` if ``timeout`` seconds
    pass first; exceptions raised by the predicate propagate immediately.
    """
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        last = result
        if time.monotonic() >= deadline:
            what = message or getattr(predicate, "__name__", repr(predicate))
            raise AssertionError(
                f"condition not met within {timeout}s: {what} (last value: {last!r})"
            )
        await asyncio.sleep(interval)


@contextlib.asynccontextmanager
async def workers_running(make: Callable[..., Worker]) -> AsyncIterator[Callable[..., Worker]]:
    """Yields ``start(*args, **options)``: a Worker made by ``make`` and running in a
    task; every one started is closed and awaited on exit."""
    started: list[tuple[Worker, asyncio.Task[None]]] = []

    def start(*args: Any, **options: Any) -> Worker:
        worker = make(*args, **options)
        started.append((worker, asyncio.create_task(worker.run())))
        return worker

    try:
        yield start
    finally:
        for worker, task in started:
            await worker.close(timeout=2)
            await task


@contextlib.asynccontextmanager
async def running(worker: Worker) -> AsyncIterator[Worker]:
    """Run ``worker`` in a task for the block; close it and await the task on exit."""
    task = asyncio.create_task(worker.run())
    try:
        yield worker
    finally:
        await worker.close()
        await task


async def finished(queue: Queue, job_id: str) -> str | None:
    """The job's state if it is completed or failed, else None."""
    state = await queue.get_job_state(job_id)
    return state if state in ("completed", "failed") else None


async def queue_state_is(queue: Queue, job_id: str, state: str) -> bool:
    return await queue.get_job_state(job_id) == state


def importable_env(directory: Path) -> dict[str, str]:
    """This process's environment with ``directory`` first on PYTHONPATH, for a
    child that imports the app module a test wrote there."""
    path = os.pathsep.join(filter(None, [str(directory), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path}


async def worker_process(app: str, redis_url: str, app_dir: Path) -> asyncio.subprocess.Process:
    """``conveyor worker APP --redis URL`` as a child process run in ``app_dir``
    (where the test wrote APP's module), its stderr piped for the test to read."""
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "conveyor", "worker", app, "--redis", redis_url,
        cwd=app_dir, env=importable_env(app_dir), stderr=subprocess.PIPE,
    )


#: Ports held by :func:`refused_port` until the test process ends.
_HELD_PORTS: list[socket.socket] = []
atexit.register(lambda: [held.close() for held in _HELD_PORTS])


def refused_port() -> int:
    """A loopback port that refuses connections for the rest of the test process:
    bound, never listening. A port merely found free could be taken meanwhile by
    another test worker's server (the suite runs in parallel)."""
    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    _HELD_PORTS.append(held)
    return int(held.getsockname()[1])


def unique_queue_name() -> str:
    """A queue name no other test uses (the ``queue_name`` fixture's)."""
    return f"q-{uuid.uuid4().hex[:8]}"


# -- long-running commands ---------------------------------------------------------------


class Lines:
    """The stdout lines of a process, read with a deadline."""

    def __init__(self, proc: subprocess.Popen[str], timeout: float) -> None:
        self.proc = proc
        self.deadline = time.monotonic() + timeout

    def __iter__(self) -> Iterator[str]:
        assert self.proc.stdout is not None
        while time.monotonic() < self.deadline:
            line = self.proc.stdout.readline()
            if not line:
                return
            yield line


@contextlib.contextmanager
def process_lines(
    argv: Sequence[str], timeout: float = 60
) -> Iterator[tuple[subprocess.Popen[str], Lines]]:
    """A process with piped output; killed at the end if it is still running."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        yield proc, Lines(proc, timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def url_line(lines: Lines, prefix: str) -> str:
    for line in lines:
        if line.startswith(prefix):
            found = re.search(r"http://\S+/", line)
            assert found, line
            return found[0]
    raise AssertionError(f"no line starting with {prefix!r}")


async def node_info(redis: Any, section: str) -> list[dict[str, Any]]:
    """``INFO <section>`` of the server, or of every node of a cluster."""
    if isinstance(redis, RedisClusterClient):
        await redis.initialize()  # its nodes are known once it ran a command
        return [await redis.info(section, target_nodes=node) for node in redis.get_nodes()]
    return [await redis.info(section)]


async def reset_stats(redis: Any) -> None:
    """CONFIG RESETSTAT on the server, or on every node of a cluster."""
    if isinstance(redis, RedisClusterClient):
        await redis.initialize()
        await redis.config_resetstat(target_nodes=RedisClusterClient.ALL_NODES)
    else:
        await redis.config_resetstat()


async def commands_processed(redis: Any) -> int:
    """Commands the server (every node of a cluster) ran since its stats were reset."""
    return sum(int(info["total_commands_processed"]) for info in await node_info(redis, "stats"))


async def command_calls(redis: Any) -> dict[str, int]:
    """Calls per command so far (``INFO commandstats``), over every node of a cluster."""
    total: dict[str, int] = {}
    for info in await node_info(redis, "commandstats"):
        for key, value in info.items():
            name = key.removeprefix("cmdstat_")
            total[name] = total.get(name, 0) + int(value["calls"])
    return total
