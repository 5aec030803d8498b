"""REST routes that change jobs beyond the single actions of :mod:`.api`:
duplicate a job, edit the data of one that has not started, cancel one, act
on a selection of ids at once, promote every delayed job. The work is
:mod:`conveyor.inspection.actions`; this module parses and formats.

Every route here changes something, so none is a GET (a read-only token may
only read).
"""

from __future__ import annotations

from enum import Enum
from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field

from ..inspection import actions
from ..inspection.actions import MAX_BULK_IDS
from . import models as m
from . import schemas as v
from .api import Insp, JobId, QueueName, ok

__all__ = ["build_jobs_edit_router"]


# -- request bodies -----------------------------------------------------------------------


class NewData(m.Body):
    data: Any = Field(description="The job's new data (any JSON value).")


class CancelJob(m.Body):
    reason: str = Field(default="cancelled from the dashboard", min_length=1, max_length=1000,
                        description="Why: a running job fails with 'cancelled: <reason>'.")


class BulkRequest(m.Body):
    action: Literal["retry", "remove", "promote", "cancel"] = Field(
        description="What to do to each job.")
    ids: list[str] = Field(min_length=1, max_length=MAX_BULK_IDS,
                           description=f"The jobs' ids (1 to {MAX_BULK_IDS}, each once).")


# -- answers --------------------------------------------------------------------------------


class BulkError(BaseModel):
    code: str = Field(description="job_not_found, job_state_conflict or validation_error.")
    message: str


class BulkItem(BaseModel):
    id: str
    ok: bool = Field(description="True: done. False: refused, see error.")
    state: str | None = Field(description="The job's state after the action (None: gone).")
    error: BulkError | None


class BulkResult(BaseModel):
    action: str
    done: int = Field(description="How many ids the action was done to.")
    results: list[BulkItem] = Field(description="One per id, in the order sent.")


class Promoted(BaseModel):
    promoted: int


def build_jobs_edit_router() -> APIRouter:
    """The routes of this module (included into ``/api/v1``'s router)."""
    api = APIRouter()
    tags: list[str | Enum] = ["jobs"]

    @api.post("/queues/{queue}/jobs/bulk", tags=tags, response_model=m.Ok[BulkResult])
    async def bulk(queue: QueueName, body: BulkRequest, inspector: Insp) -> Any:
        """Retry, remove, promote or cancel several jobs in one request; each job
        is one atomic call, and the answer says per id what happened (a refused
        job does not stop the others)."""
        found = await actions.bulk(inspector, queue, body.action, body.ids)
        return ok({"action": body.action, "done": sum(o.ok for o in found),
                   "results": [o.to_dict() for o in found]})

    @api.post("/queues/{queue}/promote", tags=["queues"], response_model=m.Ok[Promoted])
    async def promote_all(queue: QueueName, inspector: Insp) -> Any:
        """Make every delayed job ready now."""
        return ok({"promoted": await actions.promote_all(inspector, queue)})

    @api.post("/queues/{queue}/jobs/{job_id:conveyor_job_id}/duplicate", tags=tags,
              status_code=201, response_model=m.Ok[v.JobSummary])
    async def duplicate(queue: QueueName, job_id: JobId, inspector: Insp) -> Any:
        """Add a new job with this job's name, data and options (not its delay
        or deduplication key: the copy runs now)."""
        job = await actions.duplicate(inspector, queue, job_id)
        return ok((await inspector.job_summary(queue, job)).to_dict(), 201)

    @api.put("/queues/{queue}/jobs/{job_id:conveyor_job_id}/data", tags=tags,
             response_model=m.Ok[v.JobAction])
    async def edit_data(queue: QueueName, job_id: JobId, body: NewData, inspector: Insp) -> Any:
        """Replace the data of a job that has not started (waiting, prioritized,
        delayed); 409 once it runs or has finished."""
        await actions.edit_data(inspector, queue, job_id, body.data)
        state = await (await inspector.existing(queue)).get_job_state(job_id)
        return ok({"queue": queue, "id": job_id, "state": state})

    @api.post("/queues/{queue}/jobs/{job_id:conveyor_job_id}/cancel", tags=tags,
              response_model=m.Ok[v.JobAction])
    async def cancel(queue: QueueName, job_id: JobId, inspector: Insp,
                     body: CancelJob | None = None) -> Any:
        """Cancel a job: a running one is stopped by its worker and fails for
        good; one that has not started is removed; 409 if it has finished."""
        body = body or CancelJob()
        await actions.cancel(inspector, queue, job_id, body.reason)
        state = await (await inspector.existing(queue)).get_job_state(job_id)
        return ok({"queue": queue, "id": job_id, "state": state})

    return api
