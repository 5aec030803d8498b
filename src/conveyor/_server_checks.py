"""A worker's look at the Redis server's settings when it starts: it warns
(``logging.warning``, once per server and process) about settings that lose
jobs without an error.

- ``maxmemory-policy`` other than ``noeviction``: when memory runs out, Redis
  deletes keys to make room, queue keys among them (a job's hash, a wait list,
  a lock). The ``volatile-*`` policies are no safe middle: they evict keys with
  a TTL, and conveyor's deduplication keys, call records (which make a resent
  add or fetch safe) and worker heartbeats have one. With ``noeviction`` an add
  fails loudly (OOM) instead.
- AOF off (``appendonly no``): a crash or restart loses every write since the
  last RDB snapshot (minutes of jobs); ``appendonly yes`` with ``appendfsync
  everysec`` loses at most about a second.

The AOF warning is not given for a server that looks like a test or development
one: reached over loopback or a unix socket *and* started without a config file
(``redis-server --port ...`` by hand, a test suite's, a CI service container).
A production server has a config file or is on another host.

The settings are read with ``INFO`` (``maxmemory_policy``, ``aof_enabled``,
``config_file``), not ``CONFIG GET``, which ACL setups rightly refuse. When
``INFO`` is refused (ACL) or renamed away, the check says so at debug level
and nothing else: it never stops a worker. ``CONVEYOR_SERVER_CHECKS=0``
silences it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from ._stream import text
from ._util import is_loopback

__all__ = ["CHECKS_ENV", "server_warnings", "warn_about_server"]

log = logging.getLogger("conveyor.worker")

CHECKS_ENV = "CONVEYOR_SERVER_CHECKS"
_OFF = {"0", "false", "no", "off"}
#: The servers (by INFO's run_id) already warned about in this process.
_checked: set[str] = set()


def server_warnings(info: Mapping[str, Any], local: bool) -> list[str]:
    """The warnings that ``INFO``'s fields call for; ``local``: the server is
    reached over loopback or a unix socket."""
    warnings = []
    policy = text(info.get("maxmemory_policy", "noeviction"))
    if policy != "noeviction":
        why = ("" if not policy.startswith("volatile") else
               " (volatile-* too: conveyor's deduplication keys, call records and worker "
               "heartbeats have TTLs, so evicting them breaks deduplication, makes a resent "
               "add or fetch run twice and drops live workers from the registry)")
        warnings.append(
            f"Redis maxmemory-policy is {policy}: when memory runs out, Redis deletes keys "
            f"to make room, and jobs, wait lists and locks can go without an error{why}. "
            f"Set maxmemory-policy noeviction (adds then fail with OOM instead).")
    config_file = text(info.get("config_file", "") or "")
    test_server = local and not config_file
    if str(info.get("aof_enabled", "1")) == "0" and not test_server:
        warnings.append(
            "Redis has AOF off (appendonly no): a crash or restart loses every job written "
            "since the last RDB snapshot. Set appendonly yes and appendfsync everysec (at "
            f"most about 1 s lost); {CHECKS_ENV}=0 silences this check.")
    return warnings


def _is_local(client: Redis) -> bool:
    kwargs = client.connection_pool.connection_kwargs
    if kwargs.get("path"):
        return True
    host = kwargs.get("host")
    return isinstance(host, str) and is_loopback(host)


async def warn_about_server(client: Redis) -> list[str]:
    """Log :func:`server_warnings` for the server behind ``client`` (once per
    server per process) and return them; ``[]`` when silenced, already said, or
    ``INFO`` cannot be read."""
    if os.environ.get(CHECKS_ENV, "").strip().lower() in _OFF:
        log.debug("server settings not checked: %s=0", CHECKS_ENV)
        return []
    try:
        info = await client.info()
    except (RedisError, OSError) as exc:
        log.debug("server settings not checked: INFO failed (%s)", exc)
        return []
    try:
        server = text(info.get("run_id", ""))
        if server in _checked:
            log.debug("server settings checked already (server %s)", server)
            return []
        _checked.add(server)
        warnings = server_warnings(info, _is_local(client))
    except Exception as exc:  # an INFO reply of another shape: a check, never a failure
        log.debug("server settings not checked: INFO unreadable (%r)", exc)
        return []
    for warning in warnings:
        log.warning("%s", warning)
    log.debug("server settings checked: %d warning(s)", len(warnings))
    return warnings
