"""The JSON schema of the REST API's answers (the ``data`` of the envelope), for
the OpenAPI document at ``/api/v1/openapi.json`` and to trim each answer to
its documented fields. The answers themselves are the inspector's views
rendered by one rule (``conveyor._render``); these models only describe them:
the snake_case family as ``to_dict()`` renders, the BullMQ-seed family as
``web.api.seed`` renames it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from .schemas_views import SchedulerRun

Health = Literal["ok", "warning", "critical"]
JobState = Literal["waiting", "active", "delayed", "prioritized", "completed", "failed",
                   "waiting-children"]


_CUT = ("In a list, {} is a preview of at most 1,024 bytes (UTF-8); true when it was cut. "
        "The job's own page has it whole.")


# -- our own family (snake_case) --------------------------------------------------------


class Percentiles(BaseModel):
    p50: float | None
    p95: float | None


class Counts(BaseModel):
    waiting: int
    active: int
    delayed: int
    prioritized: int
    waiting_children: int
    completed: int
    failed: int
    paused: bool


class QueueSummary(BaseModel):
    name: str
    counts: Counts
    total: int
    workers: int
    completed_per_min: float = Field(description="Average over the last 5 minutes.")
    failed_per_min: float
    wait_ms: Percentiles
    processing_ms: Percentiles
    global_concurrency: int | None
    is_paused: bool
    last_completed: str | None
    last_completed_ms: int | None


class JobSummary(BaseModel):
    id: str
    name: str
    state: str | None
    timestamp: str | None
    timestamp_ms: int | None
    processed_on: str | None
    processed_on_ms: int | None
    finished_on: str | None
    finished_on_ms: int | None
    attempts_made: int
    attempts: int
    progress: Any
    failed_reason: str | None
    delay: int
    priority: int
    due: str | None = None
    due_ms: int | None = None
    corrupt: str | None = Field(
        default=None, description="What is wrong with the job's hash (a field that does not "
        "parse, or a key that is not a hash); a worker fails such a job without running it.")
    name_truncated: bool = Field(default=False, description=_CUT.format("name"))
    progress_truncated: bool = Field(
        default=False, description=_CUT.format("progress") + " A cut progress is its JSON "
        "text's first bytes, a string.")
    failed_reason_truncated: bool = Field(default=False, description=_CUT.format("failed_reason"))


class JobPage(BaseModel):
    queue: str
    state: str
    start: int
    count: int
    total: int
    jobs: list[JobSummary]


class TimelineEvent(BaseModel):
    event: str
    at_ms: int
    at: str | None


class Attempt(BaseModel):
    attempt: int = Field(description="1 for the first (counts restart after a retry "
                                     "with reset_attempts).")
    started_on: str | None
    started_on_ms: int | None
    finished_on: str | None = Field(description="None while it runs.")
    finished_on_ms: int | None
    outcome: Literal["completed", "failed", "stalled", "running"] = Field(
        description="stalled: its worker stopped renewing the lock and the job went back "
        "to the queue (not counted as an attempt made).")
    error: str | None = Field(description="The failed reason (cut to 1 KiB), or why it "
                                          "stalled.")


class JobDetail(JobSummary):
    queue: str
    data: Any
    opts: dict[str, Any]
    return_value: Any
    stacktrace: list[str]
    logs: list[str] = Field(description="The newest 200 lines.")
    logs_total: int
    parent_key: str | None
    dead_letter_of: dict[str, Any] | None
    timeline: list[TimelineEvent]
    attempt_timeline: list[Attempt] = Field(
        description="Every attempt, oldest first (the last 10 failed ones, and the one "
        "that completed or runs now).")


class JobAction(BaseModel):
    queue: str
    id: str
    state: str | None = Field(description="The job's state after the action (None: gone).")


class Retried(BaseModel):
    retried: int


class Removed(BaseModel):
    removed: int


class ThroughputMinute(BaseModel):
    at: str | None
    at_ms: int | None
    completed: int
    failed: int


class Throughput(BaseModel):
    minutes: list[ThroughputMinute]


class Scheduler(BaseModel):
    id: str
    every_ms: int | None
    cron: str | None
    tz: str
    count: int
    limit: int | None
    missed: str
    job_name: str
    data: Any
    opts: dict[str, Any]
    next_run: str | None
    next_run_ms: int | None
    start_date: str | None
    start_date_ms: int | None
    end_date: str | None
    end_date_ms: int | None
    last_runs: list[SchedulerRun] = Field(default=[], description="Its latest jobs still "
                                          "kept, latest first (at most 5).")


class Worker(BaseModel):
    id: str
    hostname: str
    pid: int
    concurrency: int
    running_job_ids: list[str]
    running: int
    started_at: str | None
    started_at_ms: int | None
    last_heartbeat: str | None
    last_heartbeat_ms: int | None


class ApiHealth(BaseModel):
    redis: Literal["ok"]
    queues: int


# -- the BullMQ-seed family (camelCase) ----------------------------------------------------


class StateCounts(BaseModel):
    waiting: int
    active: int
    completed: int
    failed: int
    delayed: int
    total: int


class QueueCounts(BaseModel):
    # The seed's response names the queue first (a subclass's fields come last).
    queueName: str
    waiting: int
    active: int
    completed: int
    failed: int
    delayed: int
    total: int


class QueuesMetrics(BaseModel):
    queues: list[QueueCounts]
    totals: StateCounts


class QueueMetrics(QueueCounts):
    prioritized: int
    waitingChildren: int
    paused: bool
    workers: int
    completedPerMinute: float
    failedPerMinute: float
    waitMs: Percentiles
    processingMs: Percentiles


class CamelJob(BaseModel):
    id: str
    name: str
    state: str | None
    timestamp: str | None
    timestampMs: int | None
    processedOn: str | None
    processedOnMs: int | None
    finishedOn: str | None
    finishedOnMs: int | None
    attemptsMade: int
    attempts: int
    progress: Any
    failedReason: str | None
    delay: int
    priority: int
    nameTruncated: bool = Field(default=False, description=_CUT.format("name"))
    progressTruncated: bool = Field(default=False, description=_CUT.format("progress"))
    failedReasonTruncated: bool = Field(default=False,
                                        description=_CUT.format("failedReason"))


class DeadLetterPage(BaseModel):
    queueName: str
    jobs: list[CamelJob]
    total: int
    page: int
    pageSize: int


class RetryResult(BaseModel):
    queueName: str
    jobId: str
    state: str | None


class CleanResult(BaseModel):
    queueName: str
    removed: int


class QueueHealth(BaseModel):
    queueName: str
    status: Health
    reasons: list[str]


class QueueStatistics(QueueCounts):
    prioritized: int
    waitingChildren: int


class Statistics(BaseModel):
    totals: StateCounts
    queues: list[QueueStatistics]


class Alert(BaseModel):
    queueName: str
    jobId: str
    name: str | None
    reason: str | None
    reasonTruncated: bool = Field(default=False, description=_CUT.format("reason"))
    failedOn: str | None
    failedOnMs: int


class Performance(BaseModel):
    queueName: str
    completedPerMinute: float
    failedPerMinute: float
    waitMs: Percentiles
    processingMs: Percentiles


class DashboardData(BaseModel):
    status: Health
    queues: list[QueueHealth]
    statistics: Statistics
    alerts: list[Alert]
    performance: list[Performance]
