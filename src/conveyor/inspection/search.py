"""Job search: the jobs of one state whose name, data, failed reason or times
match a :class:`JobQuery`, newest first, a bounded page at a time.

How: a read-only Lua script (``search_jobs.lua``) walks a window of the
state's ids from a cursor (a sorted set by rank, the wait list by index from
its tail) and reads of each job only the fields the query needs (sizes first,
with HSTRLEN), so a job's data never leaves Redis and nothing is kept in
memory but the page. Filtering in Redis rather than in Python, because the
fields that filters read (``data`` above all) may be megabytes: pipelined
HMGETs would ship every one to the client to throw most away. Each request
examines at most ``scan`` ids and each script call reads at most
:data:`SEARCH_BYTES` of user-sized fields, so one call blocks Redis for a bounded time; the answer
says how far it got (``scanned`` of ``total``) and gives a ``cursor`` to go on.

Cost to the hot path: none. No index is kept: adds, fetches and finishes are
untouched, and a search costs only while it runs.

The cursor names the last job examined (and its score), so a scan resumes
after it even when newer jobs arrive or older ones leave; a job that moves
between states meanwhile may be missed or seen twice, as in any scan.
"""

from __future__ import annotations

import base64
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from .._render import View, epoch_ms
from .._stream import text
from ..errors import ValidationError
from ..keys import STATES, JobState, delayed_due
from ..options import check_int
from ..partitions import PartitionedQueue
from ..queue import Queue
from .reads import PREVIEW_BYTES, summary_from_reply
from .views import JobSummary

__all__ = ["MAX_SCAN", "SEARCH_BYTES", "JobQuery", "SearchPage", "parse_data_filter",
           "parse_time", "search_jobs"]

#: Most ids one request examines (``scan``'s upper bound).
MAX_SCAN = 10_000
#: Most bytes of names, failed reasons and data one request reads inside Redis
#: (at least one job is always examined, whatever its size).
SEARCH_BYTES = 8 * 1024 * 1024

#: Where a scan is in one partition: (position, score, id, next id), see search_jobs.lua.
_At = tuple[int | None, str, str, str]
_START: _At = (None, "", "", "")

#: Lua's string.lower, which the script applies to names and reasons: ASCII only.
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")

_INDEX = re.compile(r"\[(\d+)\]")
_PATH_PART = re.compile(r"[^\s=\[\]]+")


@dataclass(frozen=True, slots=True)
class JobQuery:
    """What a search matches; every filter given must hold (AND), none given
    matches every job.

    - ``name``: a substring of the job's name (ASCII letters in any case);
    - ``data``: ``PATH=VALUE`` (see :func:`parse_data_filter`), e.g. ``user.id=42``;
    - ``data_contains``: a substring of the data's JSON text (exact case);
    - ``reason``: a substring of the failed reason (ASCII letters in any case);
    - ``created_after`` / ``created_before``, ``finished_after`` /
      ``finished_before``: epoch ms or a ``datetime``; after is inclusive,
      before exclusive. A job not finished has no finish time and never
      matches a finished filter.
    """

    name: str | None = None
    data: str | None = None
    data_contains: str | None = None
    reason: str | None = None
    created_after: int | datetime | None = None
    created_before: int | datetime | None = None
    finished_after: int | datetime | None = None
    finished_before: int | datetime | None = None

    def filters(self) -> dict[str, Any]:
        """The script's filters (ValidationError naming the field refused)."""
        out: dict[str, Any] = {}
        for name, key, lower in (("name", "name", True), ("reason", "reason", True),
                                 ("data_contains", "text", False)):
            value = getattr(self, name)
            if value is None:
                continue
            if not isinstance(value, str) or not value:
                raise ValidationError(name, f"must be a non-empty string, got {value!r}", value)
            out[key] = value.translate(_ASCII_LOWER) if lower else value
        if self.data is not None:
            out["path"], out["value"] = parse_data_filter(self.data)
        for name, key in (("created_after", "created_from"), ("created_before", "created_to"),
                          ("finished_after", "finished_from"), ("finished_before", "finished_to")):
            value = getattr(self, name)
            if value is not None:
                out[key] = _ms(name, value)
        return out


@dataclass(frozen=True, slots=True)
class SearchPage(View):
    """A page of a search: the matches found by this request, newest first,
    and how far the scan got. ``cursor`` goes on from here (None: the state
    was scanned to its end)."""

    queue: str
    state: str
    jobs: list[JobSummary]
    #: Ids examined by this search so far, over all its pages.
    scanned: int
    #: Jobs in the state now (what a full scan examines, give or take arrivals).
    total: int
    #: Ids examined by this request.
    examined: int
    cursor: str | None = field(default=None)


def parse_data_filter(expression: str, field_name: str = "data") -> tuple[list[str], Any]:
    """``PATH=VALUE`` as (path keys, value). PATH is keys joined by dots,
    optionally opening with ``$.``; a number indexes an array (``items.0`` or
    ``items[0]``). VALUE is JSON (``42``, ``"42"``, ``true``, ``null``) or else
    a bare string (``status=paid``); only scalars compare. ``==`` works as ``=``.
    Keys holding a dot, ``=``, brackets or spaces cannot be named."""
    if not isinstance(expression, str) or "=" not in expression:
        raise ValidationError(field_name, f"expected PATH=VALUE (e.g. user.id=42), "
                              f"got {expression!r}", expression)
    left, _, right = expression.partition("=")
    right = right.removeprefix("=").strip()
    path_text = left.strip().removeprefix("$").removeprefix(".")
    path_text = _INDEX.sub(r".\1", path_text)
    parts = path_text.split(".")
    if not path_text or not all(_PATH_PART.fullmatch(part) for part in parts):
        raise ValidationError(field_name, f"bad path {left.strip()!r}: keys joined by dots, "
                              "e.g. user.id or items[0].sku", expression)
    if not right:
        raise ValidationError(field_name, f"no value after '=' in {expression!r}", expression)
    try:
        value = orjson.loads(right)
    except orjson.JSONDecodeError:
        value = right
    if isinstance(value, dict | list):
        raise ValidationError(field_name, "the value must be a string, number, true, false "
                              "or null, not an object or array", expression)
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 2**53:
        raise ValidationError(field_name, "integers beyond 2**53 do not compare exactly; "
                              "match the digits with data_contains", expression)
    return parts, value


def parse_time(field_name: str, value: str) -> int:
    """A time given as text (REST, CLI): epoch ms, or ISO 8601 (UTC unless it
    names an offset), as epoch ms."""
    stripped = value.strip()
    if stripped.isdigit():
        return int(stripped)
    try:
        moment = datetime.fromisoformat(stripped.replace("Z", "+00:00"))
    except ValueError:
        raise ValidationError(field_name, f"expected epoch ms or an ISO 8601 time "
                              f"(2026-12-03T16:00:00Z), got {value!r}", value) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(epoch_ms(moment) or 0)


async def search_jobs(
    queue: Queue, state: str, query: JobQuery | None = None, *,
    cursor: str | None = None, count: int = 20, scan: int = 1000,
) -> SearchPage:
    """Up to ``count`` jobs of ``queue`` in ``state`` that match ``query``,
    newest first, examining at most ``scan`` ids from ``cursor`` (None: from
    the newest). Of a partitioned queue, partition after partition."""
    if not isinstance(state, str) or state.replace("_", "-") not in STATES:
        raise ValidationError("state", f"unknown job state {state!r}; expected one of "
                              f"{', '.join(STATES)}", state)
    state = state.replace("_", "-")
    check_int("count", count, 1, 1000)
    check_int("scan", scan, 1, MAX_SCAN)
    filters = orjson.dumps((query or JobQuery()).filters())
    parts = queue.partitions if isinstance(queue, PartitionedQueue) else [queue]
    part, at, scanned = _read_cursor(cursor, state, len(parts))
    rows: list[JobSummary] = []
    examined = 0
    total: int | None = None
    while part < len(parts) and examined < scan and len(rows) < count:
        q = parts[part]
        reply = await q.scripts.search_jobs(
            q.keys.state_key(state), state == JobState.WAITING, at, scan - examined,
            count - len(rows), SEARCH_BYTES, filters)
        matches, more, position, score, last_id, next_id, step, total = reply
        examined += int(step)
        rows += await _rows(q, state, matches)
        if int(more):  # a bound was reached: the request ends here
            at = (int(position), text(score), text(last_id), text(next_id))
            break
        part, at = part + 1, _START
    scanned += examined
    if isinstance(queue, PartitionedQueue) or total is None:
        total = (await queue.get_job_counts(state))[state]
    return SearchPage(
        queue=queue.name, state=state, jobs=rows, scanned=scanned, total=int(total),
        examined=examined,
        cursor=_write_cursor(state, part, at, scanned) if part < len(parts) else None,
    )


async def _rows(queue: Queue, state: str, matches: list[Any]) -> list[JobSummary]:
    """The summaries of the matches (``[id, score, ...]``); a job gone since is left out."""
    ids = [text(job_id) for job_id in matches[0::2]]
    if not ids:
        return []
    scores = [text(score) for score in matches[1::2]]
    replies = await queue.scripts.read_summaries(ids, PREVIEW_BYTES)
    rows = []
    for job_id, score, reply in zip(ids, scores, replies, strict=True):
        due = delayed_due(float(score)) if state == JobState.DELAYED and score else None
        row = summary_from_reply(queue, job_id, reply, state, due)
        if row is not None:
            rows.append(row)
    return rows


def _ms(field_name: str, value: object) -> int:
    if isinstance(value, datetime):
        return int(epoch_ms(value) or 0)
    return check_int(field_name, value, 0)


def _write_cursor(state: str, part: int, at: _At, scanned: int) -> str:
    raw = orjson.dumps([1, state, part, *at, scanned])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _read_cursor(cursor: str | None, state: str, parts: int) -> tuple[int, _At, int]:
    """(partition, where in it, scanned) of ``cursor``; the start for None."""
    if cursor is None or cursor == "":
        return 0, _START, 0
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        version, of_state, part, position, score, job_id, next_id, scanned = orjson.loads(raw)
        valid = (version == 1 and _is_int(part) and 0 <= part < parts
                 and (position is None or (_is_int(position) and abs(position) < 2**53))
                 and all(isinstance(v, str) for v in (of_state, score, job_id, next_id))
                 and (score == "" or not math.isnan(float(score)))
                 and _is_int(scanned) and scanned >= 0)
    except (ValueError, TypeError):
        valid = False
    if not valid:
        raise ValidationError("cursor", "not a cursor this search returned", cursor)
    if of_state != state:
        raise ValidationError("cursor", f"continues a search of {of_state!r} jobs, "
                              f"not {state!r}", cursor)
    return part, (position, score, job_id, next_id), scanned
