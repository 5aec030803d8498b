"""``conveyor worker --reload``, for development: the worker runs as a child
process that is stopped (SIGINT: running jobs finish, for up to
:data:`STOP_TIMEOUT` seconds) and started afresh whenever a ``.py`` file
under the watched directories changes. The watching is the ``watchfiles``
package's (an optional extra: ``pip install 'conveyor[reload]'``).
"""

from __future__ import annotations

import logging
import os
import shlex
from collections.abc import Sequence
from typing import Any

import click

__all__ = ["STOP_TIMEOUT", "run_reloading"]

log = logging.getLogger("conveyor.cli")

#: Seconds a running worker gets to finish its jobs before a reload kills it.
STOP_TIMEOUT = 5


def run_reloading(command: Sequence[str], directories: Sequence[str]) -> int:
    """Run ``command``, again after each change of a ``.py`` file under
    ``directories`` (default: the current one), until SIGTERM or SIGINT."""
    try:
        from watchfiles import PythonFilter, run_process
    except ImportError:
        raise click.ClickException(
            "--reload needs the watchfiles package: pip install 'conveyor[reload]'"
        ) from None
    paths = [os.path.abspath(d) for d in directories] or [os.getcwd()]
    log.info("watching %s for changes of .py files", ", ".join(paths))

    def changed(changes: set[tuple[Any, str]]) -> None:
        files = sorted({os.path.relpath(path) for _, path in changes})
        log.info("%s changed: restarting the worker", ", ".join(files))

    run_process(
        *paths, target=shlex.join(command), target_type="command", callback=changed,
        watch_filter=PythonFilter(), sigint_timeout=STOP_TIMEOUT,
    )
    return 0
