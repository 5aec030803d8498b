"""``conveyor jobs search``: the jobs of a state matching filters, a bounded
scan at a time (:meth:`conveyor.inspection.Inspector.search`)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import click
from click.decorators import FC
from rich import box
from rich.console import Group, RenderableType
from rich.table import Table

from ..inspection.search import MAX_SCAN, JobQuery, parse_time
from ..keys import STATES, JobState
from .support import (
    DURATION,
    Target,
    console,
    echo_json,
    format_ms,
    redis_options,
    safe_cell,
    with_inspector,
)

if TYPE_CHECKING:
    from ..inspection import Inspector, SearchPage

__all__ = ["search_jobs"]

_STATES = click.Choice([*STATES, "waiting_children"], case_sensitive=False)
#: A time given as how long ago: a number with a unit (a bare number is epoch ms).
_AGO = re.compile(r"^\s*\d+(?:\.\d+)?\s*(?:ms|s|m|h|d)\s*$")


def _time_option(name: str, what: str) -> Callable[[FC], FC]:
    return click.option(name, metavar="TIME", help=f"{what}: ISO 8601 (UTC unless it names "
                        "an offset), epoch ms, or how long ago (30m, 2h, 1d).")


@click.command("search")
@redis_options
@click.argument("queue")
@click.option("--state", "-s", type=_STATES, default="failed", show_default=True,
              help="Which jobs.")
@click.option("--name", help="A substring of the job's name (any case).")
@click.option("--data", "data", metavar="PATH=VALUE",
              help="The data's value at PATH equals VALUE: user.id=42, items[0].sku=A-1, "
                   "$.ok == true; VALUE is JSON, or else a bare string.")
@click.option("--data-contains", metavar="TEXT", help="A substring of the data's JSON text.")
@click.option("--reason", help="A substring of the failed reason (any case).")
@_time_option("--created-after", "Added at or after")
@_time_option("--created-before", "Added before")
@_time_option("--finished-after", "Finished at or after")
@_time_option("--finished-before", "Finished before")
@click.option("--count", "-n", type=click.IntRange(1, 1000), default=20, show_default=True,
              help="Most jobs per page.")
@click.option("--scan", type=click.IntRange(1, MAX_SCAN), default=1000, show_default=True,
              help="Most jobs examined per request.")
@click.option("--cursor", help="Go on from a previous page (its footer names the cursor).")
@click.option("--all", "follow", is_flag=True,
              help="Follow the cursor to the end of the state (requests of --scan jobs each).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def search_jobs(target: Target, queue: str, state: str, name: str | None, data: str | None,
                data_contains: str | None, reason: str | None, created_after: str | None,
                created_before: str | None, finished_after: str | None,
                finished_before: str | None, count: int, scan: int, cursor: str | None,
                follow: bool, as_json: bool) -> None:
    """QUEUE's jobs in a state matching every filter given, newest first.

    Each request examines at most --scan jobs and answers the matches among
    them; the footer says how far the scan got and how to go on.
    """
    async def body(inspector: Inspector) -> SearchPage:
        times = {field: _when(field, value) for field, value in (
            ("created_after", created_after), ("created_before", created_before),
            ("finished_after", finished_after), ("finished_before", finished_before),
        ) if value is not None}
        query = JobQuery(name=name, data=data, data_contains=data_contains, reason=reason,
                         **times)
        page = await inspector.search(queue, state, query, cursor=cursor, count=count,
                                      scan=scan)
        jobs = list(page.jobs)
        while follow and page.cursor is not None:
            page = await inspector.search(queue, state, query, cursor=page.cursor,
                                          count=count, scan=scan)
            jobs += page.jobs
        return page if not follow else _merged(page, jobs)

    found = with_inspector(target, body)
    if as_json:
        echo_json(found.to_dict())
    else:
        console().print(_search_view(found))


def _when(field: str, value: str) -> int:
    if _AGO.match(value):
        return int(time.time() * 1000) - DURATION.convert(value, None, None)
    return parse_time("--" + field.replace("_", "-"), value)


def _merged(last: SearchPage, jobs: list[Any]) -> SearchPage:
    return replace(last, jobs=jobs, examined=last.scanned)


def _search_view(page: SearchPage) -> RenderableType:
    table = Table(box=box.SIMPLE_HEAD)
    table.add_column("id", overflow="fold", style="bold")
    table.add_column("name", overflow="fold")
    table.add_column("attempts", justify="right")
    table.add_column("added (UTC)", justify="right")
    delayed = page.state == JobState.DELAYED
    table.add_column("due (UTC)" if delayed else "finished (UTC)", justify="right")
    table.add_column("reason", overflow="ellipsis", max_width=40, no_wrap=True)
    for job in page.jobs:
        table.add_row(
            safe_cell(job.id), safe_cell(job.name), f"{job.attempts_made}/{job.attempts}",
            format_ms(job.timestamp), format_ms(job.due if delayed else job.finished_on),
            safe_cell((job.failed_reason or "") + ("…" if job.failed_reason_truncated else ""),
                      style="red"),
        )
    found = f"{len(page.jobs)} match{'es' if len(page.jobs) != 1 else ''}"
    footer = (f"{found}; scanned {page.scanned:,} of {page.total:,} {page.state} jobs "
              f"in {page.queue!r}")
    if page.cursor is not None:
        footer += f"; continue: --cursor {page.cursor}"
    else:
        footer += " (all)"
    parts: list[RenderableType] = [table] if page.jobs else []
    return Group(*parts, safe_cell(footer, style="dim"))
