"""The REST routes behind the dashboard's flow tree, its schedulers page
(create, edit, remove, run now) and its charts, under ``/api/v1`` beside
:mod:`.api`'s (whose helpers they share). A scheduler id may contain ``/``,
as a job id may: "run now" is the path's last segment (``POST
schedulers/a/run`` runs scheduler ``a``; ``PUT``/``DELETE schedulers/a/run``
name scheduler ``a/run``)."""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from ..inspection import QueueNotFoundError
from ..inspection.flow_tree import MAX_TREE_PAGE, read_tree
from ..inspection.series import read_series
from ..metrics import KEPT_TIME_MINUTES
from ..options import validate_queue_name
from . import schemas as v
from . import schemas_views as sv
from .api import Insp, JobId, QueueName, ok
from .models import Ok

__all__ = ["build_views_router"]

SchedulerId = Annotated[str, Path(description="The scheduler's id (any '/' in it as %2F "
                                              "or as is).", examples=["nightly-report"])]


def _not_found(queue: str, scheduler_id: str) -> Exception:
    from .app import ApiError  # the app module imports the routers

    return ApiError(404, "scheduler_not_found",
                    f"queue {queue!r} has no job scheduler {scheduler_id!r}")


def build_views_router() -> APIRouter:
    """The flow tree, scheduler management and metrics series routes."""
    api = APIRouter()
    tags: list[str | Enum] = ["views"]

    @api.get("/queues/{queue}/tree/{job_id:conveyor_job_id}", tags=tags,
             response_model=Ok[sv.JobTree])
    async def tree(
        queue: QueueName, job_id: JobId, inspector: Insp,
        start: Annotated[int, Query(ge=0, le=10**9)] = 0,
        count: Annotated[int, Query(ge=1, le=MAX_TREE_PAGE)] = 50,
    ) -> Any:
        """The job's flow: its parents up to the root, and a page of its children
        with their states and the values the job reads from them."""
        return ok((await read_tree(inspector, queue, job_id, start=start, count=count))
                  .to_dict())

    @api.get("/queues/{queue}/series", tags=tags, response_model=Ok[sv.MetricsSeries])
    async def series(
        queue: QueueName, inspector: Insp,
        minutes: Annotated[int, Query(ge=1, le=KEPT_TIME_MINUTES)] = 60,
    ) -> Any:
        """Per minute, oldest first: jobs completed and failed, the failure rate,
        and p50/p95 of wait and processing time."""
        return ok({"minutes": (await read_series(inspector, queue, minutes)).minutes})

    @api.put("/queues/{queue}/schedulers/{scheduler_id:conveyor_job_id}", tags=tags,
             response_model=Ok[v.Scheduler])
    async def upsert(queue: QueueName, scheduler_id: SchedulerId, body: sv.SchedulerSpec,
                     inspector: Insp) -> Any:
        """Create or replace a job scheduler (the queue need not exist yet)."""
        try:
            target = await inspector.existing(queue)
        except QueueNotFoundError:  # a new queue
            target = inspector.queue(validate_queue_name(queue))
        await target.upsert_job_scheduler(
            scheduler_id, every=body.every_ms, cron=body.cron, tz=body.tz,
            start_date=body.start_date_ms, end_date=body.end_date_ms, limit=body.limit,
            immediately=body.immediately, missed=body.missed, job_name=body.job_name,
            data=body.data, **body.options,
        )
        for found in await inspector.schedulers(queue):
            if found.id == scheduler_id:
                return ok(found.to_dict())
        raise _not_found(queue, scheduler_id)  # removed meanwhile

    @api.delete("/queues/{queue}/schedulers/{scheduler_id:conveyor_job_id}", tags=tags,
                response_model=Ok[sv.SchedulerRemoved])
    async def remove(queue: QueueName, scheduler_id: SchedulerId, inspector: Insp) -> Any:
        """Delete a scheduler and its next job if that has not started."""
        if not await (await inspector.existing(queue)).remove_job_scheduler(scheduler_id):
            raise _not_found(queue, scheduler_id)
        return ok({"queue": queue, "id": scheduler_id, "removed": True})

    @api.post("/queues/{queue}/schedulers/{scheduler_id:conveyor_job_id}/run", tags=tags,
              response_model=Ok[sv.SchedulerRanNow])
    async def run_now(queue: QueueName, scheduler_id: SchedulerId, inspector: Insp) -> Any:
        """Make one extra job of the scheduler now; its schedule is left as it is."""
        target = await inspector.existing(queue)
        job_id = await target.run_job_scheduler_now(scheduler_id)
        if job_id is None:
            raise _not_found(queue, scheduler_id)
        return ok({"queue": queue, "scheduler_id": scheduler_id, "job_id": job_id,
                   "state": await target.get_job_state(job_id)})

    return api
