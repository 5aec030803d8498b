"""A worker warns once at start about Redis settings that lose jobs without an
error (an evicting ``maxmemory-policy``, AOF off on a server that is not a test
one), against private servers started with those settings; says nothing when
the settings are safe, when the server is a local one without a config file
(AOF), when ``INFO`` is renamed away, or when told to be quiet."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from chaos.sentinel_setup import CustomServer

from conveyor import Job, Worker
from conveyor._server_checks import CHECKS_ENV, server_warnings
from helpers import running, unique_queue_name, wait_for
from redis_server import RedisServer


def _server(settings: dict[str, str], config_file: bool = True) -> CustomServer:
    """A private server with ``settings``, in a config file (as a production
    server is started) or on the command line."""

    def args(server: RedisServer) -> list[str]:
        lines = {"port": str(server.port), "bind": "127.0.0.1", "dir": str(server.dir),
                 "save": '""', "logfile": str(server.logfile), **settings}
        if not config_file:
            return [word for key, value in lines.items()
                    for word in (f"--{key}", value.strip('"'))]
        path = Path(server.dir) / "redis.conf"
        path.write_text("".join(f"{key} {value}\n" for key, value in lines.items()))
        return [str(path)]

    return CustomServer(args)


@pytest.fixture
def started() -> Iterator[list[CustomServer]]:
    servers: list[CustomServer] = []
    yield servers
    for server in servers:
        server.close()


async def _noop(job: Job) -> None:
    return None


async def _warnings_at_start(
    server: CustomServer, caplog: pytest.LogCaptureFixture, workers: int = 1
) -> list[str]:
    """The warnings logged while ``workers`` workers start on ``server``."""
    caplog.clear()
    caplog.set_level(logging.DEBUG, logger="conveyor.worker")
    url = f"redis://127.0.0.1:{server.port}/0"
    for n in range(1, workers + 1):
        async with running(Worker(unique_queue_name(), _noop, connection=url,
                                  handle_signals=False)):
            await wait_for(lambda n=n: _checks_done(caplog) == n, timeout=10)
    return [r.getMessage() for r in caplog.records
            if r.levelno == logging.WARNING and r.name == "conveyor.worker"]


def _checks_done(caplog: pytest.LogCaptureFixture) -> int:
    """How many workers' start checks ended (each ends with a debug line)."""
    return sum(r.getMessage().startswith("server settings") for r in caplog.records)


@pytest.mark.parametrize(("policy", "why"), [
    ("allkeys-lru", "noeviction"),
    ("volatile-lru", "volatile-* too: conveyor's deduplication keys"),
])
async def test_an_evicting_policy_is_warned_about_once(
    started: list[CustomServer], caplog: pytest.LogCaptureFixture, policy: str, why: str
) -> None:
    server = _server({"maxmemory-policy": policy, "appendonly": "yes"})
    started.append(server)
    server.start()
    warnings = await _warnings_at_start(server, caplog, workers=2)
    assert len(warnings) == 1, warnings  # two workers, one process: said once
    assert f"maxmemory-policy is {policy}" in warnings[0]
    assert why in warnings[0]


async def test_aof_off_is_warned_about_on_a_server_with_a_config_file(
    started: list[CustomServer], caplog: pytest.LogCaptureFixture
) -> None:
    server = _server({"appendonly": "no"})
    started.append(server)
    server.start()
    [warning] = await _warnings_at_start(server, caplog)
    assert "AOF off" in warning and "appendfsync everysec" in warning


async def test_no_warning_for_safe_settings_a_local_test_server_or_when_silenced(
    started: list[CustomServer], caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    safe = _server({"appendonly": "yes", "appendfsync": "everysec"})
    scratch = _server({"appendonly": "no"}, config_file=False)  # local, no config file
    renamed = _server({"appendonly": "no", "maxmemory-policy": "allkeys-lru",
                       "rename-command": 'INFO ""'})
    quiet = _server({"appendonly": "no", "maxmemory-policy": "allkeys-lru"})
    started.extend([safe, scratch, renamed, quiet])
    for server in started:
        server.start()
    assert await _warnings_at_start(safe, caplog) == []
    assert await _warnings_at_start(scratch, caplog) == []
    assert await _warnings_at_start(renamed, caplog) == []  # INFO renamed: never fails
    assert any("INFO failed" in r.getMessage() for r in caplog.records)
    monkeypatch.setenv(CHECKS_ENV, "0")
    assert await _warnings_at_start(quiet, caplog) == []


def test_which_settings_call_for_which_warning() -> None:
    safe = {"maxmemory_policy": "noeviction", "aof_enabled": 1, "config_file": "/etc/r.conf"}
    assert server_warnings(safe, local=False) == []
    assert server_warnings({**safe, "aof_enabled": 0}, local=True) != []  # has a config file
    assert server_warnings({**safe, "aof_enabled": 0, "config_file": ""}, local=True) == []
    assert server_warnings({**safe, "aof_enabled": 0, "config_file": ""}, local=False) != []
    for policy in ("allkeys-lru", "allkeys-lfu", "allkeys-random", "volatile-ttl"):
        assert server_warnings({**safe, "maxmemory_policy": policy}, local=True) != []
