"""The JSON schema of the REST API's flow tree, scheduler management and
metrics series answers and request bodies (the routes of :mod:`.api_views`);
the patterns of :mod:`.schemas` and :mod:`.models`."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from ..options import MAX_EPOCH_MS, MAX_JOB_NAME
from .models import Body


class TreeNode(BaseModel):
    queue: str
    id: str
    name: str | None = Field(description="None when the job is gone.")
    state: str | None
    children_total: int = Field(description="How many children it has (not read here).")
    value: Any = Field(default=None, description="A completed child's return value, as its "
                       "parent reads it (Job.get_children_values).")
    ignored_failure: str | None = Field(default=None, description="A child that failed for "
                                       "good, ignored by its parent: the reason.")


class JobTree(BaseModel):
    ancestors: list[TreeNode] = Field(description="Root first, up to the job's parent "
                                      "(at most 20 levels).")
    job: TreeNode
    children: list[TreeNode] = Field(description="Children start..start+count, by queue and id.")
    children_total: int
    start: int
    count: int


class SchedulerRun(BaseModel):
    id: str
    slot: str | None
    slot_ms: int | None
    manual: bool = Field(description="Made by 'run now', not for a slot.")
    state: str | None
    processed_on: str | None
    processed_on_ms: int | None
    finished_on: str | None
    finished_on_ms: int | None
    failed_reason: str | None


class SeriesMinute(BaseModel):
    at: str | None
    at_ms: int | None
    completed: int
    failed: int
    failure_rate: float | None = Field(description="failed / (completed + failed), 0..1.")
    wait_p50_ms: float | None
    wait_p95_ms: float | None
    processing_p50_ms: float | None
    processing_p95_ms: float | None


class MetricsSeries(BaseModel):
    minutes: list[SeriesMinute]


class SchedulerRemoved(BaseModel):
    queue: str
    id: str
    removed: bool


class SchedulerRanNow(BaseModel):
    queue: str
    scheduler_id: str
    job_id: str
    state: str | None


class SchedulerSpec(Body):
    """Queue.upsert_job_scheduler's arguments: exactly one of every_ms and cron."""

    every_ms: int | None = Field(default=None, ge=1, le=MAX_EPOCH_MS,
                                 description="Interval in ms.")
    cron: str | None = Field(default=None, min_length=1, max_length=200,
                             description="5 fields, or 6 with seconds first.")
    tz: str = Field(default="UTC", min_length=1, max_length=100,
                    description="IANA time zone the cron expression is read in.")
    start_date_ms: int | None = Field(default=None, ge=0, le=MAX_EPOCH_MS)
    end_date_ms: int | None = Field(default=None, ge=0, le=MAX_EPOCH_MS)
    limit: int | None = Field(default=None, ge=1, le=10**12,
                              description="At most this many jobs in all.")
    immediately: bool = Field(default=False, description="Also run one job now.")
    missed: Literal["run_once", "run_all"] = "run_once"
    job_name: str | None = Field(default=None, min_length=1, max_length=MAX_JOB_NAME,
                                 description="Default: the scheduler's id.")
    data: Any = None
    options: dict[str, Any] = Field(
        default_factory=dict,
        description="Job options of Queue.add (not job_id, delay or deduplication).")
