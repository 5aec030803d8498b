"""The worker registry as readers see it: :class:`WorkerInfo`, one live worker
as its last heartbeat described it, and how a heartbeat entry (JSON, written by
the worker's heartbeat in ``admin.py``) becomes one. ``Queue.get_workers``,
the inspector, the REST API and the CLI all use this one shape."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson

from ._render import TIME, View

__all__ = ["WorkerInfo", "worker_info"]


@dataclass(frozen=True, slots=True)
class WorkerInfo(View):
    """A worker of the queue as its last heartbeat described it (the running
    jobs are up to one heartbeat interval old). ``to_dict()`` adds ``running``
    and renders the times as ISO and ``_ms``."""

    id: str
    hostname: str
    pid: int
    concurrency: int
    running_job_ids: tuple[str, ...]
    started_at: datetime = field(metadata=TIME)
    last_heartbeat: datetime = field(metadata=TIME)

    json_properties = ("running",)

    @property
    def running(self) -> int:
        """Number of jobs the worker was running."""
        return len(self.running_job_ids)


def worker_info(worker_id: str, raw_entry: bytes, now: int, ms_left: int) -> WorkerInfo:
    """A worker's heartbeat entry as a WorkerInfo (``now``: Redis' time in ms;
    ``ms_left``: the entry's time to live)."""
    entry = orjson.loads(raw_entry)
    run = entry["run"]
    if not isinstance(run, list) or not isinstance(entry["host"], str):
        raise TypeError("'run' must be a list and 'host' a str")
    return WorkerInfo(
        id=worker_id,
        hostname=entry["host"],
        pid=int(entry["pid"]),
        concurrency=int(entry["conc"]),
        running_job_ids=tuple(str(job_id) for job_id in run),
        started_at=_utc(entry["started"]),
        last_heartbeat=_utc(now - (int(entry["ttl"]) - ms_left)),
    )


def _utc(ms: int) -> datetime:
    return datetime.fromtimestamp(int(ms) / 1000, tz=UTC)
