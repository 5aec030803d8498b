"""The Lua scripts, one per state transition; ``--@include "name"`` pulls in
``includes/name.lua``. Sources are read once per process via importlib.resources."""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

__all__ = ["SCRIPT_NAMES", "source"]

_INCLUDE = re.compile(r'^--@include "([a-z_]+)"$', re.MULTILINE)

def _read(*parts: str) -> str:
    return resources.files(__name__).joinpath(*parts).read_text(encoding="utf-8")


#: Every script of this directory (``includes/`` are not scripts of their own).
SCRIPT_NAMES: tuple[str, ...] = tuple(sorted(
    entry.name.removesuffix(".lua")
    for entry in resources.files(__name__).iterdir()
    if entry.name.endswith(".lua")
))


@cache
def source(name: str) -> str:
    """The script's Lua source with its includes expanded."""

    def include(match: re.Match[str]) -> str:
        return _read("includes", match.group(1) + ".lua")

    return _INCLUDE.sub(include, _read(name + ".lua"))
