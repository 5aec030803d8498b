"""Roles (issue 16, item 2): tokens that may only read or may also change
things, several at once (create_app(tokens=...), ``conveyor dashboard
--token-file`` with one ``role:token`` a line), and a host app's own auth
plugged in with create_app(dependencies=[...]) -- here HTTP Basic, written
with fastapi.security as a host app would."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Annotated, Any

import httpx
import pytest
from click.testing import CliRunner
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.security import HTTPBasic, HTTPBasicCredentials

from conveyor import Queue
from conveyor.cli import main
from conveyor.web import create_app
from conveyor.web.roles import grant, parse_token_file
from helpers import refused_port
from redis_server import free_port
from test_web_tokens import serving
from web_support import API, asgi_client, data, error

pytestmark = pytest.mark.cluster

READ = "read-only-token-0123"
ADMIN = "admin-token-0123456789"
OTHER_ADMIN = "second-admin-token-xyz"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def changing_routes(app: FastAPI) -> list[tuple[str, str]]:
    """(method, path) of every route of the app's schema that is not GET: the
    routes other helpers add are in it too."""
    schema = app.openapi()
    return [(method.upper(), path) for path, item in schema["paths"].items()
            for method in item if method not in ("get", "head", "options")]


async def test_a_read_token_reads_everything_and_changes_nothing(redis_url: str) -> None:
    queue = Queue("roles-read", redis_url)
    failed = await queue.add("x", {"n": 1})
    await queue.pause()
    app = create_app(redis_url, tokens={READ: "read", ADMIN: "admin"})
    try:
        async with asgi_client(app) as client:
            assert data(await client.get(f"{API}/whoami", headers=bearer(READ))) == {
                "role": "read"}
            assert [q["name"] for q in data(await client.get(f"{API}/queues",
                                                             headers=bearer(READ)))] == [
                "roles-read"]
            job = data(await client.get(f"{API}/queues/roles-read/jobs/{failed.id}",
                                        headers=bearer(READ)))
            assert job["data"] == {"n": 1}
            metrics = await client.get("/metrics", headers=bearer(READ))
            assert metrics.status_code == 200 and "roles-read" in metrics.text

            routes = changing_routes(app)
            assert len(routes) >= 7  # pause, resume, retry, clean, enqueue, promote, remove...
            for method, path in routes:
                url = path.replace("{queue}", "roles-read").replace(
                    "{job_id}", failed.id).replace("{job_id:conveyor_job_id}", failed.id)
                refused = await client.request(method, url, headers=bearer(READ), json={})
                found = error(refused, 403, "forbidden")
                assert "admin" in found["message"], (method, path)
    finally:
        await app.state.conveyor.close()
    # Nothing changed: still paused, the job still waiting, no job added.
    assert await queue.is_paused()
    assert await queue.get_job_state(failed.id) == "waiting"
    assert (await queue.get_job_counts())["waiting"] == 1
    await queue.close()


async def test_an_admin_token_changes_things_and_token_stays_admin(redis_url: str) -> None:
    app = create_app(redis_url, token=ADMIN, tokens=[("read", READ), ("admin", OTHER_ADMIN)])
    try:
        async with asgi_client(app) as client:
            for token in (ADMIN, OTHER_ADMIN):
                assert data(await client.get(f"{API}/whoami", headers=bearer(token))) == {
                    "role": "admin"}
                added = await client.post(f"{API}/queues/roles-admin/jobs",
                                          headers=bearer(token), json={"name": "x"})
                assert data(added, 201)["state"] == "waiting"
            error(await client.post(f"{API}/queues/roles-admin/pause", headers=bearer(READ)),
                  403, "forbidden")
            paused = await client.post(f"{API}/queues/roles-admin/pause", headers=bearer(ADMIN))
            assert data(paused)["is_paused"] is True
            for wrong in ("", "nope", READ + "x", ADMIN[:-1]):
                error(await client.get(f"{API}/whoami", headers=bearer(wrong)),
                      401, "unauthorized")
    finally:
        await app.state.conveyor.close()


async def test_without_tokens_everyone_is_admin(redis_url: str) -> None:
    app = create_app(redis_url)
    try:
        async with asgi_client(app) as client:
            assert data(await client.get(f"{API}/whoami")) == {"role": "admin"}
    finally:
        await app.state.conveyor.close()


@pytest.mark.cluster(False)
@pytest.mark.parametrize(("tokens", "says"), [
    ({READ: "reader"}, "tokens (entry 1): the role must be 'read' or 'admin'"),
    ([("admin", ADMIN), ("root", READ)], "tokens (entry 2): the role must be"),
    ([(READ, "read")], "tokens (entry 1): the role must be"),  # (token, role): reversed
    ([("read", READ), ("admin", READ)], "the same token is given the roles 'read' and 'admin'"),
    ({" " + READ: "read"}, "tokens (entry 1): the token starts or ends with whitespace"),
    ([("read",)], "each entry is a (role, token) pair"),
    (READ, "not one string"),
])
def test_bad_tokens_are_refused_naming_the_entry(tokens: Any, says: str) -> None:
    with pytest.raises(ValueError, match="tokens") as refused:
        create_app(tokens=tokens)
    assert says in str(refused.value)
    assert READ not in str(refused.value)  # a token is a secret: never repeated
    with pytest.raises(ValueError, match="the same token is given the roles 'admin' and 'read'"):
        create_app(token=READ, tokens={READ: "read"})


# -- a host app's own auth -----------------------------------------------------------------

basic = HTTPBasic()
USERS = {"ops": ("ops-password", "admin"), "viewer": ("viewer-password", "read")}


def check_basic(request: Request,
                credentials: Annotated[HTTPBasicCredentials, Depends(basic)]) -> None:
    """A host app's HTTP Basic: known users only, each with a role."""
    user = USERS.get(credentials.username)
    given = credentials.password.encode()
    if user is None or not secrets.compare_digest(given, user[0].encode()):
        raise HTTPException(401, "wrong user or password", {"WWW-Authenticate": "Basic"})
    grant(request, "read" if user[1] == "read" else "admin")


async def test_a_host_app_plugs_in_http_basic_with_roles(redis_url: str) -> None:
    app = create_app(redis_url, dependencies=[Depends(check_basic)])
    try:
        async with asgi_client(app) as client:
            for path in (f"{API}/queues", f"{API}/whoami", "/metrics"):
                refused = await client.get(path)
                assert refused.status_code == 401, path
                assert refused.headers["www-authenticate"] == "Basic"
                wrong = await client.get(path, auth=("ops", "guess"))
                assert wrong.status_code == 401, path
            ops, viewer = ("ops", "ops-password"), ("viewer", "viewer-password")
            assert data(await client.get(f"{API}/whoami", auth=ops)) == {"role": "admin"}
            assert data(await client.get(f"{API}/whoami", auth=viewer)) == {"role": "read"}
            assert (await client.get("/metrics", auth=viewer)).status_code == 200
            add = {"name": "x"}
            error(await client.post(f"{API}/queues/basic/jobs", auth=viewer, json=add),
                  403, "forbidden")
            data(await client.post(f"{API}/queues/basic/jobs", auth=ops, json=add), 201)
            # The page and its files stay public, as with tokens: the API asks.
            assert (await client.get("/")).status_code == 200
            counts = data(await client.get(f"{API}/queues/basic", auth=viewer))["counts"]
            assert counts["waiting"] == 1
    finally:
        await app.state.conveyor.close()


# -- the token file --------------------------------------------------------------------------


@pytest.mark.cluster(False)
def test_a_token_file_gives_roles_a_line_each() -> None:
    text = ("# who may do what\n\nread:" + READ + "\r\n  # ops\nadmin:" + ADMIN + "\n"
            "admin:" + OTHER_ADMIN + "\n")
    assert parse_token_file(text) == [("read", READ), ("admin", ADMIN), ("admin", OTHER_ADMIN)]
    assert parse_token_file(ADMIN + "\n") == [("admin", ADMIN)]  # a bare token, as before
    assert parse_token_file("read:a:b:c-token") == [("read", "a:b:c-token")]


@pytest.mark.cluster(False)
@pytest.mark.parametrize(("text", "says"), [
    (f"read:{READ}\nwrite:{ADMIN}\n", "line 2: expected 'read:TOKEN' or 'admin:TOKEN'"),
    (f"# c\n\n{READ}\nadmin:{ADMIN}\n", "line 3: expected 'read:TOKEN' or 'admin:TOKEN'"),
    (f"read:{READ}\nadmin:\n", "line 2: the token is blank"),
    (f"read:{READ} \n", "line 1: the token starts or ends with whitespace"),
    (f"read:{READ}\nadmin:{READ}\n", "line 2: this token has the role 'read' on an earlier"),
    ("# nothing\n\n", "the token is blank: the file holds no 'role:token' line"),
    ("user:pass-with-colon", "line 1: expected 'read:TOKEN' or 'admin:TOKEN'"),
])
def test_a_bad_token_file_line_is_refused_with_its_number(text: str, says: str) -> None:
    with pytest.raises(ValueError) as refused:
        parse_token_file(text)
    assert str(refused.value).startswith(says)


@pytest.mark.cluster(False)
def test_the_command_names_the_bad_line_in_one_line(tmp_path: Path) -> None:
    token_file = tmp_path / "tokens"
    token_file.write_text(f"read:{READ}\n\nraed:{ADMIN}\n")
    result = CliRunner().invoke(
        main, ["dashboard", "--token-file", str(token_file),
               "--redis", f"redis://127.0.0.1:{refused_port()}/0"],
        env={"CONVEYOR_TOKEN": None, "CONVEYOR_DASHBOARD_TOKEN": None})
    assert result.exit_code == 1
    assert result.stderr.strip() == (f"Error: --token-file {token_file}: line 3: expected "
                                     "'read:TOKEN' or 'admin:TOKEN'")
    assert ADMIN not in result.stderr


@pytest.mark.cluster(False)
def test_the_dashboard_serves_the_roles_of_its_token_file(redis_url: str, tmp_path: Path) -> None:
    token_file = tmp_path / "tokens"
    token_file.write_text(f"# team\nread:{READ}\nadmin:{ADMIN}\n")
    with serving(["--host", "0.0.0.0", "--redis", redis_url, "--token-file", str(token_file)],
                 {}) as (_, url):
        api = url + "api/v1"
        assert httpx.get(f"{api}/whoami", timeout=10).status_code == 401
        for token, role in ((READ, "read"), (ADMIN, "admin")):
            found = httpx.get(f"{api}/whoami", headers=bearer(token), timeout=10)
            assert found.json()["data"] == {"role": role}
        refused = httpx.post(f"{api}/queues/cli-roles/jobs", headers=bearer(READ),
                             json={"name": "x"}, timeout=10)
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
        added = httpx.post(f"{api}/queues/cli-roles/jobs", headers=bearer(ADMIN),
                           json={"name": "x"}, timeout=10)
        assert added.status_code == 201, added.text


@pytest.mark.cluster(False)
def test_every_token_of_the_file_needs_16_characters_beyond_loopback(tmp_path: Path) -> None:
    token_file = tmp_path / "tokens"
    token_file.write_text(f"admin:{ADMIN}\nread:short\n")
    result = CliRunner().invoke(
        main, ["dashboard", "--host", "0.0.0.0", "--token-file", str(token_file),
               "--redis", f"redis://127.0.0.1:{refused_port()}/0"],
        env={"CONVEYOR_TOKEN": None, "CONVEYOR_DASHBOARD_TOKEN": None})
    assert result.exit_code == 1
    assert "the token has 5 characters" in result.stderr and "at least 16" in result.stderr


@pytest.mark.cluster(False)
def test_serve_wants_every_token_long_beyond_loopback() -> None:
    from conveyor.web import serve

    with pytest.raises(ValueError, match="the token has 5 characters"):
        serve(create_app(tokens=[("admin", ADMIN), ("read", "short")]), host="0.0.0.0",
              port=free_port())
    # A token given to serve() is an admin token: a read token of the app is not one.
    with pytest.raises(ValueError, match="differs from the admin tokens"):
        serve(create_app(tokens={READ: "read"}), port=free_port(), token=READ)
