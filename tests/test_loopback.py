"""One answer to "is this host only reachable from this machine?", which decides
whether the dashboard needs a token and whether the demo may serve: the web app
and the CLI ask the same function, so ``[::1]`` is loopback to both."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from conveyor._util import is_loopback
from conveyor.cli import main
from helpers import process_lines, url_line

CONVEYOR = Path(sys.executable).with_name("conveyor")

LOOPBACK = ["localhost", "LocalHost", "127.0.0.1", "127.1.2.3", "127.255.255.254", "::1",
            "[::1]", "0:0:0:0:0:0:0:1", "[0:0:0:0:0:0:0:1]"]
BEYOND = ["0.0.0.0", "::", "[::]", "10.0.0.1", "192.168.1.1", "128.0.0.1", "2001:db8::1",
          "[2001:db8::1]", "example.com", "localhost.example.com", "", "[::1", "::1]",
          "[127.0.0.1]", "not a host"]


@pytest.mark.parametrize("host", LOOPBACK)
def test_loopback_hosts_are_loopback(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize("host", BEYOND)
def test_other_hosts_are_not(host: str) -> None:
    assert not is_loopback(host)


def test_the_web_app_and_the_cli_ask_the_same_function() -> None:
    from conveyor.cli import serve
    from conveyor.web import tokens

    assert tokens.is_loopback is is_loopback
    assert serve.is_loopback is is_loopback


def test_the_demo_takes_a_bracketed_ipv6_loopback_host() -> None:
    """It used to answer 'use a loopback host, not [::1]'; now it listens there and
    goes on to start its redis-server (missing here, which ends it in one line)."""
    result = CliRunner().invoke(
        main, ["demo", "--host", "[::1]", "--seconds", "1"], catch_exceptions=False,
        env={"CONVEYOR_REDIS_SERVER": "/nonexistent/redis-server"},
    )
    assert result.exit_code != 0
    assert result.stderr.strip() == ("Error: cannot start redis-server: No such file or "
                                     "directory: /nonexistent/redis-server")


def test_the_dashboard_serves_on_bracketed_ipv6_loopback_without_a_token(
    redis_url: str,
) -> None:
    argv = [str(CONVEYOR), "dashboard", "--host", "[::1]", "--port", "0", "--redis", redis_url]
    with process_lines(argv) as (proc, lines):
        url = url_line(lines, "conveyor dashboard on")
        assert url.startswith("http://[::1]:")
        assert httpx.get(url + "api/v1/health", timeout=10).status_code == 200
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
