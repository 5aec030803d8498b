"""Passwords never appear in a URL the CLI prints, whatever characters they
contain: percent-encoded or typed raw, in the user info or as ``?password=``,
in redis://, rediss:// and unix:// URLs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from conveyor.cli import main
from conveyor.cli.support import redact
from helpers import importable_env, refused_port

#: Any text at all, but long enough not to be found by chance in the rest of the URL.
PASSWORDS = st.text(min_size=4, max_size=40)
HOSTS = ["127.0.0.1:6379/0", "db.internal/2", "[::1]:6380"]
PLACES = {
    "user info, encoded": lambda scheme, pw, host: f"{scheme}://user:{quote(pw, safe='')}@{host}",
    "user info, raw": lambda scheme, pw, host: f"{scheme}://user:{pw}@{host}",
    "no user, raw": lambda scheme, pw, host: f"{scheme}://:{pw}@{host}",
    "query, encoded": lambda scheme, pw, host: (
        f"{scheme}://{host}?db=1&password={quote(pw, safe='')}"),
    "unix, user info": lambda _s, pw, _h: f"unix://:{quote(pw, safe='')}@/run/redis.sock?db=1",
    "unix, query": lambda _s, pw, _h: f"unix:///run/redis.sock?password={quote(pw, safe='')}",
}


def hidden(password: str, url: str, shown: str) -> bool:
    """Neither the password nor its encoded form is in ``shown``."""
    return password not in shown and quote(password, safe="") not in shown


@pytest.mark.parametrize("place", list(PLACES))
@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(password=PASSWORDS, scheme=st.sampled_from(["redis", "rediss"]),
       host=st.sampled_from(HOSTS))
def test_redact_hides_any_password(place: str, password: str, scheme: str, host: str) -> None:
    url = PLACES[place](scheme, password, host)
    skeleton = PLACES[place](scheme, "", host)
    assume(password not in skeleton and quote(password, safe="") not in skeleton)
    shown = redact(url)
    assert hidden(password, url, shown), (url, shown)
    assert "***" in shown


@pytest.mark.parametrize("url", ["redis://localhost:6379/0", "unix:///run/redis.sock?db=1",
                                 "rediss://user@db.internal:6380/1", "unix:///tmp/a@b.sock"])
def test_a_url_without_a_password_is_shown_as_it_is(url: str) -> None:
    assert redact(url) == url


@settings(max_examples=25, deadline=None)
@given(password=PASSWORDS, place=st.sampled_from(list(PLACES)))
@example(password="a[bcd", place="user info, raw")  # urlsplit: "Invalid IPv6 URL"
@example(password="a]bcd", place="no user, raw")
def test_cli_errors_never_show_the_password(password: str, place: str) -> None:
    """A refused connection and a URL that does not parse, both one line."""
    assume(password not in PLACES[place]("redis", "", "127.0.0.1:1/0"))
    assume("\x00" not in password)  # an argv cannot carry NUL
    url = PLACES[place]("redis", password, f"127.0.0.1:{refused_port()}/0")
    result = CliRunner().invoke(main, ["stats", "--redis", url])
    assert result.exit_code != 0
    assert result.stderr.startswith("Error: ") and len(result.stderr.splitlines()) == 1
    assert hidden(password, url, result.output), result.output


@pytest.mark.parametrize("env", [False, True], ids=["--redis", "$CONVEYOR_REDIS_URL"])
def test_the_worker_refuses_a_url_it_cannot_read_in_one_line(
    tmp_path: Path, env: bool
) -> None:
    """Not a traceback quoting redis-py's parse error (and a piece of the password)."""
    (tmp_path / "tasks.py").write_text(
        "from conveyor.app import Conveyor\napp = Conveyor()\n"
        "@app.task(queue='email')\nasync def send() -> None: ...\n")
    url = "redis://user:p@ss:w0rd/x@127.0.0.1:6379/0"
    environ = importable_env(tmp_path)
    argv = [sys.executable, "-m", "conveyor", "worker", "tasks:app"]
    if env:
        environ["CONVEYOR_REDIS_URL"] = url
    else:
        argv += ["--redis", url]
    done = subprocess.run(argv, cwd=tmp_path, env=environ, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "Error: Invalid value: 'redis://user:***@127.0.0.1:6379/0' is not a Redis URL (it does "
        "not parse; percent-encode '@', ':', '/', '?', '#', '[' and ']' in a password) "
        "(see 'python -m conveyor worker --help')"
    ]
