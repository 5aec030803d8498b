"""A private Sentinel setup for the tests: a master, a replica and three
sentinels (``redis-server --sentinel``), each on a free port of 127.0.0.1 in its
own temporary directory, with failure detection and failover timeouts short
enough that a failover takes seconds."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis as redis_sync

from conveyor.embedded import RedisServer, free_port

__all__ = [
    "SENTINEL_LOGIN", "SERVER_LOGIN", "SERVICE", "CustomServer", "SentinelSetup", "Tls",
]

SERVICE = "conveyor-main"
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 3000
#: A user and password on the servers, and one on the sentinels (each also keeps
#: its open default user).
SERVER_LOGIN = ("app", "app-pw")
SENTINEL_LOGIN = ("watcher", "watcher-pw")


@dataclass(frozen=True)
class Tls:
    """Certificate files: every server and sentinel then also listens with TLS
    (clients need only trust ``ca``), and they talk to each other over it."""

    ca: Path
    cert: Path
    key: Path


class CustomServer(RedisServer):
    """A redis-server started with ``args`` (after the binary) instead of the
    embedded server's own: the replica, or a sentinel with its config file.
    ``client_port`` is where clients connect: ``port`` (also the setup's own
    checks'), or with TLS a port of its own."""

    def __init__(self, args: Callable[[CustomServer], list[str]], tls: bool = False) -> None:
        super().__init__()
        self._args = args
        self.client_port = free_port() if tls else self.port

    def start(self) -> None:
        if self.running:
            return
        self.proc = subprocess.Popen(
            [self.binary, *self._args(self)], cwd=self.dir, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._wait_ready()


def _tls_settings(server: CustomServer, tls: Tls | None) -> list[tuple[str, str]]:
    if tls is None:
        return []
    return [("tls-port", str(server.client_port)), ("tls-cert-file", str(tls.cert)),
            ("tls-key-file", str(tls.key)), ("tls-ca-cert-file", str(tls.ca)),
            ("tls-replication", "yes"), ("tls-auth-clients", "no")]


def _server_args(
    master: CustomServer | None, tls: Tls | None
) -> Callable[[CustomServer], list[str]]:
    def args(server: CustomServer) -> list[str]:
        common = ["--port", str(server.port), "--bind", "127.0.0.1", "--dir", str(server.dir),
                  "--save", "", "--appendonly", "yes", "--appendfsync", "everysec",
                  "--logfile", str(server.logfile),
                  # a login besides the open default user (which the checks here use)
                  "--user", SERVER_LOGIN[0], "on", f">{SERVER_LOGIN[1]}", "~*", "&*", "+@all",
                  *(word for key, value in _tls_settings(server, tls)
                    for word in (f"--{key}", value))]
        if master is None:
            return common
        return [*common, "--replicaof", "127.0.0.1", str(master.client_port)]
    return args


def _sentinel_args(master: CustomServer, tls: Tls | None) -> Callable[[CustomServer], list[str]]:
    def args(server: CustomServer) -> list[str]:
        config = server.dir / "sentinel.conf"
        config.write_text("\n".join([
            f"port {server.port}",
            "bind 127.0.0.1",
            f"dir {server.dir}",
            f"logfile {server.logfile}",
            *(f"{key} {value}" for key, value in _tls_settings(server, tls)),
            f"sentinel monitor {SERVICE} 127.0.0.1 {master.client_port} 2",
            f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}",
            f"sentinel failover-timeout {SERVICE} {FAILOVER_TIMEOUT_MS}",
            f"sentinel parallel-syncs {SERVICE} 1",
            f"user {SENTINEL_LOGIN[0]} on >{SENTINEL_LOGIN[1]} +@all",
        ]) + "\n")
        return [str(config), "--sentinel"]
    return args


class SentinelSetup:
    """``with SentinelSetup() as s:`` a master (``s.master``), a replica
    (``s.replica``) and three sentinels (``s.sentinels``), ready: the replica
    in sync and known to every sentinel."""

    def __init__(self, tls: Tls | None = None) -> None:
        self.tls = tls
        on = tls is not None
        self.master = CustomServer(_server_args(None, tls), on)
        self.replica = CustomServer(_server_args(self.master, tls), on)
        self.sentinels = [CustomServer(_sentinel_args(self.master, tls), on) for _ in range(3)]

    def url(self, db: int = 0, login: str = "", query: str = "") -> str:
        """The ``redis+sentinel://`` URL of the service (``login``: ``user:password@``);
        with TLS, ``rediss+sentinel://`` trusting the setup's CA."""
        hosts = ",".join(f"127.0.0.1:{s.client_port}" for s in self.sentinels)
        if self.tls is not None:
            query = "&".join(filter(None, [f"ssl_ca_certs={self.tls.ca}", query]))
        scheme = "redis+sentinel" if self.tls is None else "rediss+sentinel"
        return f"{scheme}://{login}{hosts}/{SERVICE}/{db}" + (f"?{query}" if query else "")

    def client(self, server: RedisServer) -> redis_sync.Redis:
        return redis_sync.Redis(host="127.0.0.1", port=server.port, decode_responses=True,
                                socket_timeout=5)

    def master_port(self, sentinel: RedisServer) -> int:
        """The master's port as ``sentinel`` gives it to clients now (``SENTINEL
        MASTER``, as redis-py asks; not GET-MASTER-ADDR-BY-NAME, which names the
        promoted replica while the failover is still under way)."""
        with self.client(sentinel) as client:
            return int(_fields(client.execute_command("SENTINEL", "MASTER", SERVICE))["port"])

    def announced(self) -> bool:
        """Every sentinel gives clients the replica as the master."""
        return all(self.master_port(s) == self.replica.client_port for s in self.sentinels)

    def wait(self, condition: Callable[[], Any], what: str, timeout: float = 20) -> None:
        """Poll ``condition`` until it is true; fail naming ``what`` after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if condition():
                    return
            except redis_sync.RedisError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            time.sleep(0.05)

    def _ready(self) -> bool:
        with self.client(self.replica) as replica:
            if replica.info("replication").get("master_link_status") != "up":
                return False
        for sentinel in self.sentinels:
            with self.client(sentinel) as client:
                replicas = client.execute_command("SENTINEL", "REPLICAS", SERVICE)
                master = client.execute_command("SENTINEL", "MASTER", SERVICE)
            if not any(_fields(r).get("port") == str(self.replica.client_port)
                       and "s_down" not in _fields(r).get("flags", "") for r in replicas):
                return False
            if int(_fields(master).get("num-other-sentinels", 0)) < 2:
                return False
        return True

    def failover(self) -> int:
        """Force ``SENTINEL FAILOVER``; the new master's port (the replica's)."""
        with self.client(self.sentinels[0]) as client:
            client.execute_command("SENTINEL", "FAILOVER", SERVICE)
        return self.replica.port

    def switched(self) -> bool:
        """Every sentinel names the replica as master, and the old master replicates it."""
        if not self.announced():
            return False
        with self.client(self.master) as old:
            info = old.info("replication")
        return bool(info.get("role") == "slave" and info.get("master_link_status") == "up")

    def __enter__(self) -> SentinelSetup:
        try:
            self.master.start()
            self.replica.start()
            for sentinel in self.sentinels:
                sentinel.start()
            self.wait(self._ready, "the replica in sync and known to three sentinels")
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        for process in [*self.sentinels, self.replica, self.master]:
            process.close()

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _fields(reply: Any) -> dict[str, str]:
    """A sentinel's flat [name, value, ...] reply (or a dict, with RESP3) as a dict."""
    if isinstance(reply, dict):
        return {str(k): str(v) for k, v in reply.items()}
    return {str(reply[i]): str(reply[i + 1]) for i in range(0, len(reply), 2)}
