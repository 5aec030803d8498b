"""The chaos run: servers, producers, workers and faults, then the verdict.

1. Start a private Redis of kind ``redis`` (see :mod:`chaos.topology`: one
   server with AOF and ``appendfsync always``, so a ``kill -9`` loses no
   acknowledged write and a job missing after a Redis restart is conveyor's
   loss, not the configuration's; a cluster; a sentinel setup) unless
   ``redis_url`` names one, and a private PostgreSQL unless ``database_url``
   does. On a cluster or with sentinels, producers add durably
   (``durable=1``: an add returns once a replica has it), so that a failover
   losing an accepted job is conveyor's loss too.
2. Start ``workers`` ``conveyor worker`` processes (a third of them through a
   :class:`~chaos.proxy.FaultyProxy`), producers adding jobs at ``rate`` per
   second (each add retried with its job id until it returns: it is then
   *accepted*), and the fault schedule.
3. After ``duration`` seconds (or ``jobs`` jobs) stop adding and faulting;
   wait, polling, until every accepted job has finished (or ``drain_timeout``).
4. Stop the workers, read Redis and PostgreSQL, and :func:`chaos.checker.check`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import random
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from examples.support.postgres import PostgresServer

from conveyor import Queue

from . import topology
from .checker import Fault, Record, Run, Verdict, check
from .faults import FaultInjector
from .proxy import FaultyProxy
from .tasks import SCHEMA
from .topology import Topology
from .workers import WorkerSet

__all__ = ["Options", "run"]

log = logging.getLogger("chaos")


@dataclass
class Options:
    duration: float | None = 90.0  # seconds of adding (None: until ``jobs``)
    jobs: int | None = None  # jobs to add (None: until ``duration``)
    rate: float = 50.0  # jobs added per second
    workers: int = 3
    concurrency: int = 8
    seed: int = 1
    redis: str = "single"  # the Redis the run starts: single, cluster, sentinel
    redis_url: str | None = None  # or this one, started by someone else
    database_url: str | None = None
    lock_ms: int = 3000
    fault_interval: float = 3.0  # mean seconds between faults (0: none)
    failover_every: float = 10.0  # least seconds from a failover's end to the next's start
    drain_timeout: float = 180.0
    queue: str = "chaos"
    logs: Path | None = None  # worker logs (default: a new temp dir)
    out: Path | None = None  # the JSON report (python -m chaos --out)
    record: Path | None = None  # everything recorded, for python -m chaos.checker


#: Job kinds and their share; "exit" and "big" are also capped per run.
MIX = {"ok": 0.975, "raise": 0.01, "hang": 0.006, "exit": 0.004, "big": 0.005}
CAPS = {"exit": 25, "big": 20}
#: Every finished job stays in Redis for the checker (the largest count there is).
KEEP_ALL = 2**31 - 1
OPTIONS: dict[str, dict[str, Any]] = {
    "ok": {"attempts": 3, "backoff": 200},
    "big": {"attempts": 3, "backoff": 200},
    "raise": {"attempts": 2, "backoff": 100},
    "hang": {"attempts": 2, "timeout": 1000},
    "exit": {"attempts": 1},
}


class _Producers:
    """Adds jobs ``c<n>`` at a steady rate; an add that raises is sent again."""

    def __init__(self, queue: Queue, options: Options, durable: bool) -> None:
        self.queue = queue
        self.durable = durable
        self.options = options
        self.rng = random.Random(options.seed + 1)
        self.accepted: list[str] = []
        self.kinds: dict[str, int] = dict.fromkeys(MIX, 0)
        self.retries = 0
        self.first_add = 0.0
        self._next = 0

    def _kind(self) -> str:
        kind = self.rng.choices(list(MIX), list(MIX.values()))[0]
        if self.kinds[kind] >= CAPS.get(kind, 1 << 62):
            kind = "ok"
        self.kinds[kind] += 1
        return kind

    async def run(self, stop_at: float) -> None:
        self.first_add = time.time()
        start = time.monotonic()
        adds: set[asyncio.Task[None]] = set()
        limit = self.options.jobs
        # A durable add waits for a replica's acknowledgement (and fails, to be
        # sent again, during a failover): more of them in flight keep the rate.
        in_flight = 2000 if self.durable else 200
        while time.monotonic() < stop_at and (limit is None or self._next < limit):
            due = int((time.monotonic() - start) * self.options.rate) + 1
            while (self._next < due and (limit is None or self._next < limit)
                   and len(adds) < in_flight):
                job_id, kind = f"c{self._next}", self._kind()
                self._next += 1
                task = asyncio.create_task(self._add(job_id, kind))
                adds.add(task)
                task.add_done_callback(adds.discard)
            await asyncio.sleep(0.02)
        await asyncio.gather(*adds)

    async def _add(self, job_id: str, kind: str) -> None:
        data = {"kind": kind, "work_ms": self.rng.randint(1, 20)}
        while True:
            try:
                await self.queue.add("effect", data, job_id=job_id, remove_on_complete=KEEP_ALL,
                                     remove_on_fail=KEEP_ALL, **OPTIONS[kind])
            except Exception as exc:  # Redis down or the proxy: the same add again
                self.retries += 1
                log.debug("add %s: %r; again", job_id, exc)
                await asyncio.sleep(0.2)
                continue
            self.accepted.append(job_id)
            return


def _count_in_logs(logs: Path, text: str) -> int:
    return sum(path.read_text(errors="replace").count(text) for path in logs.glob("*.log"))


async def _finished_count(queue: Queue) -> int:
    client = queue.client
    keys = queue.keys
    return int(await client.zcard(keys.completed)) + int(await client.zcard(keys.failed))


async def _drain(queue: Queue, accepted: int, timeout: float) -> bool:
    """Poll until ``accepted`` jobs have finished; False after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if await _finished_count(queue) >= accepted:
                return True
        await asyncio.sleep(0.5)
    return False


async def _read_ends(queue: Queue, accepted: list[str]) -> dict[str, tuple[str, str | None]]:
    client, keys = queue.client, queue.keys
    ends: dict[str, tuple[str, str | None]] = {}
    for raw in await client.zrange(keys.completed, 0, -1):
        ends[raw.decode() if isinstance(raw, bytes) else str(raw)] = ("completed", None)
    start = 0
    while page := await queue.get_jobs("failed", start, start + 999, asc=True):
        for job in page:
            ends[job.id] = ("failed", job.failed_reason)
        start += len(page)
    for job_id in accepted:
        if job_id not in ends:  # neither finished: where is it?
            found = await queue.get_job(job_id)
            if found is not None:
                ends[job_id] = (str(await found.get_state()), found.failed_reason)
    return ends


async def _read_database(url: str) -> tuple[dict[str, int], list[Run]]:
    import asyncpg

    connection = await asyncpg.connect(url)
    try:
        effects = {r["job_id"]: r["runs"] for r in await connection.fetch(
            "SELECT job_id, runs FROM effects")}
        runs = [Run(**dict(r)) for r in await connection.fetch(
            "SELECT job_id, pid, attempt, fetched_at, started_at, ended_at, outcome FROM runs")]
    finally:
        await connection.close()
    return effects, runs


async def _create_schema(url: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(url)
    try:
        await connection.execute(SCHEMA)
    finally:
        await connection.close()


async def run(options: Options) -> tuple[Verdict, dict[str, Any]]:
    """One chaos run; its verdict and a JSON-able report."""
    faults: list[Fault] = []
    servers: Topology | None = None
    postgres: PostgresServer | None = None
    proxy: FaultyProxy | None = None
    logs = options.logs or Path(tempfile.mkdtemp(prefix="conveyor-chaos-"))
    logs.mkdir(parents=True, exist_ok=True)
    try:
        redis_url = options.redis_url
        if redis_url is None:
            servers = await asyncio.to_thread(topology.start, options.redis)
            redis_url = servers.url
        database_url = options.database_url
        if database_url is None:
            postgres = PostgresServer()
            database_url = await asyncio.to_thread(postgres.start)
        await _create_schema(database_url)
        if urlsplit(redis_url).scheme == "redis":  # a proxy speaks to one server only
            proxy = FaultyProxy(redis_url)
            await proxy.start()
        return await _run(options, redis_url, database_url, servers, proxy, faults, logs)
    finally:
        if proxy is not None:
            await proxy.close()
        if servers is not None:
            await asyncio.to_thread(servers.close)
        if postgres is not None:
            await asyncio.to_thread(postgres.close)


async def _run(
    options: Options, redis_url: str, database_url: str, servers: Topology | None,
    proxy: FaultyProxy | None, faults: list[Fault], logs: Path,
) -> tuple[Verdict, dict[str, Any]]:
    env = {
        "CHAOS_DATABASE_URL": database_url, "CHAOS_QUEUE": options.queue,
        "CHAOS_LOCK_MS": str(options.lock_ms), "CHAOS_STALLED_MS": "1000",
        "CHAOS_MAX_STALLED": "2", "CHAOS_CONCURRENCY": str(options.concurrency),
    }
    workers = WorkerSet(options.workers, redis_url, proxy.url if proxy else None,
                        max(1, options.workers // 3), env, logs, faults.append)
    replicated = urlsplit(redis_url).scheme.split("+")[-1] in ("cluster", "sentinel")
    queue = Queue(options.queue, redis_url, durable=1 if replicated else 0,
                  durable_timeout=2000)
    lock_s = options.lock_ms / 1000
    failover = None
    if servers is not None and servers.can_fail_over:
        rng, key = random.Random(options.seed + 2), queue.keys.base
        failover = functools.partial(servers.failover, rng, key)
    server = None if servers is None else servers.server
    injector = FaultInjector(options.seed, workers, server, proxy, lock_s,
                             options.fault_interval, faults.append, failover,
                             options.failover_every)
    producers = _Producers(queue, options, replicated)
    workers.start_all()
    watcher = asyncio.create_task(workers.watch())
    chaos = asyncio.create_task(injector.run()) if options.fault_interval > 0 else None
    problems: list[str] = []
    try:
        horizon = options.duration if options.duration is not None else 10 * 86_400.0
        await producers.run(time.monotonic() + horizon)
        added_s = time.time() - producers.first_add
        if chaos is not None:
            await injector.stop()
            await chaos
        problems += injector.errors
        drained = await _drain(queue, len(producers.accepted), options.drain_timeout)
        elapsed = time.time() - producers.first_add
        if not drained:
            problems.append(f"not every accepted job finished within {options.drain_timeout} s "
                            "of the last add")
    finally:
        problems += await workers.stop()
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
    try:
        ends = await _read_ends(queue, producers.accepted)
    finally:
        await queue.close()
    effects, runs = await _read_database(database_url)
    record = Record(
        producers.accepted, ends, effects, runs, faults, lock_s, elapsed,
        extra={
            "kinds": producers.kinds, "add_retries": producers.retries,
            "adding_s": round(added_s, 1), "worker_processes": len(workers.pids),
            "proxy": None if proxy is None else {
                "swallowed": proxy.swallowed, "connections_cut": proxy.cuts},
            "seed": options.seed, "logs": str(logs), "redis": options.redis_url or options.redis,
            "durable_adds": replicated,
            "workers_stopped_while_starting": workers.stopped_starting,
            "stale_fetches_not_run": _count_in_logs(logs, "past its lock: not run"),
        },
    )
    if options.record is not None:
        options.record.write_text(json.dumps(record.to_json()))
    verdict = check(record)
    verdict.violations[:0] = problems
    report = {**verdict.as_dict(), "options": {k: str(v) for k, v in asdict(options).items()},
              "fault_log": [asdict(f) for f in sorted(faults, key=lambda f: f.at)]}
    return verdict, report
