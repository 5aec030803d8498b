"""Concurrent adds on one queue share round trips (automatic batching).

Many coroutines adding at once (a web server's requests) would each pay a
round trip to Redis; ioredis pipelines such commands for BullMQ. Here
:meth:`conveyor.Queue.add` hands its job (checked and encoded already: a
:class:`~conveyor.errors.ValidationError` is raised at the call, before any
of this) to the queue's :class:`AddBatcher`:

- when no add of this queue is in flight, the job goes out at once, alone,
  from the caller's own task: a lone add costs what it cost before;
- while one is in flight, later jobs gather and go on the next turn of the
  event loop as one ``add_jobs`` call, through the same door as ``add_bulk``
  (:meth:`~conveyor._scripts.fetch.FetchScripts.add_jobs`: one call token
  for the batch, so a resend after a lost reply replays the first run's
  reply and no job is made twice). At most :data:`MAX_IN_FLIGHT` (2) calls
  are out at once, each batch taking its share of what is gathered and in
  flight (at most :data:`MAX_BATCH` jobs): two calls of about equal size
  alternate, Redis running one while this process answers the other's
  callers. After a batch returns, the next waits one turn of the loop, so
  the callers it woke add again into it rather than one by one.

A batch keeps the order of its calls; two batches in flight at once (on two
connections) have no order between them, as two concurrent calls have none.
Each caller gets its own reply: the script answers per job, and refuses a job
without failing its neighbours (``add_jobs.lua``); an error of the whole call
(the connection lost past redis-py's retries) goes to every caller of it.

Cancelling a caller whose job is still gathering takes its job out: it is not
sent. Once its batch has gone, the job is Redis's: cancelling the caller only
stops it from waiting, and the job exists (as a cancelled lone add that reached
Redis). A package-internal module.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from ._prepare import BULK_CHUNK

if TYPE_CHECKING:
    from ._scripts import NewJob

__all__ = ["MAX_BATCH", "AddBatcher", "SharedStep"]

#: Most jobs one batched call takes (the add script's chunk: Redis serves nobody
#: else while it runs).
MAX_BATCH = BULK_CHUNK

#: Most calls in flight at once.
MAX_IN_FLIGHT = 2

#: Sends jobs to the add script; one reply per job, in order.
Send = Callable[[Sequence["NewJob"]], Awaitable[Sequence[Any]]]


class SharedStep:
    """An async step that concurrent callers share (the queue's registration
    before its first add): the first starts it, the others wait for the same
    run, and all resume in the order they came, so the first adds of a burst
    stay in call order. A caller cancelled meanwhile does not cancel the step;
    a step that failed is run again by the next caller."""

    def __init__(self, step: Callable[[], Awaitable[None]]) -> None:
        self._step = step
        self._running: asyncio.Future[None] | None = None

    async def __call__(self) -> None:
        running = self._running
        loop = asyncio.get_running_loop()
        if running is None or running.get_loop() is not loop or (
            running.done() and (running.cancelled() or running.exception() is not None)
        ):
            running = self._running = loop.create_task(self._run())
        await asyncio.shield(running)

    async def _run(self) -> None:
        await self._step()


class AddBatcher:
    """Coalesces the concurrent adds of one queue into batched script calls."""

    def __init__(
        self, send: Send, max_batch: int = MAX_BATCH, max_in_flight: int = MAX_IN_FLIGHT
    ) -> None:
        self._send = send
        self._max_batch = max_batch
        self._max_in_flight = max_in_flight
        self._loop: asyncio.AbstractEventLoop | None = None
        self._gathering: deque[tuple[NewJob, asyncio.Future[Any]]] = deque()
        self._calls = 0  # calls in flight (a lone add's included)
        self._jobs = 0  # their jobs
        self._flush_due = False  # a flush is scheduled for the next turn of the loop
        self._batches: set[asyncio.Task[None]] = set()  # in flight, kept from the GC

    def _on(self, loop: asyncio.AbstractEventLoop) -> None:
        """Work on ``loop``; what was left in flight on another loop (closed since,
        as a test's loop is) is forgotten."""
        if self._loop is not loop:
            self._loop = loop
            self._gathering.clear()
            self._calls = self._jobs = 0
            self._flush_due = False
            self._batches = set()

    def add(self, job: NewJob) -> Awaitable[Any]:
        """Add ``job``; await the result for its reply (``[job_id, created,
        timestamp]``, see add_jobs). A plain function returning a future when
        the job gathers: no coroutine of its own per add."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._on(loop)
        if not (self._calls or self._flush_due or self._gathering):
            return self._send_alone(job)
        waiter: asyncio.Future[Any] = loop.create_future()
        self._gathering.append((job, waiter))
        if not self._flush_due and self._calls < self._max_in_flight:  # per job: inlined
            self._flush_soon()
        return waiter

    async def _send_alone(self, job: NewJob) -> Any:
        """A lone add: at once, from the caller's own task."""
        self._calls, self._jobs = 1, 1
        try:
            [reply] = await self._send([job])
        finally:
            self._calls -= 1
            self._jobs -= 1
            if self._gathering:
                self._flush_soon()
        return reply

    def _flush_soon(self) -> None:
        if not self._flush_due and self._loop is not None:
            self._flush_due = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        """Send what gathered while fewer than ``max_in_flight`` calls are out
        (nothing gathered: idle again). A batch takes its share of the jobs
        gathered and in flight, so the calls come out of about equal size:
        Redis runs one while this process answers the other's callers."""
        self._flush_due = False
        while self._gathering and self._calls < self._max_in_flight:
            share = -(-(len(self._gathering) + self._jobs) // self._max_in_flight)
            batch = self._take(min(share, self._max_batch))
            if not batch:
                return
            self._calls += 1
            self._jobs += len(batch)
            task = asyncio.get_running_loop().create_task(self._send_batch(batch))
            self._batches.add(task)
            task.add_done_callback(self._batches.discard)

    def _take(self, size: int) -> list[tuple[NewJob, asyncio.Future[Any]]]:
        """The next ``size`` jobs in the order the adds were called; a job whose
        caller was cancelled meanwhile is left out (it is not added)."""
        batch: list[tuple[NewJob, asyncio.Future[Any]]] = []
        while self._gathering and len(batch) < size:
            job, waiter = self._gathering.popleft()
            if not waiter.done():
                batch.append((job, waiter))
        return batch

    async def _send_batch(self, batch: list[tuple[NewJob, asyncio.Future[Any]]]) -> None:
        try:
            replies = await self._send([job for job, _ in batch])
            if len(replies) != len(batch):  # never from add_jobs; no caller left hanging
                raise RuntimeError(f"{len(replies)} replies to a batch of {len(batch)} jobs")
        except asyncio.CancelledError:  # the loop is closing: so are its callers
            for _, waiter in batch:
                waiter.cancel()
            raise
        except Exception as exc:
            for _, waiter in batch:
                if not waiter.done():
                    waiter.set_exception(exc)
        else:
            for (_, waiter), reply in zip(batch, replies, strict=True):
                if not waiter.done():  # its caller was cancelled: the job exists all the same
                    waiter.set_result(reply)
        finally:
            self._calls -= 1
            self._jobs -= len(batch)
        # The next batch goes on the next turn, after the callers just answered
        # have run: those that add again join it instead of going out alone.
        self._flush_soon()
