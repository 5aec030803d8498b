"""Several Redis servers, or several prefixes of one, in one dashboard: each is
an *instance* with a name (``create_app(instances={"billing": "redis://...",
"search": Instance("redis://.../2", prefix="search")})``).

Every API route is addressed to one instance by the query parameter
``?instance=NAME``; without it, the first instance answers. A query parameter
rather than a path segment (``/api/v1/instances/NAME/queues``) because the
routes stay as they are, their URLs and the BullMQ-seed family included: the
parameter is one FastAPI dependency (the one that hands every route its
Inspector), so a route added later is addressed the same way without a word
of its own, and an app with one instance answers exactly as before.
``GET /api/v1/instances`` lists them for the page's switcher.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from ..connection import Connection
from ..keys import validate_prefix
from .models import Ok

__all__ = ["DEFAULT_INSTANCE", "Instance", "InstanceParam", "check_instances", "instances_router"]

#: The name of the only instance of an app made without ``instances``.
DEFAULT_INSTANCE = "default"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")

InstanceParam = Annotated[str | None, Query(
    description="The Redis instance to address (a name from GET /api/v1/instances); "
                "default: the first.", examples=["billing"], max_length=64)]


@dataclass(frozen=True)
class Instance:
    """One Redis of the dashboard: a connection (URL, client, ...) and the key
    prefix its queues use (None: ``create_app``'s ``prefix``)."""

    connection: Connection = None
    prefix: str | None = None


def check_name(name: object, where: str = "instances") -> str:
    """``name`` if it is a valid instance name, else ValueError naming ``where``."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(f"{where}: {name!r} is not an instance name (1 to 64 letters, digits, "
                         "'.', '_' or '-', starting with a letter or digit)")
    return name


def check_instances(instances: Mapping[str, Instance | Connection] | None,
                    connection: Connection, prefix: str) -> dict[str, Instance]:
    """The app's instances by name, each with its prefix filled in; without
    ``instances``, the one ``connection`` as ``default``. ValueError (one
    line, naming the field) for a bad name, prefix or a mix of both forms."""
    if instances is None:
        return {DEFAULT_INSTANCE: Instance(connection, validate_prefix(prefix))}
    if connection is not None:
        raise ValueError("give either a connection or instances, not both (an instance "
                         "of its own can hold that connection)")
    if not isinstance(instances, Mapping) or not instances:
        raise ValueError("instances: give at least one {name: connection or Instance(...)}")
    found: dict[str, Instance] = {}
    for name, value in instances.items():
        check_name(name)
        instance = value if isinstance(value, Instance) else Instance(value)
        try:
            own = validate_prefix(instance.prefix if instance.prefix is not None else prefix)
        except ValueError as exc:
            raise ValueError(f"instances: {name}: {exc}") from None
        found[name] = Instance(instance.connection, own)
    return found


class InstanceInfo(BaseModel):
    """One instance the dashboard can show."""

    name: str = Field(description="What ?instance= takes.")
    prefix: str = Field(description="The key prefix of its queues.")
    default: bool = Field(description="Whether it answers requests without ?instance=.")


def instances_router() -> APIRouter:
    """``GET /instances``: the names the page's switcher offers (never their URLs,
    which may hold passwords)."""
    router = APIRouter()

    @router.get("/instances", tags=["instances"], response_model=Ok[list[InstanceInfo]])
    async def instances(request: Request) -> Any:
        """The Redis instances this dashboard shows; the first is the default."""
        known: dict[str, Instance] = request.app.state.conveyor.instances
        return {"success": True, "data": [
            {"name": name, "prefix": instance.prefix, "default": number == 0}
            for number, (name, instance) in enumerate(known.items())
        ]}

    return router
