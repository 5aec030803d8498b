"""Views as JSON: one rule for times, one for names, for every view dataclass
(the inspection views, :class:`conveyor.WorkerInfo`) and every reader of them
(the CLI's ``--json``, the REST API, the dashboard).

- A field marked :data:`TIME` (epoch ms or a ``datetime``) renders twice: as
  its name without ``_ms`` holding a UTC ISO-8601 string, and as that name
  plus ``_ms`` holding epoch ms (``last_completed_ms`` -> ``last_completed``
  and ``last_completed_ms``; ``started_at`` -> ``started_at`` and
  ``started_at_ms``).
- Names are the fields' own (snake_case); ``camel=True`` renders the top-level
  keys in camelCase, as the BullMQ-style routes answer (nested values, such as a
  job's own data, are left as they are).

A field's metadata may also say ``group=(key, sub)`` (rendered as
``out[key][sub]``), ``also=(key, sub)`` (rendered in place and copied there),
``flatten`` (a nested view's keys merged into its parent's), ``skip`` (not
rendered), ``omit_none`` (a time left out while None) or ``as_is`` (:data:`AS_IS`:
the user's own JSON, not walked). A view lists the
computed properties to render in ``json_properties``.
"""

from __future__ import annotations

import re
from dataclasses import fields, is_dataclass
from datetime import UTC, datetime
from typing import Any

__all__ = ["AS_IS", "TIME", "TIME_OR_ABSENT", "View", "camel", "epoch_ms", "iso", "render"]

#: Field metadata: the field is a time (epoch ms or datetime), see the module doc.
TIME: dict[str, Any] = {"time": True}
#: A time left out of the rendering while it is None.
TIME_OR_ABSENT: dict[str, Any] = {"time": True, "omit_none": True}
#: Field metadata: the user's own JSON (a job's data, result, progress, options),
#: rendered as it is, not walked (it may be megabytes and holds no view).
AS_IS: dict[str, Any] = {"as_is": True}

_CAMEL = re.compile(r"_([a-z])")


def iso(ms: int | float | None) -> str | None:
    """Epoch ms as a UTC ISO-8601 string with milliseconds ("...T22:15:03.120Z");
    None past what a date holds (a due time stored before delays were bounded)."""
    if ms is None:
        return None
    try:
        moment = datetime.fromtimestamp(int(ms) / 1000, UTC)
    except (OverflowError, OSError, ValueError):
        return None
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def epoch_ms(moment: datetime | int | None) -> int | None:
    """A time as epoch ms (a datetime rounded to the nearest ms)."""
    if isinstance(moment, datetime):
        return round(moment.timestamp() * 1000)
    return moment


def camel(data: dict[str, Any]) -> dict[str, Any]:
    """snake_case keys as camelCase (``processed_on_ms`` -> ``processedOnMs``)."""
    return {_CAMEL.sub(lambda x: x.group(1).upper(), k): v for k, v in data.items()}


def render(view: Any, *, camel_case: bool = False) -> dict[str, Any]:
    """A view dataclass as a JSON-ready dict, by the rules of the module doc."""
    out: dict[str, Any] = {}
    for f in fields(view):
        meta = f.metadata
        if meta.get("skip"):
            continue
        value = getattr(view, f.name)
        if meta.get("time"):
            ms = epoch_ms(value)
            if ms is None and meta.get("omit_none"):
                continue
            base = f.name.removesuffix("_ms")
            out[base] = iso(ms)
            out[base + "_ms"] = ms
        elif meta.get("as_is"):
            out[f.name] = value
        elif meta.get("flatten"):
            out.update(_plain(value))
        elif "group" in meta:
            key, sub = meta["group"]
            out.setdefault(key, {})[sub] = _plain(value)
        else:
            out[f.name] = _plain(value)
            if "also" in meta:
                key, sub = meta["also"]
                out.setdefault(key, {})[sub] = out[f.name]
    for name in getattr(view, "json_properties", ()):
        out[name] = _plain(getattr(view, name))
    return camel(out) if camel_case else out


def _plain(value: Any) -> Any:
    """Nested views rendered, containers copied (a rendering never aliases a view)."""
    if is_dataclass(value) and not isinstance(value, type):
        return render(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


class View:
    """Base of the view dataclasses: ``to_dict()`` is :func:`render`."""

    __slots__ = ()

    def to_dict(self) -> dict[str, Any]:
        """This view as a JSON-ready dict (times as ISO and ``_ms``)."""
        return render(self)
