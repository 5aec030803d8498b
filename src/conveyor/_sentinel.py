"""Redis Sentinel: ``redis+sentinel://`` URLs, and clients whose pools ask the
sentinels where the master is (and ask again after a failover).

::

    redis+sentinel://[user:password@]host:port[,host:port...]/<service>[/<db>][?options]
    rediss+sentinel://...    TLS to the servers (and to the sentinels)

``user:password`` authenticate to the Redis servers (master and replicas),
not to the sentinels. A host without a port means 26379. Options (query
arguments):

- ``sentinel_username``, ``sentinel_password``: the sentinels' own login;
- ``sentinel_ssl=true|false``: TLS to the sentinels (default: as the scheme);
- anything redis-py reads in a ``redis://`` URL (``ssl_ca_certs``,
  ``ssl_cert_reqs``, ``socket_connect_timeout``, ...), for the servers; the
  ``ssl_*`` ones serve the sentinels too when they use TLS.

The pools made here are conveyor's (callers wait for a free connection, commands
packed by hiredis, a bounded handshake, retries), over redis-py's
``SentinelConnectionPool``: a connection asks a sentinel for the master when it
connects, and a command that meets a demoted master (``READONLY``) drops the
connection so the retry finds the new one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import redis
import redis.sentinel
from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection, ConnectionPool
from redis.asyncio.connection import parse_url as redis_parse_url
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import (
    Sentinel,
    SentinelConnectionPool,
    SentinelManagedConnection,
    SentinelManagedSSLConnection,
)
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.exceptions import AuthenticationError
from redis.retry import Retry as SyncRetry

from .errors import ValidationError

__all__ = [
    "SCHEMES",
    "SentinelURL",
    "blocking_sentinel_client",
    "is_sentinel_url",
    "parse_sentinel_url",
    "sentinel_client",
]

SCHEMES = ("redis+sentinel", "rediss+sentinel")
DEFAULT_SENTINEL_PORT = 26379
#: A failover takes a few seconds (the sentinels agree, promote a replica, then
#: answer with it): a call retries for up to about 5 s, so work carries on across
#: one instead of each caller seeing the gap.
RETRIES = 8
#: Sentinel queries are small and rare (one per new connection): bounded.
SENTINEL_SOCKET_TIMEOUT = 5.0
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True, slots=True)
class SentinelURL:
    """A ``redis+sentinel://`` URL, read."""

    sentinels: list[tuple[str, int]]
    service: str
    ssl: bool
    #: Connection settings of the Redis servers (db, login, TLS files, ...).
    server: dict[str, Any] = field(default_factory=dict)
    #: Connection settings of the sentinels.
    sentinel: dict[str, Any] = field(default_factory=dict)


def is_sentinel_url(url: str) -> bool:
    """Whether ``url`` names a service through its sentinels."""
    return url.partition("://")[0].lower() in SCHEMES


def parse_sentinel_url(url: str) -> SentinelURL:
    """Read ``url`` (see the module's docstring); a ValidationError (a ValueError)
    says what is wrong."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in SCHEMES:
        raise _refused("a sentinel URL starts with redis+sentinel:// or rediss+sentinel://")
    ssl = scheme.lower() == "rediss+sentinel"
    rest, _, query = rest.partition("?")
    rest = rest.partition("#")[0]
    location, slash, path = rest.partition("/")
    userinfo, at, hosts = location.rpartition("@")
    if not at:
        hosts = location
    sentinels = [_host_port(part) for part in hosts.split(",") if part.strip()]
    if not sentinels:
        raise _refused("no sentinel host:port before the service name")
    parts = [unquote(p) for p in path.split("/")] if slash else []
    if not parts or not parts[0]:
        raise _refused("no service name: redis+sentinel://host:port/<service>/<db>")
    if len(parts) > 2 or (len(parts) == 2 and parts[1] and not parts[1].isdigit()):
        raise _refused("the path is /<service> or /<service>/<db number>")
    # The query and the login as redis-py reads them in a redis:// URL.
    login = f"{userinfo}@" if at else ""
    try:
        server: dict[str, Any] = dict(redis_parse_url(f"redis://{login}localhost/?{query}"))
    except ValueError as exc:
        raise _refused(str(exc)) from None
    server.pop("host", None)
    if len(parts) == 2 and parts[1] and "db" not in server:
        server["db"] = int(parts[1])
    sentinel: dict[str, Any] = {}
    for name in ("sentinel_username", "sentinel_password"):
        if name in server:
            sentinel[name.removeprefix("sentinel_")] = server.pop(name)
    sentinel_ssl = str(server.pop("sentinel_ssl", ssl)).lower()
    if sentinel_ssl not in _TRUE | _FALSE:
        raise _refused("sentinel_ssl is true or false")
    tls = {k: v for k, v in server.items() if k.startswith("ssl_")}
    if sentinel_ssl in _TRUE:
        sentinel.update(ssl=True, **tls)
    return SentinelURL(sentinels, parts[0], ssl, server, sentinel)


def _refused(message: str) -> ValidationError:
    """A bad sentinel URL: a ValidationError (a ValueError) naming ``connection``."""
    return ValidationError("connection", message)


def _host_port(text: str) -> tuple[str, int]:
    text = text.strip()
    if text.startswith("["):  # [IPv6]:port
        host, _, port = text[1:].partition("]")
        port = port.removeprefix(":")
    else:
        host, _, port = text.rpartition(":") if ":" in text else (text, "", "")
    if not host:
        raise _refused(f"sentinel {text!r} has no host")
    if port and not port.isdigit():
        raise _refused(f"sentinel {text!r}: the port is not a number")
    return unquote(host), int(port) if port else DEFAULT_SENTINEL_PORT


class _ClosesSentinels:
    """Mixin of our async sentinel pools: closing the pool (the client we made
    closes it) closes the connections to the sentinels too."""

    sentinel_manager: Sentinel

    async def aclose(self) -> None:
        await super().aclose()  # type: ignore[misc]
        await self.sentinel_manager.aclose()


class _ClosesSentinelsBlocking:
    """:class:`_ClosesSentinels` for the blocking client's pool."""

    sentinel_manager: redis.sentinel.Sentinel

    def close(self) -> None:
        super().close()  # type: ignore[misc]
        for client in self.sentinel_manager.sentinels:
            client.close()


_pools: dict[tuple[type[Any], ...], type[Any]] = {}


def _pool_class(*bases: type[Any]) -> type[Any]:
    """One class over ``bases`` (closing, one of conveyor's pools, redis-py's
    sentinel pool)."""
    if bases not in _pools:
        name = "Sentinel" + bases[1].__name__.lstrip("_")
        _pools[bases] = type(name, bases, {"__module__": __name__})
    return _pools[bases]


def _backoff() -> ExponentialWithJitterBackoff:
    return ExponentialWithJitterBackoff(cap=1.0, base=0.05)


def _retryable(error: Exception, also: Callable[[Exception], bool] | None) -> bool:
    """A wrong login stays wrong: fail at once rather than after every retry."""
    return not isinstance(error, AuthenticationError) and (also is None or also(error))


class _Retry(Retry):
    """The retry of a sentinel client's connections (see :func:`_retryable`)."""

    async def call_with_retry(
        self, do: Any, fail: Any, is_retryable: Callable[[Exception], bool] | None = None,
        with_failure_count: bool = False,
    ) -> Any:
        return await super().call_with_retry(
            do, fail, lambda error: _retryable(error, is_retryable), with_failure_count)


class _SyncRetry(SyncRetry):
    """:class:`_Retry` for the blocking client."""

    def call_with_retry(
        self, do: Any, fail: Any, is_retryable: Callable[[Exception], bool] | None = None,
        with_failure_count: bool = False,
    ) -> Any:
        return super().call_with_retry(
            do, fail, lambda error: _retryable(error, is_retryable), with_failure_count)


def _sentinel_options(target: SentinelURL, options: dict[str, Any]) -> dict[str, Any]:
    """Settings of the connections to the sentinels. No retries there: the
    lookup moves on to the next sentinel, and the caller's connect retries."""
    return {
        "socket_timeout": SENTINEL_SOCKET_TIMEOUT,
        "socket_connect_timeout": options.get("socket_connect_timeout", 5),
        **target.sentinel,
    }


def sentinel_client(
    url: str,
    pool_base: type[ConnectionPool],
    our_connection: Callable[[type[AbstractConnection]], type[AbstractConnection]],
    options: dict[str, Any],
) -> Redis:
    """An asyncio client of the master of ``url``'s service, on a ``pool_base``
    pool whose connections are ``our_connection(...)`` of redis-py's
    sentinel-managed ones; ``options`` are conveyor's client settings."""
    target = parse_sentinel_url(url)
    manager = Sentinel(  # type: ignore[no-untyped-call]
        target.sentinels,
        sentinel_kwargs={**_sentinel_options(target, options), "retry": Retry(NoBackoff(), 0)})
    base = SentinelManagedSSLConnection if target.ssl else SentinelManagedConnection
    return manager.master_for(  # type: ignore[no-any-return]
        target.service,
        connection_pool_class=_pool_class(_ClosesSentinels, pool_base, SentinelConnectionPool),
        connection_class=our_connection(base),
        retry=_Retry(_backoff(), RETRIES),
        **{**options, **target.server},
    )


def blocking_sentinel_client(
    url: str, pool_base: type[redis.ConnectionPool], options: dict[str, Any]
) -> redis.Redis:
    """:func:`sentinel_client` for a blocking client (conveyor.sync's adds)."""
    target = parse_sentinel_url(url)
    manager = redis.sentinel.Sentinel(  # type: ignore[no-untyped-call]
        target.sentinels,
        sentinel_kwargs={**_sentinel_options(target, options), "retry": SyncRetry(NoBackoff(), 0)})
    base = (redis.sentinel.SentinelManagedSSLConnection if target.ssl
            else redis.sentinel.SentinelManagedConnection)
    return manager.master_for(  # type: ignore[no-any-return,no-untyped-call]
        target.service,
        connection_pool_class=_pool_class(_ClosesSentinelsBlocking, pool_base,
                                           redis.sentinel.SentinelConnectionPool),
        connection_class=base,
        retry=_SyncRetry(_backoff(), RETRIES),
        **{**options, **target.server},
    )
