"""The long-running ``conveyor`` commands: ``dashboard``, ``demo`` and ``bench``."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import click

from .._util import is_loopback
from .dashboard_setup import dashboard_tokens, instance_options, parse_instances
from .support import Target, fail, needs_web_extra, run

__all__ = ["bench", "dashboard", "demo", "is_loopback", "listen"]


def listen(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (port 0: a free one; IPv6 with or
    without brackets); one line of error if the address is taken or not ours."""
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        infos = socket.getaddrinfo(bare, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        fail(f"cannot listen on {host}:{port}: {exc.strerror}")
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        fail(f"cannot listen on {host}:{port}: {exc.strerror}")
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket, host: str) -> str:
    """The http URL a browser uses for ``sock``."""
    port = sock.getsockname()[1]
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host  # noqa: S104 (a comparison)
    if ":" in shown and not shown.startswith("["):
        shown = f"[{shown}]"
    return f"http://{shown}:{port}/"


@click.command()
@instance_options
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535),
              help="Port to listen on (0: any free port).")
@click.option("--token", metavar="TOKEN",
              help="Require 'Authorization: Bearer TOKEN' for the API [default: "
                   "$CONVEYOR_TOKEN]. Needed off loopback, with 16 characters or more. "
                   "Seen by anyone who lists processes: prefer --token-file or the variable.")
@click.option("--token-file", type=click.Path(dir_okay=False, path_type=Path), metavar="PATH",
              help="Read tokens from PATH, one 'read:TOKEN' or 'admin:TOKEN' a line ('#' "
                   "comments and blank lines allowed); a file of one bare token is admin.")
@click.option("--queue", "queues", multiple=True, metavar="NAME",
              help="Also show this queue (repeatable); registered queues are found anyway.")
@click.option("--allowed-host", "allowed_hosts", multiple=True, metavar="HOST[:PORT]",
              help="Also answer requests for this Host (repeatable; loopback names and "
                   "--host are allowed anyway; '*': any, unsafe without a token).")
@click.option("--max-body", default=1024 * 1024, show_default=True, metavar="BYTES",
              type=click.IntRange(min=1), help="Largest request body accepted.")
def dashboard(redis: tuple[str, ...], prefix: tuple[str, ...], host: str, port: int,
              token: str | None,
              token_file: Path | None, queues: tuple[str, ...], allowed_hosts: tuple[str, ...],
              max_body: int) -> None:
    """Serve the web dashboard, the REST API and Prometheus metrics.

    The dashboard at /, the REST API under /api/v1 (docs at /api/v1/docs) and
    Prometheus metrics at /metrics.

    The token comes from --token, --token-file, $CONVEYOR_TOKEN or (its older
    name) $CONVEYOR_DASHBOARD_TOKEN, the first given. A read token may only
    look; an admin token may change things too.

    Several Redis instances, with a switcher in the page:
    --redis billing=redis://a:6379/0 --redis search=redis://b:6379/2 --prefix search=jobs
    """
    with needs_web_extra("conveyor dashboard"):
        import uvicorn

        from ..web.app import check_listen, create_app
        from ..web.guard import host_allowance
        from ..web.instances import Instance
        from ..web.server import WebServer

    tokens = dashboard_tokens(token, token_file)
    targets = parse_instances(redis, prefix)
    try:
        listed: list[str | None] = [known for _, known in tokens]
        for each in listed or [None]:
            check_listen(host, each)
        app = create_app(instances={name: Instance(t.url, t.prefix) for name, t in targets.items()},
                         queues=list(queues) or None, tokens=tokens,
                         allowed_hosts=[*allowed_hosts, *host_allowance(host)], max_body=max_body)
    except ValueError as exc:  # ValidationError too: a bad queue name
        fail(str(exc))
    for target in targets.values():
        _ping(target)
    sock = listen(host, port)
    url = url_of(sock, host)
    click.echo(f"conveyor dashboard on {url} (Ctrl-C stops)")
    click.echo(f"REST API {url}api/v1 (docs: {url}api/v1/docs), Prometheus {url}metrics")
    server = WebServer(uvicorn.Config(app, log_level="warning", lifespan="on"))
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()


def _ping(target: Target) -> None:
    from .._cluster import Connector
    from ..keys import registry_key

    async def ping() -> None:
        connector = Connector(target.url)
        try:
            await connector.client_for(registry_key(target.prefix)).ping()
        finally:
            await connector.aclose()

    run(target, ping())


@click.command()
@click.option("--seconds", type=click.FloatRange(min=0, min_open=True), metavar="N",
              help="Stop after N seconds (default: run until Ctrl-C).")
@click.option("--port", default=0, type=click.IntRange(0, 65535),
              help="Dashboard port [default: a free one].")
@click.option("--host", default="127.0.0.1", show_default=True, help="Dashboard address.")
def demo(seconds: float | None, port: int, host: str) -> None:
    """Jobs flowing on a private Redis, with the dashboard.

    Starts its own redis-server, a worker, a cron scheduler and a producer that
    mixes quick, slow (with progress and logs), delayed, prioritized and flaky
    jobs (some retry, some fail for good), and serves the dashboard. Ctrl-C stops
    everything.
    """
    if not is_loopback(host):
        fail(f"the demo serves its dashboard without a token: use a loopback host, not {host}")
    with needs_web_extra("conveyor demo"):
        from ..demo import run_demo
        from ..web import app as _web_app  # noqa: F401 (run_demo imports it later: check now)

    sock = listen(host, port)
    try:
        run_demo(sock, url_of(sock, host), seconds=seconds)
    except RuntimeError as exc:  # no redis-server binary, or it would not start
        fail(str(exc).splitlines()[0])
    except OSError as exc:  # $CONVEYOR_REDIS_SERVER names no program
        fail(f"cannot start redis-server: {exc.strerror}: {exc.filename}")
    finally:
        sock.close()


def find_checkout(start: Path) -> Path | None:
    """The source checkout holding ``benchmarks/``: ``start`` or a parent of it."""
    for folder in (start, *start.parents):
        if (folder / "benchmarks" / "__main__.py").is_file():
            return folder
    return None


@click.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.option("--checkout", type=click.Path(file_okay=False, path_type=Path), metavar="DIR",
              help="Source checkout with benchmarks/ [default: the current directory or "
                   "the one this package was installed from].")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def bench(checkout: Path | None, args: tuple[str, ...]) -> None:
    """Run the side-by-side benchmark of a source checkout.

    Runs `python -m benchmarks ARGS` in the checkout, for example:

    \b
    conveyor bench --peers conveyor arq --rounds 1 --n 2000
    conveyor bench --smoke
    conveyor bench -- --help       # the benchmark's own options
    """
    if checkout is not None:
        root = find_checkout(checkout.resolve())
    else:
        root = find_checkout(Path.cwd()) or find_checkout(Path(__file__).resolve().parent)
    if root is None:
        where = checkout or "the current directory or the installed package's tree"
        fail(f"no benchmarks/ found from {where}: conveyor bench runs in a source "
             "checkout of conveyor (git clone, then make venv)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(root), os.environ.get("PYTHONPATH", "")) if p)}
    try:
        # This interpreter and the user's own arguments, no shell.
        code = subprocess.call(  # noqa: S603
            [sys.executable, "-m", "benchmarks", *args], cwd=root, env=env)
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)
