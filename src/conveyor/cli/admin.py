"""The ``conveyor`` commands that take work away: ``jobs cancel``, ``queue drain``
and ``queue obliterate``. Each calls the library's own call
(:meth:`conveyor.Queue.cancel`, ``drain``, ``obliterate``) on a queue that
must exist, so a mistyped name is an error, not a silent no-op."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click

from ..errors import JobStateError
from ..options import validate_job_id
from .support import Target, echo_json, fail, redis_options, safe, with_inspector

if TYPE_CHECKING:
    from ..inspection import Inspector

__all__ = ["cancel_job", "drain_queue", "obliterate_queue", "say"]

_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a line.")
_NOT_STARTED = ("waiting", "prioritized", "delayed", "waiting-children")


def say(as_json: bool, data: dict[str, Any], line: str) -> None:
    """Print ``data`` as JSON, or ``line`` made safe for a terminal."""
    if as_json:
        echo_json(data)
    else:
        click.echo(safe(line))


@click.command("cancel")
@redis_options
@click.argument("queue")
@click.argument("job_id", metavar="ID")
@click.option("--reason", default="cancelled", show_default=True,
              help="Why: the failed reason of a running job cancelled.")
@_JSON
def cancel_job(target: Target, queue: str, job_id: str, reason: str, as_json: bool) -> None:
    """Cancel a job: a waiting or delayed one is removed; a running one is
    stopped by its worker within moments and fails for good with --reason.

    Exits 1 if the job had already finished.
    """

    async def body(inspector: Inspector) -> tuple[str | None, bool]:
        q = await inspector.existing(queue)
        state = await q.get_job_state(validate_job_id(job_id))
        return state, await q.cancel(job_id, reason)

    state, cancelled = with_inspector(target, body)
    if not cancelled:
        fail(f"job {job_id} of {queue!r} has already finished ({state}); nothing to cancel")
    line = (f"cancelled job {job_id} of {queue!r}: it was {state}, it is removed"
            if state in _NOT_STARTED else
            f"cancelling job {job_id} of {queue!r}: its worker stops it within moments")
    say(as_json, {"queue": queue, "job_id": job_id, "cancelled": True, "was": state}, line)


@click.command("drain")
@redis_options
@click.argument("name", metavar="QUEUE")
@click.option("--delayed", is_flag=True, help="Remove the delayed jobs too.")
@_JSON
def drain_queue(target: Target, name: str, delayed: bool, as_json: bool) -> None:
    """Remove every job of QUEUE waiting to run (and, with --delayed, the
    delayed ones). Running, completed and failed jobs stay; so do job
    schedulers' next jobs."""

    async def body(inspector: Inspector) -> int:
        return await (await inspector.existing(name)).drain(delayed)

    n = with_inspector(target, body)
    what = "waiting or delayed" if delayed else "waiting"
    say(as_json, {"queue": name, "removed": n},
        f"removed {n} {what} job{'s' * (n != 1)} from {name!r}")


@click.command("obliterate")
@redis_options
@click.argument("name", metavar="QUEUE")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--force", is_flag=True,
              help="Delete it even while jobs run (their workers record nothing).")
@_JSON
def obliterate_queue(target: Target, name: str, yes: bool, force: bool, as_json: bool) -> None:
    """Delete QUEUE: every job, scheduler, setting, metric and event.

    Asks first unless --yes (and refuses to ask when stdin is not a terminal).
    Refused while jobs are running unless --force.
    """
    if not yes and not sys.stdin.isatty():
        raise click.UsageError("stdin is not a terminal: give --yes to obliterate without asking")

    async def facts(inspector: Inspector) -> tuple[int, int, int]:
        summary = await inspector.summary(name)
        return summary.total, summary.counts["active"], summary.workers

    total, active, workers = with_inspector(target, facts)
    if active and not force:
        fail(f"queue {name!r} has {active} running job{'s' * (active != 1)}; --force deletes "
             f"them too (their workers record nothing)")
    if not yes:
        question = (f"Delete queue {name!r} for good: {total} job{'s' * (total != 1)} and "
                    f"everything else it holds ({workers} live worker{'s' * (workers != 1)} "
                    f"{'serves' if workers == 1 else 'serve'} it)?")
        if not click.confirm(safe(question), default=False):
            click.echo(safe(f"queue {name!r} kept"), err=True)
            sys.exit(1)

    async def body(inspector: Inspector) -> None:
        try:
            await (await inspector.existing(name)).obliterate(force)
        except JobStateError:  # a job started since we looked
            fail(f"queue {name!r} has running jobs; --force deletes them too")

    with_inspector(target, body)
    say(as_json, {"queue": name, "obliterated": True, "jobs": total},
        f"obliterated queue {name!r} ({total} job{'s' * (total != 1)})")
