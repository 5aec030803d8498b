"""The web app's front door (conveyor.web.guard), against a real server: the
``conveyor dashboard`` process (its memory read from /proc) or uvicorn through
``serve_async``, spoken to with httpx, curl and raw sockets for the requests a
browser or an attacker sends and a polite client does not."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import subprocess
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.middleware.gzip import GZipMiddleware
from starlette.routing import Mount

from conveyor import Queue
from conveyor.embedded import free_port
from conveyor.web import create_app, serve, serve_async
from guarded_server import Served, add_failed_jobs, dashboard_process, queue_state
from helpers import wait_for

API = "api/v1"
TOKEN = "a-long-enough-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MiB = 1024 * 1024
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'self'; "
        "form-action 'self'; frame-ancestors 'none'"),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def refused(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["success"] is False and body["error"]["code"] == code, body
    assert response.headers["content-type"] == "application/json"


def has_security_headers(response: httpx.Response) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get(name) == value, (response.url, name, response.headers)


@pytest.fixture
def open_server(redis_url: str) -> Iterator[Served]:
    """A dashboard without a token, as it runs by default on loopback."""
    with dashboard_process(redis_url) as served:
        yield served


@pytest.fixture
def token_server(redis_url: str) -> Iterator[Served]:
    with dashboard_process(redis_url, "--token", TOKEN) as served:
        yield served


# -- item 1: Host (DNS rebinding) ----------------------------------------------------------


def test_a_request_for_a_host_the_server_was_not_started_for_gets_400_and_changes_nothing(
    open_server: Served, redis_url: str, queue_name: str
) -> None:
    add_failed_jobs(redis_url, queue_name, 2)
    port = open_server.port
    with httpx.Client(base_url=open_server.url, timeout=10) as client:
        rebound = {"Host": f"attacker.example:{port}"}
        for method, path in (("GET", f"{API}/queues"), ("GET", ""),
                             ("POST", f"{API}/queues/{queue_name}/pause"),
                             ("POST", f"{API}/queue/clean/{queue_name}")):
            response = client.request(method, path, headers=rebound)
            refused(response, 400, "host_not_allowed")
            assert "--allowed-host" in response.json()["error"]["message"]
            has_security_headers(response)
        refused(client.get(f"{API}/queues", headers={"Host": "127.0.0.1.attacker.example"}),
                400, "host_not_allowed")
        assert queue_state(redis_url, queue_name) == (2, False)
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}", "LOCALHOST",
                     "127.0.0.2"):
            assert client.get(f"{API}/queues", headers={"Host": host}).status_code == 200, host


def test_allowed_host_adds_a_host_or_with_star_any(redis_url: str) -> None:
    def status(served: Served, host: str) -> int:
        return httpx.get(served.url + f"{API}/queues", timeout=10,
                         headers={"Host": host}).status_code

    with dashboard_process(redis_url, "--allowed-host", "dash.example",
                           "--allowed-host", "ops.example:8443") as served:
        for host in ("dash.example", "dash.example:80", "DASH.example:8000", "ops.example:8443"):
            assert status(served, host) == 200, host
        for host in ("ops.example", "ops.example:8000", "sub.dash.example", "evil.example"):
            assert status(served, host) == 400, host
    with dashboard_process(redis_url, "--allowed-host", "*") as served:
        assert status(served, "anything.example") == 200


def test_a_bad_allowed_host_is_one_line_at_start(redis_url: str) -> None:
    from click.testing import CliRunner

    from conveyor.cli import main

    result = CliRunner().invoke(main, ["dashboard", "--redis", redis_url,
                                       "--allowed-host", "http://x.example/"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.stderr.strip().splitlines() == [
        "Error: allowed_hosts: 'http://x.example/' is not a host name, an address or "
        "host:port (IPv6 in brackets: [2001:db8::1]:8000), nor '*'"]


# -- item 1: cross-site requests and form bodies -----------------------------------------------


def test_a_state_changing_request_from_another_site_gets_403_and_changes_nothing(
    open_server: Served, redis_url: str, queue_name: str
) -> None:
    add_failed_jobs(redis_url, queue_name, 2)
    other_port = open_server.port + 1
    forged: list[dict[str, str]] = [
        {"Origin": f"http://127.0.0.1:{other_port}"},
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site", "Origin": f"http://localhost:{open_server.port}"},
    ]
    with httpx.Client(base_url=open_server.url, timeout=10) as client:
        for headers in forged:
            for path in (f"queues/{queue_name}/pause", f"queue/clean/{queue_name}",
                         f"queues/{queue_name}/clean"):
                response = client.post(f"{API}/{path}", headers=headers, json={"state": "failed"})
                refused(response, 403, "cross_site")
                has_security_headers(response)
        assert queue_state(redis_url, queue_name) == (2, False)
        # Reads are not state changes; the page's own requests pass.
        assert client.get(f"{API}/queues", headers=forged[0]).status_code == 200
        own = {"Origin": open_server.url.rstrip("/"), "Sec-Fetch-Site": "same-origin"}
        assert client.post(f"{API}/queues/{queue_name}/pause", headers=own).status_code == 200
        assert queue_state(redis_url, queue_name) == (2, True)


def curl(*args: str) -> tuple[int, str]:
    """(status, body) of a curl request."""
    done = subprocess.run(["curl", "-s", "-o", "-", "-w", "\n%{http_code}", *args],
                          capture_output=True, text=True, timeout=30, check=True)
    body, _, status = done.stdout.rpartition("\n")
    return int(status), body


def test_a_form_post_cannot_clean_the_failed_jobs(
    open_server: Served, redis_url: str, queue_name: str
) -> None:
    add_failed_jobs(redis_url, queue_name, 3)
    clean = f"{open_server.url}{API}/queue/clean/{queue_name}"
    # curl -d sends application/x-www-form-urlencoded, as an HTML form does.
    for args in (["-d", "state=failed"], ["-d", "grace=0", "-H", "Content-Type: text/plain"],
                 ["-F", "state=failed"], ["-X", "POST", "-H", "Content-Type: text/plain"],
                 ["-d", '{"state": "failed"}', "-H", "Content-Type:"]):
        status, body = curl(*args, clean)
        assert status == 415 and '"unsupported_media_type"' in body, (args, status, body)
    assert queue_state(redis_url, queue_name) == (3, False)
    status, body = curl("-d", '{"state": "failed", "graceMs": 0}',
                        "-H", "Content-Type: application/json; charset=utf-8", clean)
    assert status == 200 and '"removed":3' in body.replace(" ", ""), body
    status, _ = curl("-X", "POST", f"{open_server.url}{API}/queues/{queue_name}/pause")
    assert status == 200, "a POST without a body needs no content type"


# -- item 2: the token before the body, and the body limit --------------------------------


def raw_request(port: int, head: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(head.encode())
    return sock


def read_status_line(sock: socket.socket) -> str:
    """The response's first line; socket.timeout if none comes in 10 s."""
    data = b""
    while b"\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data.split(b"\r\n", 1)[0].decode()


def stream(sock: socket.socket, total: int, *, chunked: bool) -> None:
    """Send ``total`` bytes of body (as chunks if ``chunked``); a server that hangs up
    early ends it."""
    def frame(piece: bytes) -> bytes:
        return f"{len(piece):x}\r\n".encode() + piece + b"\r\n" if chunked else piece

    piece = b"x" * (256 * 1024)
    whole, rest = divmod(total, len(piece))
    try:
        for _ in range(whole):
            sock.sendall(frame(piece))
        if rest:
            sock.sendall(frame(piece[:rest]))
        if chunked:
            sock.sendall(b"0\r\n\r\n")
    except OSError:
        pass


def test_a_huge_post_without_the_token_is_refused_from_its_headers(
    token_server: Served, queue_name: str
) -> None:
    with httpx.Client(base_url=token_server.url, timeout=10) as client:
        assert client.get(f"{API}/queues", headers=AUTH).status_code == 200  # warm
    before = token_server.rss_bytes()
    size = 200 * 1000 * 1000
    sock = raw_request(token_server.port, (
        f"POST /{API}/queues/{queue_name}/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: application/json\r\nContent-Length: {size}\r\n\r\n"))
    with sock:
        # Not one byte of the body sent yet, and the answer is already there.
        assert read_status_line(sock) == "HTTP/1.1 401 Unauthorized"
        stream(sock, size, chunked=False)
    grown = token_server.rss_bytes() - before
    assert grown < 50 * MiB, f"the server grew by {grown / MiB:.0f} MiB"


def test_a_body_over_the_limit_gets_413_whether_its_length_is_given_or_streamed(
    token_server: Served, queue_name: str
) -> None:
    jobs = f"{token_server.url}{API}/queues/{queue_name}/jobs"
    with httpx.Client(timeout=10) as client:
        response = client.post(jobs, headers=AUTH, json={"name": "x", "data": "y" * (2 * MiB)})
        refused(response, 413, "body_too_large")
        has_security_headers(response)
        assert client.post(jobs, headers=AUTH, json={"name": "x", "data": "y" * 1000}
                           ).status_code == 201
    before = token_server.rss_bytes()
    sock = raw_request(token_server.port, (
        f"POST /{API}/queues/{queue_name}/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"))
    with sock:
        sender = threading.Thread(target=stream, args=(sock, 200 * MiB), kwargs={"chunked": True})
        sender.start()
        status = read_status_line(sock)
        sender.join(60)
    assert status == "HTTP/1.1 413 Request Entity Too Large"
    grown = token_server.rss_bytes() - before
    assert grown < 50 * MiB, f"the server grew by {grown / MiB:.0f} MiB"


def test_max_body_is_configurable(redis_url: str, queue_name: str) -> None:
    with dashboard_process(redis_url, "--max-body", "2000") as served:
        jobs = f"{served.url}{API}/queues/{queue_name}/jobs"
        refused(httpx.post(jobs, json={"name": "x", "data": "y" * 2000}, timeout=10),
                413, "body_too_large")
        assert httpx.post(jobs, json={"name": "x", "data": "y" * 1000},
                          timeout=10).status_code == 201
    with pytest.raises(ValueError, match="max_body"):
        create_app(max_body=0)


# -- item 6: security headers on every response -----------------------------------------


def test_every_response_carries_the_security_headers(
    token_server: Served, queue_name: str
) -> None:
    with httpx.Client(base_url=token_server.url, timeout=10) as client:
        answers = {
            "page": client.get(""),
            "static": client.get("static/app.js"),
            "static 404": client.get("static/nope.js"),
            "schema": client.get(f"{API}/openapi.json"),
            "200": client.get(f"{API}/queues", headers=AUTH),
            "401": client.get(f"{API}/queues"),
            "404": client.get(f"{API}/queues/{queue_name}/jobs/nope", headers=AUTH),
            "unknown path": client.get("nope", headers=AUTH),
            "405": client.put(f"{API}/queues", headers=AUTH),
            "413": client.post(f"{API}/queues/{queue_name}/jobs", content=b" " * (2 * MiB),
                               headers={**AUTH, "Content-Type": "application/json"}),
            "422": client.post(f"{API}/queues/{queue_name}/jobs", headers=AUTH, json={}),
            "metrics": client.get("metrics", headers=AUTH),
        }
    expected = {"page": 200, "static": 200, "static 404": 404, "schema": 200, "200": 200,
                "401": 401, "404": 404, "unknown path": 404, "405": 405, "413": 413,
                "422": 422, "metrics": 200}
    assert {k: r.status_code for k, r in answers.items()} == expected
    for response in answers.values():
        has_security_headers(response)


# -- item 2: which routes are public --------------------------------------------------------


def test_only_the_page_static_files_and_the_schema_are_public(token_server: Served) -> None:
    with httpx.Client(base_url=token_server.url, timeout=10) as client:
        for path in ("", "static/app.css", f"{API}/openapi.json"):
            assert client.get(path).status_code == 200, path
        for path in (f"{API}/queues", f"{API}/health", "metrics", f"{API}/queue/metrics",
                     f"{API}//queues", "nope", f"{API}/openapi.json/x"):
            refused(client.get(path), 401, "unauthorized")


# -- item 3: one auth rule for every way to serve ----------------------------------------


def local_address() -> str | None:
    """A non-loopback address of this machine, if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # no packet is sent; this picks the route
        except OSError:
            return None
        address: str = probe.getsockname()[0]
    return None if ipaddress.ip_address(address).is_loopback else address


async def serving(app: Any, host: str, **options: Any) -> tuple[asyncio.Task[None], str]:
    port = free_port()
    task = asyncio.create_task(serve_async(app, host, port, log_level="warning", **options))
    base = f"http://{host}:{port}"

    async def up() -> bool:
        if task.done():
            task.result()
        try:
            async with httpx.AsyncClient() as client:
                await client.get(base + "/nope")
            return True
        except httpx.TransportError:
            return False

    await wait_for(up)
    return task, base


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def parents(child: FastAPI) -> dict[str, Any]:
    """Ways to put conveyor's app inside another app, with where it is mounted."""
    fastapi_parent = FastAPI()
    fastapi_parent.mount("/jobs", child)
    nested = Starlette(routes=[Mount("/ops", routes=[Mount("/jobs", child)])])
    return {"/jobs": fastapi_parent, "/ops/jobs": GZipMiddleware(nested)}


async def test_serve_enforces_the_token_on_conveyor_apps_mounted_in_a_parent(
    redis_url: str, queue: Queue
) -> None:
    await queue.add("a")
    for prefix, parent in parents(child := create_app(redis_url)).items():
        task, base = await serving(parent, "127.0.0.1", token=TOKEN)
        try:
            async with httpx.AsyncClient(base_url=base + prefix) as client:
                for path in (f"/{API}/queues", "/metrics"):
                    refused(await client.get(path), 401, "unauthorized")
                    assert (await client.get(path, headers=AUTH)).status_code == 200
                assert (await client.get("/")).status_code == 200
                has_security_headers(await client.get("/"))
        finally:
            await stop(task)
            await child.state.conveyor.close()  # a parent does not run a mount's lifespan


async def test_serve_beyond_loopback_lets_the_bound_address_in(
    redis_url: str, queue: Queue
) -> None:
    address = local_address()
    if address is None:
        pytest.skip("this machine has no non-loopback address")
    child = create_app(redis_url)
    parent = FastAPI()
    parent.mount("/jobs", child)
    task, base = await serving(parent, address, token=TOKEN)
    try:
        async with httpx.AsyncClient(base_url=base + "/jobs") as client:
            refused(await client.get(f"/{API}/queues"), 401, "unauthorized")
            assert (await client.get(f"/{API}/queues", headers=AUTH)).status_code == 200
            refused(await client.get(f"/{API}/queues", headers={**AUTH, "Host": "evil.example"}),
                    400, "host_not_allowed")
    finally:
        await stop(task)
        await child.state.conveyor.close()


def test_serve_refuses_a_token_it_could_not_give_to_any_conveyor_app() -> None:
    bare = FastAPI()
    with pytest.raises(ValueError, match="no conveyor app"):
        serve(bare, host="0.0.0.0", port=free_port(), token=TOKEN)
    with pytest.raises(ValueError, match="without a token"):
        serve(parents(create_app())["/jobs"], host="0.0.0.0", port=free_port())
    with pytest.raises(ValueError, match="differs"):
        serve(parents(create_app(token="one-token-here"))["/ops/jobs"], host="0.0.0.0",
              port=free_port(), token=TOKEN)


def test_dashboard_beyond_loopback_answers_for_its_own_address(redis_url: str) -> None:
    address = local_address()
    if address is None:
        pytest.skip("this machine has no non-loopback address")
    with dashboard_process(redis_url, "--host", address, "--token", TOKEN) as served:
        assert served.url == f"http://{address}:{served.port}/"
        queues = httpx.get(served.url + f"{API}/queues", headers=AUTH, timeout=10)
        assert queues.status_code == 200
        refused(httpx.get(served.url + f"{API}/queues", timeout=10,
                          headers={**AUTH, "Host": f"evil.example:{served.port}"}),
                400, "host_not_allowed")
