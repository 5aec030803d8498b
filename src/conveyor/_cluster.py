"""One Redis server or a Redis Cluster behind one door: :class:`Connector`.

Every key of a queue shares the hash tag ``{<queue>}`` (:mod:`conveyor.keys`),
so all of a queue's keys live in one hash slot, on one master. A queue on a
cluster therefore talks to that master through an ordinary
``redis.asyncio.Redis`` whose connections are *pinned* to the slot: each
connection asks the slot map which master owns its slot when it connects, and
a reply that says the slot is elsewhere (MOVED, ASK, TRYAGAIN, CLUSTERDOWN) or
a node that refuses the connection marks the map stale and counts as a
dropped connection, so the client's usual retry reconnects to the new owner
after a failover or a reshard. Scripts, pipelines, MULTI, blocking commands
and pub/sub (PUBLISH reaches every node of a cluster) all work unchanged, and
with our connection behaviours (:mod:`conveyor.connection`).

On one server, :meth:`Connector.client_for` is always the same client.
"""

from __future__ import annotations

import asyncio
import bisect
import os
from collections.abc import Callable, Sequence
from typing import Any, Self
from urllib.parse import unquote

import redis
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import SSLConnection, parse_url
from redis.connection import SSLConnection as SyncSSLConnection
from redis.crc import key_slot
from redis.exceptions import AskError, ClusterDownError, MovedError, RedisError, TryAgainError
from redis.exceptions import ConnectionError as RedisConnectionError

from .connection import (
    DEFAULT_URL,
    AsyncClosing,
    Connection,
    client_options,
    make_client,
    make_sync_client,
    pooled_client,
    pooled_sync_client,
)
from .errors import ValidationError

__all__ = ["CLUSTER_SCHEMES", "Connector", "ConnectorOwner", "SlotMap", "connect", "pipelined"]

#: URL schemes that name a Redis Cluster: ``redis+cluster://h:p[,h:p...]``.
CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
#: Replies that say this node does not (or not yet) serve the slot.
_ELSEWHERE = (AskError, TryAgainError, ClusterDownError)
#: What a node's connection settings may pass on to the clients we make.
_PASSED_ON = ("username", "password", "credential_provider", "client_name")


class SlotMap:
    """Which master owns each hash slot, read with ``CLUSTER SLOTS`` from the
    seed nodes (or any master seen since); read again when marked stale."""

    def __init__(self, seeds: Sequence[tuple[str, int]], auth: dict[str, Any]) -> None:
        self.seeds = list(seeds)
        self.auth = auth  # username, password, ssl settings: for a plain client
        self._starts: list[int] = []
        self._ranges: list[tuple[int, int, str, int]] = []
        self._moved: dict[int, tuple[str, int]] = {}  # slot -> owner a MOVED named
        self._stale = True
        self._refreshing: asyncio.Task[None] | None = None

    def stale(self) -> None:
        """Read the map again before the next connection uses it."""
        self._stale = True

    def moved(self, slot: int, host: str, port: int) -> None:
        """A node answered MOVED: ``slot`` is served by ``host:port`` now (the
        map is read again too, for the other slots that may have moved)."""
        self._moved[slot] = (host, port)
        self._stale = True

    def masters(self) -> list[tuple[str, int]]:
        """Every master, as last read."""
        return list(dict.fromkeys((host, port) for _, _, host, port in self._ranges))

    async def owner(self, slot: int) -> tuple[str, int]:
        """(host, port) of the master that owns ``slot``."""
        if slot in self._moved:
            return self._moved[slot]
        if self._stale or not self._ranges:
            if self._refreshing is None or self._refreshing.done():
                self._refreshing = asyncio.ensure_future(self._refresh())
            await asyncio.shield(self._refreshing)
        return self._lookup(slot)

    def owner_sync(self, slot: int) -> tuple[str, int]:
        """:meth:`owner` for a blocking connection (reads the map on this thread)."""
        if self._stale or not self._ranges:
            errors = []
            for host, port in self._candidates():
                try:
                    with redis.Redis(host=host, port=port, **self._plain(sync=True)) as client:
                        self._store(client.execute_command(
                            "CLUSTER", "SLOTS"), host)
                        break
                except (RedisError, OSError) as exc:
                    errors.append(f"{host}:{port}: {exc}")
            else:
                raise RedisConnectionError(_unreachable(errors))
        return self._lookup(slot)

    async def _refresh(self) -> None:
        errors = []
        for host, port in self._candidates():
            client = Redis(host=host, port=port, **self._plain(sync=False))
            try:
                self._store(await client.execute_command(  # type: ignore[no-untyped-call]
                    "CLUSTER", "SLOTS"), host)
                return
            except (RedisError, OSError) as exc:
                errors.append(f"{host}:{port}: {exc}")
            finally:
                await client.aclose()
        raise RedisConnectionError(_unreachable(errors))

    def _candidates(self) -> list[tuple[str, int]]:
        return list(dict.fromkeys([*self.masters(), *self.seeds]))

    def _plain(self, *, sync: bool) -> dict[str, Any]:
        options = {k: v for k, v in self.auth.items() if k != "connection_class"}
        if "connection_class" in self.auth:
            options["connection_class"] = SyncSSLConnection if sync else SSLConnection
        return {**options, "socket_timeout": 5, "socket_connect_timeout": 5}

    def _store(self, reply: Any, asked: str) -> None:
        ranges = []
        for start, end, master, *_ in reply:
            host = master[0].decode() if isinstance(master[0], bytes) else str(master[0])
            ranges.append((int(start), int(end), host or asked, int(master[1])))
        ranges.sort()
        self._ranges = ranges
        self._starts = [r[0] for r in ranges]
        self._moved = {}
        self._stale = False

    def _lookup(self, slot: int) -> tuple[str, int]:
        if slot in self._moved:
            return self._moved[slot]
        i = bisect.bisect_right(self._starts, slot) - 1
        if i >= 0:
            start, end, host, port = self._ranges[i]
            if start <= slot <= end:
                return host, port
        self._stale = True
        raise RedisConnectionError(f"no master of the cluster serves slot {slot}")


def _unreachable(errors: list[str]) -> str:
    return "no node of the Redis Cluster answered CLUSTER SLOTS (" + "; ".join(errors) + ")"


class _Pinned:
    """Mixin of a connection that talks to the master of one slot (see the module)."""

    def __init__(self, *, conveyor_slot: int, conveyor_slots: SlotMap, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.conveyor_slot = conveyor_slot
        self.conveyor_slots = conveyor_slots

    async def _connect(self) -> None:
        self.host, self.port = await self.conveyor_slots.owner(self.conveyor_slot)
        try:
            await super()._connect()  # type: ignore[misc]
        except (OSError, TimeoutError):
            self.conveyor_slots.stale()
            raise

    async def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().read_response(*args, **kwargs)  # type: ignore[misc]
        except _ELSEWHERE as exc:
            raise await self._moved(exc) from exc

    async def _moved(self, exc: Exception) -> RedisConnectionError:
        _note(self.conveyor_slots, self.conveyor_slot, exc)
        await self.disconnect()  # type: ignore[attr-defined]
        return RedisConnectionError(
            f"{self.host}:{self.port} does not serve slot {self.conveyor_slot} now ({exc})")


def _note(slots: SlotMap, slot: int, exc: Exception) -> None:
    """What a reply that sends us elsewhere says about the map."""
    if isinstance(exc, MovedError) and exc.slot_id == slot:
        slots.moved(slot, exc.host, int(exc.port))
    else:
        slots.stale()


class _SyncPinned:
    """The blocking twin of :class:`_Pinned`."""

    def __init__(self, *, conveyor_slot: int, conveyor_slots: SlotMap, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.conveyor_slot = conveyor_slot
        self.conveyor_slots = conveyor_slots

    def _connect(self) -> Any:
        self.host, self.port = self.conveyor_slots.owner_sync(self.conveyor_slot)
        try:
            return super()._connect()  # type: ignore[misc]
        except (OSError, TimeoutError):
            self.conveyor_slots.stale()
            raise

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().read_response(*args, **kwargs)  # type: ignore[misc]
        except _ELSEWHERE as exc:
            _note(self.conveyor_slots, self.conveyor_slot, exc)
            self.disconnect()  # type: ignore[attr-defined]
            raise RedisConnectionError(
                f"{self.host}:{self.port} does not serve slot {self.conveyor_slot} now "
                f"({exc})") from exc


class Connector:
    """The door to Redis that conveyor's objects share: made once from what a
    user passes as ``connection=``, it hands out the client for a key.

    ``connection`` is a URL (``redis://``, ``rediss://``, ``unix://``, or
    ``redis+cluster://[user:password@]host:port[,host:port...]`` /
    ``rediss+cluster://`` for a Redis Cluster), a ``redis.asyncio.Redis``, a
    ``redis.asyncio.cluster.RedisCluster`` (its nodes and credentials are
    used; it is never closed by us) or ``None`` for ``$CONVEYOR_REDIS_URL`` /
    ``redis://localhost:6379/0``. Pass one Connector to many queues, workers
    and flow producers to share its connections; ``await aclose()`` it when
    done (clients passed in stay open).
    """

    def __init__(self, connection: Connection = None) -> None:
        self._clients: dict[int, Redis] = {}
        self._node_clients: dict[tuple[str, int], Redis] = {}
        self._url: str | None = None
        self.slots: SlotMap | None = None
        self._options: dict[str, Any] = {}
        self._client: Redis | None = None
        self._owns_client = False
        if isinstance(connection, Connector):
            raise ValidationError("connection", "is a Connector already: pass it as is")
        if isinstance(connection, RedisCluster):
            self._from_cluster_client(connection)
        elif isinstance(connection, Redis):
            self._client = connection
        else:
            url = connection or os.environ.get("CONVEYOR_REDIS_URL") or DEFAULT_URL
            if not isinstance(url, str):
                raise ValidationError("connection", f"must be a URL or a client, got {url!r}")
            if url.lower().partition("://")[0] in CLUSTER_SCHEMES:
                self._from_cluster_url(url)
            else:
                self._url = url
                self._client, self._owns_client = make_client(url)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        if self.slots is None:
            return f"<Connector {self._client!r}>"
        return "<Connector cluster " + ",".join(f"{h}:{p}" for h, p in self.slots.seeds) + ">"

    @property
    def cluster(self) -> bool:
        """Whether this is a Redis Cluster (each queue on the master of its slot)."""
        return self.slots is not None

    def client_for(self, key: str) -> Redis:
        """The client for ``key`` (any key: a queue's base or one of its keys):
        on one server always the same; on a cluster, one pinned to the master
        of the key's slot (one per slot)."""
        if self._client is not None:
            return self._client
        slot = key_slot(key.encode())
        client = self._clients.get(slot)
        if client is None:
            assert self.slots is not None
            client = self._clients[slot] = pooled_client(
                {**self._options, "conveyor_slot": slot, "conveyor_slots": self.slots}, _Pinned)
        return client

    def same_slot(self, key: str, other: str) -> bool:
        """Whether one script may touch both keys (always, on one server)."""
        return self.slots is None or key_slot(key.encode()) == key_slot(other.encode())

    def sync_client(self, key: str) -> redis.Redis | None:
        """A new blocking client for ``key`` (the caller closes it), or None when
        this Connector was given an asyncio client whose settings we cannot copy."""
        if self.slots is None:
            return None if self._url is None else make_sync_client(self._url)
        options = dict(self._options)
        if options.get("connection_class") is SSLConnection:
            options["connection_class"] = SyncSSLConnection
        return pooled_sync_client({**options, "conveyor_slot": key_slot(key.encode()),
                                   "conveyor_slots": self.slots}, _SyncPinned)

    async def node_clients(self) -> list[Redis]:
        """One client per master (one server: its client), for commands that
        read a whole node, like SCAN."""
        if self._client is not None:
            return [self._client]
        assert self.slots is not None
        await self.slots.owner(0)  # read the map if we have not yet
        clients = []
        for host, port in self.slots.masters():
            client = self._node_clients.get((host, port))
            if client is None:
                client = self._node_clients[host, port] = pooled_client(
                    {**self._options, "host": host, "port": port})
            clients.append(client)
        return clients

    async def aclose(self) -> None:
        """Close every client this Connector made (not those passed in)."""
        clients = [*self._clients.values(), *self._node_clients.values()]
        if self._owns_client and self._client is not None:
            clients.append(self._client)
        self._clients.clear()
        self._node_clients.clear()
        for client in clients:
            await client.aclose()

    # -- building ----------------------------------------------------------------

    def _from_cluster_url(self, url: str) -> None:
        scheme, _, rest = url.partition("://")
        plain = "rediss" if scheme.lower().startswith("rediss") else "redis"
        userinfo, at, rest = rest.rpartition("@")
        cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
        hosts, tail = rest[:cut], rest[cut:]
        seeds = [_host_port(part) for part in hosts.split(",") if part]
        if not seeds:
            raise ValidationError("connection", f"names no cluster node: {url!r}")
        first = f"{seeds[0][0]}:{seeds[0][1]}"
        try:
            kwargs = parse_url(f"{plain}://{userinfo}{at}{first}{tail}")
        except ValueError as exc:
            raise ValidationError("connection", str(exc)) from None
        if int(kwargs.pop("db", 0) or 0) != 0:
            raise ValidationError("connection", "a Redis Cluster has database 0 only")
        self._cluster(seeds, dict(kwargs), url)

    def _from_cluster_client(self, client: RedisCluster) -> None:
        seeds = [(node.host, int(node.port)) for node in client.get_nodes()] or [
            (node.host, int(node.port)) for node in client.nodes_manager.startup_nodes.values()]
        settings = client.connection_kwargs
        passed = {k: v for k, v in settings.items()
                  if (k in _PASSED_ON or k.startswith("ssl_")) and v is not None}
        if settings.get("connection_class") is SSLConnection:
            passed["connection_class"] = SSLConnection
        self._cluster(seeds, passed, "redis://")

    def _cluster(self, seeds: list[tuple[str, int]], kwargs: dict[str, Any], url: str) -> None:
        kwargs.pop("host", None)
        kwargs.pop("port", None)
        auth = {k: v for k, v in kwargs.items() if k in _PASSED_ON or k.startswith("ssl_")}
        if kwargs.get("connection_class") is SSLConnection:
            auth["connection_class"] = SSLConnection
        self.slots = SlotMap(seeds, auth)
        self._options = {**client_options(url), **kwargs,
                         "host": seeds[0][0], "port": seeds[0][1]}


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise ValidationError("connection", f"cluster node {text!r} is not host:port")
    return unquote(host.strip("[]")), int(port)


class ConnectorOwner(AsyncClosing):
    """An async context manager over a Connector that closes it only if it
    made it; one passed in belongs to the caller and stays open."""

    connector: Connector
    _owns_connector: bool

    async def close(self) -> None:
        """Close the connections if this object opened them."""
        if self._owns_connector:
            await self.connector.aclose()


def connect(connection: Connection) -> tuple[Connector, bool]:
    """The Connector for ``connection`` and whether the caller made it (and so
    must close it): a Connector passed in belongs to whoever passed it."""
    if isinstance(connection, Connector):
        return connection, False
    return Connector(connection), True


async def pipelined(calls: Sequence[tuple[Redis, Callable[[Pipeline], Any]]]) -> list[Any]:
    """Run each ``(client, add)`` (``add(pipe)`` queues one command) with one
    pipeline per client, the pipelines concurrently; the replies in order (an
    error as its exception). On one server: one round trip."""
    groups: dict[int, list[int]] = {}
    for i, (client, _) in enumerate(calls):
        groups.setdefault(id(client), []).append(i)
    replies: list[Any] = [None] * len(calls)

    async def run(indexes: list[int]) -> None:
        async with calls[indexes[0]][0].pipeline(transaction=False) as pipe:
            for i in indexes:
                calls[i][1](pipe)
            for i, reply in zip(indexes, await pipe.execute(raise_on_error=False), strict=True):
                replies[i] = reply

    await asyncio.gather(*(run(indexes) for indexes in groups.values()))
    return replies
