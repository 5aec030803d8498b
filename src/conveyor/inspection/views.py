"""What the inspector answers: frozen, JSON-ready views of queues, jobs,
schedulers, health and throughput. Each renders through one rule
(:func:`conveyor._render.render`: times as ISO and ``_ms``, names as the
fields'), so the CLI's ``--json``, the REST API and the dashboard show the
same shapes. A worker is :class:`conveyor.WorkerInfo` (``conveyor.workers``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from .._render import AS_IS, TIME, TIME_OR_ABSENT, View
from ..keys import STATES
from .scheduler_runs import SchedulerRun

if TYPE_CHECKING:
    from ..job import Job
    from .attempts import AttemptRecord

__all__ = ["COUNT_NAMES", "Dashboard", "HealthStatus", "JobDetail", "JobPage", "JobSummary",
           "QueueHealth", "QueueSummary", "SchedulerInfo", "Throughput"]

HealthStatus = Literal["ok", "warning", "critical"]

#: Count names of a summary: the job states, "waiting-children" as waiting_children.
COUNT_NAMES = tuple(state.replace("-", "_") for state in STATES)


@dataclass(frozen=True, slots=True)
class QueueSummary(View):
    """One queue at a glance: counts per state, workers, rates and timings."""

    name: str
    #: waiting, active, delayed, prioritized, waiting_children, completed, failed.
    counts: dict[str, int]
    total: int
    workers: int
    #: Jobs completed / failed for good per minute, averaged over the last 5 minutes.
    completed_per_min: float
    failed_per_min: float
    #: Wait (ready to started) and processing time percentiles over the last
    #: 5 minutes, ms (None: no job measured).
    wait_p50_ms: float | None = field(metadata={"group": ("wait_ms", "p50")})
    wait_p95_ms: float | None = field(metadata={"group": ("wait_ms", "p95")})
    processing_p50_ms: float | None = field(metadata={"group": ("processing_ms", "p50")})
    processing_p95_ms: float | None = field(metadata={"group": ("processing_ms", "p95")})
    global_concurrency: int | None
    is_paused: bool = field(metadata={"also": ("counts", "paused")})
    #: When the newest completed job finished (epoch ms), None if none is kept.
    last_completed_ms: int | None = field(metadata=TIME)


@dataclass(frozen=True, slots=True)
class JobSummary(View):
    """A job as listed in a table. Times are epoch ms (``to_dict`` adds ISO)."""

    id: str
    name: str
    state: str | None
    timestamp: int = field(metadata=TIME)
    processed_on: int | None = field(metadata=TIME)
    finished_on: int | None = field(metadata=TIME)
    attempts_made: int
    attempts: int
    progress: Any = field(metadata=AS_IS)
    failed_reason: str | None
    delay: int
    priority: int
    #: What is wrong with the job's hash (see ``Job.corrupt``), else None.
    corrupt: str | None = None
    #: In a list, the name and failed reason are cut to PREVIEW_BYTES, and a
    #: progress longer than that is its JSON text cut so (a str); these say
    #: which were cut. A job's detail has them whole.
    name_truncated: bool = False
    progress_truncated: bool = False
    failed_reason_truncated: bool = False
    #: When a delayed job is due (epoch ms; its delay may have changed since it
    #: was added); None for a job that is not delayed.
    due: int | None = field(default=None, metadata=TIME_OR_ABSENT)

    @classmethod
    def from_job(cls, job: Job, state: str | None, due: int | None = None) -> JobSummary:
        return cls(
            id=job.id, name=job.name, state=state, timestamp=job.timestamp,
            processed_on=job.processed_on, finished_on=job.finished_on,
            attempts_made=job.attempts_made, attempts=job.opts.attempts,
            progress=job.progress, failed_reason=job.failed_reason,
            delay=job.opts.delay, priority=job.opts.priority, due=due,
            corrupt=job.corrupt,
        )


@dataclass(frozen=True, slots=True)
class JobPage(View):
    """``count`` jobs of one state from ``start`` (newest first) and the state's total."""

    queue: str
    state: str
    start: int
    count: int
    total: int
    jobs: list[JobSummary]


@dataclass(frozen=True, slots=True)
class JobDetail(View):
    """Everything about one job: its summary, data, options, result, error,
    the newest log lines and a timeline of what happened when."""

    queue: str
    summary: JobSummary = field(metadata={"flatten": True})
    data: Any = field(metadata=AS_IS)
    opts: dict[str, Any] = field(metadata=AS_IS)
    return_value: Any = field(metadata=AS_IS)
    stacktrace: list[str]
    logs: list[str]
    logs_total: int
    parent_key: str | None
    dead_letter_of: dict[str, Any] | None = field(metadata=AS_IS)
    #: [{"event", "at_ms", "at"}], oldest first.
    timeline: list[dict[str, Any]]
    #: Every attempt (start, end, outcome, error), oldest first: see
    #: :mod:`conveyor.inspection.attempts`.
    attempt_timeline: list[AttemptRecord] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class QueueHealth(View):
    """A queue's health: "ok", "warning" or "critical", and why (sentences)."""

    queue: str
    status: HealthStatus
    reasons: list[str]


@dataclass(frozen=True, slots=True)
class Throughput(View):
    """Jobs completed and failed per minute, oldest minute first."""

    queue: str
    #: [{"at", "at_ms", "completed", "failed"}]
    minutes: list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class SchedulerInfo(View):
    """A job scheduler of a queue (see ``Queue.upsert_job_scheduler``)."""

    id: str
    every_ms: int | None
    cron: str | None
    tz: str
    next_run_ms: int | None = field(metadata=TIME)
    count: int
    limit: int | None
    start_date_ms: int | None = field(metadata=TIME)
    end_date_ms: int | None = field(metadata=TIME)
    missed: str
    job_name: str
    data: Any = field(metadata=AS_IS)
    opts: dict[str, Any] = field(metadata=AS_IS)
    #: Its latest jobs still kept, latest first (see ``scheduler_runs``).
    last_runs: list[SchedulerRun] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Dashboard(View):
    """All queues at once: overall health, counts, recent failures, performance."""

    status: HealthStatus = field(metadata={"group": ("health", "status")})
    health: list[QueueHealth] = field(metadata={"group": ("health", "queues")})
    summaries: list[QueueSummary] = field(metadata={"skip": True})
    #: The newest failures over all queues: {"queue", "id", "name", "reason",
    #: "reason_truncated", "failed_on", "failed_on_ms"}.
    alerts: list[dict[str, Any]] = field(default_factory=list)

    json_properties = ("statistics", "performance")

    @property
    def statistics(self) -> dict[str, Any]:
        """Counts per state over all queues, and per queue."""
        totals = dict.fromkeys(COUNT_NAMES, 0)
        for summary in self.summaries:
            for name in COUNT_NAMES:
                totals[name] += summary.counts[name]
        return {
            "totals": {**totals, "total": sum(totals.values())},
            "queues": [{"queue": s.name, **s.counts, "total": s.total} for s in self.summaries],
        }

    @property
    def performance(self) -> list[dict[str, Any]]:
        """Each queue's rates and timings."""
        return [{"queue": s["name"], **{k: s[k] for k in _PERFORMANCE}}
                for s in (summary.to_dict() for summary in self.summaries)]


_PERFORMANCE = ("completed_per_min", "failed_per_min", "wait_ms", "processing_ms")
