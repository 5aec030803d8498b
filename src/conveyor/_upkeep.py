"""A worker's upkeep: the side tasks that run beside its hot loop. Lock
renewal (all running jobs' locks in one call, twice per lock duration),
listening for cancels over pub/sub, the stalled-jobs check, the heartbeat
that keeps the worker in the registry (:mod:`conveyor.workers`), and the
job schedulers' loop (:mod:`conveyor.schedulers`); and, as a worker stops,
handing back jobs a broken-off fetch took in its name.

They see the worker through :class:`UpkeepHost` only: its id and settings,
its queue, the jobs it runs, whether it is stopping, and how to tell of an
event or a lost connection. None of them is on the path of a job.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from redis.exceptions import NoPermissionError, RedisError

from . import workers
from ._finishing import stalled_failures
from ._reconnect import Reconnect
from ._scripts import NO_LIMIT, Outcome, outcome
from ._stream import text
from .connection import REDIS_DOWN as _REDIS_DOWN
from .connection import raise_if_cancelled, socket_timeout
from .job import Job
from .options import DEFAULT_KEEP_FAILED
from .queue import Queue
from .schedulers import advance_job_scheduler

__all__ = [
    "UpkeepHost", "cancel_running", "release_stranded", "run_job_schedulers", "start_upkeep",
]

log = logging.getLogger("conveyor.worker")
schedulers_log = logging.getLogger("conveyor.schedulers")

#: An idle scheduler loop reads the schedulers at least this often (seconds); an
#: upsert wakes one worker's loop at once through the ``schedulers-marker`` key.
RECHECK_INTERVAL = 30.0
#: The same while the queue has no scheduler at all (an idle worker's commands
#: per second count; an upsert still wakes the loop at once).
IDLE_RECHECK_INTERVAL = 120.0
#: Schedulers looked at per read of the ``schedulers`` zset.
SCHEDULERS_BATCH = 64
#: The jobs a worker runs: (job id, lock token) -> (job, the task running it).
Running = Mapping[tuple[str, str], tuple[Job, "asyncio.Task[None]"]]


class UpkeepHost(Protocol):
    """What upkeep sees of a worker (:class:`conveyor.Worker` is one)."""

    @property
    def id(self) -> str: ...
    @property
    def queue(self) -> Queue: ...
    @property
    def concurrency(self) -> int: ...
    @property
    def lock_duration(self) -> int: ...
    @property
    def stalled_interval(self) -> int: ...
    @property
    def max_stalled_count(self) -> int: ...
    @property
    def _running(self) -> Running: ...
    @property
    def _stopping(self) -> bool: ...  # run() is winding down: the side tasks end
    @property
    def _listeners(self) -> Mapping[str, list[Callable[..., Any]]]: ...
    def _emit(self, event: str, *args: Any) -> None: ...
    def _note_redis_down(self, exc: BaseException) -> None: ...


def start_upkeep(host: UpkeepHost) -> list[asyncio.Task[None]]:
    """Start the side tasks of a worker; they end when ``host._stopping`` (or cancelled)."""
    return [
        asyncio.create_task(renew_locks(host), name="conveyor-locks"),
        asyncio.create_task(check_stalled(host), name="conveyor-stalled"),
        asyncio.create_task(heartbeat(host), name="conveyor-heartbeat"),
        asyncio.create_task(listen_for_cancels(host), name="conveyor-cancels"),
        asyncio.create_task(
            run_job_schedulers(host.queue, lambda: host._stopping), name="conveyor-schedulers"
        ),
    ]


def cancel_running(running: Running, job_id: str, reason: str) -> None:
    """Cancel the attempt running ``job_id`` (its ``cancel_reason`` tells it apart
    from a hand-back)."""
    for (running_id, _), (job, task) in list(running.items()):
        if running_id == job_id and job.cancel_reason is None:
            log.info("job %s cancelled: %s", job_id, reason)
            job.cancel_reason = reason
            task.cancel()


async def renew_locks(host: UpkeepHost) -> None:
    """Extend the locks of all running jobs in one call, twice per lock duration."""
    lost_locks: set[tuple[str, str]] = set()
    running = host._running
    while not host._stopping:
        await asyncio.sleep(host.lock_duration / 2000)
        if not running:
            continue
        # A job whose lock is gone stays lost: asking again only repeats the warning.
        locks = [
            key for key, (job, _) in running.items() if key not in lost_locks and not job.moved
        ]
        if not locks:
            continue
        try:
            lost, cancelled = await host.queue.scripts.extend_locks(locks, host.lock_duration)
        except _REDIS_DOWN as exc:
            host._note_redis_down(exc)
            continue
        for job_id, reason in cancelled.items():
            cancel_running(running, job_id, reason)
        tokens = dict(locks)
        for job_id in lost:
            lost_locks.add((job_id, tokens[job_id]))
            log.warning("job %s: lock lost (taken over after a stall?); its result will "
                        "be discarded", job_id)
        lost_locks.intersection_update(running)


async def listen_for_cancels(host: UpkeepHost) -> None:
    """Cancel running jobs the moment ``Queue.cancel`` asks (pub/sub). A message
    missed while disconnected is caught up on resubscribing, and by the
    next lock renewal, which reports cancelled jobs too (and is the only way
    when the ACL user may not subscribe: this task then says so and ends)."""
    client = host.queue.client
    keys = host.queue.keys
    running = host._running
    while not host._stopping:
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(keys.cancel_channel)
            if running:
                ids = sorted({job_id for job_id, _ in running})
                reasons = await client.hmget(keys.cancels, ids)
                for job_id, reason in zip(ids, reasons, strict=True):
                    if reason is not None:
                        cancel_running(running, job_id, text(reason))
            async for message in pubsub.listen():
                job_id = text(message["data"])
                if any(running_id == job_id for running_id, _ in running):
                    reason = await client.hget(keys.cancels, job_id)
                    if reason is not None:
                        cancel_running(running, job_id, text(reason))
        except _REDIS_DOWN as exc:
            host._note_redis_down(exc)
            await asyncio.sleep(1)
        except NoPermissionError as exc:  # an ACL user without channel permissions
            log.warning("worker %s: may not subscribe to %s (%s); cancels reach running "
                        "jobs at the next lock renewal (every %d ms) instead", host.id,
                        keys.cancel_channel, exc, host.lock_duration // 2)
            return
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call]


async def check_stalled(host: UpkeepHost) -> None:
    """Return jobs whose worker died to the queue (one check per interval, cluster-wide)."""
    keep = f"{DEFAULT_KEEP_FAILED}:-1"
    queue = host.queue
    while True:
        try:
            reply = await queue.scripts.move_stalled_jobs(
                host.stalled_interval, host.max_stalled_count, keep
            )
        except _REDIS_DOWN as exc:
            host._note_redis_down(exc)
        else:
            if reply:
                for job_id in [*reply[0], *reply[1]]:
                    log.warning("job %s stalled (its worker stopped renewing the lock)",
                                text(job_id))
                    host._emit("stalled", text(job_id))
                if reply[1] and host._listeners.get("failed"):
                    ids = [text(i) for i in reply[1]]
                    with contextlib.suppress(*_REDIS_DOWN):
                        for failure in await stalled_failures(queue, ids,
                                                              host.max_stalled_count):
                            host._emit("failed", *failure)
        if host._stopping:
            return
        await asyncio.sleep(host.stalled_interval / 1000)


async def heartbeat(host: UpkeepHost) -> None:
    """Keep the worker listed by ``Queue.get_workers``: register it, then renew
    its entry every ``workers.HEARTBEAT_INTERVAL_MS`` until it stops (an entry
    that expired meanwhile is registered again)."""
    queue = host.queue
    entry: dict[str, Any] = {"host": socket.gethostname(), "pid": os.getpid(),
                             "conc": host.concurrency}
    started: int | None = None
    while not host._stopping:
        interval = workers.HEARTBEAT_INTERVAL_MS  # read each time: tests shorten it
        entry["run"] = sorted({job_id for job_id, _ in host._running})
        entry["ttl"] = ttl = 3 * interval
        try:
            renewed = started is not None and await workers.renew_worker(
                queue, host.id, entry, ttl, started
            )
            if not renewed:
                started = await workers.register_worker(queue, host.id, entry, ttl, started)
        except _REDIS_DOWN:
            pass  # the worker's main loop reports the outage; try again next time
        except RedisError as exc:
            log.warning("worker %s: heartbeat refused by Redis (%s)", host.id, exc)
        await asyncio.sleep(interval / 1000)



async def run_job_schedulers(queue: Queue, stopping: Callable[[], bool]) -> None:
    """Make the jobs of ``queue``'s schedulers as their slots come, until
    ``stopping()`` (or cancelled). Each worker runs one; they need no
    coordination (see ``advance_job_scheduler.lua`` and :mod:`conveyor.schedulers`).

    The loop sleeps until the earliest scheduler is due, at most
    :data:`RECHECK_INTERVAL`, blocked on the ``schedulers-marker`` key so that
    an upsert wakes it at once (the upsert made the first slot's job already:
    the loop only has to make the following ones). Idle, it costs a
    ``BZPOPMIN`` and a ``ZRANGE`` per interval (:data:`IDLE_RECHECK_INTERVAL`
    when the queue has no scheduler).
    """
    skew = 0  # Redis' clock minus ours (ms), from the last advance
    down = False
    reconnect = Reconnect()
    while not stopping():
        try:
            wait = RECHECK_INTERVAL
            entries: Any = await queue.client.zrange(
                queue.keys.schedulers, 0, SCHEDULERS_BATCH - 1, withscores=True
            )
            raise_if_cancelled()
            if not entries:
                wait = IDLE_RECHECK_INTERVAL
            for raw_id, score in entries:
                now = time.time() * 1000 + skew
                if score > now:
                    wait = min(wait, (score - now) / 1000)
                    break
                redis_now = await advance_job_scheduler(queue, text(raw_id))
                raise_if_cancelled()
                skew = redis_now - round(time.time() * 1000)
                wait = 0  # read again: the advanced schedulers have new scores
                if stopping():
                    return
            if down:
                schedulers_log.warning("job schedulers of %r: connection to Redis is back",
                                       queue.name)
                down, reconnect.failures = False, 0
            if wait > 0:
                await _sleep_for_schedulers(queue, wait)
        except _REDIS_DOWN as exc:
            if not down:
                schedulers_log.warning("job schedulers of %r: lost connection to Redis (%s)",
                                       queue.name, exc)
                down = True
            await reconnect.pause(f"job schedulers of {queue.name!r}")
        except Exception:
            schedulers_log.exception("job schedulers of %r failed; trying again", queue.name)
            await asyncio.sleep(5.0)


async def _sleep_for_schedulers(queue: Queue, seconds: float) -> None:
    """Wait ``seconds`` or until an upsert leaves the wake-up marker."""
    read_timeout = socket_timeout(queue.client)
    if read_timeout is not None:
        seconds = min(seconds, read_timeout * 0.8)
    if seconds < 0.01:  # below what a blocking wait resolves
        await asyncio.sleep(seconds)
        return
    await queue.client.bzpopmin(queue.keys.schedulers_marker, round(seconds, 3))
    raise_if_cancelled()


async def release_stranded(
    queue: Queue, worker_id: str, token_prefix: str, running: Running
) -> None:
    """Hand back jobs locked in this worker's name that it is not running: a
    cancelled wait-and-fetch may have taken some without reading the reply."""
    outcomes: list[Outcome] = []
    keys = queue.keys
    try:
        stranded = [
            (job_id, token)
            async for job_id, token in (
                (text(i), text(t))
                async for i, t in queue.client.hscan_iter(keys.locks, count=1000)
            )
            if token.startswith(token_prefix) and (job_id, token) not in running
        ]
        for job_id, token in stranded:  # a few at most; their groups count them
            group = await queue.client.hget(keys.job(job_id), "grp")
            outcomes.append(outcome(job_id, token, "r", "-1:-1",
                                    group="" if group is None else text(group)))
        if outcomes:
            await queue.scripts.move_to_finished(
                outcomes, 0, token_prefix, 1, NO_LIMIT
            )
            log.info("worker %s: handed back %d job(s) taken as it stopped",
                     worker_id, len(outcomes))
    except _REDIS_DOWN as exc:
        log.warning("worker %s: could not hand back jobs taken as it stopped (%s); "
                    "the stalled check will return them", worker_id, exc)
