"""The worker: takes jobs of one queue and runs them with bounded concurrency.

One loop owns all Redis traffic of the hot path. Finished attempts are
buffered and reported in one ``move_to_finished`` call that also takes the
next jobs, so in steady state a job costs one round trip, and under load
many jobs share one. When the queue runs dry the worker blocks on the
queue's marker (``BZPOPMIN``) instead of polling. Two side tasks renew all
locks in one call per interval and return stalled jobs to the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
import os
import signal
import socket
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any, TypeAlias

import orjson
from redis.exceptions import NoScriptError, RedisError

from ._corrupt import corrupt_failure
from ._finishing import record_attempt, stalled_failures, strategy_delay
from ._scripts import NO_LIMIT, Limit, Outcome, outcome
from ._stream import text
from .connection import REDIS_DOWN as _REDIS_DOWN
from .connection import Connection, socket_timeout
from .errors import JobTimeoutError, RateLimitError, UnrecoverableError, ValidationError
from .job import Job, fields_to_dict
from .metrics import time_bucket
from .options import DEFAULT_KEEP_FAILED, Retention, backoff_delay, check_count, to_ms
from .queue import Queue
from .sandbox import SandboxProcessor, make_pool, processor_reference
from .sync import SyncJob

__all__ = ["BackoffStrategy", "Processor", "Worker"]

log = logging.getLogger("conveyor.worker")

Processor: TypeAlias = Callable[[Job], Awaitable[Any]] | Callable[[SyncJob], Any]
#: (attempts_made, error, job) -> delay before the next attempt; None or < 0: don't retry.
#: An ``async def`` strategy is awaited.
BackoffStrategy: TypeAlias = Callable[
    [int, BaseException, Job], int | timedelta | Awaitable[int | timedelta | None] | None
]
Listener: TypeAlias = Callable[..., Any]

EVENTS = frozenset({"active", "completed", "failed", "progress", "stalled", "drained", "error"})
_MAX_RECONNECT_DELAY = 5.0
#: Seconds a stopping worker that holds no results waits for Redis to answer
#: the fetches it sent; then it stops without them (a job one took comes back
#: through the stalled-job check). A worker that could never connect stops.
_STOP_PATIENCE_S = 3.0
#: Report/fetch calls one worker keeps in flight (see Worker._send).
_MAX_CALLS = 2
#: An idle worker looks for work without a wake-up marker this often (seconds).
_RECHECK_INTERVAL = 60.0
#: The workers running on each event loop: one SIGTERM/SIGINT handler per loop
#: reaches them all (a handler per worker would replace the previous worker's).
_signal_workers: dict[asyncio.AbstractEventLoop, list[Worker]] = {}
_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Worker:
    """Runs ``processor`` for the jobs of ``queue_name``.

    ``processor`` is an ``async def`` taking a :class:`Job`, or a plain ``def``
    taking a :class:`conveyor.sync.SyncJob`; plain functions run in a thread pool
    of ``concurrency`` threads so they never block the event loop. Durations are
    milliseconds or ``timedelta``.

    ``limiter={"max": 100, "duration": 1000}``: all workers of the queue together
    start at most ``max`` jobs in any window of ``duration`` (give every worker
    of the queue the same limiter).

    ``sandbox=True`` runs the processor (a module-level function, or
    ``"module:function"``) in ``concurrency`` child processes that a timeout or
    cancel kills; see :mod:`conveyor.sandbox` for ``max_jobs_per_child`` and
    ``max_memory_per_child`` (KiB).
    """

    def __init__(
        self,
        queue_name: str,
        processor: Processor | SandboxProcessor | str,
        *,
        connection: Connection = None,
        prefix: str = "conveyor",
        concurrency: int = 1,
        lock_duration: int | timedelta = 30_000,
        stalled_interval: int | timedelta = 30_000,
        max_stalled_count: int = 1,
        backoff_strategy: BackoffStrategy | None = None,
        block_timeout: int | timedelta = 5_000,
        name: str | None = None,
        events_maxlen: int = 10_000,
        keep_logs: int = 1_000,
        handle_signals: bool = True,
        limiter: Mapping[str, Any] | None = None,
        sandbox: bool = False,
        max_jobs_per_child: int | None = None,
        max_memory_per_child: int | None = None,
    ) -> None:
        self._sandbox = make_pool(sandbox, concurrency, max_jobs_per_child, max_memory_per_child)
        self._target = "" if self._sandbox is None else processor_reference(processor)
        if not callable(processor) and self._sandbox is None:
            raise ValidationError("processor", f"must be callable, got {processor!r}")
        check_count("concurrency", concurrency, 1)
        check_count("max_stalled_count", max_stalled_count, 0)
        self.lock_duration = _positive_ms("lock_duration", lock_duration)
        self.stalled_interval = _positive_ms("stalled_interval", stalled_interval)
        self.block_timeout = _positive_ms("block_timeout", block_timeout)
        self.limiter: Limit = _parse_limiter(limiter)
        self.queue = Queue(
            queue_name, connection, prefix=prefix, events_maxlen=events_maxlen,
            keep_logs=keep_logs,
        )
        self.processor = processor
        self.concurrency = concurrency
        self.max_stalled_count = max_stalled_count
        self.backoff_strategy = backoff_strategy
        #: run() installs SIGTERM/SIGINT handlers on its loop (graceful stop); turn
        #: off when the application owns its signals and calls close() itself.
        self.handle_signals = handle_signals
        self.id = name or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._token_prefix = self.id + ":"
        self._is_async = _is_async_callable(processor)
        self._executor: ThreadPoolExecutor | None = None
        self._listeners: dict[str, list[Listener]] = {}
        # Keyed by (job id, lock token): a token alone is only unique per job.
        self._running: dict[tuple[str, str], tuple[Job, asyncio.Task[None]]] = {}
        self._outcomes: list[Outcome] = []
        # Calls that failed, to send again as they were (same token: if Redis ran
        # one, the resend returns its reply): outcomes, finished, timings, n, token.
        self._resends: list[_Call] = []
        self._finished: list[tuple[Job, str, Any]] = []
        # Wait and processing times of the attempts in _outcomes, as the metrics
        # histogram's fields (p<bucket>/w<bucket> -> count): one write per report.
        self._timings: dict[str, int] = {}
        self._timings_due = 0.0
        self._wake = asyncio.Event()
        self._closing = False
        self._force = False
        self._started = False
        self._closed = asyncio.Event()
        self._stopping = False  # run() is winding down: the side tasks must end
        self._drained = False  # "drained" was emitted and no job was taken since
        self._idle = False  # the last fetch found nothing: block before fetching again
        self._next_due = 0
        self._last_fetch = 0.0  # time.monotonic() of the last look for work
        self._wakeups = 0  # wake-up markers taken by the blocking wait
        self._reserved = 0  # slots promised to fetches in flight
        self._calls: set[asyncio.Task[None]] = set()  # report/fetch calls in flight
        self._reports: set[asyncio.Task[None]] = set()  # those of _calls carrying results
        self._stop_deadline: float | None = None  # time.monotonic(): see _STOP_PATIENCE_S
        self._gave_up = False  # stopped without the answers to some calls
        self._call_error: BaseException | None = None  # the last call's failure
        self._retry_delay_s = 0.05
        self._limited_until = 0.0  # time.monotonic(): a rate limit holds fetches until then
        self._batch_limit = max(1, -(-concurrency // 2))  # half the slots, rounded up
        # Work arrived at the last wake-up: the next wait carries a fetch with it.
        self._fetch_on_wake = False
        # A wait-and-fetch was cancelled or broken off: it may have taken jobs
        # whose reply we never read. run() hands such jobs back when it ends.
        self._maybe_stranded = False
        self._block_task: asyncio.Task[None] | None = None
        self._redis_down = False
        self._close_task: asyncio.Future[None] | None = None

    def __repr__(self) -> str:
        return f"<Worker {self.id} queue={self.queue.name!r} concurrency={self.concurrency}>"

    @property
    def name(self) -> str:
        return self.queue.name

    # -- events ---------------------------------------------------------------

    def on(self, event: str, callback: Listener) -> Listener:
        """Call ``callback`` on a worker event (it may be ``async``):

        ``active(job)``, ``completed(job, result)``, ``failed(job, error)`` (every
        failed attempt), ``progress(job, progress)``, ``stalled(job_id)``,
        ``drained()``, ``error(exception)``.
        """
        if event not in EVENTS:
            raise ValidationError("event", f"unknown event {event!r}; one of {sorted(EVENTS)}")
        self._listeners.setdefault(event, []).append(callback)
        return callback

    def _emit(self, event: str, *args: Any) -> None:
        for callback in self._listeners.get(event, ()):
            try:
                result = callback(*args)
                if inspect.isawaitable(result):
                    asyncio.ensure_future(result).add_done_callback(self._listener_done)
            except Exception as exc:
                self._listener_failed(exc)

    def _listener_done(self, future: asyncio.Future[Any]) -> None:
        if not future.cancelled() and future.exception() is not None:
            self._listener_failed(future.exception())  # type: ignore[arg-type]

    def _listener_failed(self, exc: BaseException) -> None:
        log.exception("worker event listener failed", exc_info=exc)
        if self._listeners.get("error"):
            with contextlib.suppress(Exception):
                for callback in self._listeners["error"]:
                    callback(exc)

    # -- lifecycle ------------------------------------------------------------

    async def run(self) -> None:
        """Process jobs until :meth:`close` is called or SIGTERM/SIGINT arrives."""
        if self._started:
            raise RuntimeError("Worker.run() was already called")
        self._started = True
        if not self._is_async and self._sandbox is None:
            self._executor = ThreadPoolExecutor(self.concurrency, thread_name_prefix="conveyor")
        removers = self._install_signal_handlers() if self.handle_signals else []
        side_tasks = [
            asyncio.create_task(self._renew_locks(), name="conveyor-locks"),
            asyncio.create_task(self._check_stalled(), name="conveyor-stalled"),
            asyncio.create_task(self._heartbeat(), name="conveyor-heartbeat"),
            asyncio.create_task(self._listen_for_cancels(), name="conveyor-cancels"),
            asyncio.create_task(self._run_schedulers(), name="conveyor-schedulers"),
        ]
        log.info("worker %s started on queue %r (concurrency %d)",
                 self.id, self.queue.name, self.concurrency)
        try:
            await self._main_loop()
        finally:
            # The flag, not just cancel(): Python 3.11's asyncio.wait_for (used by
            # redis-py) can swallow a cancel that lands as a reply arrives.
            self._stopping = True
            for task in side_tasks:
                task.cancel()
            await asyncio.gather(*side_tasks, return_exceptions=True)
            await self.queue._unregister_worker(self.id)  # leave Queue.get_workers
            for call in self._calls:  # only if the loop itself was cancelled
                call.cancel()
            await asyncio.gather(*self._calls, return_exceptions=True)
            await self._cancel_block()
            if self._maybe_stranded and not self._gave_up:
                await self._release_stranded()
            for remove in removers:
                remove()
            if self._executor is not None:
                self._executor.shutdown(wait=False, cancel_futures=True)
            if self._sandbox is not None:
                await self._sandbox.close()
            await self.queue.close()
            self._closed.set()
            log.info("worker %s stopped", self.id)

    async def close(self, timeout: float | None = None) -> None:
        """Stop taking jobs and let active ones finish.

        After ``timeout`` seconds, jobs still running are cancelled and handed
        back to the head of the queue at once (no attempt counted). Returns
        when the worker has stopped.
        """
        self._closing = True
        self._wake.set()
        if not self._started:
            await self.queue.close()
            return
        await self._cancel_block()
        if timeout is not None and not self._closed.is_set():
            # Wait for the worker, not a snapshot of its jobs: a fetch in flight
            # may still bring jobs in, and the timeout binds those too.
            stopped = asyncio.ensure_future(self._closed.wait())
            done, _ = await asyncio.wait({stopped}, timeout=timeout)
            if not done:
                stopped.cancel()
                self._abandon({task for _, task in self._running.values()})
        await self._closed.wait()

    def _abandon(self, tasks: set[asyncio.Task[None]]) -> None:
        self._force = True  # jobs a fetch in flight still brings in go straight back
        if tasks:
            log.warning("handing %d unfinished job(s) back to the queue", len(tasks))
        loop = asyncio.get_running_loop()
        for task in tasks:
            # Not task.cancel() now: a task created in this loop iteration has not
            # started, and cancelling it would skip _process and strand its job.
            loop.call_soon(task.cancel)

    def _install_signal_handlers(self) -> list[Callable[[], None]]:
        loop = asyncio.get_running_loop()
        workers = _signal_workers.setdefault(loop, [])
        if not workers:  # the first worker on this loop installs the handlers
            for sig in _SIGNALS:
                try:
                    loop.add_signal_handler(sig, _on_signal, loop, sig)
                except (NotImplementedError, RuntimeError, ValueError):
                    continue  # not the main thread, or no signals here
        workers.append(self)
        return [functools.partial(_leave_signal_handlers, loop, self)]

    def _on_signal(self, sig: signal.Signals) -> None:
        if self._closing:
            log.warning("%s again: handing running jobs back now", sig.name)
            self._abandon({task for _, task in self._running.values()})
            return
        log.info("%s: finishing %d running job(s), then stopping", sig.name, len(self._running))
        self._close_task = asyncio.ensure_future(self.close())

    # -- the hot loop ---------------------------------------------------------

    def _free_slots(self) -> int:
        """Slots neither running a job nor promised to a fetch in flight."""
        if self._closing:
            return 0
        return self.concurrency - len(self._running) - self._reserved

    async def _main_loop(self) -> None:
        """Send calls (report finished jobs and fetch, or only fetch) whenever there is
        something to report or a free slot, with up to ``_MAX_CALLS`` in flight; when
        idle, leave the waiting to :meth:`_wait_for_work`."""
        while True:
            self._wake.clear()
            if self._closing and not self._running:
                if not (self._outcomes or self._calls or self._resends):
                    return
                if self._out_of_patience():
                    self._drop_unanswered()
                    return
            elif self._closing:  # the patience counts from when nothing runs
                self._stop_deadline = None
            try:
                if self._call_error is not None:
                    error, self._call_error = self._call_error, None
                    raise error
                if len(self._calls) < _MAX_CALLS and (
                    self._outcomes
                    or self._resends
                    or (self._free_slots() > 0 and not self._idle and not self._limited())
                ):
                    self._send()
                    continue  # a second call may go out at once
                if self._free_slots() > 0 and self._idle and self._block_task is None:
                    self._block_task = asyncio.create_task(self._wait_for_work())
                await self._wake.wait()
            except _REDIS_DOWN as exc:
                self._note_redis_down(exc)
                await self._backoff()
            except RedisError as exc:
                # Redis answered but refused (out of memory, read-only replica...):
                # keep the jobs we hold and try again with backoff.
                if not self._redis_down:
                    log.error("worker %s: Redis refused a call (%s); retrying", self.id, exc)
                    self._emit("error", exc)
                self._redis_down = True
                await self._backoff()

    async def _backoff(self) -> None:
        delay = self._retry_delay_s
        if self._stop_deadline is not None:
            delay = min(delay, max(0.0, self._stop_deadline - time.monotonic()))
        await asyncio.sleep(delay)
        self._retry_delay_s = min(self._retry_delay_s * 2, _MAX_RECONNECT_DELAY)

    def _send(self) -> None:
        """Start one call: report the finished jobs (if any) and fetch for free slots.

        A call fetches for at most half the slots, so two calls alternate: Redis
        runs one while this process runs the jobs the other brought.
        """
        if self._resends:
            call = self._resends.pop(0)
            self._reserved += call[3]
            task = asyncio.create_task(self._exchange(*call, self._wakeups))
            self._calls.add(task)
            if call[0]:
                self._reports.add(task)
            return
        outcomes, finished = self._outcomes, self._finished
        self._outcomes, self._finished = [], []
        # The histogram's tally goes with a report at most once a second while
        # jobs keep running (a few HINCRBYs each time: at thousands of reports a
        # second they would be most of what a report costs), and with the report
        # that leaves nothing running.
        timings: dict[str, int] = {}
        if outcomes and self._timings and (
            not self._running or self._closing or time.monotonic() >= self._timings_due
        ):
            timings, self._timings = self._timings, {}
            self._timings_due = time.monotonic() + 1.0
        n = 0 if self._limited() else min(self._free_slots(), self._batch_limit)
        self._reserved += n
        task = asyncio.create_task(self._exchange(
            outcomes, finished, timings, n, self.queue.scripts.calls.new(), self._wakeups
        ))
        self._calls.add(task)
        if outcomes:
            self._reports.add(task)

    async def _exchange(
        self,
        outcomes: list[Outcome],
        finished: list[tuple[Job, str, Any]],
        timings: dict[str, int],
        n: int,
        call: str,
        wakeups: int,
    ) -> None:
        scripts = self.queue.scripts
        try:
            if outcomes:
                statuses, next_due, jobs, limit_wait, now = await scripts.move_to_finished(
                    outcomes, n, self._token_prefix, self.lock_duration, self.limiter, timings,
                    call,
                )
            else:
                next_due, jobs, limit_wait = await scripts.move_to_active(
                    n, self._token_prefix, self.lock_duration, self.limiter, call
                )
        except asyncio.CancelledError:
            # The loop is going: keep the results, run() hands back what it holds.
            self._outcomes[:0] = outcomes
            self._finished[:0] = finished
            for field, count in timings.items():
                self._timings[field] = self._timings.get(field, 0) + count
            return
        except BaseException as exc:
            # Redis may have run it and the reply was lost: send this call again as
            # it is (the token makes a second run return the first one's reply).
            self._resends.append((outcomes, finished, timings, n, call))
            self._call_error = exc
            return
        finally:
            self._reserved -= n
            # Before waking the loop, which checks _calls (a done callback would run after).
            self._calls.discard(asyncio.current_task())
            self._reports.discard(asyncio.current_task())
            self._wake.set()
        scripts.calls.answered(call)
        if outcomes:
            self._report(finished, statuses, int(now))
        self._start(n, next_due, jobs, wakeups, limit_wait)
        self._retry_delay_s = 0.05
        if self._redis_down:
            self._redis_down = False
            log.warning("worker %s: connection to Redis is back", self.id)

    def _out_of_patience(self) -> bool:
        """Whether a stopping worker with nothing running stops waiting for Redis:
        after _STOP_PATIENCE_S, if all it waits for is fetches, or if a second
        signal or close's timeout said "at once" (then results are dropped too)."""
        if self._stop_deadline is None:
            self._stop_deadline = time.monotonic() + _STOP_PATIENCE_S
            asyncio.get_running_loop().call_later(_STOP_PATIENCE_S, self._wake.set)
            return False
        holds_results = bool(self._outcomes or self._reports or any(c[0] for c in self._resends))
        return time.monotonic() >= self._stop_deadline and (self._force or not holds_results)

    def _drop_unanswered(self) -> None:
        log.warning("worker %s: Redis did not answer within %g s of stopping; stopping "
                    "without it (jobs it held come back through the stalled-job check)",
                    self.id, _STOP_PATIENCE_S)
        self._gave_up = True
        self._resends.clear()
        for call in self._calls:
            call.cancel()

    def _note_redis_down(self, exc: BaseException) -> None:
        if not self._redis_down:
            self._redis_down = True
            log.warning("worker %s: lost connection to Redis (%s); reconnecting", self.id, exc)
            self._emit("error", exc)

    def _start(
        self, n: int, next_due: Any, jobs: list[Any], wakeups: int, limit_wait: Any = 0
    ) -> None:
        """Run the jobs a fetch for ``n`` slots took. ``wakeups`` is the count of
        wake-up markers taken when the fetch was sent: if the blocking wait took
        one since, work may have arrived after the fetch ran, and its marker is
        gone, so "nothing found" must not send the worker back to block.
        ``limit_wait`` > 0: a rate limit stopped the fetch; ask again after it."""
        if n > 0:
            self._last_fetch = time.monotonic()
        if int(limit_wait) > 0:
            self._hold_fetches(int(limit_wait))
            return
        for job_id, fields in jobs:
            job = Job.from_fields(self.queue, text(job_id), fields_to_dict(fields))
            assert job.token is not None
            if job.corrupt is not None:  # fails alone, unrun (see conveyor._corrupt)
                failure = corrupt_failure(job, _keep_arg(job.opts.remove_on_fail))
                self._outcomes.append(failure[0])
                self._finished.append((job, "f", failure[1]))
                continue
            if self._listeners.get("progress"):
                job._progress_listener = self._on_progress
            task = asyncio.create_task(self._process(job))
            self._running[job.id, job.token] = (job, task)
            if self._listeners.get("active"):
                self._emit("active", job)
        if n > 0 and not jobs and wakeups == self._wakeups:
            self._idle = True
            self._next_due = int(next_due)
            if not self._drained:
                self._drained = True
                self._emit("drained")
        elif jobs:
            self._drained = False

    def _limited(self) -> bool:
        return self._limited_until > time.monotonic()

    def _hold_fetches(self, ms: int) -> None:
        """Fetch nothing for ``ms`` (a rate limit), then wake the loop to try again."""
        until = time.monotonic() + ms / 1000
        if until > self._limited_until:
            self._limited_until = until
            asyncio.get_running_loop().call_later(ms / 1000, self._wake.set)

    async def rate_limit(self, delay: int | timedelta) -> None:
        """Make every worker of the queue (this one included) wait ``delay`` before
        starting another job: a processor calls it when an external service
        says "slow down". Raise :class:`RateLimitError` instead to also hand the
        current job back without using an attempt."""
        ms = to_ms("delay", delay) or 0
        await self.queue.rate_limit(ms)
        self._hold_fetches(ms)

    def _on_progress(self, job: Job, progress: Any) -> None:
        self._emit("progress", job, progress)

    def _report(
        self, finished: list[tuple[Job, str, Any]], statuses: list[Any], now: int
    ) -> None:
        """Tell listeners of reported attempts; ``now`` is when Redis recorded them."""
        for (job, kind, payload), status in zip(finished, statuses, strict=True):
            if not int(status):
                log.warning("job %s: lock was lost before it finished; result discarded "
                            "(another worker took the job over)", job.id)
            elif kind == "c":
                job.finished_on = now
                self._emit("completed", job, payload)
            elif kind == "f" or kind == "F":  # F: no attempt left, so finished
                job.finished_on = now if kind == "F" else None
                self._emit("failed", job, payload)

    async def _wait_for_work(self) -> None:
        """Block on the queue's marker until work may be ready (or a delayed job is due).

        Whatever makes work ready (add, retry, resume, a stalled job's return)
        leaves a marker, so a wait that times out without one means there is no
        work: wait again without asking. Only a due delayed job, or every
        ``_RECHECK_INTERVAL`` seconds as a safety net, makes an idle worker look.

        While work keeps arriving, each wait is pipelined with a fetch: Redis runs
        the fetch the moment the wait ends, so a new job starts one round trip
        after it was added instead of two. A wait that times out that way costs
        a fetch, so after one the worker waits plainly until work comes again.
        """
        try:
            while not (self._closing or self._stopping):
                n = self._free_slots()
                if n <= 0 or self._limited():
                    return  # a rate limit: the loop fetches again when it ends
                timeout = self.block_timeout / 1000
                read_timeout = socket_timeout(self.queue.client)
                if read_timeout is not None:
                    timeout = min(timeout, read_timeout * 0.8)
                if self._next_due:
                    timeout = min(timeout, max((self._next_due - time.time() * 1000) / 1000, 0.002))
                if self._fetch_on_wake:
                    woke = await self._wait_and_fetch(n, timeout)
                    if woke is None or woke[1] == n:
                        return  # fetch again at once, or every free slot is busy
                    if woke[0] is None and not woke[1]:
                        self._fetch_on_wake = False
                    elif woke[1]:
                        await asyncio.sleep(0)  # let the jobs start before the next wait
                    continue
                popped = await self.queue.client.bzpopmin(self.queue.keys.marker, timeout)
                if popped is not None:
                    self._wakeups += 1
                    self._fetch_on_wake = True
                    return
                if self._next_due and time.time() * 1000 >= self._next_due:
                    return
                if time.monotonic() - self._last_fetch >= _RECHECK_INTERVAL:
                    return
        except _REDIS_DOWN as exc:
            self._note_redis_down(exc)
            await asyncio.sleep(0.1)
        except RedisError as exc:
            log.error("worker %s: Redis refused a call (%s); retrying", self.id, exc)
            await asyncio.sleep(0.1)
        finally:
            self._idle = False
            self._next_due = 0
            self._block_task = None
            self._wake.set()

    async def _wait_and_fetch(self, n: int, timeout: float) -> tuple[Any, int] | None:
        """BZPOPMIN and move_to_active in one pipeline; returns (popped marker or
        None, number of jobs taken), or None when the fetch must be done again
        (Redis lost its scripts; the marker that woke us is gone)."""
        queue = self.queue
        self._reserved += n
        self._maybe_stranded = True
        call = queue.scripts.calls.new()
        try:
            async with queue.client.pipeline(transaction=False) as pipe:
                pipe.bzpopmin(queue.keys.marker, timeout)
                queue.scripts.queue_move_to_active(
                    pipe, n, self._token_prefix, self.lock_duration, self.limiter, call
                )
                popped, reply = await pipe.execute(raise_on_error=False)
        except _REDIS_DOWN:
            # The fetch may have run and taken jobs: the loop asks again by its token.
            self._resends.append(([], [], {}, n, call))
            self._maybe_stranded = False
            raise
        finally:
            self._reserved -= n
        if isinstance(reply, NoScriptError):  # Redis restarted: load, then fetch
            self._maybe_stranded = False
            await queue.scripts.load("move_to_active")
            return None
        if isinstance(popped, Exception):
            raise popped
        if isinstance(reply, Exception):
            raise reply
        self._maybe_stranded = False
        queue.scripts.calls.answered(call)
        if popped is not None:
            self._wakeups += 1
        self._start(n, reply[0], reply[1], self._wakeups, reply[2])
        return popped, len(reply[1])

    async def _release_stranded(self) -> None:
        """Hand back jobs locked in this worker's name that it is not running: a
        cancelled wait-and-fetch may have taken some without reading the reply."""
        outcomes: list[Outcome] = []
        keys = self.queue.keys
        try:
            stranded = [
                (job_id, token)
                async for job_id, token in (
                    (text(i), text(t))
                    async for i, t in self.queue.client.hscan_iter(keys.locks, count=1000)
                )
                if token.startswith(self._token_prefix) and (job_id, token) not in self._running
            ]
            for job_id, token in stranded:  # a few at most; their groups count them
                group = await self.queue.client.hget(keys.job(job_id), "grp")
                outcomes.append(outcome(job_id, token, "r", "-1:-1",
                                        group="" if group is None else text(group)))
            if outcomes:
                await self.queue.scripts.move_to_finished(
                    outcomes, 0, self._token_prefix, 1, NO_LIMIT
                )
                log.info("worker %s: handed back %d job(s) taken as it stopped",
                         self.id, len(outcomes))
        except _REDIS_DOWN as exc:
            log.warning("worker %s: could not hand back jobs taken as it stopped (%s); "
                        "the stalled check will return them", self.id, exc)

    async def _cancel_block(self) -> None:
        task = self._block_task
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    # -- running one job ------------------------------------------------------

    async def _process(self, job: Job) -> None:
        assert job.token is not None
        stack = ""
        retry_delay = 0
        began = time.monotonic()
        try:
            if self._force:  # taken by a fetch in flight when close() gave up waiting
                raise asyncio.CancelledError
            result = await self._call(job)
            kind, payload = "c", result
            try:
                value = orjson.dumps(result).decode()
            except TypeError as exc:  # a programming error: another attempt changes nothing
                raise UnrecoverableError(
                    f"return value does not serialize to JSON: {exc}"
                ) from None
        except asyncio.CancelledError as exc:
            task = asyncio.current_task()
            if job.cancel_reason is not None and not self._force:
                kind, payload, value = "f", exc, f"cancelled: {job.cancel_reason}"
                retry_delay = -1  # a cancelled job does not run again
            elif not (self._force or (task is not None and task.cancelling())):
                # Raised by the processor itself, not a cancel of ours: a failure.
                kind, payload, value = "f", exc, "CancelledError: raised by the processor"
                stack = "".join(traceback.format_exception(exc))
                retry_delay = await self._retry_delay(job, exc)
            else:
                kind, payload, value = "r", None, ""
        except RateLimitError as exc:
            # Back to the head of the queue, no attempt used; every worker backs off.
            kind, payload, value, retry_delay = "l", None, "", exc.delay
            self._hold_fetches(exc.delay)
        except Exception as exc:
            kind, payload, value = "f", exc, f"{type(exc).__name__}: {exc}"
            stack = "".join(traceback.format_exception(exc))
            retry_delay = (
                -1 if isinstance(exc, UnrecoverableError) else await self._retry_delay(job, exc)
            )
        self._running.pop((job.id, job.token), None)
        if job.moved:  # stepped out with move_to_delayed: nothing to report
            self._wake.set()
            return
        opts = job.opts
        keep = _keep_arg(opts.remove_on_complete if kind == "c" else opts.remove_on_fail)
        self._outcomes.append(outcome(
            job.id, job.token, kind, keep, value, stack, retry_delay,
            job.parent_key or "", _held_deduplication_key(job), opts.group or "",
        ))
        if kind == "c" or kind == "f":
            timings = self._timings
            field = _PROCESSING_FIELDS[time_bucket((time.monotonic() - began) * 1000)]
            timings[field] = timings.get(field, 0) + 1
            # A first attempt's wait (ready to started, both on Redis' clock) is a
            # metric; a retry's isn't.
            if job.attempts_started == 1 and job.processed_on is not None:
                field = _WAIT_FIELDS[time_bucket(job.processed_on - job.timestamp - opts.delay)]
                timings[field] = timings.get(field, 0) + 1
        record_attempt(job, kind, payload, value, stack)
        if kind not in ("r", "l"):
            job.attempts_made += 1
        if kind == "f" and (retry_delay < 0 or job.attempts_made >= opts.attempts):
            kind = "F"  # failed for good: finished, as far as listeners are concerned
        self._finished.append((job, kind, payload))
        self._wake.set()

    async def _call(self, job: Job) -> Any:
        timeout = job.opts.timeout
        if self._sandbox is not None:  # a cancel or the timeout kills the child
            call: Awaitable[Any] = self._sandbox.run(job, self._target)
        elif self._is_async:
            call = self.processor(job)  # type: ignore[arg-type,operator]
        else:
            loop = asyncio.get_running_loop()
            call = loop.run_in_executor(
                self._executor, self.processor, SyncJob(job, loop)  # type: ignore[arg-type]
            )
        if timeout is None:
            return await call
        try:
            async with asyncio.timeout(timeout / 1000) as scope:
                return await call
        except TimeoutError:
            if scope.expired():
                raise JobTimeoutError(f"job {job.id} timed out after {timeout} ms") from None
            raise

    async def _retry_delay(self, job: Job, exc: BaseException) -> int:
        """Delay before the next attempt; -1 means don't retry."""
        made = job.attempts_made + 1
        if made >= job.opts.attempts:
            return 0
        backoff = job.opts.backoff
        if (backoff is None or backoff.type == "custom") and self.backoff_strategy is not None:
            try:
                # A value to_ms refuses must not escape: the job would stay active forever.
                ms = await strategy_delay(self.backoff_strategy, made, exc, job)
            except Exception:
                log.exception("backoff_strategy failed for job %s; retrying at once", job.id)
                return 0
            return -1 if ms is None or ms < 0 else ms
        if backoff is None or backoff.type == "custom":
            return backoff.delay if backoff else 0
        return backoff_delay(backoff, made)

    # -- side tasks -----------------------------------------------------------

    async def _renew_locks(self) -> None:
        """Extend the locks of all running jobs in one call, twice per lock duration."""
        lost_locks: set[tuple[str, str]] = set()
        while not self._stopping:
            await asyncio.sleep(self.lock_duration / 2000)
            if not self._running:
                continue
            # A job whose lock is gone stays lost: asking again only repeats the warning.
            locks = [
                key for key, (job, _) in self._running.items()
                if key not in lost_locks and not job.moved
            ]
            if not locks:
                continue
            try:
                lost, cancelled = await self.queue.scripts.extend_locks(
                    locks, self.lock_duration
                )
            except _REDIS_DOWN as exc:
                self._note_redis_down(exc)
                continue
            for job_id, reason in cancelled.items():
                self._cancel_running(job_id, reason)
            tokens = dict(locks)
            for job_id in lost:
                lost_locks.add((job_id, tokens[job_id]))
                log.warning("job %s: lock lost (taken over after a stall?); its result will "
                            "be discarded", job_id)
            lost_locks.intersection_update(self._running)

    async def _listen_for_cancels(self) -> None:
        """Cancel running jobs the moment ``Queue.cancel`` asks (pub/sub). A message
        missed while disconnected is caught up on resubscribing, and by the
        next lock renewal, which reports cancelled jobs too."""
        client = self.queue.client
        keys = self.queue.keys
        while not self._stopping:
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(keys.cancel_channel)
                if self._running:
                    ids = sorted({job_id for job_id, _ in self._running})
                    reasons = await client.hmget(keys.cancels, ids)
                    for job_id, reason in zip(ids, reasons, strict=True):
                        if reason is not None:
                            self._cancel_running(job_id, text(reason))
                async for message in pubsub.listen():
                    job_id = text(message["data"])
                    if any(running_id == job_id for running_id, _ in self._running):
                        reason = await client.hget(keys.cancels, job_id)
                        if reason is not None:
                            self._cancel_running(job_id, text(reason))
            except _REDIS_DOWN as exc:
                self._note_redis_down(exc)
                await asyncio.sleep(1)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]

    def _cancel_running(self, job_id: str, reason: str) -> None:
        for (running_id, _), (job, task) in list(self._running.items()):
            if running_id == job_id and job.cancel_reason is None:
                log.info("job %s cancelled: %s", job_id, reason)
                job.cancel_reason = reason
                task.cancel()

    async def _check_stalled(self) -> None:
        """Return jobs whose worker died to the queue (one check per interval, cluster-wide)."""
        keep = f"{DEFAULT_KEEP_FAILED}:-1"
        while True:
            try:
                reply = await self.queue.scripts.move_stalled_jobs(
                    self.stalled_interval, self.max_stalled_count, keep
                )
            except _REDIS_DOWN as exc:
                self._note_redis_down(exc)
            else:
                if reply:
                    for job_id in [*reply[0], *reply[1]]:
                        log.warning("job %s stalled (its worker stopped renewing the lock)",
                                    text(job_id))
                        self._emit("stalled", text(job_id))
                    if reply[1] and self._listeners.get("failed"):
                        ids = [text(i) for i in reply[1]]
                        with contextlib.suppress(*_REDIS_DOWN):
                            for failure in await stalled_failures(self.queue, ids,
                                                                  self.max_stalled_count):
                                self._emit("failed", *failure)
            if self._stopping:
                return
            await asyncio.sleep(self.stalled_interval / 1000)

    async def _run_schedulers(self) -> None:
        """Make the jobs of the queue's job schedulers as their slots come
        (one loop per worker; see conveyor.schedulers)."""
        await self.queue._run_job_schedulers(lambda: self._stopping)

    async def _heartbeat(self) -> None:
        """Keep this worker listed by ``Queue.get_workers`` (see conveyor.admin)."""
        await self.queue._run_worker_heartbeat(
            self.id, self.concurrency, lambda: [job_id for job_id, _ in self._running],
            lambda: self._stopping,
        )


def _on_signal(loop: asyncio.AbstractEventLoop, sig: signal.Signals) -> None:
    for worker in list(_signal_workers.get(loop, ())):
        worker._on_signal(sig)


def _leave_signal_handlers(loop: asyncio.AbstractEventLoop, worker: Worker) -> None:
    workers = _signal_workers[loop]
    workers.remove(worker)
    if not workers:  # the last worker to stop removes the handlers
        del _signal_workers[loop]
        for sig in _SIGNALS:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(sig)


# Field names of the metrics histogram by bucket (a bucket of 2**50 ms is 200).
_PROCESSING_FIELDS = [f"p{b}" for b in range(256)]
_WAIT_FIELDS = [f"w{b}" for b in range(256)]
_keep_args: dict[Retention, str] = {}
#: A report-and-fetch call as Worker._exchange takes it (outcomes, finished, timings, n, token).
_Call: TypeAlias = tuple[list[Outcome], list[tuple[Job, str, Any]], dict[str, int], int, str]


def _keep_arg(retention: Retention) -> str:
    """move_to_finished's "count:age_ms" of a retention (the same few for all jobs)."""
    arg = _keep_args.get(retention)
    if arg is None:
        count, age = retention.as_args()
        if len(_keep_args) >= 1024:
            _keep_args.clear()
        arg = _keep_args[retention] = f"{count}:{age}"
    return arg


def _held_deduplication_key(job: Job) -> str:
    """The deduplication key a job holds until it finishes ("" if none or a ttl's)."""
    dedup = job.opts.deduplication
    return dedup.id if dedup is not None and dedup.ttl is None else ""


def _parse_limiter(spec: Mapping[str, Any] | None) -> Limit:
    if spec is None:
        return NO_LIMIT
    if not isinstance(spec, Mapping):
        raise ValidationError("limiter", f"expected {{'max': n, 'duration': ms}}, got {spec!r}")
    unknown = set(spec) - {"max", "duration"}
    if unknown:
        raise ValidationError("limiter", f"unknown keys {sorted(unknown)}; use 'max', 'duration'")
    most = check_count("limiter.max", spec.get("max"), 1)
    return most, _positive_ms("limiter.duration", spec.get("duration", 1000))


def _positive_ms(field: str, value: int | timedelta) -> int:
    ms = to_ms(field, value)
    if not ms:
        raise ValidationError(field, "must be positive")
    return ms


def _is_async_callable(fn: Any) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004
    )
