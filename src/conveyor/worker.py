"""The worker: takes jobs of one queue and runs them with bounded concurrency.

One loop owns all Redis traffic of the hot path. Finished attempts are
buffered and reported in one ``move_to_finished`` call that also takes the
next jobs, so in steady state a job costs one round trip, and under load
many jobs share one. When the queue runs dry the worker blocks on the
queue's marker (``BZPOPMIN``, :mod:`conveyor._idle`) instead of polling.

Beside this module: running one attempt (:mod:`conveyor._attempt`), and the
upkeep tasks, lock renewal, cancels, stalled jobs, heartbeat and schedulers
(:mod:`conveyor._upkeep`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta
from typing import Any, TypeAlias

from redis.backoff import AbstractBackoff
from redis.exceptions import RedisError

from ._attempt import Attempts, BackoffStrategy, keep_arg, lock_lapses, settle
from ._corrupt import corrupt_failure
from ._idle import wait_for_work
from ._listeners import emit
from ._partition_worker import SlotShare, run_if_partitioned
from ._reconnect import Reconnect
from ._run_limits import RunLimits
from ._scripts import Limit, Outcome
from ._server_checks import warn_about_server
from ._signals import subscribe
from ._stream import text
from ._upkeep import release_stranded, start_upkeep
from .connection import REDIS_DOWN as _REDIS_DOWN
from .connection import Connection
from .errors import ValidationError
from .job import Job, fields_to_dict
from .options import check_count, parse_limiter, positive_ms, to_ms
from .partitions import check_partitions
from .queue import Queue
from .sandbox import SandboxProcessor, make_pool, processor_reference
from .sync import SyncJob
from .workers import unregister_worker

__all__ = ["BackoffStrategy", "Processor", "Worker"]

log = logging.getLogger("conveyor.worker")

Processor: TypeAlias = Callable[[Job], Awaitable[Any]] | Callable[[SyncJob], Any]
Listener: TypeAlias = Callable[..., Any]

EVENTS = frozenset({"active", "completed", "failed", "progress", "stalled", "drained", "error"})
#: Seconds a stopping worker that holds no results waits for Redis to answer
#: the fetches it sent; then it stops without them (a job one took comes back
#: through the stalled-job check). A worker that could never connect stops.
_STOP_PATIENCE_S = 3.0
#: Report/fetch calls one worker keeps in flight (see Worker._send).
_MAX_CALLS = 2


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

    On a partitioned queue (``partitions=n``, else as stored by its producers)
    it takes from every partition fairly (:mod:`conveyor._partition_worker`).

    ``burst=True`` stops it once the queue has nothing ready, ``max_jobs=n``
    after it took ``n`` jobs (:mod:`conveyor._run_limits`). ``reconnect_backoff``
    spaces its attempts to reach Redis again (:mod:`conveyor._reconnect`).
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
        partitions: int | None = None,
        burst: bool = False,
        max_jobs: int | None = None,
        reconnect_backoff: AbstractBackoff | None = None,
    ) -> None:
        self._partitions = None if partitions is None else check_partitions(partitions)
        pool = make_pool(sandbox, concurrency, max_jobs_per_child, max_memory_per_child)
        target = "" if pool is None else processor_reference(processor)
        if not callable(processor) and pool is None:
            raise ValidationError("processor", f"must be callable, got {processor!r}")
        check_count("concurrency", concurrency, 1)
        check_count("max_stalled_count", max_stalled_count, 0)
        self.lock_duration = positive_ms("lock_duration", lock_duration)
        self.stalled_interval = positive_ms("stalled_interval", stalled_interval)
        self.block_timeout = positive_ms("block_timeout", block_timeout)
        self.limiter: Limit = parse_limiter(limiter)
        self.queue = Queue(
            queue_name, connection, prefix=prefix, events_maxlen=events_maxlen,
            keep_logs=keep_logs,
        )
        #: Runs each attempt: the processor, its thread pool or sandbox, timeouts, retries.
        self._attempts = Attempts(processor, concurrency, pool, target, backoff_strategy)
        self.concurrency = concurrency
        self.max_stalled_count = max_stalled_count
        #: run() installs SIGTERM/SIGINT handlers on its loop (graceful stop); turn
        #: off when the application owns its signals and calls close() itself.
        self.handle_signals = handle_signals
        self.id = name or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._token_prefix = self.id + ":"
        self._listeners: dict[str, list[Listener]] = {}
        # Keyed by (job id, lock token): a token alone is only unique per job.
        self._running: dict[tuple[str, str], tuple[Job, asyncio.Task[None]]] = {}
        self._outcomes: list[Outcome] = []
        # Calls that failed, to send again as they were (same token: if Redis ran
        # one, the resend returns its reply): outcomes, finished, timings, n, token.
        self._resends: list[_Call] = []
        # time.monotonic() of each call's first send, by token: the jobs it takes
        # are locked from no earlier than that (see _process).
        self._sent_at: dict[str, float] = {}
        self._finished: list[tuple[Job, str, Any]] = []
        # Wait and processing times of the attempts in _outcomes, as the metrics
        # histogram's fields (p<bucket>/w<bucket> -> count): one write per report.
        self._timings: dict[str, int] = {}
        self._timings_due = 0.0
        self._wake = asyncio.Event()
        self._closing = False
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
        self._reconnect = Reconnect(reconnect_backoff)
        self._limits = RunLimits.of(self, burst, max_jobs)  # None without either
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
        self._share: SlotShare | None = None  # a partition's loop: slots shared with others
        self._loops: list[Worker] = []  # a partitioned queue's worker: one loop a partition

    def __repr__(self) -> str:
        return f"<Worker {self.id} queue={self.queue.name!r} concurrency={self.concurrency}>"

    @property
    def name(self) -> str:
        return self.queue.name

    @property
    def processor(self) -> Any:
        """The function that runs each job."""
        return self._attempts.processor

    @processor.setter
    def processor(self, processor: Any) -> None:
        self._attempts.processor = processor

    @property
    def backoff_strategy(self) -> BackoffStrategy | None:
        """Decides the delay before a failed job's next attempt (see :data:`BackoffStrategy`)."""
        return self._attempts.backoff_strategy

    @backoff_strategy.setter
    def backoff_strategy(self, strategy: BackoffStrategy | None) -> None:
        self._attempts.backoff_strategy = strategy

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
        emit(self._listeners, event, *args)

    # -- lifecycle ------------------------------------------------------------

    async def run(self) -> None:
        """Process jobs until :meth:`close` is called or SIGTERM/SIGINT arrives."""
        if self._started:
            raise RuntimeError("Worker.run() was already called")
        self._started = True
        log.info("worker %s started on queue %r (concurrency %d)",
                 self.id, self.queue.name, self.concurrency)
        if self._share is None and await run_if_partitioned(self):
            return
        removers = [subscribe(self._on_signal)] if self.handle_signals else []
        side_tasks = [*start_upkeep(self), asyncio.create_task(
            warn_about_server(self.queue.client), name="conveyor-server-check")]
        try:
            await self._main_loop()
        finally:
            # The flag, not just cancel(): Python 3.11's asyncio.wait_for (used by
            # redis-py) can swallow a cancel that lands as a reply arrives.
            self._stopping = True
            for task in side_tasks:
                task.cancel()
            await asyncio.gather(*side_tasks, return_exceptions=True)
            await unregister_worker(self.queue, self.id)  # leave Queue.get_workers
            for call in self._calls:  # only if the loop itself was cancelled
                call.cancel()
            await asyncio.gather(*self._calls, return_exceptions=True)
            await self._cancel_block()
            if self._maybe_stranded and not self._gave_up:
                await release_stranded(self.queue, self.id, self._token_prefix, self._running)
            for remove in removers:
                remove()
            if self._share is None:  # a partition's loop shares its worker's
                await self._attempts.close()
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
        if self._loops:
            await asyncio.gather(*(loop.close(timeout) for loop in self._loops))
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
        self._attempts.force = True  # jobs a fetch in flight still brings in go straight back
        if tasks:
            log.warning("handing %d unfinished job(s) back to the queue", len(tasks))
        loop = asyncio.get_running_loop()
        for task in tasks:
            # Not task.cancel() now: a task created in this loop iteration has not
            # started, and cancelling it would skip _process and strand its job.
            loop.call_soon(task.cancel)

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
        free = (self.concurrency - len(self._running) - self._reserved if self._share is None
                else self._share.grant(self))
        return free if self._limits is None else self._limits.cap(free)

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
                    if self._limits is None or not self._limits.burst:
                        self._block_task = asyncio.create_task(wait_for_work(self))
                    elif self._limits.drained(self):
                        continue
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
        await self._reconnect.pause(f"worker {self.id}", self._stop_deadline)

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
        token = self.queue.scripts.calls.new()
        self._sent_at[token] = time.monotonic()
        if n and self._share is not None:
            self._share.served(self)
        task = asyncio.create_task(self._exchange(
            outcomes, finished, timings, n, token, self._wakeups
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
            self._sent_at.pop(call, None)
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
            if self._share is not None:
                self._share.freed(self)
        scripts.calls.answered(call)
        if outcomes:
            self._report(finished, statuses, int(now))
        self._start(n, next_due, jobs, wakeups, limit_wait, self._sent_at.pop(call, None))
        self._reconnect.failures = 0
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
        return time.monotonic() >= self._stop_deadline and (
            self._attempts.force or not holds_results
        )

    def _drop_unanswered(self) -> None:
        log.warning("worker %s: Redis did not answer within %g s of stopping; stopping "
                    "without it (jobs it held come back through the stalled-job check)",
                    self.id, _STOP_PATIENCE_S)
        self._gave_up = True
        self._resends.clear()
        self._sent_at.clear()
        for call in self._calls:
            call.cancel()

    def _note_redis_down(self, exc: BaseException) -> None:
        if not self._redis_down:
            self._redis_down = True
            log.warning("worker %s: lost connection to Redis (%s); reconnecting", self.id, exc)
            self._emit("error", exc)

    def _start(
        self, n: int, next_due: Any, jobs: list[Any], wakeups: int, limit_wait: Any = 0,
        sent: float | None = None,
    ) -> None:
        """Run the jobs a fetch for ``n`` slots took. ``wakeups`` is the count of
        wake-up markers taken when the fetch was sent: if the blocking wait took
        one since, work may have arrived after the fetch ran, and its marker is
        gone, so "nothing found" must not send the worker back to block.
        ``limit_wait`` > 0: a rate limit stopped the fetch; ask again after it.
        ``sent``: ``time.monotonic()`` when the fetch was first sent, if known
        (not for a fetch behind a blocking wait, which runs when the wait ends)."""
        if n > 0:
            self._last_fetch = time.monotonic()
        if self._limits is not None:  # a fetch a rate limit stopped did not look
            self._limits.fetched(self, 0 if int(limit_wait) > 0 else n, len(jobs))
        if int(limit_wait) > 0:
            self._hold_fetches(int(limit_wait))
            return
        # Sent at a known time: one deadline for the batch (else one a job).
        batch_until = None if sent is None else lock_lapses(None, self.lock_duration, sent)
        for job_id, fields in jobs:
            job = Job.from_fields(self.queue, text(job_id), fields_to_dict(fields))
            assert job.token is not None
            if job.corrupt is not None:  # fails alone, unrun (see conveyor._corrupt)
                failure = corrupt_failure(job, keep_arg(job.opts.remove_on_fail))
                self._outcomes.append(failure[0])
                self._finished.append((job, "f", failure[1]))
                continue
            if self._listeners.get("progress"):
                job._progress_listener = self._on_progress
            lock_until = batch_until or lock_lapses(job, self.lock_duration, None)
            task = asyncio.create_task(self._process(job, lock_until))
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
        if self._loops:  # a partitioned queue: every partition backs off
            await asyncio.gather(*(loop.rate_limit(ms) for loop in self._loops))
            return
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
                emit(self._listeners, "completed", job, payload)  # not _emit: a call fewer a job
            elif kind == "f" or kind == "F":  # F: no attempt left, so finished
                job.finished_on = now if kind == "F" else None
                emit(self._listeners, "failed", job, payload)

    async def _cancel_block(self) -> None:
        task = self._block_task
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    # -- running one job ------------------------------------------------------

    async def _process(self, job: Job, lock_until: float) -> None:
        began = time.monotonic()
        result = await self._attempts.run(job, lock_until)
        assert job.token is not None
        self._running.pop((job.id, job.token), None)
        if self._share is not None:
            self._share.freed(self)
        if result[0] == "l":  # a rate limit: no fetch until it ends
            self._hold_fetches(result[4])
        if job.moved:  # stepped out with move_to_delayed: nothing to report
            self._wake.set()
            return
        done, kind = settle(job, result, began, self._timings)
        self._outcomes.append(done)
        self._finished.append((job, kind, result[1]))
        self._wake.set()


#: A report-and-fetch call as Worker._exchange takes it (outcomes, finished, timings, n, token).
_Call: TypeAlias = tuple[list[Outcome], list[tuple[Job, str, Any]], dict[str, int], int, str]
