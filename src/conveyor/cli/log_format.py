"""The log lines of ``conveyor worker``: text for a terminal, or
``--log-format json``, one JSON object a line for a log collector.

A JSON line holds ``time`` (ISO 8601, UTC, milliseconds), ``level``,
``logger``, ``message`` and ``pid``; ``job_id`` and ``queue`` when the line
was logged while a task ran (its :func:`conveyor.app.current_job`) or the
call passed them (``log.info(..., extra={"job_id": ..., "queue": ...})``);
``exception`` with the formatted traceback when there is one. Newlines and
control characters are JSON escapes, so a job's data cannot split a line.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any

import orjson

from ..tasks import current_job_var, current_sync_job_var
from .support import SafeFormatter

__all__ = ["LOG_FORMATS", "JsonFormatter", "setup_logging"]

LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per record (see the module's docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        job_id, queue = _job_of(record)
        if job_id is not None:
            line["job_id"] = job_id
        if queue is not None:
            line["queue"] = queue
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(line, default=str).decode()


def _job_of(record: logging.LogRecord) -> tuple[Any, Any]:
    """The job id and queue a record is about: given by the call, else those
    of the job running in the record's context."""
    job_id, queue = getattr(record, "job_id", None), getattr(record, "queue", None)
    if job_id is None:
        job = current_job_var.get(None)
        if job is None:
            sync_job = current_sync_job_var.get(None)
            job = None if sync_job is None else sync_job.job
        if job is not None:
            job_id, queue = job.id, queue or job.queue.name
    return job_id, queue


def setup_logging(level: str, log_format: str) -> None:
    """Log records of ``level`` and above to stderr in ``log_format``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else SafeFormatter(TEXT_FORMAT))
    logging.basicConfig(level=level.upper(), handlers=[handler])
