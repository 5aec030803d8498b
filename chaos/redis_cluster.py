"""A private Redis Cluster on free ports, made with ``redis-cli --cluster create``:
the test suite's (three masters, no replicas, started once per session when a
test asks for it: the ``cluster`` fixture in tests/conftest.py), the chaos
run's (``python -m chaos --redis cluster``: three masters each with a replica,
AOF on, whose masters the run kills and fails over) and benchmarks/cluster.py's
(one or three masters, under valgrind)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import redis as redis_sync
import redis.exceptions

from conveyor.embedded import find_redis_server, free_port

__all__ = ["RedisCluster"]

STARTUP_TIMEOUT = 30.0


def _cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is a port too."""
    while True:
        port = free_port()
        if port + 10000 <= 65535:
            return port


def _cluster_ok(client: Any) -> bool:
    return b"cluster_state:ok" in client.execute_command("CLUSTER", "INFO")


class RedisCluster:
    """Three ``redis-server --cluster-enabled yes`` children joined into one cluster."""

    def __init__(self, masters: int = 3, *, replica: bool = False,
                 password: str | None = None, replicas: int = 0, appendonly: bool = False,
                 node_timeout_ms: int = 5000, wrap: Sequence[str] = ()) -> None:
        """``replica``: one more node, a replica of the first master (for
        failovers); ``password``: every node requires it; ``replicas``: that
        many replicas of each master (``ports`` then lists every node, the
        masters first); ``appendonly``: AOF with ``appendfsync always``;
        ``wrap``: a command each redis-server runs under (e.g. ``valgrind
        --tool=callgrind``). Fewer than three masters (which ``redis-cli
        --cluster create`` refuses) are joined by hand: the slots split evenly,
        every node meets the first."""
        self.password = password
        self.replicas = replicas
        self.appendonly = appendonly
        self.node_timeout_ms = node_timeout_ms
        self.wrap = list(wrap)
        self.binary = find_redis_server()
        self.cli = shutil.which("redis-cli") or str(Path(self.binary).with_name("redis-cli"))
        self.masters = masters
        self.ports = [_cluster_port() for _ in range(masters * (1 + replicas))]
        self._tmp = tempfile.TemporaryDirectory(prefix="conveyor-cluster-")
        self.dir = Path(self._tmp.name)
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self.replica_port = _cluster_port() if replica else None

    @property
    def url(self) -> str:
        """``redis+cluster://`` URL naming every node."""
        auth = "" if self.password is None else f":{self.password}@"
        return f"redis+cluster://{auth}" + ",".join(f"127.0.0.1:{port}" for port in self.ports)

    def client(self, port: int, **options: Any) -> redis_sync.Redis:
        """A plain blocking client of one node."""
        return redis_sync.Redis(host="127.0.0.1", port=port, password=self.password, **options)

    def _cli(self, *args: str) -> None:
        auth = [] if self.password is None else ["-a", self.password, "--no-auth-warning"]
        subprocess.run([self.cli, *auth, *args], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, timeout=STARTUP_TIMEOUT)

    def start_node(self, port: int) -> None:
        """Start (or start again, from its directory: its AOF and nodes.conf) one node."""
        node_dir = self.dir / str(port)
        node_dir.mkdir(exist_ok=True)
        persistence = (["--appendonly", "yes", "--appendfsync", "always"] if self.appendonly
                       else ["--appendonly", "no"])
        self.procs[port] = subprocess.Popen(
            [*self.wrap, self.binary, "--port", str(port), "--bind", "127.0.0.1",
             "--dir", str(node_dir), "--save", "", *persistence,
             "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
             "--cluster-node-timeout", str(self.node_timeout_ms),
             "--logfile", str(node_dir / "redis.log"),
             *([] if self.password is None else
               ["--requirepass", self.password, "--masterauth", self.password])],
            cwd=node_dir, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._wait(port, lambda client: client.ping())

    def kill(self, port: int) -> None:
        """``kill -9`` one node."""
        proc = self.procs.pop(port)
        proc.kill()
        proc.wait()

    def nodes(self, port: int) -> list[tuple[int, str, str]]:
        """``CLUSTER NODES`` as ``port`` sees it: (port, "master" or "slave",
        flags) of each node."""
        with self.client(port, socket_timeout=2) as client:
            text = client.execute_command("CLUSTER", "NODES")
        if isinstance(text, bytes):
            text = text.decode()
        rows = []
        for line in str(text).splitlines():
            _, address, flags, *_ = line.split()
            role = "master" if "master" in flags.split(",") else "slave"
            rows.append((int(address.split("@")[0].rsplit(":", 1)[1]), role, flags))
        return rows

    def start(self) -> None:
        extra = [] if self.replica_port is None else [self.replica_port]
        for port in [*self.ports, *extra]:
            self.start_node(port)
        if len(self.ports) >= 3:
            self._cli("--cluster", "create", *(f"127.0.0.1:{port}" for port in self.ports),
                      "--cluster-replicas", str(self.replicas), "--cluster-yes")
        else:
            self._join_by_hand()
        if self.replica_port is not None:
            first = f"127.0.0.1:{self.ports[0]}"
            with self.client(self.ports[0]) as client:
                master_id = client.execute_command("CLUSTER", "MYID").decode()
            self._cli("--cluster", "add-node", f"127.0.0.1:{self.replica_port}", first,
                      "--cluster-slave", "--cluster-master-id", master_id)
            self._wait(self.replica_port, lambda client: client.info("replication").get(
                "master_link_status") == "up")
        for port in [*self.ports, *extra]:
            self._wait(port, _cluster_ok)

    def _join_by_hand(self) -> None:
        n = len(self.ports)
        for i, port in enumerate(self.ports):
            with self.client(port) as client:
                client.execute_command("CLUSTER", "ADDSLOTSRANGE", 16384 * i // n,
                                       16384 * (i + 1) // n - 1)
                if i:
                    client.execute_command("CLUSTER", "MEET", "127.0.0.1", self.ports[0])

    def _wait(self, port: int, ready: Callable[[redis_sync.Redis], Any]) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                with self.client(port, socket_timeout=1, socket_connect_timeout=1) as client:
                    if ready(client):
                        return
            except redis.exceptions.RedisError as exc:
                last = exc
            time.sleep(0.05)
        raise RuntimeError(f"cluster node {port} not ready in {STARTUP_TIMEOUT}s ({last!r})")

    def flush(self) -> str:
        """FLUSHALL on every master; the cluster URL."""
        for port in self.ports[:self.masters]:
            with self.client(port) as client:
                client.flushall()
        return self.url

    def owner(self, key: str) -> int:
        """The port of the master that holds ``key``'s slot."""
        with self.client(self.ports[0]) as client:
            slot = int(client.execute_command("CLUSTER KEYSLOT", key))
            for start, end, master, *_ in client.execute_command("CLUSTER SLOTS"):
                if int(start) <= slot <= int(end):
                    return int(master[1])
        raise AssertionError(f"no master owns slot {slot}")

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs = {}
        self._tmp.cleanup()

    def __enter__(self) -> RedisCluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
