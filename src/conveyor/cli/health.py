"""``conveyor health``: a pass/fail check of queues for Kubernetes probes and cron
monitors (:mod:`conveyor.inspection.checks`). Exit codes: 0 every queue is
healthy, 1 one is not, 2 the check could not be made (bad usage, no such queue,
Redis unreachable or too slow)."""

from __future__ import annotations

import asyncio
import sys
from typing import TYPE_CHECKING

import click

from ..inspection.checks import HealthLimits, QueueCheck, check_queue
from .support import DURATION, Target, echo_json, redis_options, safe, with_inspector

if TYPE_CHECKING:
    from ..inspection import Inspector

__all__ = ["health"]



class CannotCheck(click.ClickException):
    """The check could not be made: exit 2, not 1 ("unhealthy")."""

    exit_code = 2


@click.command()
@redis_options
@click.argument("queues", nargs=-1, metavar="[QUEUE]...")
@click.option("--require-workers", default=1, show_default=True, metavar="N",
              type=click.IntRange(min=0), help="Fewest live workers per queue (0: any).")
@click.option("--max-waiting", type=click.IntRange(min=0), metavar="N",
              help="Most jobs waiting to run.")
@click.option("--max-oldest-wait", type=DURATION, metavar="DURATION",
              help="Longest a ready job may have waited: 30s, 5m, 1h or ms.")
@click.option("--max-failed-rate", type=click.FloatRange(0, 1), metavar="RATE",
              help="Highest share of jobs failed in the last 5 minutes (0.2: 20%).")
@click.option("--timeout", default=10.0, show_default=True, metavar="SECONDS",
              type=click.FloatRange(min=0.1), help="Give up (exit 2) after this long.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of lines.")
def health(target: Target, queues: tuple[str, ...], require_workers: int,
           max_waiting: int | None, max_oldest_wait: int | None,
           max_failed_rate: float | None, timeout: float, as_json: bool) -> None:
    """Exit 0 if every queue is healthy, 1 if one is not, 2 if the check failed.

    A queue is unhealthy when its health is critical (as `conveyor stats`
    shows it: work waits and no worker runs, or jobs have waited 5 minutes
    with none completed), when it has fewer live workers than
    --require-workers, or when it breaks a --max-* limit given. Without
    QUEUE, every queue under the prefix. One line per queue: OK or FAIL, and why.
    """
    limits = HealthLimits(max_waiting=max_waiting, max_oldest_wait_ms=max_oldest_wait,
                          max_failed_rate=max_failed_rate, min_workers=require_workers)

    async def body(inspector: Inspector) -> list[QueueCheck]:
        inspector.thresholds = limits.thresholds(inspector.thresholds)
        names = list(queues) or await inspector.queue_names()
        if not names:
            raise click.ClickException(f"no queues found under prefix {target.prefix!r}")
        try:
            async with asyncio.timeout(timeout):
                return list(await asyncio.gather(
                    *(check_queue(inspector, name, limits) for name in names)))
        except TimeoutError:
            raise click.ClickException(
                f"Redis at {target.shown_url} did not answer within {timeout:g}s") from None

    try:
        checks = with_inspector(target, body)
    except click.ClickException as exc:
        raise CannotCheck(exc.format_message()) from None
    healthy = all(c.healthy for c in checks)
    if as_json:
        echo_json({"healthy": healthy, "queues": [c.to_dict() for c in checks]})
    else:
        width = max(len(safe(c.queue)) for c in checks)
        for c in checks:
            click.echo(_line(c, width))
    sys.exit(0 if healthy else 1)


def _line(check: QueueCheck, width: int) -> str:
    facts = [f"{check.workers} worker{'s' * (check.workers != 1)}",
             f"{check.waiting} waiting"]
    if check.paused:
        facts.append("paused")
    verdict = "OK  " if check.healthy else "FAIL"
    why = "; ".join(check.reasons)
    line = f"{verdict}  {safe(check.queue):<{width}}  {', '.join(facts)}"
    return line + (f": {safe(why)}" if why else "")
