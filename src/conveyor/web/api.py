"""The REST API's routes under ``/api/v1``: argument parsing and formatting only;
everything else is :class:`conveyor.inspection.Inspector`.

Two families, one source: both answer with the inspector's views rendered by
one rule (``conveyor._render``). ``/queues/...`` is our own, snake_case, as
the views' ``to_dict()``; ``/queue/...`` is the same rendering in camelCase
with the names of the BullMQ dashboards' seed API (:func:`seed`). The
response models trim each answer to its documented fields.

A job id may contain ``/`` (sent as ``%2F`` or as is): a route takes the rest
of the path as the id, and an action on a job (``/retry``, ``/promote``) is
always the last segment, so ``POST jobs/a/retry`` retries job ``a`` while
``POST jobs/a%2Fretry/retry`` retries job ``a/retry`` (and ``GET`` or
``DELETE jobs/a/retry`` reads or deletes it).
"""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse
from starlette.convertors import PathConvertor, register_url_convertor

from .._render import camel, render
from ..inspection import Inspector
from . import models as m
from . import schemas as v
from .instances import InstanceParam

__all__ = ["build_router", "camel", "seed"]

QueueName = Annotated[str, Path(description="The queue's name.", examples=["email"])]
JobId = Annotated[str, Path(description="The job's id (any '/' in it as %2F or as is).",
                            examples=["1"])]


class _JobIdConvertor(PathConvertor):
    """The rest of the path, ``/`` included, but never empty: ``.../jobs/`` stays
    the list's URL (redirected to ``.../jobs``), not a job with an empty id."""

    regex = ".+"


register_url_convertor("conveyor_job_id", _JobIdConvertor())


async def get_inspector(request: Request, instance: InstanceParam = None) -> Inspector:
    """The Inspector of the addressed instance (made on first use, on the serving
    event loop)."""
    inspector: Inspector = request.app.state.conveyor.inspector(instance)
    return inspector


Insp = Annotated[Inspector, Depends(get_inspector)]


#: The seed API's names for ours (after camelCase).
_SEED_NAMES = {"queue": "queueName", "completedPerMin": "completedPerMinute",
               "failedPerMin": "failedPerMinute"}
#: The five counts (and their total) of the seed's queue lists.
_SEED_COUNTS = ("waiting", "active", "completed", "failed", "delayed", "total")


def seed(data: dict[str, Any], **names: str) -> dict[str, Any]:
    """A rendered view in the seed API's shape: camelCase, its counts lifted to
    the top, renamed as _SEED_NAMES and ``names`` say."""
    out = camel(data)
    out.update(camel(out.pop("counts", {})))
    table = {**_SEED_NAMES, **names}
    return {table.get(k, k): v for k, v in out.items()}


def _totals(rows: list[dict[str, Any]]) -> dict[str, int]:
    return {k: sum(row[k] for row in rows) for k in _SEED_COUNTS}


def ok(data: Any, status_code: int = 200) -> Any:
    """The success envelope (a 201 needs a response object)."""
    if status_code != 200:
        return JSONResponse({"success": True, "data": data}, status_code=status_code)
    return {"success": True, "data": data}


def build_router() -> APIRouter:
    """Every route of ``/api/v1`` (auth is added by the app around it)."""
    from .api_jobs_edit import build_jobs_edit_router  # it imports this module
    from .api_search import search_router  # it imports this module's helpers
    from .api_views import build_views_router  # it imports this module's helpers

    api = APIRouter()
    _seed_routes(api)
    _queue_routes(api)
    api.include_router(build_jobs_edit_router())  # before the routes a job id could shadow
    _job_routes(api)
    api.include_router(build_views_router())
    api.include_router(search_router())
    return api


def _seed_routes(api: APIRouter) -> None:
    """The BullMQ-seed family, camelCase."""
    tags: list[str | Enum] = ["queue (BullMQ-seed shapes)"]

    @api.get("/queue/metrics", tags=tags, response_model=m.Ok[v.QueuesMetrics])
    async def queues_metrics(inspector: Insp) -> Any:
        """Counts of every queue, and their totals."""
        queues = [seed(s.to_dict(), name="queueName") for s in await inspector.summaries()]
        return ok({"queues": queues, "totals": _totals(queues)})

    @api.get("/queue/metrics/{queue}", tags=tags, response_model=m.Ok[v.QueueMetrics])
    async def queue_metrics(queue: QueueName, inspector: Insp) -> Any:
        """One queue's counts, workers, rates and timings."""
        return ok(seed((await inspector.summary(queue)).to_dict(), name="queueName"))

    @api.get("/queue/dead-letter/{queue}", tags=tags, response_model=m.Ok[v.DeadLetterPage])
    async def dead_letter(
        queue: QueueName, inspector: Insp,
        page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
        pageSize: Annotated[int, Query(ge=1, le=1000)] = 50,
    ) -> Any:
        """The queue's jobs that failed for good, newest first."""
        found = await inspector.jobs(queue, "failed", start=(page - 1) * pageSize,
                                     count=pageSize)
        return ok({"queueName": queue, "jobs": [render(j, camel_case=True) for j in found.jobs],
                   "total": found.total, "page": page, "pageSize": pageSize})

    @api.post("/queue/retry/{queue}/{job_id:conveyor_job_id}", tags=tags,
              response_model=m.Ok[v.RetryResult])
    async def retry_one(queue: QueueName, job_id: JobId, inspector: Insp) -> Any:
        """Send a failed (or completed) job back to waiting."""
        await inspector.retry(queue, job_id)
        state = await inspector.queue(queue).get_job_state(job_id)
        return ok({"queueName": queue, "jobId": job_id, "state": state})

    @api.post("/queue/clean/{queue}", tags=tags, response_model=m.Ok[v.CleanResult])
    async def clean_seed(queue: QueueName, inspector: Insp,
                         body: m.CamelClean | None = None) -> Any:
        """Remove jobs of a state (default failed), at least graceMs old, up to limit."""
        body = body or m.CamelClean()
        removed = await inspector.clean(queue, state=body.state, grace_ms=body.graceMs,
                                        limit=body.limit)
        return ok({"queueName": queue, "removed": removed})

    @api.get("/queue/dashboard", tags=tags, response_model=m.Ok[v.DashboardData])
    async def dashboard(inspector: Insp) -> Any:
        """Overall health, statistics, the newest failures and performance per queue."""
        board = (await inspector.dashboard()).to_dict()
        stats = [seed(row) for row in board["statistics"]["queues"]]
        return ok({
            "status": board["health"]["status"],
            "queues": [seed(h) for h in board["health"]["queues"]],
            "statistics": {"totals": _totals(stats), "queues": stats},
            "alerts": [seed(a, id="jobId") for a in board["alerts"]],
            "performance": [seed(p) for p in board["performance"]],
        })


def _queue_routes(api: APIRouter) -> None:
    """Our own family, per queue."""
    tags: list[str | Enum] = ["queues"]

    @api.get("/health", tags=["health"], response_model=m.Ok[v.ApiHealth])
    async def health(inspector: Insp) -> Any:
        """Redis answers; how many queues are known."""
        await inspector.client.ping()
        return ok({"redis": "ok", "queues": len(await inspector.queue_names())})

    @api.get("/queues", tags=tags, response_model=m.Ok[list[v.QueueSummary]])
    async def queues(inspector: Insp) -> Any:
        """Every queue's summary."""
        return ok([s.to_dict() for s in await inspector.summaries()])

    @api.get("/queues/{queue}", tags=tags, response_model=m.Ok[v.QueueSummary])
    async def queue_summary(queue: QueueName, inspector: Insp) -> Any:
        """One queue's summary."""
        return ok((await inspector.summary(queue)).to_dict())

    @api.post("/queues/{queue}/pause", tags=tags, response_model=m.Ok[v.QueueSummary])
    async def pause(queue: QueueName, inspector: Insp) -> Any:
        """Stop workers from starting the queue's jobs (adds still land)."""
        await inspector.pause(queue)
        return ok((await inspector.summary(queue)).to_dict())

    @api.post("/queues/{queue}/resume", tags=tags, response_model=m.Ok[v.QueueSummary])
    async def resume(queue: QueueName, inspector: Insp) -> Any:
        """Let workers start the queue's jobs again."""
        await inspector.resume(queue)
        return ok((await inspector.summary(queue)).to_dict())

    @api.post("/queues/{queue}/retry", tags=tags, response_model=m.Ok[v.Retried])
    async def retry_all(queue: QueueName, inspector: Insp,
                        body: m.RetryAll | None = None) -> Any:
        """Send every failed (or completed) job back to waiting."""
        body = body or m.RetryAll()
        return ok({"retried": await inspector.retry_all(queue, body.state)})

    @api.post("/queues/{queue}/clean", tags=tags, response_model=m.Ok[v.Removed])
    async def clean(queue: QueueName, inspector: Insp, body: m.Clean | None = None) -> Any:
        """Remove jobs of a state (default completed), at least grace_ms old, up to limit."""
        body = body or m.Clean()
        removed = await inspector.clean(queue, state=body.state, grace_ms=body.grace_ms,
                                        limit=body.limit)
        return ok({"removed": removed})

    @api.get("/queues/{queue}/throughput", tags=tags, response_model=m.Ok[v.Throughput])
    async def throughput(queue: QueueName, inspector: Insp,
                         minutes: Annotated[int, Query(ge=1, le=1440)] = 60) -> Any:
        """Jobs completed and failed per minute, oldest first."""
        found = await inspector.throughput(queue, minutes)
        return ok({"minutes": found.minutes})

    @api.get("/queues/{queue}/schedulers", tags=tags, response_model=m.Ok[list[v.Scheduler]])
    async def schedulers(queue: QueueName, inspector: Insp) -> Any:
        """The queue's job schedulers, soonest first."""
        return ok([s.to_dict() for s in await inspector.schedulers(queue)])

    @api.get("/queues/{queue}/workers", tags=tags, response_model=m.Ok[list[v.Worker]])
    async def workers(queue: QueueName, inspector: Insp) -> Any:
        """The queue's live workers."""
        return ok([w.to_dict() for w in await inspector.workers(queue)])


def _job_routes(api: APIRouter) -> None:
    """Our own family, per job."""
    tags: list[str | Enum] = ["jobs"]

    @api.get("/queues/{queue}/jobs", tags=tags, response_model=m.Ok[v.JobPage])
    async def jobs(
        queue: QueueName, inspector: Insp,
        state: Annotated[v.JobState, Query()] = "waiting",
        start: Annotated[int, Query(ge=0, le=10**12)] = 0,
        count: Annotated[int, Query(ge=1, le=1000)] = 20,
    ) -> Any:
        """A page of the queue's jobs in a state, newest first."""
        return ok((await inspector.jobs(queue, state, start=start, count=count)).to_dict())

    @api.post("/queues/{queue}/jobs", tags=tags, status_code=201,
              response_model=m.Ok[v.JobSummary])
    async def enqueue(queue: QueueName, body: m.NewJob, inspector: Insp) -> Any:
        """Add a job (the queue need not exist yet)."""
        job = await inspector.enqueue(queue, body.name, body.data, body.options)
        return ok((await inspector.job_summary(queue, job)).to_dict(), 201)

    @api.get("/queues/{queue}/jobs/{job_id:conveyor_job_id}", tags=tags,
             response_model=m.Ok[v.JobDetail])
    async def job(queue: QueueName, job_id: JobId, inspector: Insp) -> Any:
        """Everything about one job: data, options, result, error, logs, timeline."""
        return ok((await inspector.job(queue, job_id)).to_dict())

    async def state_of(inspector: Inspector, queue: str, job_id: str) -> dict[str, Any]:
        return {"queue": queue, "id": job_id,
                "state": await inspector.queue(queue).get_job_state(job_id)}

    @api.post("/queues/{queue}/jobs/{job_id:conveyor_job_id}/retry", tags=tags,
              response_model=m.Ok[v.JobAction])
    async def retry(queue: QueueName, job_id: JobId, inspector: Insp) -> Any:
        """Send a failed or completed job back to waiting (409 for other states)."""
        await inspector.retry(queue, job_id)
        return ok(await state_of(inspector, queue, job_id))

    @api.post("/queues/{queue}/jobs/{job_id:conveyor_job_id}/promote", tags=tags,
              response_model=m.Ok[v.JobAction])
    async def promote(queue: QueueName, job_id: JobId, inspector: Insp) -> Any:
        """Run a delayed job now (409 if it is not delayed)."""
        await inspector.promote(queue, job_id)
        return ok(await state_of(inspector, queue, job_id))

    @api.delete("/queues/{queue}/jobs/{job_id:conveyor_job_id}", tags=tags,
                response_model=m.Ok[v.JobAction])
    async def remove(queue: QueueName, job_id: JobId, inspector: Insp) -> Any:
        """Delete a job (409 while a worker runs it)."""
        await inspector.remove(queue, job_id)
        return ok({"queue": queue, "id": job_id, "state": None})

