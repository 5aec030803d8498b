"""Changing jobs from the dashboard and the REST API: duplicate one, edit the
data of one that has not started, cancel one, act on a selection of ids at
once, promote every delayed job. Each call is the library's own
(``Queue.add``, ``Queue.update_data``, ``Queue.cancel``, ``retry_job``,
``remove``, ``promote``, ``promote_jobs``), so the dashboard refuses what the
library refuses, with its messages.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ..errors import ConveyorError, JobNotFoundError, JobStateError, ValidationError
from ..job import Job
from ..options import validate_job_id
from .inspector import Inspector

__all__ = ["BULK_ACTIONS", "MAX_BULK_IDS", "BulkOutcome", "bulk", "cancel", "duplicate",
           "edit_data", "promote_all"]

BulkAction = Literal["retry", "remove", "promote", "cancel"]
#: What :func:`bulk` does to each id.
BULK_ACTIONS: tuple[BulkAction, ...] = ("retry", "remove", "promote", "cancel")
#: Most ids one :func:`bulk` call takes (a page of the dashboard is 20).
MAX_BULK_IDS = 1000
#: Options of the original that a duplicate does not copy: it runs now, and a
#: deduplication key would refuse the very copy asked for; flow options belong
#: to a flow's node.
_NOT_COPIED = frozenset({"delay", "deduplication", "fail_parent_on_failure",
                         "ignore_dependency_on_failure"})
#: Ids acted on at once by a bulk call.
_PARALLEL = 16


async def duplicate(inspector: Inspector, name: str, job_id: str) -> Job:
    """A new job with the name, data and options of job ``job_id`` (not its
    delay or deduplication key: the copy runs now), added to the same queue."""
    job_id = validate_job_id(job_id)
    queue = await inspector.existing(name)
    original = await queue.get_job(job_id)
    if original is None:
        raise JobNotFoundError(name, job_id)
    if original.corrupt is not None:
        raise JobStateError(f"job {job_id!r} cannot be copied: {original.corrupt}")
    options = {k: v for k, v in original.opts.to_json().items() if k not in _NOT_COPIED}
    return await inspector.enqueue(name, original.name, original.data, options)


async def edit_data(inspector: Inspector, name: str, job_id: str, data: Any) -> None:
    """Replace the data of a job that has not started (``Queue.update_data``)."""
    job_id = validate_job_id(job_id)
    await (await inspector.existing(name)).update_data(job_id, data)


async def cancel(inspector: Inspector, name: str, job_id: str, reason: str) -> None:
    """Cancel a job (``Queue.cancel``): a running one is stopped by its worker
    and fails for good with ``reason``; one that has not started is removed.
    :class:`JobStateError` if it has already finished."""
    job_id = validate_job_id(job_id)
    if not reason.strip():
        raise ValidationError("reason", "must not be blank", reason)
    if not await (await inspector.existing(name)).cancel(job_id, reason):
        raise JobStateError(f"job {job_id!r} has already finished; there is nothing to cancel")


async def promote_all(inspector: Inspector, name: str) -> int:
    """Make every delayed job of the queue ready now; returns how many."""
    return await (await inspector.existing(name)).promote_jobs()


@dataclass(frozen=True, slots=True)
class BulkOutcome:
    """What a bulk action did to one id: ``ok``, the job's state after it (None:
    gone) and, when refused, the error's code and message as the REST API
    would answer them for that job alone."""

    id: str
    ok: bool
    state: str | None
    code: str | None = None
    message: str | None = None

    def to_dict(self) -> dict[str, Any]:
        error = None if self.ok else {"code": self.code, "message": self.message}
        return {"id": self.id, "ok": self.ok, "state": self.state, "error": error}


async def bulk(inspector: Inspector, name: str, action: str,
               ids: Sequence[str]) -> list[BulkOutcome]:
    """Do ``action`` (one of :data:`BULK_ACTIONS`) to each of ``ids``, one
    atomic call per job, and say per id what happened, in the order given. A
    job refused (missing, in the wrong state) does not stop the others."""
    if action not in BULK_ACTIONS:
        raise ValidationError("action", f"must be one of {', '.join(BULK_ACTIONS)}", action)
    if not ids or len(ids) > MAX_BULK_IDS:
        raise ValidationError("ids", f"give 1 to {MAX_BULK_IDS} job ids, got {len(ids)}")
    if len(set(ids)) != len(ids):
        raise ValidationError("ids", "lists a job id twice")
    queue = await inspector.existing(name)
    limit = asyncio.Semaphore(_PARALLEL)

    async def one(job_id: str) -> BulkOutcome:
        async with limit:
            try:
                job_id = validate_job_id(job_id)
                if action == "retry":
                    await queue.retry_job(job_id)
                elif action == "remove":
                    if not await queue.remove(job_id):
                        raise JobNotFoundError(name, job_id)
                elif action == "promote":
                    await inspector.promote(name, job_id)
                else:
                    await cancel(inspector, name, job_id, "cancelled from the dashboard")
            except ConveyorError as exc:
                return BulkOutcome(job_id, False, await _state(queue, job_id),
                                   _CODES.get(type(exc), "error"), str(exc))
            return BulkOutcome(job_id, True, await _state(queue, job_id))

    return list(await asyncio.gather(*(one(job_id) for job_id in ids)))


#: The REST API's error codes (web/app.py) of the refusals a bulk action reports.
_CODES: dict[type[ConveyorError], str] = {
    JobNotFoundError: "job_not_found", JobStateError: "job_state_conflict",
    ValidationError: "validation_error"}


async def _state(queue: Any, job_id: str) -> str | None:
    try:
        state: str | None = await queue.get_job_state(job_id)
    except ValidationError:  # an id no job can have
        return None
    return state
