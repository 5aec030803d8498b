"""A private PostgreSQL: ``$DATABASE_URL`` when set, else a server of its own.

The server is Debian's (``initdb``/``pg_ctl`` of the ``postgresql`` package)
when present, else the one the ``pgserver`` package from PyPI ships. It listens
on 127.0.0.1:<free port> with a data directory in a temp dir and trust
authentication, and is stopped (and its files removed) by :meth:`close`.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

from conveyor.embedded import free_port

__all__ = ["PostgresServer", "database_url"]


def _debian_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
                   key=lambda p: int(Path(p).parent.parent.name))
    return Path(found[-1]).parent if found else None


class PostgresServer:
    """A PostgreSQL server child on a free port; ``url`` names its ``app`` database."""

    def __init__(self) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="conveyor-pg-")
        self.dir = Path(self._tmp.name)
        self.port = free_port()
        self.url = ""
        self._bin = _debian_bin()
        self._pgserver: object | None = None
        self._user: str | None = None

    def _run(self, *args: str) -> None:
        """Run a PostgreSQL tool; as root, as the ``postgres`` user (initdb refuses root)."""
        cmd = [str(self._bin / args[0]) if self._bin else args[0], *args[1:]]
        if self._user:
            cmd = ["runuser", "-u", self._user, "--", *cmd]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def start(self) -> str:
        """Start the server, create database ``app``, and return its URL."""
        if self._bin is None:
            return self._start_pgserver()
        data = self.dir / "data"
        if os.geteuid() == 0:
            self._user = "postgres"
            pw = pwd.getpwnam("postgres")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        self._run("initdb", "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8",
                  "--no-sync")
        opts = (f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
        self._run("pg_ctl", "-D", str(data), "-o", opts, "-l", str(self.dir / "log"), "-w",
                  "start")
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "app")
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/app"
        return self.url

    def _start_pgserver(self) -> str:
        try:
            import pgserver
        except ImportError as exc:
            raise RuntimeError(
                "no PostgreSQL: install Debian's postgresql package, or `pip install "
                "pgserver`, or set DATABASE_URL") from exc
        server = pgserver.get_server(str(self.dir / "data"), cleanup_mode="stop")
        self._pgserver = server
        server.psql("CREATE DATABASE app;")
        self.url = str(server.get_uri("app"))
        return self.url

    def close(self) -> None:
        """Stop the server (fast shutdown) and remove its files."""
        if self._pgserver is not None:
            self._pgserver.cleanup()  # type: ignore[attr-defined]
            self._pgserver = None
        elif self.url:
            with contextlib.suppress(subprocess.CalledProcessError):  # already stopped
                self._run("pg_ctl", "-D", str(self.dir / "data"), "-m", "immediate", "-w",
                          "stop")
            self.url = ""
        shutil.rmtree(self.dir, ignore_errors=True)
        self._tmp.cleanup()

    def __enter__(self) -> PostgresServer:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def database_url() -> tuple[str, PostgresServer | None]:
    """``$DATABASE_URL`` if set (no server started), else a private server's URL
    and the server, which the caller closes."""
    url = os.environ.get("DATABASE_URL")
    if url:
        return url, None
    server = PostgresServer()
    try:
        return server.start(), server
    except BaseException:
        server.close()
        raise
