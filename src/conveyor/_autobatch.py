"""Concurrent adds on one queue share round trips (automatic batching).

Many coroutines adding at once (a web server's requests) would each pay a
round trip to Redis; ioredis pipelines such commands for BullMQ. Here
:meth:`conveyor.Queue.add` hands its job (checked and encoded already: a
:class:`~conveyor.errors.ValidationError` is raised at the call, before any
of this) to the queue's :class:`AddBatcher`:

- when no add of this queue is in flight, the job goes out at once, alone,
  from the caller's own task: a lone add costs what it cost before;
- while one is in flight, later jobs gather; when it returns (and one more
  turn of the event loop has let the callers it woke add again), they go as
  one ``add_jobs`` call of at most :data:`MAX_BATCH` jobs, through the same
  door as ``add_bulk`` (:meth:`~conveyor._scripts.fetch.FetchScripts.add_jobs`:
  one call token for the batch, so a resend after a lost reply replays the
  first run's reply and no job is made twice). One batch is in flight at a
  time: the batches grow with the load instead of the round trips.

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

    def __init__(self, send: Send, max_batch: int = MAX_BATCH) -> None:
        self._send = send
        self._max_batch = max_batch
        self._gathering: deque[tuple[NewJob, asyncio.Future[Any]]] = deque()
        # The loop a lone add is in flight on, from its caller's task (None: none).
        self._sending: asyncio.AbstractEventLoop | None = None
        self._flusher: asyncio.Task[None] | None = None

    def _idle(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Nothing in flight on ``loop``: an add may go out at once. What was left
        in flight on another loop (closed since, as tests' loops are) is forgotten."""
        flusher = self._flusher
        if flusher is not None and flusher.get_loop() is not loop:
            self._flusher, flusher = None, None
            self._gathering.clear()
        if self._sending is not None and self._sending is not loop:
            self._sending = None
        return self._sending is None and (flusher is None or flusher.done())

    async def add(self, job: NewJob) -> Any:
        """Add ``job``; its reply (``[job_id, created, timestamp]``, see add_jobs)."""
        loop = asyncio.get_running_loop()
        if self._idle(loop):
            self._sending = loop
            try:
                [reply] = await self._send([job])
            finally:
                self._sending = None
                if self._gathering:
                    self._start_flusher()
            return reply
        waiter: asyncio.Future[Any] = loop.create_future()
        self._gathering.append((job, waiter))
        return await waiter

    def _start_flusher(self) -> None:
        self._flusher = asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self) -> None:
        """Send what gathered, a batch at a time, until nothing is left."""
        try:
            while True:
                # One turn first: the callers the last reply woke add again now,
                # and their jobs join this batch rather than start a lone one.
                await asyncio.sleep(0)
                batch = self._take()
                if batch:
                    await self._send_batch(batch)
                elif not self._gathering:
                    return
        finally:
            # Ended by a cancel (the loop closing): the jobs not sent are not
            # added, and their callers hear so rather than wait forever.
            while self._gathering:
                _, waiter = self._gathering.popleft()
                waiter.cancel()

    def _take(self) -> list[tuple[NewJob, asyncio.Future[Any]]]:
        """The next batch in the order the adds were called; a job whose caller
        was cancelled meanwhile is left out (it is not added)."""
        batch: list[tuple[NewJob, asyncio.Future[Any]]] = []
        while self._gathering and len(batch) < self._max_batch:
            job, waiter = self._gathering.popleft()
            if not waiter.done():
                batch.append((job, waiter))
        return batch

    async def _send_batch(self, batch: list[tuple[NewJob, asyncio.Future[Any]]]) -> None:
        try:
            replies = await self._send([job for job, _ in batch])
        except asyncio.CancelledError:
            for _, waiter in batch:
                waiter.cancel()
            raise
        except Exception as exc:
            for _, waiter in batch:
                if not waiter.done():
                    waiter.set_exception(exc)
            return
        for (_, waiter), reply in zip(batch, replies, strict=True):
            if not waiter.done():  # its caller was cancelled: the job exists all the same
                waiter.set_result(reply)
