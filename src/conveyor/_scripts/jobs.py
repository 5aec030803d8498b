"""Scripts on one job: its progress, log, data and steps, and the admin calls
that move, re-time, remove, retry or cancel it. A refusal raises the error
that :data:`conveyor.errors.SCRIPT_ERRORS` names for its code."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis.asyncio.client import Pipeline

from .base import ScriptsBase

__all__ = ["JobScripts"]


class JobScripts(ScriptsBase):
    """The scripts that read or change one job (or a list's summaries of some)."""

    async def update_progress(self, job_id: str, progress: bytes) -> int:
        """Announce the job's progress (JSON) in a ``progress`` event."""
        k = self.keys
        reply = await self.call("update_progress", [k.events], [k.base, job_id, progress,
                                                                 self.maxlen])
        return await self.checked("update_progress", reply, job_id)

    async def add_log(self, job_id: str, line: str, keep: int) -> int:
        """Append ``line`` to the job's log, keeping the last ``keep`` (0: all);
        returns the number of lines kept."""
        reply = await self.call(
            "add_log", [self.keys.job(job_id), self.keys.logs(job_id)], [line, keep]
        )
        return await self.checked("add_log", reply, job_id)

    async def update_data(self, job_id: str, data: bytes, *, pending_only: bool = False) -> int:
        """Replace the job's data (JSON); ``pending_only``: refuse (JobStateError)
        a job that is running or finished."""
        k = self.keys
        if not pending_only:
            reply = await self.call("update_data", [k.job(job_id)], [data])
        else:
            reply = await self.call("update_data", [k.job(job_id), k.active, k.completed,
                                                    k.failed], [data, "1", job_id])
        return await self.checked("update_data", reply, job_id)

    async def move_to_delayed(self, job_id: str, token: str, delay_ms: int) -> int:
        """Step a running job (holding lock ``token``) out to run again after
        ``delay_ms``; returns its due time (epoch ms)."""
        k = self.keys
        reply = await self.call(
            "move_to_delayed",
            [k.active, k.locks, k.delayed, k.marker, k.events],
            [k.base, job_id, token, delay_ms, self.maxlen],
        )
        return await self.checked("move_to_delayed", reply, job_id)

    async def promote_job(self, job_id: str) -> int:
        """Make a delayed job ready now."""
        k = self.keys
        reply = await self.call(
            "promote_job",
            [k.delayed, k.wait, k.prioritized, k.priority_counter, k.meta, k.marker, k.events],
            [k.base, job_id, self.maxlen],
        )
        return await self.checked("promote_job", reply, job_id)

    async def change_delay(self, job_id: str, delay_ms: int) -> int:
        """Make a delayed job due ``delay_ms`` from now; returns the due time (ms)."""
        k = self.keys
        reply = await self.call(
            "change_delay", [k.delayed, k.marker, k.events],
            [k.base, job_id, delay_ms, self.maxlen],
        )
        return await self.checked("change_delay", reply, job_id)

    async def change_priority(self, job_id: str, priority: int, lifo: bool) -> int:
        """Give the job a new priority (0: none) in any state."""
        k = self.keys
        reply = await self.call(
            "change_priority",
            [k.wait, k.prioritized, k.priority_counter, k.meta, k.marker],
            [k.base, job_id, priority, int(lifo)],
        )
        return await self.checked("change_priority", reply, job_id)

    async def remove_job(self, job_id: str, remove_children: bool = True) -> int:
        """Delete the job (and its pending children unless ``remove_children`` is
        False); 1 removed, 0 no such job."""
        k = self.keys
        reply = await self.call(
            "remove_job",
            [k.wait, k.prioritized, k.delayed, k.active, k.completed, k.failed, k.events,
             k.state_key("waiting-children")],
            [k.base, job_id, self.maxlen, int(remove_children)],
        )
        return await self.checked("remove_job", reply, job_id)

    async def retry_job(self, job_id: str, reset_attempts: bool) -> int:
        """Send a failed or completed job back to waiting."""
        k = self.keys
        reply = await self.call(
            "retry_job",
            [k.failed, k.completed, k.wait, k.prioritized, k.priority_counter, k.meta, k.marker,
             k.events],
            [k.base, job_id, int(reset_attempts), self.maxlen],
        )
        return await self.checked("retry_job", reply, job_id)

    async def cancel_job(self, job_id: str, reason: str) -> int:
        """Cancel the job: 1 removed (it was not running), 2 its worker was told,
        -1 it had already finished."""
        k = self.keys
        reply = await self.call(
            "cancel_job",
            [k.wait, k.prioritized, k.delayed, k.active, k.cancels, k.events,
             k.state_key("waiting-children")],
            [k.base, job_id, reason, self.maxlen, k.cancel_channel],
        )
        return await self.checked("cancel_job", reply, job_id)

    async def read_summaries(
        self, job_ids: Sequence[str], preview_bytes: int, pipe: Pipeline | None = None
    ) -> Any:
        """What a list shows of each job, ``name``, ``pr`` and ``fr`` cut to
        ``preview_bytes``; one reply per id (see the script's header)."""
        return await self.call(
            "read_summaries", [self.keys.locks], [self.keys.base, preview_bytes, *job_ids], pipe
        )
