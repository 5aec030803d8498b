"""The ``conveyor`` commands that read and administer queues: ``stats``, ``jobs``,
``queue`` and ``enqueue``. Each parses its arguments, calls the
:class:`~conveyor.inspection.Inspector` and formats what it returns."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import click
import orjson
from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from ..keys import STATES, JobState
from .support import (
    DURATION,
    Target,
    console,
    echo_json,
    format_duration,
    format_ms,
    parse_json,
    redis_options,
    safe,
    safe_cell,
    safe_json,
    with_inspector,
)

if TYPE_CHECKING:
    from ..inspection import Inspector, JobDetail, JobPage, QueueHealth, QueueSummary
    from ..inspection.attempts import AttemptRecord

__all__ = ["enqueue", "jobs", "queue", "stats"]

_STATE_CHOICE = click.Choice([*STATES, "waiting_children"], case_sensitive=False)
_HEALTH_STYLE = {"ok": "green", "warning": "yellow", "critical": "bold red"}
_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")


# -- stats ---------------------------------------------------------------------


@click.command()
@redis_options
@click.argument("queues", nargs=-1, metavar="[QUEUE]...")
@click.option("--watch", "-w", is_flag=True, help="Refresh until Ctrl-C.")
@click.option("--interval", default=1.0, show_default=True, metavar="SECONDS",
              type=click.FloatRange(min=0.1), help="Seconds between refreshes with --watch.")
@_JSON
def stats(target: Target, queues: tuple[str, ...], watch: bool, interval: float,
          as_json: bool) -> None:
    """Counts, workers, throughput, timings and health per queue.

    Without QUEUE, every queue under the prefix (found in the registry, and once
    by a SCAN for queues made before it).
    """

    async def read(inspector: Inspector) -> tuple[list[QueueSummary], list[QueueHealth]]:
        if not queues:
            board = await inspector.dashboard()
            return board.summaries, board.health
        found = await asyncio.gather(*(inspector.summary(name) for name in queues))
        health = await asyncio.gather(*(inspector.health(name) for name in queues))
        return list(found), list(health)

    async def once(inspector: Inspector) -> None:
        summaries, health = await read(inspector)
        if as_json:
            by_name = {h.queue: h.to_dict() for h in health}
            echo_json([{**s.to_dict(), "health": by_name.get(s.name)} for s in summaries])
        else:
            out = console()
            out.print(_stats_view(summaries, health, out.width))

    async def watching(inspector: Inspector) -> None:
        out = console()
        if not out.is_terminal:  # piped: one table per refresh, like `vmstat 1`
            while True:
                out.print(_stats_view(*await read(inspector), out.width, stamp=True))
                await asyncio.sleep(interval)
        with Live(console=out, auto_refresh=False, screen=False) as live:
            while True:
                view = _stats_view(*await read(inspector), out.width, stamp=True)
                live.update(view, refresh=True)
                await asyncio.sleep(interval)

    if watch and as_json:
        raise click.UsageError("--watch and --json do not go together")
    with_inspector(target, watching if watch else once,
                   interrupted=0 if watch else 130)


#: Columns of ``conveyor stats`` in the order a narrow terminal drops them (last first).
_STATS_COLUMNS = ("queue", "waiting", "active", "failed", "health", "done/m", "workers",
                  "delayed", "done", "fail/m", "run95", "wait95")
_STATS_ORDER = ("queue", "waiting", "active", "delayed", "done", "failed", "workers", "done/m",
                "fail/m", "wait95", "run95", "health")


def _stats_view(summaries: list[QueueSummary], health: list[QueueHealth], width: int,
                stamp: bool = False) -> RenderableType:
    """The stats table with as many columns as fit in ``width``, then the health
    reasons of each queue that is not ok."""
    if not summaries:
        return Text("no queues found (name one: conveyor stats QUEUE)")
    by_name = {h.queue: h for h in health}
    rows = [_stats_row(s, by_name.get(s.name)) for s in summaries]
    for shown in range(len(_STATS_COLUMNS), 4, -1):
        columns = [c for c in _STATS_ORDER if c in _STATS_COLUMNS[:shown]]
        table = Table(title=time.strftime("%H:%M:%S UTC", time.gmtime()) if stamp else None,
                      title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
        for column in columns:
            table.add_column(column, no_wrap=True, style="bold" if column == "queue" else "",
                             justify="left" if column in ("queue", "health") else "right")
        for row in rows:
            table.add_row(*(row[column] for column in columns))
        if _table_width(table) <= width:
            break
    notes = [safe_cell(f"{h.queue}: {reason}", style=_HEALTH_STYLE[h.status])
             for h in health for reason in h.reasons]
    return Group(table, *notes)


def _table_width(table: Table) -> int:
    return Console(width=10_000).measure(table).maximum


def _stats_row(s: QueueSummary, health: QueueHealth | None) -> dict[str, str | Text]:
    c = s.counts
    status = health.status if health is not None else "?"
    return {
        "queue": safe_cell(s.name), "waiting": str(c["waiting"] + c["prioritized"]),
        "active": str(c["active"]), "delayed": str(c["delayed"]), "done": str(c["completed"]),
        "failed": _failed(c["failed"]), "workers": str(s.workers),
        "done/m": f"{s.completed_per_min:g}", "fail/m": f"{s.failed_per_min:g}",
        "wait95": format_duration(s.wait_p95_ms), "run95": format_duration(s.processing_p95_ms),
        "health": Text("paused" if s.is_paused else status,
                       style=_HEALTH_STYLE.get(status, "")),
    }


def _failed(n: int) -> Text:
    return Text(str(n), style="red" if n else "")


# -- jobs ----------------------------------------------------------------------


@click.group()
def jobs() -> None:
    """List, show, retry, promote, remove and clean jobs."""


@jobs.command("list")
@redis_options
@click.argument("queue")
@click.option("--state", "-s", type=_STATE_CHOICE, default="waiting", show_default=True,
              help="Which jobs.")
@click.option("--count", "-n", type=click.IntRange(1, 1000), default=20, show_default=True,
              help="Jobs per page.")
@click.option("--page", "-p", type=click.IntRange(min=1), help="Page number (1: newest).")
@click.option("--start", type=click.IntRange(min=0), help="Offset from the newest job.")
@_JSON
def list_jobs(target: Target, queue: str, state: str, count: int, page: int | None,
              start: int | None, as_json: bool) -> None:
    """One page of QUEUE's jobs in a state, newest first."""
    if page is not None and start is not None:
        raise click.UsageError("give --page or --start, not both")
    offset = start if start is not None else ((page or 1) - 1) * count

    async def body(inspector: Inspector) -> JobPage:
        return await inspector.jobs(queue, state, start=offset, count=count)

    result = with_inspector(target, body)
    if as_json:
        echo_json(result.to_dict())
    else:
        console().print(_jobs_view(result))


def _jobs_view(page: JobPage) -> RenderableType:
    now = time.time() * 1000
    table = Table(box=box.SIMPLE_HEAD)
    table.add_column("id", style="bold", overflow="fold")
    table.add_column("name", overflow="fold")
    table.add_column("attempts", justify="right")
    table.add_column("progress", justify="right")
    table.add_column("added", justify="right")
    delayed = page.state == JobState.DELAYED
    table.add_column("due" if delayed else "finished", justify="right")
    table.add_column("reason", overflow="ellipsis", max_width=40, no_wrap=True)
    for job in page.jobs:
        table.add_row(
            safe_cell(job.id), safe_cell(job.name), f"{job.attempts_made}/{job.attempts}",
            safe_cell(_progress(job.progress, job.progress_truncated)), _ago(job.timestamp, now),
            _ago(job.due if delayed else job.finished_on, now),
            safe_cell((job.failed_reason or "") + ("…" if job.failed_reason_truncated else ""),
                      style="red"),
        )
    first, last = page.start + 1, page.start + len(page.jobs)
    if not page.jobs:
        footer = f"no {page.state} jobs in {page.queue!r} from {first} ({page.total} in all)"
        return safe_cell(footer)
    footer = f"{first}-{last} of {page.total} {page.state} jobs in {page.queue!r}"
    if last < page.total:
        footer += f"; next: --start {last}"
    return Group(table, safe_cell(footer, style="dim"))


def _progress(progress: Any, truncated: bool = False) -> str:
    if truncated:  # the first bytes of its JSON text
        return str(progress)[:19] + "…"
    if isinstance(progress, int | float) and not isinstance(progress, bool):
        return f"{progress:g}%"
    if progress in (None, 0, {}):
        return "-"
    return orjson.dumps(progress).decode()[:20]


def _ago(ms: int | None, now: float) -> str:
    if ms is None:
        return "-"
    delta = now - ms
    return f"in {format_duration(-delta)}" if delta < 0 else f"{format_duration(delta)} ago"


@jobs.command("show")
@redis_options
@click.argument("queue")
@click.argument("job_id", metavar="ID")
@click.option("--logs", "log_lines", type=click.IntRange(min=0), default=20, show_default=True,
              help="Newest log lines to show.")
@_JSON
def show_job(target: Target, queue: str, job_id: str, log_lines: int, as_json: bool) -> None:
    """Everything about one job.

    Data, options, result or error, logs and a timeline.
    """

    async def body(inspector: Inspector) -> JobDetail:
        return await inspector.job(queue, job_id)

    detail = with_inspector(target, body)
    if as_json:
        echo_json(detail.to_dict())
    else:
        console().print(_job_view(detail, log_lines))


def _job_view(detail: JobDetail, log_lines: int) -> RenderableType:
    s = detail.summary
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column(overflow="fold")
    rows: list[tuple[str, str]] = [
        ("job", f"{s.id} ({s.name}) in {detail.queue}"),
        ("state", s.state or "gone"),
        ("attempts", f"{s.attempts_made} of {s.attempts}"),
        ("progress", _progress(s.progress)),
        ("priority", str(s.priority or "-")),
        ("data", _json_text(detail.data)),
        ("options", _json_text(detail.opts)),
    ]
    if s.state == JobState.COMPLETED:
        rows.append(("result", _json_text(detail.return_value)))
    if s.failed_reason:
        rows.append(("error", s.failed_reason))
    if s.corrupt:
        rows.append(("corrupt", s.corrupt))
    if detail.parent_key:
        rows.append(("parent", detail.parent_key))
    if detail.dead_letter_of:
        rows.append(("dead letter of", _json_text(detail.dead_letter_of)))
    for label, value in rows:
        facts.add_row(label, safe_cell(value, style="red" if label in ("error", "corrupt") else ""))
    parts: list[RenderableType] = [facts, Text("timeline", style="bold")]
    for event in detail.timeline:
        parts.append(safe_cell(f"  {format_ms(event['at_ms'])}.{event['at_ms'] % 1000:03d}  "
                               f"{event['event']}"))
    if len(detail.attempt_timeline) > 1:
        parts.append(Text("attempts", style="bold"))
        parts.extend(safe_cell(_attempt_line(a)) for a in detail.attempt_timeline)
    if detail.stacktrace:
        # The one multi-line field: its newlines stay, every other control is escaped.
        parts.append(Text("stacktrace (newest)", style="bold"))
        parts.append(Text(safe(detail.stacktrace[-1].rstrip(), newlines=True), style="red"))
    if log_lines and detail.logs:
        shown = detail.logs[-log_lines:]
        parts.append(Text(f"logs ({len(shown)} newest of {detail.logs_total})", style="bold"))
        parts.extend(safe_cell("  " + line) for line in shown)
    return Group(*parts)


def _attempt_line(attempt: AttemptRecord) -> str:
    took = ("" if attempt.finished_on is None or attempt.started_on is None
            else f" in {format_duration(attempt.finished_on - attempt.started_on)}")
    start = "-" if attempt.started_on is None else format_ms(attempt.started_on)
    return (f"  #{attempt.attempt}  {start}  {attempt.outcome}{took}"
            + (f": {attempt.error}" if attempt.error else ""))


def _json_text(value: Any) -> str:
    return safe_json(value, indent=False)


@contextmanager
def _progress_bar(what: str, quiet: bool) -> Iterator[Any]:
    """A rich progress bar as an Inspector ``progress(done, total)`` callback."""
    out = console()
    if quiet or not out.is_terminal:
        yield None
        return
    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), console=out, transient=True)
    task = bar.add_task(what, total=None)
    with bar:
        yield lambda done, total: bar.update(task, completed=done, total=total)


@jobs.command("retry")
@redis_options
@click.argument("queue")
@click.argument("job_id", metavar="[ID]", required=False)
@click.option("--all", "retry_all", is_flag=True, help="Retry every job in --state.")
@click.option("--state", type=click.Choice(["failed", "completed"]), default="failed",
              show_default=True, help="With --all: which jobs.")
@_JSON
def retry_jobs(target: Target, queue: str, job_id: str | None, retry_all: bool, state: str,
               as_json: bool) -> None:
    """Run failed (or completed) jobs again: one ID, or --all."""
    if (job_id is None) == (not retry_all):
        raise click.UsageError("give a job ID or --all (not both)")

    if job_id is not None:
        async def one(inspector: Inspector) -> None:
            await inspector.retry(queue, job_id)

        with_inspector(target, one)
        _report(as_json, {"queue": queue, "retried": 1, "job_id": job_id},
                f"job {job_id} of {queue!r} is waiting again")
        return

    with _progress_bar(f"retrying {state} jobs", as_json) as progress:
        async def every(inspector: Inspector) -> int:
            return await inspector.retry_all(queue, state, progress=progress)

        n = with_inspector(target, every)
    _report(as_json, {"queue": queue, "retried": n},
            f"retried {n} {state} job{'s' * (n != 1)} of {queue!r}")


@jobs.command("clean")
@redis_options
@click.argument("queue")
@click.option("--state", type=click.Choice(["completed", "failed", "waiting", "prioritized",
                                            "delayed", "active"]),
              default="completed", show_default=True, help="Which jobs to remove.")
@click.option("--grace", type=DURATION, default="0", show_default=True,
              help="Keep jobs younger than this: 30s, 5m, 1h, 2d or milliseconds.")
@click.option("--limit", type=click.IntRange(min=1), help="Remove at most this many.")
@_JSON
def clean_jobs(target: Target, queue: str, state: str, grace: int, limit: int | None,
               as_json: bool) -> None:
    """Remove jobs in a state older than --grace."""
    with _progress_bar(f"removing {state} jobs", as_json) as progress:
        async def body(inspector: Inspector) -> int:
            return await inspector.clean(queue, state=state, grace_ms=grace, limit=limit,
                                         progress=progress)

        n = with_inspector(target, body)
    older = f" older than {format_duration(grace)}" if grace else ""
    _report(as_json, {"queue": queue, "removed": n},
            f"removed {n} {state} job{'s' * (n != 1)}{older} from {queue!r}")


@jobs.command("promote")
@redis_options
@click.argument("queue")
@click.argument("job_id", metavar="ID")
def promote_job(target: Target, queue: str, job_id: str) -> None:
    """Run a delayed job now."""

    async def body(inspector: Inspector) -> None:
        await inspector.promote(queue, job_id)

    with_inspector(target, body)
    click.echo(safe(f"job {job_id} of {queue!r} is waiting"))


@jobs.command("remove")
@redis_options
@click.argument("queue")
@click.argument("job_id", metavar="ID")
def remove_job(target: Target, queue: str, job_id: str) -> None:
    """Delete a job (refused while a worker runs it)."""

    async def body(inspector: Inspector) -> None:
        await inspector.remove(queue, job_id)

    with_inspector(target, body)
    click.echo(safe(f"removed job {job_id} from {queue!r}"))


def _report(as_json: bool, data: dict[str, Any], line: str) -> None:
    if as_json:
        echo_json(data)
    else:
        click.echo(safe(line))


# -- queue ---------------------------------------------------------------------


@click.group()
def queue() -> None:
    """Pause or resume a queue; its workers and schedulers."""


def _pause_command(paused: bool) -> click.Command:
    verb = "pause" if paused else "resume"

    @redis_options
    @click.argument("name", metavar="QUEUE")
    def command(target: Target, name: str) -> None:
        async def body(inspector: Inspector) -> None:
            await (inspector.pause(name) if paused else inspector.resume(name))

        with_inspector(target, body)
        click.echo(safe(f"queue {name!r} is {'paused' if paused else 'running'}"))

    command.__doc__ = ("Stop workers from starting QUEUE's jobs (adds still land)."
                       if paused else "Let workers start QUEUE's jobs again.")
    return click.command(verb)(command)


queue.add_command(_pause_command(True))
queue.add_command(_pause_command(False))


@queue.command("workers")
@redis_options
@click.argument("name", metavar="QUEUE")
@_JSON
def queue_workers(target: Target, name: str, as_json: bool) -> None:
    """The live workers of QUEUE."""

    async def body(inspector: Inspector) -> list[dict[str, Any]]:
        return [w.to_dict() for w in await inspector.workers(name)]

    now = time.time() * 1000

    def row(w: dict[str, Any]) -> list[Any]:
        return [safe_cell(w["id"]), safe_cell(w["hostname"]), safe_cell(w["pid"]),
                f"{w['running']}/{w['concurrency']}", _ago(w["started_at_ms"], now),
                _ago(w["last_heartbeat_ms"], now)]

    _print_rows(with_inspector(target, body), as_json, row,
                ("id", "host", "pid", "running", "started", "heartbeat"),
                f"no live worker serves {name!r}")


@queue.command("schedulers")
@redis_options
@click.argument("name", metavar="QUEUE")
@_JSON
def queue_schedulers(target: Target, name: str, as_json: bool) -> None:
    """The job schedulers of QUEUE, soonest first."""

    async def body(inspector: Inspector) -> list[dict[str, Any]]:
        return [s.to_dict() for s in await inspector.schedulers(name)]

    def row(s: dict[str, Any]) -> list[Any]:
        when = (f"{s['cron']} ({s['tz']})" if s["cron"] else
                f"every {format_duration(s['every_ms'])}")
        made = f"{s['count']}" + (f"/{s['limit']}" if s["limit"] else "")
        return [safe_cell(s["id"]), safe_cell(s["job_name"]), safe_cell(when),
                format_ms(s["next_run_ms"]), made]

    _print_rows(with_inspector(target, body), as_json, row,
                ("id", "job", "every / cron", "next run (UTC)", "made"),
                f"no job schedulers in {name!r}")


def _print_rows(found: list[dict[str, Any]], as_json: bool,
                row: Callable[[dict[str, Any]], list[Any]], columns: Sequence[str],
                empty: str) -> None:
    """``found`` as JSON, or as a table of ``columns`` (one ``row`` each), or ``empty``."""
    if as_json:
        echo_json(found)
        return
    table = Table(box=box.SIMPLE_HEAD)
    for column in columns:
        table.add_column(column)
    for item in found:
        table.add_row(*row(item))
    console().print(table if found else safe_cell(empty))


# -- enqueue -------------------------------------------------------------------


@click.command()
@redis_options
@click.argument("queue")
@click.argument("name")
@click.option("--data", "-d", default="{}", show_default=True, metavar="JSON",
              help="Job data: JSON, @file.json, or - for stdin.")
@click.option("--delay", type=DURATION, help="Run no earlier than this: 30s, 5m, 1h, 2d or ms.")
@click.option("--priority", type=click.IntRange(min=0), help="1 (highest) .. 2097152.")
@click.option("--attempts", type=click.IntRange(min=1), help="Runs in all, retries included.")
@click.option("--backoff", type=DURATION, help="Pause before each retry (exponential).")
@click.option("--job-id", help="Idempotency key: an existing id adds nothing.")
@click.option("--options", "extra", metavar="JSON",
              help="Any other job options as JSON, e.g. '{\"remove_on_complete\": true}'.")
@_JSON
def enqueue(target: Target, queue: str, name: str, data: str, delay: int | None,
            priority: int | None, attempts: int | None, backoff: int | None,
            job_id: str | None, extra: str | None, as_json: bool) -> None:
    """Add a job NAME to QUEUE."""
    payload = parse_json(data, "--data")
    options: dict[str, Any] = {}
    if extra is not None:
        given = parse_json(extra, "--options")
        if not isinstance(given, dict):
            raise click.BadParameter("--options must be a JSON object")
        options.update(given)
    if backoff is not None:
        options["backoff"] = {"type": "exponential", "delay": backoff}
    for option, value in (("delay", delay), ("priority", priority), ("attempts", attempts),
                          ("job_id", job_id)):
        if value is not None:
            options[option] = value

    async def body(inspector: Inspector) -> tuple[dict[str, Any], bool]:
        existed = bool(job_id) and await inspector.queue(queue).get_job(job_id or "") is not None
        job = await inspector.enqueue(queue, name, payload, options)
        return (await inspector.job_summary(queue, job)).to_dict(), existed

    added, existed = with_inspector(target, body)
    if as_json:
        echo_json({**added, "created": not existed})
    elif existed:
        click.echo(safe(f"job {added['id']} ({added['name']}) already exists in {queue!r}: "
                        f"{added['state']}; nothing added"))
    else:
        click.echo(safe(f"added job {added['id']} ({name}) to {queue!r}: {added['state']}"))
