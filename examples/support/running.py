"""Running an example: its services, its worker processes and its HTTP front.

``Services`` starts what an example needs (a private Redis as ``conveyor demo``
does, PostgreSQL from ``$DATABASE_URL`` or a private server, and on request an
SMTP sink and an HTTP receiver) and stops all of it. ``WorkerProcess`` runs
``conveyor worker module:app`` as a child process that a test can SIGKILL
while jobs are in flight and start again.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import uvicorn

from conveyor import Queue
from conveyor.embedded import RedisServer
from conveyor.web.server import WebServer

from .postgres import PostgresServer, database_url
from .receivers import HttpReceiver, SmtpSink

__all__ = ["Services", "WorkerProcess", "serve_app", "wait_serving", "wait_until"]

ROOT = Path(__file__).resolve().parents[2]


class Services:
    """Redis, PostgreSQL and, if asked, an SMTP sink and an HTTP receiver."""

    def __init__(self, *, smtp: bool = False, http: bool = False) -> None:
        self.redis = RedisServer()
        self.postgres: PostgresServer | None = None
        self.database_url = ""
        self.smtp = SmtpSink() if smtp else None
        self.http = HttpReceiver() if http else None

    @property
    def redis_url(self) -> str:
        return self.redis.url

    def start(self) -> Services:
        try:
            self.redis.start()
            self.database_url, self.postgres = database_url()
            if self.smtp:
                self.smtp.start()
            if self.http:
                self.http.start()
        except BaseException:
            self.close()
            raise
        return self

    def env(self) -> dict[str, str]:
        """The environment an example's processes read their services from."""
        env = {"CONVEYOR_REDIS_URL": self.redis_url, "DATABASE_URL": self.database_url}
        if self.smtp:
            env["SMTP_URL"] = self.smtp.url
        if self.http:
            env["RECEIVER_URL"] = self.http.url
        return env

    def describe(self) -> str:
        lines = [f"redis:      {self.redis_url}", f"postgresql: {self.database_url}"]
        if self.smtp:
            lines.append(f"smtp sink:  {self.smtp.url}")
        if self.http:
            lines.append(f"receiver:   {self.http.url}")
        return "\n".join(lines)

    def close(self) -> None:
        for close in (self.http and self.http.close, self.smtp and self.smtp.close,
                      self.postgres and self.postgres.close, self.redis.close):
            if close:
                with contextlib.suppress(Exception):
                    close()

    def __enter__(self) -> Services:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class WorkerProcess:
    """``conveyor worker <target>`` in a child process, with the given environment."""

    def __init__(self, target: str, env: dict[str, str], *, queues: Sequence[str] = (),
                 concurrency: int | None = None, log: Path | None = None) -> None:
        self.target = target
        self.env = {**os.environ, **env,
                    "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT),
                                                                os.environ.get("PYTHONPATH")]))}
        self.args = [sys.executable, "-m", "conveyor", "worker", target, "--log-level", "warning"]
        if queues:
            self.args += ["--queues", ",".join(queues)]
        if concurrency:
            self.args += ["--concurrency", str(concurrency)]
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        out = open(self.log, "ab") if self.log else subprocess.DEVNULL  # noqa: SIM115
        try:
            self.proc = subprocess.Popen(self.args, env=self.env, cwd=ROOT, stdout=out,
                                         stderr=out, stdin=subprocess.DEVNULL)
        finally:
            if not isinstance(out, int):  # the child has its own descriptor
                out.close()
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def kill(self) -> None:
        """SIGKILL: the worker dies with its jobs in flight (they stall and run again)."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM: running jobs finish, then the process exits; its exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


async def wait_until(predicate: Callable[[], Awaitable[bool] | bool], timeout: float = 30,
                     interval: float = 0.05, what: str = "condition") -> None:
    """Poll ``predicate`` until it is true; TimeoutError naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached in {timeout} s")
        await asyncio.sleep(interval)


async def serve_app(app: Any, port: int, host: str = "127.0.0.1") -> tuple[uvicorn.Server,
                                                                            asyncio.Task[None]]:
    """Serve an ASGI app on this loop, leaving signals to the caller; returns the
    server (``should_exit = True`` stops it) and its task, once it accepts connections."""
    server = WebServer(uvicorn.Config(app, host=host, port=port, log_level="warning",
                                      lifespan="on"), handle_signals=False)
    task = asyncio.create_task(server.serve())
    await wait_until(lambda: server.started or task.done(), what="web server start")
    if task.done():
        task.result()
        raise RuntimeError("the web server stopped at startup")
    return server, task


async def wait_serving(redis_url: str, queue_name: str, workers: Sequence[WorkerProcess],
                       timeout: float = 60) -> None:
    """Until ``workers`` (processes) serve ``queue_name``: each registered
    there, so each has its signal handlers and a SIGTERM now lets it finish
    (one sent before, while it still imports, kills it with -15)."""
    async with Queue(queue_name, connection=redis_url) as queue:
        async def serving() -> bool:
            for worker in workers:
                if worker.proc is not None and worker.proc.poll() is not None:
                    raise RuntimeError(f"a worker exited with code {worker.proc.returncode}")
            return len(await queue.get_workers()) >= len(workers)

        await wait_until(serving, timeout=timeout, what=f"{len(workers)} worker(s) serving")
