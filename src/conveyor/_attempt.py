"""Running one attempt of a job: calling the processor (``async def`` on the
loop, a plain ``def`` on the thread pool, a sandboxed one in a child process),
its timeout and cancellation, the retry delay, and the outcome that
``move_to_finished`` records with its timing fields.

The worker's hot loop (:mod:`conveyor.worker`) starts one task per job and
hands it here; the task app's dispatcher (:mod:`conveyor.app`) runs plain
``def`` tasks on the same thread pool, so both call processors one way.
"""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any, TypeAlias, TypeVar

import orjson

from ._finishing import record_attempt, strategy_delay
from ._scripts import Outcome, outcome
from ._util import is_async_callable
from .errors import JobTimeoutError, RateLimitError, UnrecoverableError
from .job import Job
from .metrics import time_bucket
from .options import Retention, backoff_delay
from .sandbox import SandboxPool
from .sync import SyncJob

__all__ = ["Attempts", "BackoffStrategy", "Result", "keep_arg", "lock_lapses", "settle"]

log = logging.getLogger("conveyor.worker")

#: (attempts_made, error, job) -> delay before the next attempt; None or < 0: don't retry.
#: An ``async def`` strategy is awaited.
BackoffStrategy: TypeAlias = Callable[
    [int, BaseException, Job], int | timedelta | Awaitable[int | timedelta | None] | None
]
#: An attempt's end as run() reports it: (kind, payload, value, stack, retry_delay).
#: kind: "c" completed, "f" failed, "r" handed back, "l" rate limited (retry_delay
#: is then the limit's delay). payload: the return value or the exception.
Result: TypeAlias = tuple[str, Any, str, str, int]
T = TypeVar("T")


class Attempts:
    """Runs attempts of one processor for a worker of ``concurrency`` slots."""

    def __init__(
        self,
        processor: Any,
        concurrency: int,
        sandbox: SandboxPool | None = None,
        target: str = "",
        backoff_strategy: BackoffStrategy | None = None,
    ) -> None:
        self.processor = processor
        self.concurrency = concurrency
        self.sandbox = sandbox
        self.target = target
        self.backoff_strategy = backoff_strategy
        self.is_async = is_async_callable(processor)
        #: close() gave up waiting: attempts not yet begun hand their job back,
        #: and a cancel is a hand-back, not a failure.
        self.force = False
        self._executor: ThreadPoolExecutor | None = None

    async def in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on the thread pool (``concurrency`` threads, made on first use)."""
        executor = self._executor
        if executor is None:
            executor = self._executor = ThreadPoolExecutor(
                self.concurrency, thread_name_prefix="conveyor"
            )
        return await asyncio.get_running_loop().run_in_executor(executor, fn, *args)

    async def close(self) -> None:
        """Stop the thread pool (threads still running finish on their own) and the sandbox."""
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
        if self.sandbox is not None:
            await self.sandbox.close()

    async def run(self, job: Job, lock_until: float | None = None) -> Result:
        """Run one attempt of ``job`` and say how it ended (never raises but for
        the cancel of a task that is not the attempt's own). Past ``lock_until``
        (``time.monotonic()``, see :func:`lock_lapses`) the job is not run but
        handed back."""
        stack = ""
        retry_delay = 0
        if lock_until is not None and time.monotonic() > lock_until:
            # The fetch's answer came (or this task started) after the job's lock
            # lapsed, e.g. in a process paused with SIGSTOP: the stalled-job check
            # may have handed it to another worker already. A hand-back is a no-op
            # if the lock is gone.
            log.warning("job %s: fetched at least %.1f s ago, past its lock: not run",
                        job.id, time.monotonic() - lock_until)
            return "r", None, "", stack, retry_delay
        try:
            if self.force:  # taken by a fetch in flight when close() gave up waiting
                raise asyncio.CancelledError
            timeout = job.opts.timeout
            if self.sandbox is not None:  # a cancel or the timeout kills the child
                call: Awaitable[Any] = self.sandbox.run(job, self.target)
            elif self.is_async:
                call = self.processor(job)
            else:
                call = self.in_thread(self.processor, SyncJob(job, asyncio.get_running_loop()))
            if timeout is None:
                result = await call
            else:
                try:
                    async with asyncio.timeout(timeout / 1000) as scope:
                        result = await call
                except TimeoutError:
                    if scope.expired():
                        raise JobTimeoutError(
                            f"job {job.id} timed out after {timeout} ms"
                        ) from None
                    raise
            try:
                return "c", result, orjson.dumps(result).decode(), stack, retry_delay
            except TypeError as exc:  # a programming error: another attempt changes nothing
                raise UnrecoverableError(
                    f"return value does not serialize to JSON: {exc}"
                ) from None
        except asyncio.CancelledError as exc:
            task = asyncio.current_task()
            if job.cancel_reason is not None and not self.force:
                # A cancelled job does not run again.
                return "f", exc, f"cancelled: {job.cancel_reason}", stack, -1
            if not (self.force or (task is not None and task.cancelling())):
                # Raised by the processor itself, not a cancel of ours: a failure.
                stack = "".join(traceback.format_exception(exc))
                return ("f", exc, "CancelledError: raised by the processor", stack,
                        await self.retry_delay(job, exc))
            return "r", None, "", stack, retry_delay
        except RateLimitError as exc:
            # Back to the head of the queue, no attempt used; every worker backs off.
            return "l", None, "", stack, exc.delay
        except Exception as exc:
            stack = "".join(traceback.format_exception(exc))
            retry_delay = (
                -1 if isinstance(exc, UnrecoverableError) else await self.retry_delay(job, exc)
            )
            return "f", exc, f"{type(exc).__name__}: {exc}", stack, retry_delay

    async def retry_delay(self, job: Job, exc: BaseException) -> int:
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


def settle(
    job: Job, result: Result, began: float, timings: dict[str, int]
) -> tuple[Outcome, str]:
    """The outcome ``move_to_finished`` records for an attempt that ran since
    ``began`` (``time.monotonic()``), and its kind for the listeners ("F": failed
    for good). Counts its processing and wait times into ``timings`` and sets
    on ``job`` what Redis will hold."""
    kind, payload, value, stack, retry_delay = result
    opts = job.opts
    keep = keep_arg(opts.remove_on_complete if kind == "c" else opts.remove_on_fail)
    assert job.token is not None
    done = outcome(
        job.id, job.token, kind, keep, value, stack, retry_delay,
        job.parent_key or "", _held_deduplication_key(job), opts.group or "",
    )
    if kind == "c" or kind == "f":
        field = _PROCESSING_FIELDS[time_bucket((time.monotonic() - began) * 1000)]
        timings[field] = timings.get(field, 0) + 1
        # A first attempt's wait (ready to started, both on Redis' clock) is a
        # metric; a retry's isn't.
        if job.attempts_started == 1 and job.processed_on is not None:
            field = _WAIT_FIELDS[time_bucket(job.processed_on - job.timestamp - opts.delay)]
            timings[field] = timings.get(field, 0) + 1
    record_attempt(job, kind, payload, value, stack)
    if kind != "r" and kind != "l":
        job.attempts_made += 1
    if kind == "f" and (retry_delay < 0 or job.attempts_made >= opts.attempts):
        kind = "F"  # failed for good: finished, as far as listeners are concerned
    return done, kind


def lock_lapses(job: Job | None, lock_duration: int, sent: float | None) -> float:
    """``time.monotonic()`` by which the lock of a job just fetched may have
    lapsed: ``lock_duration`` ms from ``sent`` (``time.monotonic()`` when the
    fetch was first sent) if known, the same for every job of the fetch (so
    ``job`` may be None), else from when Redis says the fetch ran
    (``processed_on``, Redis' clock read against this machine's: a fetch behind
    a blocking wait runs when the wait ends, not when it was sent)."""
    if sent is not None:
        return sent + lock_duration / 1000
    age_s = 0.0 if job is None or job.processed_on is None else (
        time.time() - job.processed_on / 1000)
    return time.monotonic() + lock_duration / 1000 - max(0.0, age_s)


def keep_arg(retention: Retention) -> str:
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


# Field names of the metrics histogram by bucket (a bucket of 2**50 ms is 200).
_PROCESSING_FIELDS = [f"p{b}" for b in range(256)]
_WAIT_FIELDS = [f"w{b}" for b in range(256)]
_keep_args: dict[Retention, str] = {}
