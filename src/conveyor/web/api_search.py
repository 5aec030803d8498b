"""The REST route of job search, ``GET /api/v1/queues/{queue}/search``:
query parameters to a :class:`~conveyor.inspection.JobQuery`, the answer a
:class:`~conveyor.inspection.SearchPage`.

A route of its own rather than filters on ``/queues/{queue}/jobs``: that list
pages by offset and always answers a full page, while a search pages by cursor
and may answer few or no jobs after a bounded scan (``scanned`` of ``total``);
and not under ``/jobs/search``, which is the URL of the job whose id is "search".
"""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from ..inspection import JobQuery
from ..inspection.search import MAX_SCAN, SEARCH_BYTES, parse_time
from . import schemas as v
from .api import Insp, QueueName, ok
from .models import Ok

__all__ = ["SearchPage", "search_router"]


class SearchPage(BaseModel):
    """A page of a search: the matches this request found, newest first, and how far
    the scan got."""

    queue: str
    state: str
    jobs: list[v.JobSummary]
    scanned: int = Field(description="Jobs examined by this search so far, over all its pages.")
    total: int = Field(description="Jobs in the state now: what a full scan examines.")
    examined: int = Field(description="Jobs examined by this request.")
    cursor: str | None = Field(description="Pass it back as `cursor` to go on; null once the "
                                           "state was scanned to its end.")


def _text(description: str, example: str) -> Any:
    return Query(min_length=1, max_length=10_000, description=description, examples=[example])


def _time(description: str) -> Any:
    return Query(min_length=1, max_length=40, examples=["2026-12-03T16:00:00Z"],
                 description=description + " Epoch ms or ISO 8601 (UTC unless it names an "
                 "offset).")


def search_router() -> APIRouter:
    """The search route (auth is added by the app around ``/api/v1``)."""
    api = APIRouter()
    tags: list[str | Enum] = ["jobs"]

    @api.get("/queues/{queue}/search", tags=tags, response_model=Ok[SearchPage])
    async def search(
        queue: QueueName, inspector: Insp,
        state: Annotated[v.JobState, Query()] = "waiting",
        name: Annotated[str | None, _text("A substring of the name (any case).", "mail")] = None,
        data: Annotated[str | None, _text(
            "PATH=VALUE: the data's value at PATH (keys joined by dots, an array index as "
            ".0 or [0], an optional leading $.) equals VALUE (JSON, or else a bare string).",
            "user.id=42")] = None,
        data_contains: Annotated[str | None, _text(
            "A substring of the data's JSON text (exact case).", '"vip"')] = None,
        reason: Annotated[str | None, _text(
            "A substring of the failed reason (any case).", "timeout")] = None,
        created_after: Annotated[str | None, _time("Added at or after.")] = None,
        created_before: Annotated[str | None, _time("Added before.")] = None,
        finished_after: Annotated[str | None, _time("Finished at or after.")] = None,
        finished_before: Annotated[str | None, _time("Finished before.")] = None,
        cursor: Annotated[str | None, Query(max_length=2000, description=(
            "The cursor of the previous page, to go on."))] = None,
        count: Annotated[int, Query(ge=1, le=1000, description="Most jobs answered.")] = 20,
        scan: Annotated[int, Query(ge=1, le=MAX_SCAN, description=(
            f"Most jobs examined by this request (and at most {SEARCH_BYTES // 2**20} MiB "
            "of names, reasons and data read inside Redis)."))] = 1000,
    ) -> Any:
        """Jobs in a state matching every filter given, newest first, a bounded scan at
        a time: answers the matches among the jobs examined, and a cursor to go on."""
        times = {field: parse_time(field, value) for field, value in (
            ("created_after", created_after), ("created_before", created_before),
            ("finished_after", finished_after), ("finished_before", finished_before),
        ) if value is not None}
        query = JobQuery(name=name, data=data, data_contains=data_contains, reason=reason,
                         **times)
        page = await inspector.search(queue, state, query, cursor=cursor, count=count, scan=scan)
        return ok(page.to_dict())

    return api
