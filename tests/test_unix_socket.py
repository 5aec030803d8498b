"""``unix://`` URLs, with a database and a password, work everywhere a Redis
URL goes: the library (asyncio and sync), ``conveyor worker``, the inspect
commands and the dashboard's app. A private redis-server listens on a socket
in a temporary directory and on no TCP port."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import redis as redis_sync
from click.testing import CliRunner

from conveyor import Queue
from conveyor import sync as conveyor_sync
from conveyor.cli import main
from conveyor.embedded import find_redis_server
from helpers import queue_state_is, wait_for, worker_process
from web_support import api_client

PASSWORD = "s3cret"
APP = '''
from conveyor.app import Conveyor

app = Conveyor()


@app.task(queue="email")
async def send(to: str) -> dict:
    return {"sent": to}
'''


@pytest.fixture(scope="module")
def unix_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("unix-redis")
    sock = folder / "redis.sock"
    proc = subprocess.Popen(
        [find_redis_server(), "--port", "0", "--unixsocket", str(sock),
         "--unixsocketperm", "700", "--requirepass", PASSWORD, "--dir", str(folder),
         "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )

    def answers() -> bool:
        try:
            with redis_sync.Redis(unix_socket_path=str(sock), password=PASSWORD) as client:
                return bool(client.ping())
        except redis_sync.exceptions.ConnectionError:
            return False

    try:
        asyncio.run(wait_for(answers, timeout=15))
        yield f"unix://{sock}?db=1&password={PASSWORD}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def cli(*args: str) -> str:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


async def test_add_work_and_inspect_over_a_unix_socket(unix_url: str, tmp_path: Path) -> None:
    (tmp_path / "tasks.py").write_text(APP)
    async with Queue("email", unix_url) as queue:
        job = await queue.add("send", {"to": "ada@example.com"})
        worker = await worker_process("tasks:app", unix_url, tmp_path)
        try:
            await wait_for(lambda: queue_state_is(queue, job.id, "completed"), timeout=30)
        finally:
            worker.terminate()
            _, err = await asyncio.wait_for(worker.communicate(), 30)
        assert worker.returncode == 0, err.decode()
        assert PASSWORD not in err.decode()
        assert (await queue.get_job(job.id)).return_value == {"sent": "ada@example.com"}

    shown = orjson.loads(await asyncio.to_thread(
        cli, "jobs", "show", "email", job.id, "--redis", unix_url, "--json"))
    assert shown["state"] == "completed"
    assert "email" in await asyncio.to_thread(cli, "stats", "--redis", unix_url)

    async with api_client(unix_url) as client:
        response = await client.get("/api/v1/queues/email")
    assert response.status_code == 200, response.text
    assert response.json()["data"]["counts"]["completed"] == 1

    # db=1 was used, not db 0.
    sock = unix_url.split("?")[0].removeprefix("unix://")
    with redis_sync.Redis(unix_socket_path=sock, password=PASSWORD, db=0) as db0:
        assert db0.dbsize() == 0


def test_the_sync_queue_over_a_unix_socket(unix_url: str) -> None:
    queue = conveyor_sync.Queue("sync-email", unix_url)
    try:
        job = queue.add("send", {"to": "bob@example.com"})
        assert queue.get_job_state(job.id) == "waiting"
    finally:
        queue.close()


def test_a_missing_socket_is_one_line_naming_it(tmp_path: Path) -> None:
    url = f"unix://{tmp_path}/nothing.sock?password={PASSWORD}"
    result = CliRunner().invoke(main, ["stats", "--redis", url])
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"Error: cannot connect to Redis at unix://{tmp_path}/nothing.sock?password=***: "
        "no such file or directory"
    ]
