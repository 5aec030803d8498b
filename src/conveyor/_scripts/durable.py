"""Durable adds: a script call followed by ``WAIT <replicas> <timeout>`` on the
same connection, so an add is acknowledged only once replicas hold it.

``WAIT`` counts the replicas that acknowledged everything the *calling
connection* wrote, so it must follow the script on the connection that ran it:
each helper sends both in one pipeline (one round trip). Inside ``MULTI`` a
``WAIT`` would not block, so an atomic batch is sent as ``MULTI``, the script
calls, ``EXEC``, then ``WAIT``, on a plain pipeline (one connection, one round
trip). A retry after a dropped connection sends the lot again: the add scripts
are safe to run twice (their call tokens), and the ``WAIT`` then covers
whichever server answered.

Scripts go by SHA, loaded only after a ``NOSCRIPT`` reply (then the pipeline
is sent again: nothing ran): redis-py would precede every pipeline holding a
script with ``SCRIPT EXISTS``, a round trip per add, and a command the
documented ACL does not grant.

Fewer acknowledgements than asked raise :class:`~conveyor.errors.DurabilityError`:
the jobs were written on the master but may not survive a failover. On a
sentinel-managed pool, that is also the sign of a failover under way (the
replicas left the server we write to): the pool asks the sentinels again, so the
next add goes to the new master rather than to the old one until it is demoted.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import redis
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.commands.core import AsyncScript, Script
from redis.exceptions import NoScriptError, RedisError

from .._stream import text
from ..errors import DurabilityError, ValidationError
from ..options import check_count, to_ms

__all__ = [
    "Durability",
    "atomic_and_wait",
    "blocking_atomic_and_wait",
    "blocking_call_and_wait",
    "call_and_wait",
]

#: A failed lookup leaves the pool as it was: the add's own error says enough.
REDIS_ERRORS = (RedisError, OSError)

#: The scripts whose calls WAIT when the queue is durable, and how to read the
#: ids of the jobs a reply made (for the error message).
ADDED_IDS: dict[str, Callable[[Any], list[str]]] = {
    "add_jobs": lambda reply: [text(r[0]) for r in reply],
    # [-1, index]: a refused flow, which wrote nothing
    "add_flow": lambda reply: [] if int(reply[0]) == -1 else [text(i) for i in reply[1]],
}


@dataclass(frozen=True, slots=True)
class Durability:
    """Wait for ``replicas`` replicas, at most ``timeout_ms``, after each add."""

    replicas: int
    timeout_ms: int

    @classmethod
    def parse(cls, replicas: object, timeout: object) -> Durability | None:
        """From ``Queue(durable=..., durable_timeout=...)``; None when ``durable`` is 0."""
        count = check_count("durable", replicas, 0)
        ms = to_ms("durable_timeout", timeout)
        assert ms is not None
        if ms < 1:  # WAIT n 0 blocks forever: an add must end
            raise ValidationError("durable_timeout", "must be at least 1 ms (WAIT 0 waits "
                                  "forever)", timeout)
        return cls(count, ms) if count else None

    def confirm(self, acked: Any, queue: str, name: str, replies: list[Any]) -> None:
        """Raise :class:`DurabilityError` unless ``acked`` (WAIT's reply) is enough
        for ``replies`` (of script ``name``)."""
        if int(acked) < self.replicas:
            job_ids = [i for reply in replies for i in ADDED_IDS[name](reply)]
            if job_ids:  # a refused flow wrote nothing: its own error says so
                raise DurabilityError(queue, self.replicas, int(acked), job_ids)


Command = tuple[Any, ...]


def _wait(durability: Durability) -> Command:
    return ("WAIT", durability.replicas, durability.timeout_ms)


async def _execute(
    client: Redis, fill: Callable[[Pipeline], Awaitable[Any]], transaction: bool,
    before: Sequence[Command] = (), after: Sequence[Command] = (),
) -> list[Any]:
    """The replies of a pipeline of ``before``, the script calls ``fill`` queues,
    and ``after`` (see the module's docstring for NOSCRIPT); the first error raised."""
    for attempt in (1, 2):
        async with client.pipeline(transaction=transaction) as pipe:
            for command in before:
                pipe.execute_command(*command)
            await fill(pipe)
            for command in after:
                pipe.execute_command(*command)
            scripts = list(pipe.scripts)
            pipe.scripts.clear()  # no SCRIPT EXISTS first
            replies = list(await pipe.execute(raise_on_error=False))
        if attempt == 1 and _missing_script(replies):
            for script in scripts:
                await client.script_load(script.script)
            continue
        break  # answered: sending it again would run the scripts twice
    _raise_first(replies)
    return replies


def _execute_blocking(
    client: redis.Redis, fill: Callable[[redis.client.Pipeline], Any], transaction: bool,
    before: Sequence[Command] = (), after: Sequence[Command] = (),
) -> list[Any]:
    """:func:`_execute` on a blocking client."""
    for attempt in (1, 2):
        with client.pipeline(transaction=transaction) as pipe:
            for command in before:
                pipe.execute_command(*command)  # type: ignore[no-untyped-call]
            fill(pipe)
            for command in after:
                pipe.execute_command(*command)  # type: ignore[no-untyped-call]
            scripts = list(pipe.scripts)
            pipe.scripts.clear()
            replies = list(pipe.execute(raise_on_error=False))
        if attempt == 1 and _missing_script(replies):
            for script in scripts:
                client.script_load(script.script)
            continue
        break  # answered: sending it again would run the scripts twice
    _raise_first(replies)
    return replies


def _missing_script(replies: list[Any]) -> bool:
    return any(isinstance(r, NoScriptError) or (isinstance(r, list) and any(
        isinstance(e, NoScriptError) for e in r)) for r in replies)


def _raise_first(replies: list[Any]) -> None:
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply


async def call_and_wait(
    client: Redis, script: AsyncScript, name: str, keys: Sequence[str], args: Sequence[Any],
    durability: Durability, queue: str,
) -> Any:
    """``script``'s reply, once ``durability`` holds for it."""
    reply, acked = await _execute(
        client, lambda pipe: script(keys=keys, args=args, client=pipe), False,
        after=[_wait(durability)])
    if int(acked) < durability.replicas:
        await _ask_sentinels(client)
    durability.confirm(acked, queue, name, [reply])
    return reply


def blocking_call_and_wait(
    client: redis.Redis, script: Script, name: str, keys: Sequence[Any], args: Sequence[Any],
    durability: Durability, queue: str,
) -> Any:
    """:func:`call_and_wait` on a blocking client."""
    reply, acked = _execute_blocking(
        client, lambda pipe: script(keys=keys, args=args, client=pipe), False,
        after=[_wait(durability)])
    if int(acked) < durability.replicas:
        _ask_sentinels_blocking(client)
    durability.confirm(acked, queue, name, [reply])
    return reply


async def atomic_and_wait(
    client: Redis, fill: Callable[[Pipeline], Awaitable[None]], name: str,
    durability: Durability | None, queue: str,
) -> list[Any]:
    """The replies of the script calls ``fill`` queues, run in one MULTI/EXEC;
    with ``durability``, once it holds for all of them."""
    if durability is None:
        return await _execute(client, fill, True)
    *_, replies, acked = await _execute(client, fill, False, before=[("MULTI",)],
                                        after=[("EXEC",), _wait(durability)])
    if int(acked) < durability.replicas:
        await _ask_sentinels(client)
    return _confirmed(replies, acked, name, durability, queue)


def blocking_atomic_and_wait(
    client: redis.Redis, fill: Callable[[redis.client.Pipeline], None], name: str,
    durability: Durability | None, queue: str,
) -> list[Any]:
    """:func:`atomic_and_wait` on a blocking client."""
    if durability is None:
        return _execute_blocking(client, fill, True)
    *_, replies, acked = _execute_blocking(client, fill, False, before=[("MULTI",)],
                                           after=[("EXEC",), _wait(durability)])
    if int(acked) < durability.replicas:
        _ask_sentinels_blocking(client)
    return _confirmed(replies, acked, name, durability, queue)


def _confirmed(
    replies: list[Any], acked: Any, name: str, durability: Durability, queue: str
) -> list[Any]:
    """EXEC's replies (a script's error among them raised, as MULTI/EXEC would),
    once ``durability`` holds for them."""
    _raise_first(replies)
    durability.confirm(acked, queue, name, replies)
    return replies


async def _ask_sentinels(client: Redis) -> None:
    """On a sentinel-managed pool, look the master up again (its idle connections
    to a master that is no longer the one go; see the module's docstring)."""
    lookup = getattr(client.connection_pool, "get_master_address", None)
    if lookup is not None:
        with contextlib.suppress(*REDIS_ERRORS):
            await lookup()


def _ask_sentinels_blocking(client: redis.Redis) -> None:
    proxy = getattr(client.connection_pool, "proxy", None)
    if proxy is not None:
        with contextlib.suppress(*REDIS_ERRORS):
            proxy.get_master_address()
