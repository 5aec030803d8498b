"""The one door to the Lua scripts of a queue: a typed method per script knows
its KEYS and ARGV layout (documented in the script's header), so no caller
builds them, and turns a refusal code into the error
:data:`conveyor.errors.SCRIPT_ERRORS` names, so no caller decodes one.

By family: ``fetch`` (the hot path: add, take, finish, locks, stalls),
``jobs`` (one job), ``admin`` (the whole queue, the worker registry),
``producers`` (flows and job schedulers); ``base`` holds the registration, the
raw :meth:`~ScriptsBase.call` and the code check.
"""

from __future__ import annotations

import redis
from redis.commands.core import Script

from ..scripts import source
from .admin import AdminScripts
from .durable import (
    Durability,
    atomic_and_wait,
    blocking_atomic_and_wait,
    blocking_call_and_wait,
)
from .fetch import NO_LIMIT, FetchScripts, Limit, NewJob, Outcome, outcome
from .jobs import JobScripts
from .producers import FlowJob, ProducerScripts
from .search import SearchScripts

__all__ = [
    "NO_LIMIT", "Durability", "FlowJob", "Limit", "NewJob", "Outcome", "Scripts",
    "atomic_and_wait", "blocking_add_jobs", "blocking_atomic_and_wait",
    "blocking_call_and_wait", "outcome",
]


def blocking_add_jobs(client: redis.Redis) -> Script:
    """``add_jobs`` on a blocking client (``conveyor.sync``'s adds, which skip the
    event loop); call it with :meth:`Scripts.add_jobs_layout`'s KEYS and ARGV."""
    return client.register_script(source("add_jobs"))


class Scripts(FetchScripts, JobScripts, AdminScripts, ProducerScripts, SearchScripts):
    """The scripts of one queue, registered on one client (loaded by SHA, reloaded
    by redis-py after a server restart)."""
