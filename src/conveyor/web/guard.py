"""The web app's front door: a pure-ASGI middleware that every request to
conveyor's app passes before any route runs, however the app is served
(uvicorn, :func:`~conveyor.web.serve`, ``conveyor dashboard``, mounted in a
parent app at a prefix). In order:

1. ``Host`` must be one the server was started for (loopback names and
   addresses, plus the allowed hosts): a DNS-rebinding page carries its own
   name in ``Host``.
2. A state-changing request (not GET/HEAD/OPTIONS) that says it comes from
   another site (``Sec-Fetch-Site``, ``Origin``) is refused: with no token, a
   page on another origin could otherwise pause, retry or clean queues.
3. The token, when the app has any, is checked from the headers alone, before
   a byte of the body is read; only the page, its static files and the OpenAPI
   schema and docs are public. A read token (:mod:`conveyor.web.roles`) may
   only GET/HEAD/OPTIONS: anything else gets 403, whatever the route.
4. A body must be ``application/json`` (a cross-site ``<form>`` cannot send
   that) and at most ``max_body`` bytes, from ``Content-Length`` or counted as
   it streams, never buffered beyond the limit.

Every response, the guard's refusals included, carries the security headers
(:data:`SECURITY_HEADERS`).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable, Sequence
from typing import Any, Protocol
from urllib.parse import urlsplit

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .roles import READ_ONLY_MESSAGE, Role, set_scope_role
from .tokens import is_loopback

__all__ = [
    "DEFAULT_MAX_BODY",
    "SECURITY_HEADERS",
    "Guard",
    "GuardSettings",
    "check_allowed_hosts",
    "host_allowance",
]

DEFAULT_MAX_BODY = 1024 * 1024

SECURITY_HEADERS: dict[str, str] = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'self'; "
        "form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
_RAW_SECURITY_HEADERS = [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
_SECURITY_NAMES = {name for name, _ in _RAW_SECURITY_HEADERS}

_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_WILDCARD_BINDS = frozenset({"", "0.0.0.0", "::", "[::]"})  # noqa: S104 (recognised, not bound)


class GuardSettings(Protocol):
    """What the guard reads on each request (the app's shared state): a token
    given later, by :func:`~conveyor.web.serve`, takes effect at once."""

    tokens: dict[str, Role]
    allowed_hosts: list[str]
    max_body: int


def _split(value: str) -> tuple[str, int | None] | None:
    """``'Example.com:8000'`` -> ``('example.com', 8000)``, ``'[::1]'`` ->
    ``('::1', None)``; None for anything that is not a bare host[:port]."""
    if not value or any(c in value for c in "/\\@?# \t") or len(value) > 300:
        return None
    try:
        parts = urlsplit("//" + value)
        name, port = parts.hostname, parts.port
    except ValueError:
        return None
    if not name:
        return None
    return name.rstrip("."), port


def check_allowed_hosts(hosts: Iterable[str]) -> list[str]:
    """The allowed hosts, each ``*``, ``name``, ``address`` or ``name:port``
    (IPv6 in brackets); ValueError naming ``allowed_hosts`` for anything else."""
    checked: list[str] = []
    for host in hosts:
        if not isinstance(host, str) or (host != "*" and _split(host) is None):
            raise ValueError(
                f"allowed_hosts: {host!r} is not a host name, an address or host:port "
                "(IPv6 in brackets: [2001:db8::1]:8000), nor '*'"
            )
        checked.append(host)
    return checked


def host_allowance(bound: str) -> list[str]:
    """The hosts a server bound to ``bound`` should accept besides loopback:
    ``bound`` itself, unless it is loopback or every interface."""
    if bound in _WILDCARD_BINDS or is_loopback(bound):
        return []
    return [f"[{bound}]" if ":" in bound and not bound.startswith("[") else bound]


def _matches(found: tuple[str, int | None], allowed: Sequence[str]) -> bool:
    name, port = found
    for entry in allowed:
        wanted = _split(entry)
        if wanted is not None and wanted[0] == name and wanted[1] in (None, port):
            return True
    return False


def route_path(scope: Scope) -> str:
    """The request's path relative to where the app is mounted."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and path[len(root):len(root) + 1] in ("", "/"):
        return path[len(root):]
    return path


class Guard:
    """The middleware; ``public_paths`` are the exact paths (relative to the
    mount) and ``public_prefixes`` the path prefixes served without a token."""

    def __init__(self, app: ASGIApp, settings: GuardSettings, *,
                 public_paths: Iterable[str] = ("", "/"),
                 public_prefixes: Iterable[str] = ("/static/",)) -> None:
        self.app = app
        self.settings = settings
        self.public_paths = frozenset(public_paths)
        self.public_prefixes = tuple(public_prefixes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refused = False

        async def send_secured(message: Message) -> None:
            if refused:  # the guard already answered; the app's late answer is dropped
                return
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", ())
                           if k.lower() not in _SECURITY_NAMES]
                message = {**message, "headers": [*headers, *_RAW_SECURITY_HEADERS]}
            await send(message)

        headers = Headers(scope=scope)
        refusal = self._refusal(scope, headers)
        if refusal is not None:
            await _answer(send_secured, *refusal)
            return

        limit, seen = self.settings.max_body, 0
        started = False

        async def send_tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send_secured(message)

        async def receive_limited() -> Message:
            nonlocal seen, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    # Answer now and tell the app the client left, so that it stops
                    # reading; the rest of the body is never read or kept.
                    if not started:
                        await _answer(send_secured, *_too_large(limit))
                    refused = True
                    return {"type": "http.disconnect"}
            return message

        await self.app(scope, receive_limited, send_tracked)

    def _refusal(self, scope: Scope, headers: Headers) -> tuple[int, str, str] | None:
        settings = self.settings
        host = headers.get("host", "")
        found = _split(host)
        allowed = settings.allowed_hosts
        if "*" not in allowed and (
            found is None or not (is_loopback(found[0]) or _matches(found, allowed))
        ):
            return (400, "host_not_allowed",
                    f"Host {host[:100]!r} is not one this server was started for; allow it "
                    "with --allowed-host (create_app(allowed_hosts=[...]))")
        method = scope["method"]
        if method not in _SAFE_METHODS and self._cross_site(headers, host):
            return (403, "cross_site",
                    "refused a state-changing request from another site (Origin or "
                    "Sec-Fetch-Site); use the dashboard's own page, or a client that is "
                    "not a browser")
        if settings.tokens and not self._public(scope):
            role = _role(headers, settings.tokens)
            if role is None:
                return (401, "unauthorized", "a valid 'Authorization: Bearer <token>' is needed")
            set_scope_role(scope, role)
            if role == "read" and method not in _SAFE_METHODS:
                return (403, "forbidden", READ_ONLY_MESSAGE)
        return self._body_refusal(method, headers)

    def _cross_site(self, headers: Headers, host: str) -> bool:
        if headers.get("sec-fetch-site", "").lower() in ("cross-site", "same-site"):
            return True
        origin = headers.get("origin")
        if origin is None:
            return False
        try:
            parts = urlsplit(origin)
            netloc = parts.netloc.lower()
        except ValueError:
            return True
        if netloc and netloc == host.lower():
            return False
        found = _split(netloc)
        # Only hosts named explicitly (say, the proxy's public name) count, not
        # loopback on any port: another port is another origin.
        named = [entry for entry in self.settings.allowed_hosts if entry != "*"]
        return found is None or not _matches(found, named)

    def _public(self, scope: Scope) -> bool:
        path = route_path(scope)
        return path in self.public_paths or path.startswith(self.public_prefixes)

    def _body_refusal(self, method: str, headers: Headers) -> tuple[int, str, str] | None:
        length_text = headers.get("content-length")
        try:
            length = int(length_text) if length_text is not None else None
        except ValueError:
            length = None
        limit = self.settings.max_body
        if length is not None and length > limit:
            return _too_large(limit)
        if method in _SAFE_METHODS:
            return None
        content_type = headers.get("content-type")
        has_body = bool(length) or "transfer-encoding" in headers
        media = None if content_type is None else content_type.split(";")[0].strip().lower()
        if (media is not None and media != "application/json") or (has_body and media is None):
            return (415, "unsupported_media_type",
                    "a request body must be JSON with 'Content-Type: application/json'")
        return None


def _role(headers: Headers, tokens: dict[str, Role]) -> Role | None:
    """The role of the bearer token, None if it is none of ``tokens``; every
    token is compared, in constant time, whichever matches."""
    scheme, _, given = headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        given = ""
    # Header values arrive as Latin-1 text; compare as the HTTPBearer check did.
    sent = given.strip().encode()
    found: Role | None = None
    for token, role in tokens.items():
        if secrets.compare_digest(sent, token.encode()):
            found = role
    return found


def _too_large(limit: int) -> tuple[int, str, str]:
    return (413, "body_too_large", f"the request body is over the limit of {limit} bytes")


async def _answer(send: Send, status: int, code: str, message: str) -> None:
    body = json.dumps({"success": False,
                       "error": {"code": code, "message": message, "field": None}}).encode()
    headers = MutableHeaders()
    headers["content-type"] = "application/json"
    headers["content-length"] = str(len(body))
    if status == 401:
        headers["www-authenticate"] = "Bearer"
    start: dict[str, Any] = {"type": "http.response.start", "status": status,
                             "headers": headers.raw}
    await send(start)
    await send({"type": "http.response.body", "body": body})
