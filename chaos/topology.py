"""The Redis a chaos run starts for itself (``python -m chaos --redis ...``), and
how each kind fails over.

- ``single``: one redis-server, AOF with ``appendfsync always`` (the
  ``redis`` fault kills and restarts it from its AOF).
- ``cluster``: three masters each with a replica, AOF with ``appendfsync
  always``. A ``failover`` of the master that holds the queue's slot is,
  drawn at random, ``CLUSTER FAILOVER`` on its replica (a manual failover:
  the master pauses its clients until the replica has caught up) or
  ``kill -9`` of the master (its replica takes over after the
  cluster-node-timeout; the killed node is started again from its AOF and
  rejoins as the new master's replica, so the next failover has one).
- ``sentinel``: a master, a replica and three sentinels (see
  :mod:`chaos.sentinel_setup`); a ``failover`` is ``SENTINEL FAILOVER``,
  over once every sentinel names the new master and the old one replicates it.

A failover is blocking work (it polls the servers): the fault injector runs it
in a thread, and records it from its start to the moment it is over.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

import redis as redis_sync

from conveyor.embedded import RedisServer

from .redis_cluster import RedisCluster
from .sentinel_setup import SERVICE, SentinelSetup

__all__ = ["KINDS", "Topology", "start"]

KINDS = ("single", "cluster", "sentinel")
#: The cluster's node timeout: how long a killed master goes unnoticed.
CLUSTER_NODE_TIMEOUT_MS = 3000
#: Longest a failover may take before the run counts it as failed.
FAILOVER_TIMEOUT_S = 60.0


def _until(condition: Callable[[], Any], what: str, timeout: float = FAILOVER_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if condition():
                return
        except (redis_sync.RedisError, OSError):
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.1)


class Topology:
    """The servers of one run: their URL, the single server (for the restart
    fault; None otherwise), :meth:`failover` (None: this kind has none)."""

    url: str
    server: RedisServer | None = None
    can_fail_over = False

    def failover(self, rng: random.Random, key: str) -> str:
        """Fail over the master holding ``key``; blocks until it is over; a detail line."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class _Single(Topology):
    def __init__(self) -> None:
        self.server = RedisServer()
        self.server.start()
        self.url = self.server.url

    def close(self) -> None:
        assert self.server is not None
        self.server.close()


class _Cluster(Topology):
    can_fail_over = True

    def __init__(self) -> None:
        self.cluster = RedisCluster(replicas=1, appendonly=True,
                                    node_timeout_ms=CLUSTER_NODE_TIMEOUT_MS)
        self.cluster.__enter__()
        self.url = self.cluster.url

    def _info(self, port: int) -> dict[str, Any]:
        with self.cluster.client(port, socket_timeout=2, socket_connect_timeout=2) as client:
            return dict(client.info("replication"))

    def _replica_of(self, master: int) -> int:
        for port in self.cluster.procs:
            if port != master:
                info = self._info(port)
                if info.get("role") == "slave" and int(info.get("master_port", 0)) == master:
                    return port
        raise RuntimeError(f"master {master} has no replica")

    def _replicating(self, port: int, master: int) -> bool:
        info = self._info(port)
        return bool(info.get("role") == "slave" and int(info.get("master_port", 0)) == master
                    and info.get("master_link_status") == "up")

    def _ok(self) -> bool:
        for port in self.cluster.procs:
            with self.cluster.client(port, socket_timeout=2) as client:
                if b"cluster_state:ok" not in client.execute_command("CLUSTER", "INFO"):
                    return False
        return True

    def failover(self, rng: random.Random, key: str) -> str:
        master = self.cluster.owner(key)
        replica = self._replica_of(master)
        _until(lambda: self._replicating(replica, master), f"{replica} in sync with {master}")
        if rng.random() < 0.5:
            with self.cluster.client(replica, socket_timeout=5) as client:
                client.execute_command("CLUSTER", "FAILOVER")
            _until(lambda: self._info(replica).get("role") == "master", f"{replica} promoted")
            _until(lambda: self._replicating(master, replica), f"{master} replicating {replica}")
            _until(self._ok, "cluster_state:ok on every node")
            return f"CLUSTER FAILOVER on {replica} (replica of {master})"
        self.cluster.kill(master)
        _until(lambda: self._info(replica).get("role") == "master", f"{replica} promoted")
        self.cluster.start_node(master)  # from its AOF; it rejoins as a replica
        _until(lambda: self._replicating(master, replica), f"{master} replicating {replica}")
        _until(self._ok, "cluster_state:ok on every node")
        return f"kill -9 master {master}; {replica} took over; {master} back as its replica"

    def close(self) -> None:
        self.cluster.stop()


class _Sentinel(Topology):
    can_fail_over = True

    def __init__(self) -> None:
        self.setup = SentinelSetup()
        self.setup.__enter__()
        self.url = self.setup.url()

    def _replicating(self, server: RedisServer, master: int) -> bool:
        with self.setup.client(server) as client:
            info = client.info("replication")
        return bool(info.get("role") == "slave" and int(info.get("master_port", 0)) == master
                    and info.get("master_link_status") == "up")

    def failover(self, rng: random.Random, key: str) -> str:
        setup = self.setup
        old = setup.master_port(setup.sentinels[0])
        new = next(s for s in (setup.master, setup.replica) if s.port != old)
        old_server = next(s for s in (setup.master, setup.replica) if s.port == old)
        _until(lambda: self._replicating(new, old), f"{new.port} in sync with {old}")

        def forced() -> bool:  # refused (NOGOODSLAVE, INPROG) until the sentinels agree
            with setup.client(setup.sentinels[0]) as client:
                client.execute_command("SENTINEL", "FAILOVER", SERVICE)
            return True

        _until(forced, "a sentinel to accept SENTINEL FAILOVER")
        _until(lambda: all(setup.master_port(s) == new.port for s in setup.sentinels),
               f"every sentinel naming {new.port}")
        _until(lambda: self._replicating(old_server, new.port), f"{old} replicating {new.port}")
        return f"SENTINEL FAILOVER: {old} -> {new.port}"

    def close(self) -> None:
        self.setup.close()


def start(kind: str) -> Topology:
    """Start the servers of ``kind`` (one of :data:`KINDS`), ready."""
    if kind == "single":
        return _Single()
    if kind == "cluster":
        return _Cluster()
    if kind == "sentinel":
        return _Sentinel()
    raise ValueError(f"--redis: one of {', '.join(KINDS)}, not {kind!r}")
