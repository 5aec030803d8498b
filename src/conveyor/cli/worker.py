"""``conveyor worker``: run the tasks of a :class:`conveyor.app.Conveyor` app.

One process runs one :class:`~conveyor.Worker` per queue on one event loop.
``--processes N`` makes this process a supervisor of N such processes (the
same command with ``--processes 1``): it restarts one that dies, forwards
SIGTERM/SIGINT to all, and exits when they have stopped. Each child watches
its supervisor and stops if it disappears (``kill -9`` of the supervisor
leaves no orphan workers behind).

``--burst`` stops a process once its queues have nothing ready; ``--max-jobs``
and ``--max-memory`` stop it gracefully after that many jobs or above that
RSS. Under a supervisor such a child is replaced by a fresh one (recycling),
except with ``--burst``, where the supervisor exits once all its children
have. ``--reload`` runs the command in a child that is restarted when a
``.py`` file changes (:mod:`conveyor.cli.reload`).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
import resource
import signal
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

import click
from redis.exceptions import RedisError

from ..app import Conveyor
from ..errors import ConveyorError
from .log_format import LOG_FORMATS, setup_logging
from .reload import run_reloading
from .support import check_url, needs_web_extra

__all__ = ["load_app", "worker"]

log = logging.getLogger("conveyor.cli")

#: Set in the children of a supervisor: the pid they watch.
SUPERVISOR_ENV = "CONVEYOR_SUPERVISOR_PID"
_SIGNALS = (signal.SIGTERM, signal.SIGINT)
#: A child that lived shorter than this (seconds) counts as crashing at start:
#: its restarts back off, up to _MAX_RESTART_DELAY.
_QUICK_EXIT = 5.0
_MAX_RESTART_DELAY = 10.0
#: Jobs at once per queue when neither --concurrency nor the app says.
DEFAULT_CONCURRENCY = 10
#: Seconds between two looks at the process's RSS (--max-memory).
MEMORY_CHECK_INTERVAL = 1.0


def load_app(path: str) -> Conveyor:
    """The :class:`Conveyor` named by ``"module:attribute"`` (the current
    directory is importable, as for ``python -m``); a one-line
    :class:`click.ClickException` otherwise."""
    module_name, _, attribute = path.partition(":")
    if not module_name or not attribute:
        raise click.ClickException(
            f"APP must be MODULE:ATTRIBUTE (e.g. myapp.tasks:app), got {path!r}"
        )
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        found: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise click.ClickException(f"cannot import {module_name!r}: {exc}") from None
    except Exception as exc:
        raise click.ClickException(
            f"importing {module_name!r} failed: {type(exc).__name__}: {exc}"
        ) from None
    for part in attribute.split("."):
        try:
            found = getattr(found, part)
        except AttributeError:
            raise click.ClickException(
                f"{module_name!r} has no attribute {attribute!r}"
            ) from None
    if not isinstance(found, Conveyor):
        raise click.ClickException(
            f"{path} is a {type(found).__name__}, not a conveyor.app.Conveyor"
        )
    return found


@click.command()
@click.argument("app_path", metavar="MODULE:ATTRIBUTE")
@click.option(
    "--queues", "-q", default=None, metavar="NAMES",
    help="Comma-separated queues to serve (default: every queue the app has tasks on).",
)
@click.option(
    "--concurrency", "-c", type=click.IntRange(min=1), default=None,
    help="Jobs run at once per queue, per process (default: each queue's concurrency "
    "from the app's configure_worker, else 10).",
)
@click.option(
    "--processes", "-p", type=click.IntRange(min=1), default=1, show_default=True,
    help="Worker processes; more than 1 starts a supervisor that restarts any that dies.",
)
@click.option(
    "--metrics-port", type=click.IntRange(1, 65535), default=None,
    help="Serve Prometheus metrics of the queues on this port (/metrics).",
)
@click.option(
    "--metrics-host", default=None, metavar="HOST",
    help="Address the metrics port listens on (default: 127.0.0.1, this machine only; "
    "0.0.0.0: every interface). The port has no authentication.",
)
@click.option(
    "--redis", "redis_url", default=None, metavar="URL",
    help="Redis to use instead of the app's own connection "
    "(an app made with Conveyor() uses $CONVEYOR_REDIS_URL).",
)
@click.option(
    "--log-level", type=click.Choice(["debug", "info", "warning", "error"]),
    default="info", show_default=True,
)
@click.option(
    "--log-format", type=click.Choice(LOG_FORMATS), default="text", show_default=True,
    help="json: one JSON object a line (time, level, logger, message, pid; job_id and "
    "queue when a job's task logged it).",
)
@click.option(
    "--burst", is_flag=True,
    help="Exit 0 once the queues have nothing ready (delayed jobs not yet due do not "
    "count), after running jobs finish: for cron and CI.",
)
@click.option(
    "--max-jobs", type=click.IntRange(min=1), default=None, metavar="N",
    help="Take N jobs in all, let them finish, exit 0; with --processes, each process "
    "does so and is replaced by a fresh one.",
)
@click.option(
    "--max-memory", type=click.IntRange(min=1), default=None, metavar="MIB",
    help="Once the process's RSS exceeds MIB MiB, take no more jobs, let running ones "
    "finish, exit 0; with --processes, the process is replaced by a fresh one.",
)
@click.option(
    "--reload", is_flag=True,
    help="Development: restart the worker when a .py file under the current directory "
    "(or --reload-dir) changes. Needs the watchfiles package (conveyor[reload]).",
)
@click.option(
    "--reload-dir", "reload_dirs", multiple=True, metavar="DIR",
    type=click.Path(exists=True, file_okay=False),
    help="Directory --reload watches instead of the current one (repeatable).",
)
def worker(
    app_path: str, queues: str | None, concurrency: int | None, processes: int,
    metrics_port: int | None, metrics_host: str | None, redis_url: str | None, log_level: str,
    log_format: str, burst: bool, max_jobs: int | None, max_memory: int | None,
    reload: bool, reload_dirs: tuple[str, ...],
) -> None:
    """Run the tasks of the Conveyor app MODULE:ATTRIBUTE (e.g. myapp.tasks:app).

    One worker per queue in one event loop; the app's cron and interval
    schedules are upserted as they start. SIGTERM or SIGINT lets running jobs
    finish, then exits 0; a second signal hands running jobs back to their
    queues at once.
    """
    setup_logging(log_level, log_format)
    if metrics_port is None and metrics_host is not None:
        raise click.ClickException("--metrics-host needs --metrics-port")
    if reload_dirs and not reload:
        raise click.ClickException("--reload-dir needs --reload")
    metrics = None if metrics_port is None else (metrics_host or "127.0.0.1", metrics_port)
    app = load_app(app_path)
    if redis_url is not None:
        app.connection = redis_url
    url = os.environ.get("CONVEYOR_REDIS_URL") if app.connection is None else app.connection
    if isinstance(url, str):
        check_url(url)  # a bad one is one line, its password masked; not a traceback
    if max_memory is not None and (rss := rss_mib()) > max_memory:
        raise click.ClickException(
            f"--max-memory {max_memory}: the worker uses {rss:.0f} MiB before its first job")
    names = None if queues is None else [q.strip() for q in queues.split(",") if q.strip()]
    try:
        names = app.resolve_queues(names)
    except ConveyorError as exc:
        raise click.ClickException(str(exc)) from None
    # What a child process is told: the same, without what this process does itself.
    command = [
        sys.executable, "-m", "conveyor", "worker", app_path, "--queues", ",".join(names),
        "--log-level", log_level, "--log-format", log_format,
    ]
    for flag, value in (("--concurrency", concurrency), ("--redis", redis_url),
                        ("--max-jobs", max_jobs), ("--max-memory", max_memory)):
        if value is not None:
            command += [flag, str(value)]
    if burst:
        command.append("--burst")
    if reload:
        if metrics is not None:
            command += ["--metrics-port", str(metrics[1]), "--metrics-host", metrics[0]]
        code = run_reloading([*command, "--processes", str(processes)], reload_dirs)
    elif processes == 1:
        limits = {"burst": burst, "max_jobs": max_jobs}
        code = _run(lambda: _serve(app, names, concurrency, metrics, limits, max_memory))
    else:
        code = _run(lambda: _supervise(
            app, [*command, "--processes", "1"], processes, names, metrics, recycle=not burst,
        ))
    sys.exit(code)


def _run(main: Callable[[], Coroutine[Any, Any, int]]) -> int:
    try:
        return asyncio.run(main())
    except RedisError as exc:
        raise click.ClickException(f"Redis: {type(exc).__name__}: {exc}") from None
    except OSError as exc:
        raise click.ClickException(f"{type(exc).__name__}: {exc}") from None
    except ConveyorError as exc:
        raise click.ClickException(str(exc)) from None


def _start_metrics(
    app: Conveyor, address: tuple[str, int] | None, queues: Sequence[str]
) -> Any:
    """The Prometheus server of ``--metrics-host``/``--metrics-port`` (``None``
    without a port)."""
    if address is None:
        return None
    host, port = address
    with needs_web_extra("conveyor worker --metrics-port"):
        from ..web.prometheus import start_metrics_server
    try:
        server = start_metrics_server(port, app.connection, list(queues), prefix=app.prefix,
                                      host=host)
    except OSError as exc:
        raise click.ClickException(f"--metrics-host {host} --metrics-port {port}: {exc}") from None
    log.info("Prometheus metrics on %s (/metrics)", _url(host, port))
    return server


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _stop_metrics(server: Any) -> None:
    if server is not None:
        server.close()


# -- one process --------------------------------------------------------------


async def _serve(
    app: Conveyor, queues: list[str], concurrency: int | None,
    metrics_address: tuple[str, int] | None, limits: dict[str, Any], max_memory: int | None,
) -> int:
    loop = asyncio.get_running_loop()
    metrics = _start_metrics(app, metrics_address, queues)
    runner = asyncio.create_task(app.run(
        queues, concurrency=concurrency, default_concurrency=DEFAULT_CONCURRENCY,
        handle_signals=False, **limits,
    ))
    received: list[signal.Signals] = []
    stops: list[asyncio.Task[None]] = []

    def on_signal(sig: signal.Signals) -> None:
        received.append(sig)
        if not app.running:  # not started yet: nothing runs, nothing to finish
            runner.cancel()
        elif len(received) == 1:
            log.info("%s: finishing running jobs, then stopping", sig.name)
            stops.append(asyncio.create_task(app.stop()))
        else:
            log.warning("%s again: handing running jobs back to their queues", sig.name)
            stops.append(asyncio.create_task(app.stop(timeout=0)))

    for sig in _SIGNALS:
        loop.add_signal_handler(sig, on_signal, sig)
    watcher = asyncio.create_task(_watch_supervisor(on_signal))
    memory = asyncio.create_task(_watch_memory(app, max_memory))
    log.info("worker for queues %s started", ", ".join(
        f"{q} (concurrency "
        f"{concurrency or app.worker_options(q).get('concurrency', DEFAULT_CONCURRENCY)})"
        for q in queues
    ))
    try:
        await runner
    except asyncio.CancelledError:
        if not received:
            raise
    finally:
        watcher.cancel()
        memory.cancel()
        _stop_metrics(metrics)
        await app.close()
    log.info("worker stopped")
    return 0


async def _watch_memory(app: Conveyor, max_mib: int | None) -> None:
    """With ``--max-memory``: stop the app's workers gracefully once this
    process's RSS exceeds ``max_mib`` MiB (looked at each second)."""
    if max_mib is None:
        return
    while (rss := rss_mib()) <= max_mib:  # noqa: ASYNC110 - no event tells of memory use
        await asyncio.sleep(MEMORY_CHECK_INTERVAL)
    log.info("RSS %.0f MiB is above --max-memory %d MiB: finishing running jobs, then "
             "stopping", rss, max_mib)
    await app.stop()


def rss_mib() -> float:
    """This process's resident set size now, in MiB (Linux: /proc; elsewhere
    the peak, which getrusage gives)."""
    try:
        resident_pages = int(Path("/proc/self/statm").read_text().split()[1])
    except OSError:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 1024 / (1024 if sys.platform == "darwin" else 1)  # bytes there, KiB here
    return resident_pages * os.sysconf("SC_PAGE_SIZE") / 2**20


async def _watch_supervisor(stop: Any) -> None:
    """In a supervisor's child: stop when the supervisor is gone."""
    supervisor = os.environ.get(SUPERVISOR_ENV)
    if not supervisor:
        return
    # No event tells a process its parent died (but Linux's prctl): look each second.
    while os.getppid() == int(supervisor):  # noqa: ASYNC110
        await asyncio.sleep(1.0)
    log.warning("supervisor %s is gone: stopping", supervisor)
    stop(signal.SIGTERM)


# -- the supervisor ---------------------------------------------------------------


async def _supervise(
    app: Conveyor, command: list[str], processes: int, queues: list[str],
    metrics_address: tuple[str, int] | None, recycle: bool = True,
) -> int:
    """Run ``processes`` children of ``command``; restart one that fails. One
    that exits 0 by itself stopped at a limit: ``recycle`` replaces it at once,
    else (``--burst``) its slot is done."""
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    received: list[signal.Signals] = []
    children: dict[int, asyncio.subprocess.Process] = {}
    codes: list[int] = []

    def on_signal(sig: signal.Signals) -> None:
        received.append(sig)
        stopping.set()
        log.info("%s: stopping %d worker process(es)", sig.name, len(children))
        for child in children.values():
            _send(child, sig)

    for sig in _SIGNALS:
        loop.add_signal_handler(sig, on_signal, sig)
    metrics = _start_metrics(app, metrics_address, queues)
    env = {**os.environ, SUPERVISOR_ENV: str(os.getpid())}

    async def keep_running(slot: int) -> None:
        quick_exits = 0
        while not stopping.is_set():
            started = time.monotonic()
            # A session of its own: a terminal's Ctrl-C reaches the supervisor
            # only, which forwards it once (twice would hand jobs back).
            child = await asyncio.create_subprocess_exec(*command, env=env, start_new_session=True)
            children[slot] = child
            if received:  # the signal came while it was starting
                _send(child, received[-1])
            log.info("worker process %d started (pid %d)", slot, child.pid)
            code = await child.wait()
            if stopping.is_set() or (code == 0 and not recycle):
                codes.append(code)
                return
            if code == 0:
                log.info("worker process %d (pid %d) reached its limit; starting a fresh one",
                         slot, child.pid)
                quick_exits = 0
                continue
            log.warning("worker process %d (pid %d) exited with %s; restarting",
                        slot, child.pid, code)
            quick_exits = quick_exits + 1 if time.monotonic() - started < _QUICK_EXIT else 0
            if quick_exits:
                delay = min(0.5 * 2 ** (quick_exits - 1), _MAX_RESTART_DELAY)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), delay)

    log.info("supervisor of %d worker processes for queues %s", processes, ", ".join(queues))
    try:
        await asyncio.gather(*(keep_running(slot) for slot in range(processes)))
    finally:
        _stop_metrics(metrics)
    # A child the signal reached before it set up its handlers had nothing running.
    clean = (0, -signal.SIGTERM, -signal.SIGINT)
    failed = [code for code in codes if code not in clean]
    if failed:
        log.warning("worker processes exited with %s", failed)
    log.info("supervisor stopped")
    return 1 if failed else 0


def _send(child: asyncio.subprocess.Process, sig: signal.Signals) -> None:
    if child.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(sig)
