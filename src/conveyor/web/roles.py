"""Who may change what through the web app: each token has a role, ``read`` or
``admin``. A read token sees everything and changes nothing: the guard
(:mod:`conveyor.web.guard`) answers 403 to any request of it that is not
GET/HEAD/OPTIONS, so every route, today's and tomorrow's, is covered without
a word of its own. The dashboard asks ``GET /api/v1/whoami`` and hides the
controls marked ``data-admin`` for a read token.

A host app's own auth (``create_app(dependencies=[...])``) may give a request a
role too, with :func:`grant`; without a word from it, a request it lets through
is admin (unless a token said otherwise).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal, cast

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException
from starlette.types import Scope

from .models import Ok
from .tokens import check_token

__all__ = [
    "ROLES",
    "Role",
    "grant",
    "parse_token_file",
    "refuse_read_only",
    "role_of",
    "roles_router",
    "token_roles",
]

Role = Literal["read", "admin"]
ROLES: tuple[Role, ...] = ("read", "admin")
#: Where the guard leaves the request's role in the ASGI scope.
SCOPE_KEY = "conveyor.role"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
READ_ONLY_MESSAGE = ("this token may only read (GET, HEAD); changing anything needs a token "
                     "with the admin role")

TokenRoles = Mapping[str, str] | Iterable[tuple[str, str]]


def _role(value: object, where: str, hint: str = "") -> Role:
    for role in ROLES:
        if value == role:
            return role
    # The value is not repeated: with a pair's order swapped, it is the token.
    raise ValueError(f"{where}: the role must be 'read' or 'admin'{hint}")


_PAIRS = " (pairs are (role, token); a dict is {token: role})"


def token_roles(token: str | None, tokens: TokenRoles | None) -> dict[str, Role]:
    """The role of every token ``create_app`` was given: ``token`` is admin,
    ``tokens`` is ``{token: role}`` or a list of ``(role, token)``. ValueError
    (one line, naming ``tokens``) for a bad role or token, or one token given
    two roles; no token's text is repeated in the message."""
    found: dict[str, Role] = {}

    def add(role: Role, value: object, where: str) -> None:
        try:
            checked = check_token(value)
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
        if found.get(checked, role) != role:
            raise ValueError(f"{where}: the same token is given the roles "
                             f"{found[checked]!r} and {role!r}; give each token one role")
        found[checked] = role

    if token is not None:
        add("admin", token, "token")
    if tokens is None:
        return found
    if isinstance(tokens, str | bytes):
        raise ValueError("tokens: give {token: role} or a list of (role, token), not one string")
    if isinstance(tokens, Mapping):
        for number, (value, role) in enumerate(tokens.items(), 1):
            where = f"tokens (entry {number})"
            add(_role(role, where, _PAIRS), value, where)
        return found
    for number, pair in enumerate(tokens, 1):
        where = f"tokens (entry {number})"
        if not isinstance(pair, tuple | list) or len(pair) != 2:
            raise ValueError(f"{where}: each entry is a (role, token) pair")
        add(_role(pair[0], where, _PAIRS), pair[1], where)
    return found


def parse_token_file(text: str) -> list[tuple[Role, str]]:
    """The ``(role, token)`` pairs of a token file: one ``role:token`` a line;
    blank lines and lines starting with ``#`` are skipped. A file whose only
    line holds no ``:`` is one admin token, as files were before roles.
    ValueError ``line N: ...`` for a line that is neither."""
    # Only \n (and \r\n) end a line: splitlines() would also break at characters
    # a token must not hold, which check_token should name instead.
    rows = text.split("\n")
    lines = [(number, row.removesuffix("\r")) for number, row in enumerate(rows, 1)
             if row.strip() and not row.lstrip().startswith("#")]
    if not lines:
        raise ValueError("the token is blank: the file holds no 'role:token' line "
                         "(role read or admin)")
    if len(lines) == 1 and ":" not in lines[0][1]:
        number, line = lines[0]
        return [("admin", _file_token(line, number))]
    pairs: list[tuple[Role, str]] = []
    seen: dict[str, Role] = {}
    for number, line in lines:
        role, colon, token = line.partition(":")
        if not colon or role.strip() not in ROLES:
            raise ValueError(f"line {number}: expected 'read:TOKEN' or 'admin:TOKEN'")
        checked = _file_token(token, number)
        given = cast(Role, role.strip())
        if seen.get(checked, given) != given:
            raise ValueError(f"line {number}: this token has the role {seen[checked]!r} on an "
                             "earlier line; give each token one role")
        seen[checked] = given
        pairs.append((given, checked))
    return pairs


def _file_token(token: str, number: int) -> str:
    try:
        return check_token(token)
    except ValueError as exc:
        raise ValueError(f"line {number}: {exc}") from None


def role_of(request: Request) -> Role:
    """The request's role: from its token, or as the host's auth granted it;
    admin when the app has no token."""
    return cast(Role, request.scope.get(SCOPE_KEY, "admin"))


def set_scope_role(scope: Scope, role: Role) -> None:
    """Record ``role`` for the request (the guard, from the token)."""
    scope[SCOPE_KEY] = role


def grant(request: Request, role: Role) -> None:
    """Give the request ``role``, from a host app's own auth dependency
    (``create_app(dependencies=[...])``): ``read`` makes any request but
    GET/HEAD/OPTIONS answer 403. A request with a read token stays read."""
    checked = _role(role, "grant")
    if role_of(request) == "read":
        return
    set_scope_role(request.scope, checked)


async def refuse_read_only(request: Request) -> None:
    """The last dependency of every API route: 403 for a read role that asks to
    change something. The guard already refuses read tokens before the body is
    read; this catches a role the host's auth granted."""
    if role_of(request) == "read" and request.method not in SAFE_METHODS:
        raise HTTPException(403, READ_ONLY_MESSAGE)


class WhoAmI(BaseModel):
    """What the caller may do."""

    role: Role = Field(description="'admin' may change things; 'read' may only read.")


def roles_router() -> APIRouter:
    """``GET /whoami``: the page asks which controls to show."""
    router = APIRouter()

    @router.get("/whoami", tags=["auth"], response_model=Ok[WhoAmI])
    async def whoami(request: Request) -> Any:
        """The caller's role: ``admin`` (may change things) or ``read`` (may only read)."""
        return {"success": True, "data": {"role": role_of(request)}}

    return router
