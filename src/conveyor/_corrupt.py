"""Jobs whose hash is corrupt: a field that does not parse (a number that is not
one, ``data`` or ``opts`` that are not JSON, options of the wrong shape), or a
job key of the wrong type. Such a job is read field by field: what parses is
kept, the rest keeps its default, and ``job.corrupt`` says what was wrong. A
worker fails it at once without running it (``corrupt job: ...``, no retry);
reads show it beside the other jobs. The fast path (Job.from_fields) only
lands here when parsing raised, so readable jobs pay nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import orjson

from ._scripts import Outcome, outcome
from ._stream import text
from .errors import UnrecoverableError
from .options import JobOptions

if TYPE_CHECKING:
    from .job import Job
    from .queue import Queue

__all__ = [
    "CORRUPT_ERRORS", "corrupt_failure", "fill_field_by_field", "not_a_hash", "unreadable_job",
]

#: What parsing a corrupt field raises (orjson.JSONDecodeError is a ValueError).
CORRUPT_ERRORS = (ValueError, TypeError, KeyError, AttributeError)

T = TypeVar("T")


def fill_field_by_field(job: Job, fields: Mapping[str, bytes | str]) -> None:
    """Set ``job``'s attributes from ``fields`` one at a time, and
    ``job.corrupt`` to the fields that did not parse ("atm: not an integer: 'x'")."""
    problems: list[str] = []

    def parse(name: str, convert: Callable[[bytes | str], T], default: T) -> T:
        raw = fields.get(name)
        if raw is None:
            return default
        try:
            return convert(raw)
        except CORRUPT_ERRORS as exc:
            problems.append(f"{name}: {_why(convert, exc, raw)}")
            return default

    job.name = parse("name", text, "")
    job.data = parse("data", orjson.loads, None)
    job.opts = parse("opts", JobOptions.from_stored, JobOptions())
    if job.opts.group is None and "grp" in fields:  # its group slot must be freed
        job.opts = JobOptions(group=text(fields["grp"]))
    job.timestamp = parse("ts", int, 0)
    job.attempts_made = parse("atm", int, 0)
    job.attempts_started = parse("ats", int, 0)
    job.stalled_count = parse("stc", int, 0)
    job.progress = parse("pr", orjson.loads, None)
    job.return_value = parse("rv", orjson.loads, None)
    job.failed_reason = parse("fr", text, None)
    job.stacktrace = parse("st", _stacktrace, [])
    job.processed_on = parse("pon", int, None)
    job.finished_on = parse("fon", int, None)
    job.dead_letter_of = parse("dlq", orjson.loads, None)
    job.parent_key = parse("par", text, None)
    job.token = parse("tok", text, None)
    job.corrupt = "; ".join(problems) or None


def corrupt_failure(job: Job, keep: str) -> tuple[Outcome, UnrecoverableError]:
    """A worker's report of a fetched job whose hash did not parse: failed for
    good without running (a retry would read the same hash); and the error
    its ``failed`` listeners get."""
    assert job.token is not None
    reason = f"corrupt job: {job.corrupt}"
    job.attempts_made += 1
    return (
        outcome(job.id, job.token, "f", keep, reason, "", -1, job.parent_key or "", "",
                job.opts.group or ""),
        UnrecoverableError(reason),
    )


def unreadable_job(queue: Queue, job_id: str, reason: str) -> Job:
    """A job whose key is not a hash (its id and ``corrupt`` are all there is)."""
    from .job import Job

    job = Job(queue, job_id, "", None, JobOptions(), 0)
    job.corrupt = reason
    return job


def not_a_hash(error: BaseException) -> str:
    """``corrupt`` of a job whose key Redis refused to read as a hash."""
    return f"the job's key is not a hash ({error})"


def _stacktrace(raw: bytes | str) -> list[str]:
    found = orjson.loads(raw)
    if found is None:
        return []
    if not isinstance(found, list):
        raise TypeError(f"expected a JSON list, got {type(found).__name__}")
    return [str(line) for line in found]


def _why(convert: Callable[..., Any], exc: BaseException, raw: bytes | str) -> str:
    shown = raw.decode(errors="backslashreplace") if isinstance(raw, bytes) else raw
    shown = repr(shown if len(shown) <= 40 else shown[:40] + "...")
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8: {shown}"
    if convert is int:
        return f"not an integer: {shown}"
    if convert is orjson.loads:
        return f"not JSON: {shown}"
    return f"{exc} in {shown}"
