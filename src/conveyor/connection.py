"""Turning the ``connection=`` argument into a redis.asyncio client."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, Union

import hiredis
import redis
from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection, ConnectionPool, parse_url
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.connection import parse_url as parse_sync_url
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import MaxConnectionsError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry as SyncRetry

from ._sentinel import blocking_sentinel_client, is_sentinel_url, sentinel_client

if TYPE_CHECKING:
    from redis.asyncio.cluster import RedisCluster

    from ._cluster import Connector

__all__ = [
    "DEFAULT_URL",
    "REDIS_DOWN",
    "Connection",
    "client_options",
    "make_client",
    "make_sync_client",
    "pooled_client",
    "pooled_sync_client",
    "raise_if_cancelled",
    "socket_timeout",
    "time_ms",
]

DEFAULT_URL = "redis://localhost:6379/0"
#: Clients we create have no read timeout: on Python 3.11 redis-py enforces one
#: with ``asyncio.wait_for``, which costs each call a task and about 80 µs (a
#: quarter of a round trip here). A dead peer is found by TCP keepalive instead
#: (probes after 10 s idle, every 5 s, 3 tries: about 25 s), and blocking
#: commands carry their own server-side timeout.
SOCKET_TIMEOUT: float | None = None
KEEPALIVE_OPTIONS: dict[int, int] = {
    option: value
    for name, value in (("TCP_KEEPIDLE", 10), ("TCP_KEEPINTVL", 5), ("TCP_KEEPCNT", 3))
    if (option := getattr(socket, name, None)) is not None
}
#: What ``connection=`` takes: a URL (``redis+cluster://`` for Redis Cluster), a
#: client, a ``RedisCluster`` client, a :class:`conveyor.Connector`, or None.
Connection = Union[str, Redis, "RedisCluster", "Connector", None]
#: What a call raises when Redis is away (refused, reset, timed out): loops that
#: must outlive an outage catch these, log and try again.
REDIS_DOWN = (RedisConnectionError, RedisTimeoutError, ConnectionError, OSError)


def time_ms(reply: Any) -> int:
    """Redis ``TIME``'s reply (seconds, microseconds) as epoch ms."""
    seconds, micros = reply
    return int(seconds) * 1000 + int(micros) // 1000


def socket_timeout(client: Redis) -> float | None:
    """The client's read timeout in seconds (``None``: none)."""
    value = client.connection_pool.connection_kwargs.get("socket_timeout")
    return None if value is None else float(value)


def raise_if_cancelled() -> None:
    """Raise the cancellation of the current task if a Redis call swallowed it.

    On Python 3.11 redis-py sends each command under ``asyncio.wait_for`` (when the
    client has a socket timeout), which drops a ``cancel()`` that arrives as the
    send completes (CPython gh-86296, fixed in 3.12). Loops that call Redis until
    they are cancelled check this after each call so a cancel always stops them.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def make_client(connection: str | Redis | None) -> tuple[Redis, bool]:
    """A client for ``connection`` and whether we own it (and so must close it).

    ``None`` means ``$CONVEYOR_REDIS_URL``, else ``redis://localhost:6379/0``.
    Clients we create retry a dropped connection a few times with jittered
    exponential backoff before the error reaches the caller, and a call that
    finds all of the pool's connections busy waits for one (see _WaitingPool).
    A ``redis+sentinel://`` URL gets such a client of the service's master
    (see :mod:`conveyor._sentinel`).
    """
    if isinstance(connection, Redis):
        return connection, False
    url = connection or os.environ.get("CONVEYOR_REDIS_URL") or DEFAULT_URL
    if is_sentinel_url(url):
        return sentinel_client(url, _WaitingPool, _our_connection, client_options(url)), True
    return pooled_client({**client_options(url), **parse_url(url)}), True


def pooled_client(options: dict[str, Any], *mixins: type) -> Redis:
    """A client with our pool, retry and connection behaviours for the server
    that ``options`` (ConnectionPool keyword arguments) name; its connections'
    class also derives from ``mixins`` (first)."""
    pool = _WaitingPool(retry=Retry(ExponentialWithJitterBackoff(cap=1.0, base=0.05), 3),
                        **options)
    pool.connection_class = _our_connection(pool.connection_class, mixins)
    return Redis.from_pool(pool)


def pooled_sync_client(options: dict[str, Any], *mixins: type) -> redis.Redis:
    """The blocking twin of :func:`pooled_client` (``options`` name a blocking
    connection class, if any)."""
    pool = _SyncWaitingPool(
        retry=SyncRetry(ExponentialWithJitterBackoff(cap=1.0, base=0.05), 3), **options
    )
    if mixins:
        base = pool.connection_class
        pool.connection_class = type(base.__name__, (*mixins, base), {})
    return redis.Redis.from_pool(pool)


def make_sync_client(connection: str | Redis | None) -> redis.Redis | None:
    """A blocking client for the same server as ``connection`` (a URL or None), for
    conveyor.sync's hot calls; None when ``connection`` is an asyncio client, whose
    settings we cannot copy."""
    if isinstance(connection, Redis):
        return None
    url = connection or os.environ.get("CONVEYOR_REDIS_URL") or DEFAULT_URL
    if is_sentinel_url(url):
        return blocking_sentinel_client(url, _SyncWaitingPool, client_options(url))
    # Threads beyond the pool's 100 connections wait for one instead of failing.
    return pooled_sync_client({**client_options(url), **parse_sync_url(url)})  # type: ignore[no-untyped-call]


def client_options(url: str) -> dict[str, Any]:
    """Settings of every client conveyor creates for ``url`` (but the retry,
    which differs in type). TCP keepalive is for TCP: redis-py's unix socket
    connections refuse its options."""
    options: dict[str, Any] = {
        "decode_responses": False,
        "retry_on_error": [RedisConnectionError, RedisTimeoutError],
        "health_check_interval": 30,
        "socket_timeout": SOCKET_TIMEOUT,
        "socket_connect_timeout": 5,
    }
    if not url.lower().startswith("unix:"):
        options["socket_keepalive"] = True
        options["socket_keepalive_options"] = KEEPALIVE_OPTIONS
    return options


class AsyncClosing:
    """``async with obj:`` awaits ``obj.close()`` on the way out."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        raise NotImplementedError


class _WaitingPool(ConnectionPool):
    """A connection pool whose callers wait for a free connection when all
    ``max_connections`` (100) are in use, instead of failing with "Too many
    connections": 4,000 concurrent calls take turns on 100 connections.

    Not redis-py's BlockingConnectionPool, which takes a lock and starts a
    timeout for every connection it hands out; this one costs nothing until
    the pool is full.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._freed = asyncio.Condition()
        self._waiting = 0

    async def get_connection(self, *args: Any, **kwargs: Any) -> AbstractConnection:
        while True:
            if self.can_get_connection():
                try:
                    return await super().get_connection()  # type: ignore[no-untyped-call,no-any-return]
                except MaxConnectionsError:
                    pass  # another task took the last one while we were switched out
            async with self._freed:
                self._waiting += 1
                try:
                    await self._freed.wait_for(self.can_get_connection)
                finally:
                    self._waiting -= 1

    async def release(self, connection: AbstractConnection) -> None:
        await super().release(connection)
        if self._waiting:
            async with self._freed:
                self._freed.notify()


class _SyncWaitingPool(redis.ConnectionPool):
    """The blocking client's twin of :class:`_WaitingPool`: a thread that finds
    all connections in use waits for one. redis-py's BlockingConnectionPool
    costs every call a queue get and put (a sixth of a one-by-one add's Python
    time); this one costs nothing until the pool is full."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._freed = threading.Condition()
        self._waiting = 0

    def get_connection(self, *args: Any, **kwargs: Any) -> redis.Connection:
        while True:
            try:
                return super().get_connection(*args, **kwargs)
            except MaxConnectionsError:
                with self._freed:
                    self._waiting += 1
                    try:
                        self._freed.wait_for(
                            lambda: len(self._in_use_connections) < self.max_connections)
                    finally:
                        self._waiting -= 1

    def release(self, connection: Any) -> None:
        super().release(connection)
        if self._waiting:
            with self._freed:
                self._freed.notify()


class _HiredisPacking:
    """Mixin: pack commands with hiredis' C packer.

    redis-py does this for its sync clients only; its asyncio connections encode
    every argument in Python, which was a fifth of a worker's CPU time. Anything
    hiredis refuses goes through redis-py's own packer, for its error messages.
    """

    def pack_command(self, *args: Any) -> list[bytes]:
        first = args[0]
        # Like redis-py: a command name with spaces ("CONFIG GET") is several words.
        if isinstance(first, str):
            if " " in first:
                args = (*first.split(), *args[1:])
        elif isinstance(first, bytes) and b" " in first:
            args = (*first.split(), *args[1:])
        try:
            return [hiredis.pack_command(args)]
        except TypeError:
            return super().pack_command(*args)  # type: ignore[misc,no-any-return]


class _BoundedHandshake:
    """Mixin: the handshake after the socket connects (AUTH or HELLO, SELECT,
    CLIENT SETINFO) must be answered within ``socket_connect_timeout``, as the
    connect itself must. Our clients have no read timeout, so a server that
    accepts connections and never answers held every caller forever: a command
    line never returned, a worker never logged the outage."""

    socket_connect_timeout: float | None

    async def on_connect_check_health(self, *args: Any, **kwargs: Any) -> None:
        try:
            async with asyncio.timeout(self.socket_connect_timeout):
                await super().on_connect_check_health(*args, **kwargs)  # type: ignore[misc]
        except TimeoutError:
            raise RedisTimeoutError("Timeout connecting to server (no answer to the "
                                    "handshake)") from None


_our_classes: dict[tuple[type[AbstractConnection], tuple[type, ...]], type[AbstractConnection]] = {}


def _our_connection(
    base: type[AbstractConnection], mixins: tuple[type, ...] = ()
) -> type[AbstractConnection]:
    if (base, mixins) not in _our_classes:
        _our_classes[base, mixins] = type(
            base.__name__, (*mixins, _BoundedHandshake, _HiredisPacking, base), {}
        )
    return _our_classes[base, mixins]
