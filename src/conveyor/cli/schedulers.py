"""``conveyor schedulers list|run-now|remove``: a queue's job schedulers.
``list`` is the same command as ``conveyor queue schedulers`` (kept as an alias)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from .admin import say
from .jobs import queue
from .support import Target, fail, redis_options, with_inspector

if TYPE_CHECKING:
    from ..inspection import Inspector

__all__ = ["schedulers"]

_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a line.")


@click.group()
def schedulers() -> None:
    """List, run now and remove job schedulers."""


schedulers.add_command(queue.commands["schedulers"], "list")


@schedulers.command("run-now")
@redis_options
@click.argument("name", metavar="QUEUE")
@click.argument("scheduler_id", metavar="ID")
@_JSON
def run_now(target: Target, name: str, scheduler_id: str, as_json: bool) -> None:
    """Run scheduler ID's job once more, now: one extra job from its template.
    Its schedule is unchanged (the next job still runs at its time)."""

    async def body(inspector: Inspector) -> str | None:
        return await (await inspector.existing(name)).run_job_scheduler_now(scheduler_id)

    job_id = with_inspector(target, body)
    if job_id is None:
        fail(f"no job scheduler {scheduler_id!r} in {name!r}")
    say(as_json, {"queue": name, "scheduler_id": scheduler_id, "job_id": job_id},
        f"added job {job_id} of scheduler {scheduler_id!r} to {name!r}; it runs now")


@schedulers.command("remove")
@redis_options
@click.argument("name", metavar="QUEUE")
@click.argument("scheduler_id", metavar="ID")
@_JSON
def remove(target: Target, name: str, scheduler_id: str, as_json: bool) -> None:
    """Delete scheduler ID and its next job if that has not started."""

    async def body(inspector: Inspector) -> bool:
        return await (await inspector.existing(name)).remove_job_scheduler(scheduler_id)

    if not with_inspector(target, body):
        fail(f"no job scheduler {scheduler_id!r} in {name!r}")
    say(as_json, {"queue": name, "scheduler_id": scheduler_id, "removed": True},
        f"removed job scheduler {scheduler_id!r} from {name!r}")
