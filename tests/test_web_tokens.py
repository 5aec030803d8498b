"""The dashboard token's rules (conveyor.web.tokens) as create_app, check_listen,
serve and ``conveyor dashboard`` apply them, and the ways to give the command a
token without putting it in the process list (--token-file, $CONVEYOR_TOKEN)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner, Result

from conveyor.cli import main
from conveyor.web import check_listen, create_app, serve
from conveyor.web.tokens import MIN_LENGTH_BEYOND_LOOPBACK, check_token
from helpers import refused_port
from redis_server import free_port

CONVEYOR = Path(sys.executable).with_name("conveyor")
GOOD = "0123456789abcdef-token"  # 22 printable ASCII characters
TOKEN_VARIABLES = ("CONVEYOR_TOKEN", "CONVEYOR_DASHBOARD_TOKEN")

#: (token, what the refusal says) for tokens refused on any host.
UNSENDABLE = [
    ("", "the token is blank"),
    ("   ", "the token is blank"),
    (" " + GOOD, "starts or ends with whitespace"),
    (GOOD + "\n", "starts or ends with whitespace"),
    (GOOD + "\u00a0", "starts or ends with whitespace"),
    ("caf\u00e9-" + GOOD, "'é'"),             # Latin-1, but curl/httpx would send UTF-8/ASCII
    ("\N{EURO SIGN}-" + GOOD, "'€'"),         # beyond Latin-1: fetch() throws
    ("tab\tinside-" + GOOD, "'\\t'"),
    ("nul\x00inside-" + GOOD, "'\\x00'"),
    ("del\x7finside-" + GOOD, "'\\x7f'"),
]
IDS = ["empty", "spaces", "leading-space", "trailing-newline", "trailing-nbsp", "latin-1",
       "euro", "tab", "nul", "del"]


# -- the rule ----------------------------------------------------------------------------


@pytest.mark.parametrize(("token", "says"), UNSENDABLE, ids=IDS)
def test_a_token_clients_cannot_send_alike_is_refused_in_one_line(token: str, says: str) -> None:
    for host in (None, "127.0.0.1", "0.0.0.0"):
        with pytest.raises(ValueError, match="token") as refused:
            check_token(token, host=host)
        assert says in str(refused.value)
        assert "\n" not in str(refused.value)


def test_inner_spaces_and_punctuation_are_fine() -> None:
    for token in ("correct horse battery staple", "!#$%&'()*+,-./:;<=>?@[\\]^_`{|}~x", GOOD):
        assert check_token(token, host="0.0.0.0") == token
    with pytest.raises(ValueError, match="must be a string"):
        check_token(b"bytes-are-not-a-token")


def test_a_short_token_is_refused_only_beyond_loopback() -> None:
    short = "s3cret"
    for host in ("127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost", None):
        assert check_token(short, host=host) == short
    for host in ("0.0.0.0", "::", "192.168.1.10", "example.com", ""):
        with pytest.raises(ValueError, match=f"at least {MIN_LENGTH_BEYOND_LOOPBACK}"):
            check_token(short, host=host)
    assert check_token("x" * MIN_LENGTH_BEYOND_LOOPBACK, host="0.0.0.0")
    with pytest.raises(ValueError, match="has 15 characters"):
        check_token("x" * (MIN_LENGTH_BEYOND_LOOPBACK - 1), host="0.0.0.0")


# -- where it applies --------------------------------------------------------------------


@pytest.mark.parametrize(("token", "says"), UNSENDABLE, ids=IDS)
def test_create_app_refuses_the_same_tokens(token: str, says: str) -> None:
    with pytest.raises(ValueError, match="token") as refused:
        create_app(token=token)
    assert says in str(refused.value)


def test_check_listen_and_serve_want_a_long_token_beyond_loopback() -> None:
    check_listen("127.0.0.1", "s3cret")
    check_listen("0.0.0.0", GOOD)
    with pytest.raises(ValueError, match="at least 16"):
        check_listen("0.0.0.0", "s3cret")
    with pytest.raises(ValueError, match="starts or ends with whitespace"):
        check_listen("127.0.0.1", GOOD + " ")
    with pytest.raises(ValueError, match="at least 16"):
        serve(create_app(token="s3cret"), host="0.0.0.0", port=free_port())
    with pytest.raises(ValueError, match="at least 16"):
        serve(create_app(), host="0.0.0.0", port=free_port(), token="s3cret")


# -- conveyor dashboard ------------------------------------------------------------------


def dashboard(*args: str, env: dict[str, str] | None = None) -> Result:
    """``conveyor dashboard ARGS`` through click's runner with a clean token environment."""
    clean: dict[str, str | None] = {name: None for name in TOKEN_VARIABLES}
    clean.update(env or {})
    return CliRunner().invoke(main, ["dashboard", *args], env=clean, catch_exceptions=False)


def one_line(result: Result) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return lines[0]


@pytest.mark.parametrize(("token", "says"), UNSENDABLE[:8], ids=IDS[:8])
def test_the_command_refuses_a_bad_token_from_each_source_in_one_line(
    tmp_path: Path, token: str, says: str
) -> None:
    # Refused before Redis is asked: no server is listening at this URL.
    redis = ["--redis", f"redis://127.0.0.1:{refused_port()}/0"]
    line = one_line(dashboard("--token", token, *redis))
    assert line.startswith("Error: --token: ") and says in line
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n", encoding="utf-8")
    # In a file a line break ends the line: the token's own is a blank line, allowed
    # since a file holds one 'role:token' a line (tests/test_web_roles.py).
    if not token.endswith("\n"):
        line = one_line(dashboard("--token-file", str(token_file), *redis))
        assert line.startswith(f"Error: --token-file {token_file}: ") and says in line
    for name in ("CONVEYOR_TOKEN", "CONVEYOR_DASHBOARD_TOKEN"):
        line = one_line(dashboard(*redis, env={name: token}))
        assert line.startswith(f"Error: ${name}: ") and says in line


def test_the_command_wants_a_long_token_beyond_loopback_only(tmp_path: Path) -> None:
    redis = ["--redis", f"redis://127.0.0.1:{refused_port()}/0"]
    line = one_line(dashboard("--host", "0.0.0.0", "--token", "s3cret", *redis))
    assert "the token has 6 characters" in line and "at least 16" in line
    # On loopback the short token passes the rules: the next stop is Redis.
    assert "cannot connect to Redis" in one_line(dashboard("--token", "s3cret", *redis))


def test_token_file_mistakes_are_one_line(tmp_path: Path) -> None:
    redis = ["--redis", f"redis://127.0.0.1:{refused_port()}/0"]
    missing = tmp_path / "missing"
    line = one_line(dashboard("--token-file", str(missing), *redis))
    assert line == (f"Error: cannot read the token: --token-file {missing}: "
                    "No such file or directory")
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff\xfe-not-text")
    assert "not UTF-8 text" in one_line(dashboard("--token-file", str(binary), *redis))
    two_lines = tmp_path / "two-lines"
    two_lines.write_text(GOOD + "\n\n")  # a blank line is allowed: the next stop is Redis
    assert "cannot connect to Redis" in one_line(dashboard("--token-file", str(two_lines), *redis))
    spaced = tmp_path / "spaced"
    spaced.write_text(GOOD + " \n")
    assert one_line(dashboard("--token-file", str(spaced), *redis)).startswith(
        f"Error: --token-file {spaced}: line 1: the token starts or ends with whitespace")
    both = one_line(dashboard("--token", GOOD, "--token-file", str(two_lines), *redis))
    assert both == "Error: --token and --token-file do not go together: give one"


@contextmanager
def serving(argv: list[str], env: dict[str, str]) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """``conveyor dashboard ARGV`` as a process; yields it and its URL once it serves."""
    inherited = {k: v for k, v in os.environ.items() if k not in TOKEN_VARIABLES}
    with subprocess.Popen([str(CONVEYOR), "dashboard", "--port", "0", *argv],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env={**inherited, **env}) as proc:
        try:
            assert proc.stdout is not None and proc.stderr is not None
            first = proc.stdout.readline()
            assert first.startswith("conveyor dashboard on "), (first, proc.stderr.read())
            yield proc, first.split()[3]
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=30)


def command_line(pid: int) -> str:
    """What ``ps`` shows of a process: its argv, as Linux keeps it."""
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def needs(url: str, token: str) -> None:
    """The API at ``url`` refuses a request without ``token`` and answers one with it."""
    assert httpx.get(url + "api/v1/health", timeout=10).status_code == 401
    good = httpx.get(url + "api/v1/health", headers={"Authorization": f"Bearer {token}"},
                     timeout=10)
    assert good.status_code == 200, good.text


def test_token_file_and_variables_keep_the_token_out_of_the_process_list(
    redis_url: str, tmp_path: Path
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(GOOD + "\n")
    token_file.chmod(0o600)
    base = ["--host", "0.0.0.0", "--redis", redis_url]
    for argv, env in (
        ([*base, "--token-file", str(token_file)], {}),
        (base, {"CONVEYOR_TOKEN": GOOD}),
        (base, {"CONVEYOR_DASHBOARD_TOKEN": GOOD}),  # the older name still works
        (base, {"CONVEYOR_TOKEN": GOOD, "CONVEYOR_DASHBOARD_TOKEN": "the-older-name-loses"}),
    ):
        with serving(argv, env) as (proc, url):
            needs(url, GOOD)
            assert GOOD not in command_line(proc.pid)


def test_token_on_the_command_line_still_works(redis_url: str) -> None:
    with serving(["--host", "0.0.0.0", "--token", GOOD, "--redis", redis_url], {}) as (_, url):
        needs(url, GOOD)
