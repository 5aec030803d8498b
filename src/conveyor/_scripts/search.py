"""The script of job search: one bounded step through a state's jobs
(``search_jobs.lua``), read-only."""

from __future__ import annotations

from typing import Any

from .base import ScriptsBase

__all__ = ["SearchScripts"]


class SearchScripts(ScriptsBase):
    """The read-only script behind :mod:`conveyor.inspection.search`."""

    async def search_jobs(
        self, state_key: str, is_list: bool, cursor: tuple[int | None, str, str, str],
        most_ids: int, most_matches: int, most_bytes: int, filters: bytes,
    ) -> Any:
        """One step of a search from ``cursor`` (position, score, id, next id;
        position None to start): the raw reply, see the script's header."""
        position, score, job_id, next_id = cursor
        return await self.call(
            "search_jobs", [state_key],
            [self.keys.base, "list" if is_list else "zset",
             "" if position is None else position, score, job_id,
             most_ids, most_matches, most_bytes, filters, next_id],
        )
