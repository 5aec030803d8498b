"""A worker on a partitioned queue (:mod:`conveyor.partitions`): one loop per
partition, sharing the worker's concurrency fairly.

Each partition gets a worker loop of its own (a :class:`~conveyor.Worker` on
that partition's queue, with the same id, processor, listeners and thread pool
or sandbox): its own report-and-fetch calls, its own blocking idle wait on its
partition's marker, its own lock renewal, stalled check and heartbeat. On one
server that is one blocked connection per partition; on a cluster each waits
on the node that holds its partition, which a single ``BZPOPMIN`` over several
markers could not do (the keys are in different slots).

The loops share one pool of ``concurrency`` slots (:class:`SlotShare`): a free
slot goes to the loop with work that holds the fewest, ties to the one served
least recently, so a flooded partition cannot starve a quiet one; a loop whose
partition ran dry (idle) claims nothing until its marker wakes it. A package-
internal module, called by :meth:`conveyor.Worker.run`.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Coroutine
from itertools import count
from typing import TYPE_CHECKING, Any, TypeVar

from ._signals import subscribe
from .connection import REDIS_DOWN
from .partitions import PartitionedQueue, stored_partitions
from .queue import Queue

if TYPE_CHECKING:
    from .worker import Worker

__all__ = ["SlotShare", "open_partitions", "run_if_partitioned", "run_partitioned"]

T = TypeVar("T")


class SlotShare:
    """One worker's ``concurrency`` slots, shared by its partitions' loops."""

    def __init__(self, concurrency: int) -> None:
        self.concurrency = concurrency
        self.members: list[Worker] = []
        self._served: dict[int, int] = {}
        self._ticks = count(1)

    def _wanting(self, me: Worker | None = None) -> list[Worker]:
        """The loops that may take slots: ``me`` and every loop not idle."""
        return [m for m in self.members
                if m is me or not (m._idle or m._closing or m._limited())]

    def _rank(self, member: Worker) -> tuple[int, int]:
        return len(member._running) + member._reserved, self._served.get(id(member), 0)

    def grant(self, me: Worker) -> int:
        """How many slots ``me`` may fetch for now: the free slots dealt one at a
        time to the loops that want work (``me`` and every loop not idle),
        fewest held first, then least recently served (computed as water
        filling, not slot by slot)."""
        held = sum(len(m._running) + m._reserved for m in self.members)
        free = self.concurrency - held
        if free <= 0:
            return 0
        wanting = sorted(self._wanting(me), key=self._rank)
        if len(wanting) == 1:
            return free
        heights = [self._rank(m)[0] for m in wanting]
        # Raise the lowest k loops to a common level until the free slots run out.
        k, left = 1, free
        while k < len(wanting) and left >= (heights[k] - heights[k - 1]) * k:
            left -= (heights[k] - heights[k - 1]) * k
            k += 1
        level, extra = heights[k - 1] + left // k, left % k
        raised = wanting[:k]
        if me not in raised:
            return 0
        # At one level, the extra slots go to the least recently served.
        by_service = sorted(raised, key=lambda m: self._served.get(id(m), 0))
        return level - heights[wanting.index(me)] + (by_service.index(me) < extra)

    def served(self, me: Worker) -> None:
        """``me`` sent a fetch: it goes behind the others at equal holdings."""
        self._served[id(me)] = next(self._ticks)

    def freed(self, me: Worker) -> None:
        """A slot of ``me`` came free: wake the loop next in line for it (if it
        is not ``me``), and idle loops that were waiting for a slot to start
        their blocking wait."""
        wanting = self._wanting(me)
        nxt = min(wanting, key=self._rank)
        if nxt is not me:
            nxt._wake.set()
        for member in self.members:
            if member._idle and member._block_task is None:
                member._wake.set()


async def run_if_partitioned(worker: Worker) -> bool:
    """Run ``worker`` on its queue's partitions if the queue is partitioned (see
    :func:`open_partitions`); ``False`` at once for a plain queue. A signal or
    :meth:`~conveyor.Worker.close` while Redis has not answered yet stops the
    wait (then ``False``: the worker's loop sees it is closing and stops)."""
    removers = [subscribe(worker._on_signal)] if worker.handle_signals else []
    try:
        queue = await open_partitions(worker, worker._partitions)
    finally:
        for remove in removers:
            remove()
    if queue is None:
        return False
    await run_partitioned(worker, queue)
    return True


async def open_partitions(worker: Worker, partitions: int | None) -> PartitionedQueue | None:
    """The partitioned queue ``worker`` serves, or ``None`` for a plain queue (or
    a worker closed meanwhile): the count ``partitions`` (stored in Redis if
    the queue has none, refused if it differs), else the count stored in the
    queue's meta. Waits for Redis while it is down."""
    delay = 0.05
    while True:
        try:
            found = await _unless_closed(worker, stored_partitions(worker.queue))
            break
        except REDIS_DOWN as exc:
            worker._note_redis_down(exc)
            await _unless_closed(worker, asyncio.sleep(delay))
            delay = min(delay * 2, 5.0)
    if worker._closing:
        return None
    n = partitions or (found and found[0])
    if not n:
        return None
    # The Connector, not the queue's client: on a cluster that client is pinned
    # to the logical queue's slot, and each partition needs its own slot's.
    queue = Queue(worker.queue.name, worker.queue.connector, prefix=worker.queue.prefix,
                  partitions=n)
    assert isinstance(queue, PartitionedQueue)
    try:
        await queue._register()  # stores the count, or refuses one that differs
    except BaseException:
        await worker.queue.close()
        worker._closed.set()
        raise
    return queue


async def _unless_closed(worker: Worker, call: Coroutine[Any, Any, T]) -> tuple[T] | None:
    """``(call's result,)``, or ``None`` if the worker is closed first (``call``
    is then cancelled): a server that never answers must not hold a stop."""
    task = asyncio.ensure_future(call)
    closing = asyncio.ensure_future(worker._wake.wait())
    try:
        await asyncio.wait({task, closing}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        closing.cancel()
    if task.done():
        return (task.result(),)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return None


def _loop_for(worker: Worker, part: Queue, share: SlotShare) -> Worker:
    """A worker loop on one partition, sharing ``worker``'s processor, listeners,
    thread pool or sandbox, limiter and slots."""
    sub = type(worker)(
        part.name, worker.processor if callable(worker.processor) else _unused,
        connection=worker.queue.connector, prefix=worker.queue.prefix,
        concurrency=worker.concurrency, lock_duration=worker.lock_duration,
        stalled_interval=worker.stalled_interval, max_stalled_count=worker.max_stalled_count,
        block_timeout=worker.block_timeout, name=worker.id,
        events_maxlen=worker.queue.scripts.maxlen, keep_logs=worker.queue.keep_logs,
        handle_signals=False,
    )
    sub.queue._registered = True  # the registry lists the logical queue only
    sub._attempts = worker._attempts  # one pool of threads or children for all loops
    sub._listeners = worker._listeners
    sub.limiter = worker.limiter
    sub._share = share
    share.members.append(sub)
    if worker._limits is not None:  # burst, max_jobs: the budget is the worker's
        worker._limits.adopt(sub)
    return sub


def _unused(_: object) -> None:  # pragma: no cover - replaced by the shared attempts
    raise AssertionError("a partition loop runs its worker's processor")


async def run_partitioned(worker: Worker, queue: PartitionedQueue) -> None:
    """Run ``worker`` on every partition of ``queue`` until it is closed."""
    share = SlotShare(worker.concurrency)
    loops = [_loop_for(worker, part, share) for part in queue.partitions]
    worker._loops = loops

    def on_signal(sig: signal.Signals) -> None:
        worker._closing = True
        for loop in loops:
            loop._on_signal(sig)

    removers = [subscribe(on_signal)] if worker.handle_signals else []
    tasks = [asyncio.create_task(loop.run()) for loop in loops]
    try:
        if worker._closing:  # closed while the partitions were being opened
            await asyncio.gather(*(loop.close() for loop in loops))
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for remove in removers:
            remove()
        await worker._attempts.close()
        await worker.queue.close()
        worker._closed.set()
