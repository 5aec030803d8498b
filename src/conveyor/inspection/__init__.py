"""Inspection: the layer the CLI, the REST API and the dashboard share.

::

    async with Inspector("redis://localhost:6379/0") as inspector:
        for summary in await inspector.summaries():
            print(summary.name, summary.counts["waiting"], summary.workers)
        page = await inspector.jobs("email", "failed", start=0, count=20)
        await inspector.retry_all("email", progress=lambda done, total: ...)

- ``inspector.py``: :class:`Inspector`, the reads and the admin actions;
- ``views.py``: what it answers, frozen dataclasses that render to JSON by one
  rule (``conveyor._render``);
- ``health.py``: the health policy and :class:`HealthThresholds`;
- ``reads.py``: the bounded reads behind a page of jobs and the recent failures;
- ``search.py``: job search (:class:`JobQuery`), a bounded scan inside Redis.
"""

from .._render import iso
from ..admin import CLEANABLE_STATES
from ..errors import JobNotFoundError
from ..keys import STATES
from ..workers import WorkerInfo
from .health import HealthThresholds
from .inspector import Inspector, Progress, QueueNotFoundError
from .search import JobQuery, SearchPage
from .views import (
    Dashboard,
    JobDetail,
    JobPage,
    JobSummary,
    QueueHealth,
    QueueSummary,
    SchedulerInfo,
    Throughput,
)

__all__ = [
    "CLEANABLE_STATES",
    "STATES",
    "Dashboard",
    "HealthThresholds",
    "Inspector",
    "JobDetail",
    "JobNotFoundError",
    "JobPage",
    "JobQuery",
    "JobSummary",
    "Progress",
    "QueueHealth",
    "QueueNotFoundError",
    "QueueSummary",
    "SchedulerInfo",
    "SearchPage",
    "Throughput",
    "WorkerInfo",
    "iso",
]
