"""The ASGI app: the REST API under ``/api/v1``, Prometheus at ``/metrics`` and
the dashboard (``static/``) at ``/``; mountable under a prefix::

    parent.mount("/jobs", create_app("redis://localhost:6379/0", token="s3cret"))

Every answer of the API is JSON, ``{"success": true, "data": ...}`` or
``{"success": false, "error": {"code", "message", "field"}}``; user input never
gets a 500.
"""

from __future__ import annotations

import asyncio
import html
import logging
import re
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

import uvicorn
from fastapi import Depends, FastAPI, Request, params
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp

from ..connection import Connection
from ..errors import ConveyorError, JobNotFoundError, JobStateError, ValidationError
from ..inspection import HealthThresholds, Inspector, QueueNotFoundError
from ..options import validate_queue_name
from . import models
from .api import build_router
from .docs import add_docs
from .guard import DEFAULT_MAX_BODY, Guard, check_allowed_hosts, host_allowance
from .instances import Instance, InstanceParam, check_instances, instances_router
from .prometheus import render_metrics
from .roles import Role, TokenRoles, refuse_read_only, roles_router, token_roles
from .tokens import check_token, is_loopback

__all__ = ["check_listen", "create_app", "serve", "serve_async"]

STATIC_DIR = Path(__file__).with_name("static")
_log = logging.getLogger("conveyor.web")
_OPENAPI, _DOCS = "/api/v1/openapi.json", "/api/v1/docs"  # public, like the page
_PLACEHOLDER = ("<!doctype html><html><head><meta charset='utf-8'><title>conveyor</title>"
                "</head><body><p>The dashboard's files are missing; the API is at "
                "<a href='api/v1/docs'>api/v1/docs</a>.</p></body></html>")
_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": models.ErrorResponse, "description": what}
    for code, what in ((401, "Missing or wrong token"),
                       (403, "A read-only role asked to change something"),
                       (404, "No such queue, job or instance"),
                       (409, "The job's state does not allow it"),
                       (422, "A refused parameter or body"))
}


class WebState:
    """What the app's routes share: the tokens with their roles, the instances
    and an Inspector of each (made on first use on the serving event loop, which
    may not exist when the app is built)."""

    def __init__(self, instances: dict[str, Instance], queues: Sequence[str],
                 thresholds: HealthThresholds | None, tokens: dict[str, Role],
                 allowed_hosts: list[str], max_body: int) -> None:
        self.instances = instances
        self.queues = list(queues)
        self.thresholds = thresholds
        self.tokens = tokens
        self.allowed_hosts = allowed_hosts
        self.max_body = max_body
        self._inspectors: dict[str, Inspector] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def inspector(self, instance: str | None = None) -> Inspector:
        """The Inspector of ``instance`` (default: the first); 404 for an unknown name."""
        name = next(iter(self.instances)) if instance is None else instance
        if name not in self.instances:
            raise ApiError(404, "instance_not_found",
                           f"no instance {name[:64]!r}; GET /api/v1/instances lists them",
                           "instance")
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._inspectors, self._loop = {}, loop
        if name not in self._inspectors:
            found = self.instances[name]
            self._inspectors[name] = Inspector(found.connection, prefix=found.prefix or "",
                                               queues=self.queues, thresholds=self.thresholds)
        return self._inspectors[name]

    async def close(self) -> None:
        if self._loop is asyncio.get_running_loop():
            for inspector in self._inspectors.values():
                await inspector.close()
        self._inspectors = {}


class ApiError(Exception):
    """An error answer: HTTP status, a code and a message."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field


def error_response(status: int, code: str, message: str, field: str | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        {"success": False, "error": {"code": code, "message": message, "field": field}},
        status_code=status, headers=headers,
    )


_bearer = HTTPBearer(auto_error=False, description="The token the server was started with.")


async def require_token(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """Puts the bearer scheme in the OpenAPI schema. The token itself is checked by
    :class:`~conveyor.web.guard.Guard`, before the body is read."""


class _GuardedApp(FastAPI):
    """FastAPI with :class:`~conveyor.web.guard.Guard` outside everything, error
    answers included, so its rules and headers hold however the app is served."""

    def build_middleware_stack(self) -> ASGIApp:
        return Guard(super().build_middleware_stack(), self.state.conveyor,
                     public_paths=["", "/", _OPENAPI, _DOCS], public_prefixes=["/static/"])


def create_app(
    connection: Connection = None,
    *,
    prefix: str = "conveyor",
    queues: Sequence[str] | None = None,
    token: str | None = None,
    tokens: TokenRoles | None = None,
    thresholds: HealthThresholds | None = None,
    dashboard: bool = True,
    allowed_hosts: Sequence[str] = (),
    max_body: int = DEFAULT_MAX_BODY,
    dependencies: Sequence[params.Depends] = (),
    instances: Mapping[str, Instance | Connection] | None = None,
) -> FastAPI:
    """The REST API (``/api/v1``, OpenAPI at ``/api/v1/openapi.json``, docs at
    ``/api/v1/docs``), Prometheus metrics (``/metrics``) and, with ``dashboard``,
    the dashboard at ``/``. With a ``token``, every API and metrics request
    needs ``Authorization: Bearer <token>``; the schema, the docs and the
    dashboard's page and static files load without it (the page asks for it).

    Requests must name a loopback host or one of ``allowed_hosts`` (``name``,
    ``name:port`` or ``*`` for any) in ``Host``; bodies are JSON of at most
    ``max_body`` bytes; see :mod:`conveyor.web.guard`.

    Roles (:mod:`conveyor.web.roles`): ``tokens`` gives more tokens, each
    ``read`` or ``admin`` (``{token: role}`` or a list of ``(role, token)``);
    ``token`` is admin. A read token may only GET. ``dependencies`` (FastAPI
    ``Depends(...)``) run for every API and metrics route, before it: a host
    app's own auth (HTTP Basic, SSO) raises there, and may :func:`~conveyor.web.roles.grant`
    a role.

    ``instances`` (:mod:`conveyor.web.instances`) shows several Redis servers or
    prefixes in one dashboard, ``{name: connection or Instance(connection,
    prefix)}``, instead of ``connection``; the API takes ``?instance=NAME``."""
    roles = token_roles(token, tokens)
    if isinstance(allowed_hosts, str):
        raise ValueError("allowed_hosts must be a list of hosts, not one string")
    if isinstance(max_body, bool) or not isinstance(max_body, int) or max_body < 1:
        raise ValueError(f"max_body must be a positive number of bytes, not {max_body!r}")
    names = [validate_queue_name(name) for name in queues or ()]
    state = WebState(check_instances(instances, connection, prefix), names, thresholds, roles,
                     check_allowed_hosts(allowed_hosts), max_body)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await state.close()

    app = _GuardedApp(
        title="conveyor", version="1", lifespan=lifespan,
        description="Inspect and administer conveyor job queues.",
        openapi_url=_OPENAPI, docs_url=None, redoc_url=None,
    )
    add_docs(app, _DOCS, _OPENAPI)
    app.state.conveyor = state
    auth = [Depends(require_token), *dependencies, Depends(refuse_read_only)]
    api = build_router()
    api.include_router(roles_router())
    api.include_router(instances_router())
    app.include_router(api, prefix="/api/v1", dependencies=auth, responses=_ERROR_RESPONSES)

    @app.get("/metrics", dependencies=auth, tags=["metrics"], response_class=Response,
             responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}})
    async def metrics(request: Request, instance: InstanceParam = None) -> Response:
        """Prometheus text exposition of every queue (of one instance)."""
        body = await render_metrics(request.app.state.conveyor.inspector(instance))
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    _add_error_handlers(app)
    if dashboard:
        _add_dashboard(app)
    return app


def _add_dashboard(app: FastAPI) -> None:
    @app.get("/", include_in_schema=False)
    async def index(request: Request) -> HTMLResponse:
        # <base href> makes the page's relative URLs work under any mount prefix.
        root = html.escape(str(request.scope.get("root_path", "")).rstrip("/") + "/")
        page = STATIC_DIR / "index.html"
        text = page.read_text("utf-8") if page.is_file() else _PLACEHOLDER
        if "<base " not in text:
            text = re.sub(r"(<head[^>]*>)", rf'\1<base href="{root}">', text, count=1)
        return HTMLResponse(text, headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC_DIR, check_dir=False), name="static")


def _add_error_handlers(app: FastAPI) -> None:
    def add(exc_type: type[Exception], status: int, code: str) -> None:
        async def handler(request: Request, exc: Exception) -> JSONResponse:
            return error_response(status, code, str(exc), getattr(exc, "field", None))
        app.add_exception_handler(exc_type, handler)

    add(QueueNotFoundError, 404, "queue_not_found")
    add(JobNotFoundError, 404, "job_not_found")
    add(ValidationError, 422, "validation_error")
    add(JobStateError, 409, "job_state_conflict")
    add(ConveyorError, 400, "bad_request")

    async def redis_error(request: Request, exc: Exception) -> JSONResponse:
        # Redis's message names keys and script hashes, and the server's address: log it.
        _log.error("Redis error on %s %s: %s: %s", request.method, request.url.path,
                   type(exc).__name__, exc)
        if isinstance(exc, RedisConnectionError | RedisTimeoutError):
            return error_response(503, "redis_unavailable", "Redis cannot be reached")
        # say, out of memory or a read-only replica
        return error_response(503, "redis_error", "Redis refused the command; see the server log")

    async def api_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return error_response(exc.status, exc.code, exc.message, exc.field, headers)

    async def invalid_request(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = list(exc.errors())
        first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
        loc = [str(part) for part in first.get("loc", ())]
        field = ".".join(loc[1:] if loc and loc[0] in ("body", "query", "path") else loc)
        message = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ())[1:]) or 'body'}: {e.get('msg')}"
            for e in errors[:5]
        )
        return error_response(422, "validation_error", message, field or None)

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 400:  # a body FastAPI could not parse (say, not UTF-8)
            return error_response(422, "validation_error", f"body: {exc.detail}", "body")
        code = {403: "forbidden", 404: "not_found",
                405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail), None,
                              dict(exc.headers or {}))

    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        # The details go to the server's log (uvicorn logs the exception), not to clients.
        return error_response(500, "internal_error", "internal error; see the server log")

    app.add_exception_handler(RedisError, redis_error)
    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, internal_error)


# -- serving ------------------------------------------------------------------------------


def check_listen(host: str, token: str | None) -> None:
    """Refuse (ValueError) to listen beyond loopback without a token, or with one
    shorter than 16 characters: the API can retry, remove and add jobs. A token
    clients cannot send is refused on any host (see :mod:`conveyor.web.tokens`)."""
    if token is not None:
        check_token(token, host=host)
        return
    if not is_loopback(host):
        raise ValueError(
            f"refusing to listen on {host!r} without a token: anyone who can reach it could "
            "retry, remove and add jobs; pass a token (--token) or listen on 127.0.0.1"
        )


def _conveyor_apps(app: Any, seen: set[int] | None = None) -> Iterator[WebState]:
    """The state of every conveyor app in ``app``: itself, mounted in it (Starlette
    routes' ``Mount.app``/``Host.app``, recursively) or wrapped by middleware (``.app``)."""
    seen = set() if seen is None else seen
    if app is None or id(app) in seen:
        return
    seen.add(id(app))
    state = getattr(getattr(app, "state", None), "conveyor", None)
    if isinstance(state, WebState):
        yield state
        return
    for inner in (getattr(app, "app", None), getattr(app, "router", None)):
        yield from _conveyor_apps(inner, seen)
    for route in getattr(app, "routes", None) or ():
        yield from _conveyor_apps(getattr(route, "app", None), seen)


def _served_tokens(app: Any, host: str, token: str | None) -> list[str] | None:
    """Every token the served conveyor apps accept (None if one of them enforces
    none); a token given here is an admin token of the conveyor apps built
    without one, and they accept ``host`` in ``Host``."""
    states = list(_conveyor_apps(app))
    if not states:
        if token is not None and not is_loopback(host):
            raise ValueError(
                "no conveyor app (create_app) found in the app to serve, itself or mounted in "
                "it, so the token would protect nothing; mount conveyor's app with "
                "parent.mount(...) or serve it directly"
            )
        return None if token is None else [token]
    for state in states:
        if token is not None and state.tokens and state.tokens.get(token) != "admin":
            raise ValueError("the token differs from the admin tokens the app was created with")
    for state in states:
        if token is not None and not state.tokens:
            state.tokens = {token: "admin"}
        state.allowed_hosts.extend(h for h in host_allowance(host)
                                   if h not in state.allowed_hosts)
    if any(not state.tokens for state in states):
        return None
    return [known for state in states for known in state.tokens]


def _config(app: Any, host: str, port: int, token: str | None, **options: Any) -> uvicorn.Config:
    served: list[str | None] = list(_served_tokens(app, host, token) or ())
    for each in served or [None]:
        check_listen(host, each)
    options.setdefault("log_level", "info")
    return uvicorn.Config(app, host=host, port=port, **options)


def serve(app: Any, host: str = "127.0.0.1", port: int = 8000, token: str | None = None,
          **options: Any) -> None:
    """Run ``app`` with uvicorn until interrupted. Refuses (ValueError) a host
    beyond loopback unless a token protects the app. ``options`` go to
    ``uvicorn.Config``."""
    uvicorn.Server(_config(app, host, port, token, **options)).run()


async def serve_async(app: Any, host: str = "127.0.0.1", port: int = 8000,
                      token: str | None = None, **options: Any) -> None:
    """:func:`serve` inside a running event loop. Cancelling it shuts the server
    down cleanly (connections, the listening socket, the app's lifespan)."""
    server = uvicorn.Server(_config(app, host, port, token, **options))
    running = asyncio.ensure_future(server.serve())
    try:
        await asyncio.shield(running)
    except asyncio.CancelledError:
        server.should_exit = True
        await running
        raise
