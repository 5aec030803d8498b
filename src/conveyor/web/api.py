"""The REST API's routes under ``/api/v1``: argument parsing and formatting only;
everything else is :class:`conveyor.inspect.Inspector`.

Two families: ``/queue/...`` answers in the camelCase shapes of the BullMQ
dashboards' seed API; ``/queues/...`` is our own, snake_case, as
``Inspector``'s ``to_dict()``.
"""

from __future__ import annotations

import re
from enum import Enum
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse

from ..inspect import Inspector, QueueSummary
from . import models as m

__all__ = ["build_router", "camel"]

QueueName = Annotated[str, Path(description="The queue's name.", examples=["email"])]
JobId = Annotated[str, Path(description="The job's id.", examples=["1"])]


async def get_inspector(request: Request) -> Inspector:
    """The app's Inspector (made on first use, on the serving event loop)."""
    inspector: Inspector = request.app.state.conveyor.inspector()
    return inspector


Insp = Annotated[Inspector, Depends(get_inspector)]


def camel(data: dict[str, Any]) -> dict[str, Any]:
    """snake_case keys as camelCase (``processed_on_ms`` -> ``processedOnMs``)."""
    return {re.sub(r"_([a-z])", lambda x: x.group(1).upper(), k): v for k, v in data.items()}


def ok(data: Any, status_code: int = 200) -> Any:
    """The success envelope (a 201 needs a response object)."""
    if status_code != 200:
        return JSONResponse({"success": True, "data": data}, status_code=status_code)
    return {"success": True, "data": data}


def _counts(summary: QueueSummary) -> dict[str, Any]:
    c = summary.counts
    return {"waiting": c["waiting"], "active": c["active"], "completed": c["completed"],
            "failed": c["failed"], "delayed": c["delayed"], "total": summary.total}


def _queue_metrics(s: QueueSummary) -> dict[str, Any]:
    return {
        "queueName": s.name, **_counts(s), "prioritized": s.counts["prioritized"],
        "waitingChildren": s.counts["waiting_children"], "paused": s.is_paused,
        "workers": s.workers, "completedPerMinute": s.completed_per_min,
        "failedPerMinute": s.failed_per_min,
        "waitMs": {"p50": s.wait_p50_ms, "p95": s.wait_p95_ms},
        "processingMs": {"p50": s.processing_p50_ms, "p95": s.processing_p95_ms},
    }


def build_router() -> APIRouter:
    """Every route of ``/api/v1`` (auth is added by the app around it)."""
    api = APIRouter()
    _seed_routes(api)
    _queue_routes(api)
    _job_routes(api)
    return api


def _seed_routes(api: APIRouter) -> None:
    """The BullMQ-seed family, camelCase."""
    tags: list[str | Enum] = ["queue (BullMQ-seed shapes)"]

    @api.get("/queue/metrics", tags=tags, response_model=m.Ok[m.QueuesMetrics])
    async def queues_metrics(inspector: Insp) -> Any:
        """Counts of every queue, and their totals."""
        queues = [{"queueName": s.name, **_counts(s)} for s in await inspector.summaries()]
        totals = {k: sum(q[k] for q in queues)
                  for k in ("waiting", "active", "completed", "failed", "delayed", "total")}
        return ok({"queues": queues, "totals": totals})

    @api.get("/queue/metrics/{queue}", tags=tags, response_model=m.Ok[m.QueueMetrics])
    async def queue_metrics(queue: QueueName, inspector: Insp) -> Any:
        """One queue's counts, workers, rates and timings."""
        return ok(_queue_metrics(await inspector.summary(queue)))

    @api.get("/queue/dead-letter/{queue}", tags=tags, response_model=m.Ok[m.DeadLetterPage])
    async def dead_letter(
        queue: QueueName, inspector: Insp,
        page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
        pageSize: Annotated[int, Query(ge=1, le=1000)] = 50,
    ) -> Any:
        """The queue's jobs that failed for good, newest first."""
        found = await inspector.jobs(queue, "failed", start=(page - 1) * pageSize,
                                     count=pageSize)
        return ok({"queueName": queue, "jobs": [camel(j.to_dict()) for j in found.jobs],
                   "total": found.total, "page": page, "pageSize": pageSize})

    @api.post("/queue/retry/{queue}/{job_id}", tags=tags, response_model=m.Ok[m.RetryResult])
    async def retry_one(queue: QueueName, job_id: JobId, inspector: Insp) -> Any:
        """Send a failed (or completed) job back to waiting."""
        await inspector.retry(queue, job_id)
        state = await inspector.queue(queue).get_job_state(job_id)
        return ok({"queueName": queue, "jobId": job_id, "state": state})

    @api.post("/queue/clean/{queue}", tags=tags, response_model=m.Ok[m.CleanResult])
    async def clean_seed(queue: QueueName, inspector: Insp,
                         body: m.CamelClean | None = None) -> Any:
        """Remove jobs of a state (default failed), at least graceMs old, up to limit."""
        body = body or m.CamelClean()
        removed = await inspector.clean(queue, state=body.state, grace_ms=body.graceMs,
                                        limit=body.limit)
        return ok({"queueName": queue, "removed": removed})

    @api.get("/queue/dashboard", tags=tags, response_model=m.Ok[m.DashboardData])
    async def dashboard(inspector: Insp) -> Any:
        """Overall health, statistics, the newest failures and performance per queue."""
        board = await inspector.dashboard()
        stats = [{"queueName": s.name, **_counts(s), "prioritized": s.counts["prioritized"],
                  "waitingChildren": s.counts["waiting_children"]} for s in board.summaries]
        totals = {k: sum(q[k] for q in stats)
                  for k in ("waiting", "active", "completed", "failed", "delayed", "total")}
        return ok({
            "status": board.status,
            "queues": [{"queueName": h.queue, "status": h.status, "reasons": h.reasons}
                       for h in board.health],
            "statistics": {"totals": totals, "queues": stats},
            "alerts": [{"queueName": a["queue"], "jobId": a["id"], "name": a["name"],
                        "reason": a["reason"], "reasonTruncated": a["reason_truncated"],
                        "failedOn": a["failed_on"],
                        "failedOnMs": a["failed_on_ms"]} for a in board.alerts],
            "performance": [
                {k: v for k, v in _queue_metrics(s).items()
                 if k in ("queueName", "completedPerMinute", "failedPerMinute", "waitMs",
                          "processingMs")}
                for s in board.summaries
            ],
        })


def _queue_routes(api: APIRouter) -> None:
    """Our own family, per queue."""
    tags: list[str | Enum] = ["queues"]

    @api.get("/health", tags=["health"], response_model=m.Ok[m.ApiHealth])
    async def health(inspector: Insp) -> Any:
        """Redis answers; how many queues are known."""
        await inspector.client.ping()
        return ok({"redis": "ok", "queues": len(await inspector.queue_names())})

    @api.get("/queues", tags=tags, response_model=m.Ok[list[m.QueueSummary]])
    async def queues(inspector: Insp) -> Any:
        """Every queue's summary."""
        return ok([s.to_dict() for s in await inspector.summaries()])

    @api.get("/queues/{queue}", tags=tags, response_model=m.Ok[m.QueueSummary])
    async def queue_summary(queue: QueueName, inspector: Insp) -> Any:
        """One queue's summary."""
        return ok((await inspector.summary(queue)).to_dict())

    @api.post("/queues/{queue}/pause", tags=tags, response_model=m.Ok[m.QueueSummary])
    async def pause(queue: QueueName, inspector: Insp) -> Any:
        """Stop workers from starting the queue's jobs (adds still land)."""
        await inspector.pause(queue)
        return ok((await inspector.summary(queue)).to_dict())

    @api.post("/queues/{queue}/resume", tags=tags, response_model=m.Ok[m.QueueSummary])
    async def resume(queue: QueueName, inspector: Insp) -> Any:
        """Let workers start the queue's jobs again."""
        await inspector.resume(queue)
        return ok((await inspector.summary(queue)).to_dict())

    @api.post("/queues/{queue}/retry", tags=tags, response_model=m.Ok[m.Retried])
    async def retry_all(queue: QueueName, inspector: Insp,
                        body: m.RetryAll | None = None) -> Any:
        """Send every failed (or completed) job back to waiting."""
        body = body or m.RetryAll()
        return ok({"retried": await inspector.retry_all(queue, body.state)})

    @api.post("/queues/{queue}/clean", tags=tags, response_model=m.Ok[m.Removed])
    async def clean(queue: QueueName, inspector: Insp, body: m.Clean | None = None) -> Any:
        """Remove jobs of a state (default completed), at least grace_ms old, up to limit."""
        body = body or m.Clean()
        removed = await inspector.clean(queue, state=body.state, grace_ms=body.grace_ms,
                                        limit=body.limit)
        return ok({"removed": removed})

    @api.get("/queues/{queue}/throughput", tags=tags, response_model=m.Ok[m.Throughput])
    async def throughput(queue: QueueName, inspector: Insp,
                         minutes: Annotated[int, Query(ge=1, le=1440)] = 60) -> Any:
        """Jobs completed and failed per minute, oldest first."""
        found = await inspector.throughput(queue, minutes)
        return ok({"minutes": found.minutes})

    @api.get("/queues/{queue}/schedulers", tags=tags, response_model=m.Ok[list[m.Scheduler]])
    async def schedulers(queue: QueueName, inspector: Insp) -> Any:
        """The queue's job schedulers, soonest first."""
        return ok([s.to_dict() for s in await inspector.schedulers(queue)])

    @api.get("/queues/{queue}/workers", tags=tags, response_model=m.Ok[list[m.Worker]])
    async def workers(queue: QueueName, inspector: Insp) -> Any:
        """The queue's live workers."""
        return ok([w.to_dict() for w in await inspector.workers(queue)])


def _job_routes(api: APIRouter) -> None:
    """Our own family, per job."""
    tags: list[str | Enum] = ["jobs"]

    @api.get("/queues/{queue}/jobs", tags=tags, response_model=m.Ok[m.JobPage])
    async def jobs(
        queue: QueueName, inspector: Insp,
        state: Annotated[m.JobState, Query()] = "waiting",
        start: Annotated[int, Query(ge=0, le=10**12)] = 0,
        count: Annotated[int, Query(ge=1, le=1000)] = 20,
    ) -> Any:
        """A page of the queue's jobs in a state, newest first."""
        return ok((await inspector.jobs(queue, state, start=start, count=count)).to_dict())

    @api.post("/queues/{queue}/jobs", tags=tags, status_code=201,
              response_model=m.Ok[m.JobSummary])
    async def enqueue(queue: QueueName, body: m.NewJob, inspector: Insp) -> Any:
        """Add a job (the queue need not exist yet)."""
        job = await inspector.enqueue(queue, body.name, body.data, body.options)
        return ok((await inspector.job_summary(queue, job)).to_dict(), 201)

    @api.get("/queues/{queue}/jobs/{job_id}", tags=tags, response_model=m.Ok[m.JobDetail])
    async def job(queue: QueueName, job_id: JobId, inspector: Insp) -> Any:
        """Everything about one job: data, options, result, error, logs, timeline."""
        return ok((await inspector.job(queue, job_id)).to_dict())

    async def state_of(inspector: Inspector, queue: str, job_id: str) -> dict[str, Any]:
        return {"queue": queue, "id": job_id,
                "state": await inspector.queue(queue).get_job_state(job_id)}

    @api.post("/queues/{queue}/jobs/{job_id}/retry", tags=tags, response_model=m.Ok[m.JobAction])
    async def retry(queue: QueueName, job_id: JobId, inspector: Insp) -> Any:
        """Send a failed or completed job back to waiting (409 for other states)."""
        await inspector.retry(queue, job_id)
        return ok(await state_of(inspector, queue, job_id))

    @api.post("/queues/{queue}/jobs/{job_id}/promote", tags=tags,
              response_model=m.Ok[m.JobAction])
    async def promote(queue: QueueName, job_id: JobId, inspector: Insp) -> Any:
        """Run a delayed job now (409 if it is not delayed)."""
        await inspector.promote(queue, job_id)
        return ok(await state_of(inspector, queue, job_id))

    @api.delete("/queues/{queue}/jobs/{job_id}", tags=tags, response_model=m.Ok[m.JobAction])
    async def remove(queue: QueueName, job_id: JobId, inspector: Insp) -> Any:
        """Delete a job (409 while a worker runs it)."""
        await inspector.remove(queue, job_id)
        return ok({"queue": queue, "id": job_id, "state": None})

