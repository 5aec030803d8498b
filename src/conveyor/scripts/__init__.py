"""The Lua scripts, one per state transition; ``--@include "name"`` pulls in
``includes/name.lua``. Sources are read once per process via importlib.resources."""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

__all__ = ["SCRIPT_NAMES", "source"]

_INCLUDE = re.compile(r'^--@include "([a-z_]+)"$', re.MULTILINE)

SCRIPT_NAMES = (
    "add_jobs",
    "add_log",
    "extend_locks",
    "get_state",
    "move_stalled_jobs",
    "move_to_active",
    "move_to_finished",
    "remove_job",
    "retry_job",
    "set_paused",
    "update_progress",
)


def _read(*parts: str) -> str:
    return resources.files(__name__).joinpath(*parts).read_text(encoding="utf-8")


@cache
def source(name: str) -> str:
    """The script's Lua source with its includes expanded."""

    def include(match: re.Match[str]) -> str:
        return _read("includes", match.group(1) + ".lua")

    return _INCLUDE.sub(include, _read(name + ".lua"))
