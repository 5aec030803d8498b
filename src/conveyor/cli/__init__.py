"""The ``conveyor`` command line: workers, inspection, administration, dashboard, demo.

Every command that talks to Redis takes ``--redis URL`` (default:
``$CONVEYOR_REDIS_URL``, else ``redis://localhost:6379/0``) and ``--prefix``. A
user mistake is one clear line on stderr and a non-zero exit, never a traceback.

::

    conveyor stats [QUEUE...] [--watch]          counts, rates and timings per queue
    conveyor jobs list|show|retry|clean|cancel   read and act on jobs
    conveyor jobs search QUEUE --name --data ... find jobs by name, data, reason, time
    conveyor queue pause|resume|drain|obliterate QUEUE
    conveyor schedulers list|run-now|remove      a queue's job schedulers
    conveyor events QUEUE [--json]               follow a queue's events live
    conveyor health [QUEUE...]                   exit 0 healthy, 1 unhealthy, 2 cannot tell
    conveyor enqueue QUEUE NAME --data '{...}'
    conveyor worker module:app                   run the tasks of a Conveyor app
    conveyor dashboard [--host --token-file]     web dashboard + REST API + /metrics
    conveyor demo                                everything above on a private Redis
    conveyor bench ...                           the side-by-side benchmark (a checkout)
"""

from __future__ import annotations

import click

from .admin import cancel_job, drain_queue, obliterate_queue
from .events import events
from .health import health
from .jobs import enqueue, jobs, queue, stats
from .schedulers import schedulers
from .search import search_jobs
from .serve import bench, dashboard, demo
from .support import CliGroup
from .worker import worker

__all__ = ["main"]


@click.group("conveyor", cls=CliGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="conveyor")
def main() -> None:
    """conveyor: background jobs for asyncio Python on Redis."""


for command in (stats, jobs, queue, schedulers, events, health, enqueue, worker, dashboard,
                demo, bench):
    main.add_command(command)
jobs.add_command(cancel_job)
jobs.add_command(search_jobs)
queue.add_command(drain_queue)
queue.add_command(obliterate_queue)
