"""The scripts of one queue registered on one client, the low-level call, and
the one place a script's refusal code becomes an exception (through
:data:`conveyor.errors.SCRIPT_ERRORS`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.commands.core import AsyncScript

from .._calls import CallTokens
from .._stream import text
from ..errors import SCRIPT_ERRORS, script_error
from ..keys import QueueKeys
from ..scripts import SCRIPT_NAMES, source
from .durable import ADDED_IDS, Durability, call_and_wait

__all__ = ["ScriptsBase"]


class ScriptsBase:
    """The scripts of one queue, registered on one client (loaded by SHA, reloaded
    by redis-py after a server restart)."""

    def __init__(self, client: Redis, keys: QueueKeys, events_maxlen: int) -> None:
        self.client = client
        self.keys = keys
        self.maxlen = events_maxlen
        self.calls = CallTokens()
        #: Set by ``Queue(durable=n)``: adds (add_jobs, add_flow) WAIT for replicas.
        self.durability: Durability | None = None
        self._scripts: dict[str, AsyncScript] = {
            name: client.register_script(source(name)) for name in SCRIPT_NAMES
        }

    async def call(
        self,
        name: str,
        keys: Sequence[str],
        args: Sequence[Any],
        pipe: Pipeline | None = None,
    ) -> Any:
        """Run script ``name`` (a file of ``conveyor/scripts``) by its SHA and return
        its raw reply. Callers use the typed methods; this is their transport
        (and the tests' way to a script's raw reply codes). An add of a durable
        queue called without ``pipe`` returns once replicas confirmed it (see
        :mod:`.durable`); on ``pipe``, the caller runs it with ``atomic_and_wait``."""
        if pipe is None and self.durability is not None and name in ADDED_IDS:
            return await call_and_wait(self.client, self._scripts[name], name, keys, args,
                                       self.durability, self.keys.queue)
        return await self._scripts[name](keys=keys, args=args, client=pipe)

    async def load(self, name: str) -> None:
        """Load script ``name`` into Redis (after a restart lost it)."""
        await self.client.script_load(self._scripts[name].script)

    async def get_state(self, job_id: str) -> Any:
        """The job's state as the script replies it (``b""``: no such job)."""
        k = self.keys
        return await self.call(
            "get_state",
            [k.completed, k.failed, k.delayed, k.active, k.prioritized, k.wait,
             k.state_key("waiting-children")],
            [k.base, job_id],
        )

    async def checked(self, name: str, reply: Any, job_id: str = "") -> int:
        """``reply`` of script ``name`` as an int, or the error it stands for raised."""
        code = int(reply)
        entry = SCRIPT_ERRORS.get((name, code))
        if entry is None:
            return code
        state = None
        if "{state}" in entry[1]:  # the message names the state the job is in now
            state = text(await self.get_state(job_id)) or None
        raise self.error(name, code, job_id, state=state)

    def error(
        self, name: str, code: int, job_id: str = "", queue: str = "", **context: object
    ) -> Exception:
        """The error of refusal ``code`` of script ``name`` in ``queue`` (default: this
        queue; a flow's node may be in another)."""
        error = script_error(name, code, queue or self.keys.queue, job_id, **context)
        if error is None:
            return RuntimeError(f"script {name} replied {code}, which SCRIPT_ERRORS lacks")
        return error
