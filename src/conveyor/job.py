"""One job: its data and options as stored in Redis, and the calls that act on it.

A job is the hash ``<prefix>:{<queue>}:job:<id>`` with the fields

``name`` ``data`` (JSON) ``opts`` (JSON) ``ts`` (added, ms) ``prio`` ``att``
(attempts allowed) ``atm`` (attempts made) ``ats`` (attempts started) ``stc``
(times stalled) ``pr`` (progress JSON) ``rv`` (return value JSON) ``fr``
(failed reason) ``st`` (stack traces, JSON list) ``pon`` (processed on, ms)
``fon`` (finished on, ms) ``par`` (the parent's job key, in a flow) ``dlq``
(JSON: the job this one was forwarded from, in a dead-letter queue). While an
attempt runs, its ``pon`` and ``ats`` live in the queue's ``locks`` hash
(inside the lock token) and are written to the job hash when the attempt ends;
:func:`read_fields` merges the two.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypedDict

import orjson
from redis.exceptions import ResponseError

from . import admin
from ._corrupt import CORRUPT_ERRORS, fill_field_by_field, not_a_hash
from ._stream import decode_entry, text
from .connection import raise_if_cancelled
from .errors import (
    JobFailedError,
    JobNotFoundError,
    JobStateError,
    ValidationError,
    WaitTimeoutError,
)
from .keys import JobState, parse_job_key
from .options import JobOptions, dump_data, to_ms

if TYPE_CHECKING:
    from .queue import Queue

__all__ = ["Dependencies", "Job", "JobState"]

_FINAL_EVENTS = ("completed", "failed")
# What Job.refresh re-reads: every attribute that comes from the job's hash.
_READ_FROM_HASH = (
    "name", "data", "opts", "timestamp", "attempts_made", "attempts_started", "stalled_count",
    "progress", "return_value", "failed_reason", "stacktrace", "processed_on", "finished_on",
    "dead_letter_of", "parent_key", "token", "corrupt",
)


def fields_to_dict(raw: Any) -> dict[str, bytes | str]:
    """A job hash as a dict with str keys, from HGETALL or a script's flat list."""
    if isinstance(raw, Mapping):
        return {text(k): v for k, v in raw.items()}
    try:  # the hot path: a script's reply, all bytes
        return dict(zip(map(bytes.decode, raw[0::2]), raw[1::2], strict=True))
    except TypeError:  # a client with decode_responses=True
        return dict(zip(map(text, raw[0::2]), raw[1::2], strict=True))


def _int(fields: Mapping[str, bytes | str], name: str) -> int | None:
    value = fields.get(name)
    return None if value is None else int(value)


def _json(fields: Mapping[str, bytes | str], name: str) -> Any:
    value = fields.get(name)
    return None if value is None else orjson.loads(value)


class Dependencies(TypedDict):
    """A flow parent's children (``"<queue>:<id>"``), from :meth:`Job.get_dependencies`:
    ``processed`` (name -> return value), ``unprocessed``, ``ignored`` (name -> reason)."""

    processed: dict[str, Any]
    unprocessed: list[str]
    ignored: dict[str, str]

class Job:
    """A job of a queue, as last read from Redis (call :meth:`refresh` to re-read)."""

    __slots__ = (
        "_progress_listener",
        "attempts_made",
        "attempts_started",
        "cancel_reason",
        "corrupt",
        "data",
        "dead_letter_of",
        "failed_reason",
        "finished_on",
        "id",
        "moved",
        "name",
        "opts",
        "parent_key",
        "processed_on",
        "progress",
        "queue",
        "return_value",
        "stacktrace",
        "stalled_count",
        "timestamp",
        "token",
    )

    def __init__(
        self,
        queue: Queue,
        job_id: str,
        name: str,
        data: Any,
        opts: JobOptions,
        timestamp: int,
    ) -> None:
        self.queue = queue
        self.id = job_id
        self.name = name
        self.data = data
        self.opts = opts
        self.timestamp = timestamp
        self.attempts_made = 0
        self.attempts_started = 0
        self.stalled_count = 0
        self.progress: Any = None
        self.return_value: Any = None
        self.failed_reason: str | None = None
        self.stacktrace: list[str] = []
        self.processed_on: int | None = None
        self.finished_on: int | None = None
        #: For a job forwarded into a dead-letter queue: where it failed and why
        #: (``queue``, ``id``, ``failed_reason``, ``attempts_made``, ``failed_on``).
        self.dead_letter_of: dict[str, Any] | None = None
        #: Why the job was cancelled while it ran (``Queue.cancel``), else None: a
        #: processor that catches ``CancelledError`` tells a cancel from a
        #: timeout by it.
        self.cancel_reason: str | None = None
        #: The processor stepped out with move_to_delayed (the worker reports nothing).
        self.moved = False
        #: What is wrong with the job's hash when a field of it does not parse
        #: (or its key is not a hash), else None. A worker fails such a job
        #: without running it; the fields that did parse are set.
        self.corrupt: str | None = None
        #: Key of the parent job's hash when this job is a child in a flow.
        self.parent_key: str | None = None
        #: Lock token while a worker runs this job (internal).
        self.token: str | None = None
        self._progress_listener: Callable[[Job, Any], None] | None = None

    @classmethod
    def from_fields(cls, queue: Queue, job_id: str, fields: Mapping[str, bytes | str]) -> Job:
        try:
            job = cls(
                queue,
                job_id,
                text(fields.get("name", b"")),
                _json(fields, "data"),
                JobOptions.from_stored(fields.get("opts")),
                _int(fields, "ts") or 0,
            )
            job._update(fields)
        except CORRUPT_ERRORS:
            job = cls(queue, job_id, "", None, JobOptions(), 0)
            fill_field_by_field(job, fields)
        return job

    def _update(self, fields: Mapping[str, bytes | str]) -> None:
        # Runs for every job a worker takes: one lookup per field, no helper calls.
        get = fields.get
        v = get("atm")
        self.attempts_made = 0 if v is None else int(v)
        v = get("ats")
        self.attempts_started = 0 if v is None else int(v)
        v = get("stc")
        self.stalled_count = 0 if v is None else int(v)
        v = get("pr")
        self.progress = None if v is None else orjson.loads(v)
        v = get("rv")
        self.return_value = None if v is None else orjson.loads(v)
        v = get("fr")
        self.failed_reason = None if v is None else text(v)
        v = get("st")
        self.stacktrace = [] if v is None else orjson.loads(v) or []
        v = get("pon")
        self.processed_on = None if v is None else int(v)
        v = get("fon")
        self.finished_on = None if v is None else int(v)
        v = get("dlq")
        self.dead_letter_of = None if v is None else orjson.loads(v)
        v = get("par")
        self.parent_key = None if v is None else text(v)
        v = get("tok")
        self.token = None if v is None else text(v)

    def __repr__(self) -> str:
        return f"<Job {self.queue.name}:{self.id} {self.name!r}>"

    @property
    def delay(self) -> int:
        return self.opts.delay

    @property
    def priority(self) -> int:
        return self.opts.priority

    async def refresh(self) -> Job:
        """Re-read the job from Redis; raises JobNotFoundError once it is gone."""
        try:
            d = await read_fields(self.queue, self.id)
        except ResponseError as exc:
            self.corrupt = not_a_hash(exc)
            return self
        if d is None:
            raise JobNotFoundError(self.queue.name, self.id)
        self._read(d)
        return self

    def _read(self, fields: Mapping[str, bytes | str]) -> None:
        """Take every attribute that comes from the hash (forgiving a corrupt one)."""
        fresh = Job.from_fields(self.queue, self.id, fields)
        for name in _READ_FROM_HASH:
            setattr(self, name, getattr(fresh, name))

    async def get_state(self) -> JobState | None:
        """The job's state now, or ``None`` if the job no longer exists."""
        return await self.queue.get_job_state(self.id)

    async def update_progress(self, progress: int | float | dict[str, Any]) -> None:
        """Record progress (a number or a dict); a ``progress`` event announces it."""
        if isinstance(progress, bool) or not isinstance(progress, (int, float, dict)):
            raise ValidationError("progress", f"must be a number or a dict, got {progress!r}")
        try:
            encoded = orjson.dumps(progress)
        except TypeError as exc:
            raise ValidationError("progress", f"does not serialize to JSON: {exc}") from None
        await self.queue.scripts.update_progress(self.id, encoded)
        self.progress = progress
        if self._progress_listener is not None:
            self._progress_listener(self, progress)

    async def log(self, line: str) -> int:
        """Append a line to the job's log; returns the number of lines kept."""
        if not isinstance(line, str):
            raise ValidationError("line", f"must be a str, got {type(line).__name__}")
        return await self.queue.scripts.add_log(self.id, line, self.queue.keep_logs)

    async def get_logs(self, start: int = 0, end: int = -1) -> list[str]:
        """The job's log lines (oldest first), ``start``..``end`` inclusive."""
        lines = await self.queue.client.lrange(self.queue.keys.logs(self.id), start, end)
        return [text(line) for line in lines]

    @property
    def is_cancelled(self) -> bool:
        """True once ``Queue.cancel`` reached the worker running this job."""
        return self.cancel_reason is not None

    async def move_to_delayed(self, delay: int | timedelta) -> int:
        """From inside the processor: step out now and run again (same job, same
        id) after ``delay``; the attempt does not count. Return from the
        processor right after: what it returns or raises is not recorded.
        Returns the due time (epoch ms). Keep state between steps with
        :meth:`update_data`."""
        ms = to_ms("delay", delay) or 0
        if self.token is None:
            raise JobStateError(f"job {self.id!r} is not running in a worker")
        due = await self.queue.scripts.move_to_delayed(self.id, self.token, ms)
        self.moved = True
        return due

    async def update_data(self, data: Any) -> None:
        """Replace the job's data (say, the step a step job has reached)."""
        encoded = dump_data(data, self.queue.max_data_bytes)
        await self.queue.scripts.update_data(self.id, encoded)
        self.data = data

    async def retry(self, *, reset_attempts: bool = False) -> None:
        """Send a failed or completed job back to the queue to run again (see
        :meth:`Queue.retry_job`)."""
        await self.queue.retry_job(self.id, reset_attempts=reset_attempts)

    async def remove(self, *, remove_children: bool = True) -> None:
        """Delete the job (refused while a worker holds it), with its pending
        flow children unless ``remove_children=False``."""
        await self.queue.remove(self.id, remove_children=remove_children)

    async def wait_until_finished(self, timeout: float | None = None) -> Any:
        """Wait for the job to complete and return its return value.

        Raises :class:`JobFailedError` if it failed for good and
        :class:`WaitTimeoutError` after ``timeout`` seconds.
        """
        client = self.queue.client
        events = self.queue.keys.events
        deadline = None if timeout is None else time.monotonic() + timeout
        # Take the stream position before reading the state, so an event that
        # lands in between is still seen.
        last: Any = await client.xrevrange(events, count=1)
        last_id: Any = last[0][0] if last else b"0-0"
        while True:
            result = await self._finished_result()
            if result is not None:
                return result[0]
            while True:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise WaitTimeoutError(
                        f"job {self.id!r} did not finish within {timeout} seconds"
                    )
                block = 1000 if remaining is None else max(1, min(1000, int(remaining * 1000)))
                reply: Any = await client.xread({events: last_id}, count=500, block=block)
                raise_if_cancelled()
                if not reply:
                    break  # re-read the job: the stream may have been trimmed past us
                for entry_id, entry in reply[0][1]:
                    last_id = entry_id
                    for event in decode_entry(entry_id, entry):
                        if event.get("job_id") == self.id and event["event"] in _FINAL_EVENTS:
                            result = await self._finished_result(event)
                            if result is not None:
                                return result[0]

    async def _final_event(self) -> dict[str, Any] | None:
        """This job's completed/failed event, if that is its newest event still in
        the stream (a newer ``removed`` or ``added`` means it is not finished)."""
        client = self.queue.client
        events = self.queue.keys.events
        newest = "+"
        while True:
            batch: Any = await client.xrevrange(events, max=newest, count=1000)
            for entry_id, entry in batch:
                for event in reversed(decode_entry(entry_id, entry)):
                    if event.get("job_id") != self.id:
                        continue
                    if event["event"] in _FINAL_EVENTS:
                        return dict(event)
                    if event["event"] in ("removed", "added"):
                        return None
            if len(batch) < 1000:
                return None
            newest = "(" + text(batch[-1][0])

    async def _finished_result(self, event: dict[str, Any] | None = None) -> tuple[Any] | None:
        """(return value,) if the job completed; raises if it failed; None if not finished."""
        try:
            raw = await self.queue.client.hgetall(self.queue.keys.job(self.id))
        except ResponseError as exc:  # failed by the fetch: see includes/fetch_jobs.lua
            raise JobFailedError(self.id, f"corrupt job: {not_a_hash(exc)}", []) from None
        fields = fields_to_dict(raw)
        if not fields:
            if event is None:
                # Maybe it finished and was removed (remove_on_complete/fail) before
                # we looked: its final event may still be in the capped stream.
                event = await self._final_event()
            if event is None:
                raise JobNotFoundError(self.queue.name, self.id)
            # Finished and removed at once (remove_on_complete/fail): the event
            # is all that is left.
            if event["event"] == "completed":
                return (event.get("return_value"),)
            raise JobFailedError(self.id, event.get("failed_reason", ""), [])
        if "fon" not in fields:
            return None
        self._read(fields)
        state = await self.get_state()
        if state == JobState.COMPLETED:
            return (self.return_value,)
        if state == JobState.FAILED:
            raise JobFailedError(self.id, self.failed_reason, self.stacktrace)
        return None

    # -- admin --

    async def promote(self) -> None:
        """Run a delayed job now: it becomes ready at once. Raises
        :class:`JobStateError` if the job is not delayed."""
        await admin.promote_job(self.queue, self.id)

    async def change_delay(self, delay: int | timedelta) -> int:
        """Make a delayed job due ``delay`` from now (by Redis' clock); returns the
        new due time (epoch ms). Raises :class:`JobStateError` if the job is
        not delayed. ``job.delay`` keeps the delay the job was added with."""
        return await admin.change_delay(self.queue, self.id, delay)

    async def change_priority(self, priority: int, *, lifo: bool = False) -> None:
        """Give the job a new priority (0: none, else 1 = highest ..
        ``MAX_PRIORITY``), in any state. A job that is ready to run moves to
        its new place at once: behind the jobs of its priority, or at the head
        of the wait list for priority 0 with ``lifo``."""
        await admin.change_priority(self.queue, self.id, priority, lifo)
        self.opts = replace(self.opts, priority=priority)

    # -- flows --

    async def get_children_values(self) -> dict[str, Any]:
        """Return values of this job's completed children (in a flow), keyed
        ``"<queue>:<id>"`` of each child."""
        raw = await self.queue.client.hgetall(self.queue.keys.processed(self.id))
        return {_child_name(key): orjson.loads(value) for key, value in raw.items()}

    async def get_ignored_children_failures(self) -> dict[str, str]:
        """Failed reasons of children that failed for good with
        ``ignore_dependency_on_failure``, keyed ``"<queue>:<id>"``."""
        raw = await self.queue.client.hgetall(self.queue.keys.failed_children(self.id))
        return {_child_name(key): text(value) for key, value in raw.items()}

    async def get_dependencies(self) -> Dependencies:
        """This job's children, as ``"<queue>:<id>"``: ``processed`` (completed:
        name -> return value), ``unprocessed`` (not done yet; a parent runs once
        this is empty) and ``ignored`` (failed, ignored: name -> reason)."""
        keys = self.queue.keys
        async with self.queue.client.pipeline(transaction=True) as pipe:
            pipe.hgetall(keys.processed(self.id))
            pipe.smembers(keys.dependencies(self.id))
            pipe.hgetall(keys.failed_children(self.id))
            processed, unprocessed, ignored = await pipe.execute()
        return {
            "processed": {_child_name(k): orjson.loads(v) for k, v in processed.items()},
            "unprocessed": sorted(_child_name(k) for k in unprocessed),
            "ignored": {_child_name(k): text(v) for k, v in ignored.items()},
        }



async def read_fields(queue: Queue, job_id: str) -> dict[str, bytes | str] | None:
    """A job's hash as a dict, with the running attempt's ``tok``, ``pon`` and
    ``ats`` from its lock; ``None`` when there is no such job. Raises Redis'
    ResponseError when the job's key is not a hash."""
    async with queue.client.pipeline(transaction=True) as pipe:
        pipe.hgetall(queue.keys.job(job_id))
        pipe.hget(queue.keys.locks, job_id)
        raw, token = await pipe.execute(raise_on_error=False)
    if isinstance(raw, ResponseError):
        raise raw
    return with_lock(raw, token)


def _child_name(key: bytes | str) -> str:
    """A child's job key as ``"<queue>:<id>"``."""
    _, queue, job_id = parse_job_key(text(key))
    return f"{queue}:{job_id}"


def with_lock(raw: Any, token: bytes | str | None) -> dict[str, bytes | str] | None:
    """HGETALL of a job merged with its lock token (HGET of the locks hash)."""
    if not raw:
        return None
    fields = fields_to_dict(raw)
    if token is not None:
        token = text(token)
        _, started, _, processed_on = token.rsplit(":", 3)
        fields.update(tok=token, ats=started, pon=processed_on)
    return fields
