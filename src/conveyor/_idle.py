"""A worker's idle wait: when a fetch finds nothing, the worker blocks on its
queue's wake-up marker (``BZPOPMIN``) instead of polling, and while work keeps
arriving it pipelines each wait with a fetch. Part of the worker's loop
(:mod:`conveyor.worker`), which starts :func:`wait_for_work` as a task when
it is idle with free slots; it reads and sets the loop's idle state.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from redis.exceptions import NoScriptError, RedisError

from .connection import REDIS_DOWN as _REDIS_DOWN
from .connection import socket_timeout

if TYPE_CHECKING:
    from .worker import Worker

__all__ = ["RECHECK_INTERVAL", "wait_and_fetch", "wait_for_work"]

log = logging.getLogger("conveyor.worker")

#: An idle worker looks for work without a wake-up marker this often (seconds).
RECHECK_INTERVAL = 60.0


async def wait_for_work(worker: Worker) -> None:
    """Block on the queue's marker until work may be ready (or a delayed job is due).

    Whatever makes work ready (add, retry, resume, a stalled job's return)
    leaves a marker, so a wait that times out without one means there is no
    work: wait again without asking. Only a due delayed job, or every
    ``RECHECK_INTERVAL`` seconds as a safety net, makes an idle worker look.

    While work keeps arriving, each wait is pipelined with a fetch: Redis runs
    the fetch the moment the wait ends, so a new job starts one round trip
    after it was added instead of two. A wait that times out that way costs
    a fetch, so after one the worker waits plainly until work comes again.
    """
    try:
        while not (worker._closing or worker._stopping):
            n = worker._free_slots()
            if n <= 0 or worker._limited():
                return  # a rate limit: the loop fetches again when it ends
            timeout = worker.block_timeout / 1000
            read_timeout = socket_timeout(worker.queue.client)
            if read_timeout is not None:
                timeout = min(timeout, read_timeout * 0.8)
            if worker._next_due:
                timeout = min(timeout, max((worker._next_due - time.time() * 1000) / 1000, 0.002))
            # A partition's loop waits plainly: slots reserved by a wait would be
            # kept from the other partitions' loops for as long as it blocks.
            if worker._fetch_on_wake and worker._share is None:
                woke = await wait_and_fetch(worker, n, timeout)
                if woke is None or woke[1] == n:
                    return  # fetch again at once, or every free slot is busy
                if woke[0] is None and not woke[1]:
                    worker._fetch_on_wake = False
                elif woke[1]:
                    await asyncio.sleep(0)  # let the jobs start before the next wait
                continue
            popped = await worker.queue.client.bzpopmin(worker.queue.keys.marker, timeout)
            if popped is not None:
                worker._wakeups += 1
                worker._fetch_on_wake = True
                return
            if worker._next_due and time.time() * 1000 >= worker._next_due:
                return
            if time.monotonic() - worker._last_fetch >= RECHECK_INTERVAL:
                return
    except _REDIS_DOWN as exc:
        worker._note_redis_down(exc)
        await asyncio.sleep(0.1)
    except RedisError as exc:
        log.error("worker %s: Redis refused a call (%s); retrying", worker.id, exc)
        await asyncio.sleep(0.1)
    finally:
        worker._idle = False
        worker._next_due = 0
        worker._block_task = None
        worker._wake.set()


async def wait_and_fetch(worker: Worker, n: int, timeout: float) -> tuple[Any, int] | None:
    """BZPOPMIN and move_to_active in one pipeline; returns (popped marker or
    None, number of jobs taken), or None when the fetch must be done again
    (Redis lost its scripts; the marker that woke us is gone)."""
    queue = worker.queue
    worker._reserved += n
    worker._maybe_stranded = True
    call = queue.scripts.calls.new()
    try:
        async with queue.client.pipeline(transaction=False) as pipe:
            pipe.bzpopmin(queue.keys.marker, timeout)
            queue.scripts.queue_move_to_active(
                pipe, n, worker._token_prefix, worker.lock_duration, worker.limiter, call
            )
            popped, reply = await pipe.execute(raise_on_error=False)
    except _REDIS_DOWN:
        # The fetch may have run and taken jobs: the loop asks again by its token.
        worker._resends.append(([], [], {}, n, call))
        worker._maybe_stranded = False
        raise
    finally:
        worker._reserved -= n
    if isinstance(reply, NoScriptError):  # Redis restarted: load, then fetch
        worker._maybe_stranded = False
        await queue.scripts.load("move_to_active")
        return None
    if isinstance(popped, Exception):
        raise popped
    if isinstance(reply, Exception):
        raise reply
    worker._maybe_stranded = False
    queue.scripts.calls.answered(call)
    if popped is not None:
        worker._wakeups += 1
    worker._start(n, reply[0], reply[1], worker._wakeups, reply[2])
    return popped, len(reply[1])
