"""Redis over TLS, as SECURITY.md says to run it: a private redis-server that
speaks only TLS and asks clients for a certificate (a CA made by trustme), and
conveyor connecting with ``rediss://...?ssl_ca_certs=...&ssl_certfile=...&
ssl_keyfile=...``: a Worker runs a job, the CLI and the dashboard connect; a
client that does not trust the server's CA, or has no certificate, is refused."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest
import redis as redis_sync
from click.testing import CliRunner

from conveyor import Job, Queue, Worker
from conveyor.cli import main
from conveyor.embedded import find_redis_server, free_port
from helpers import process_lines, running, url_line

trustme = pytest.importorskip("trustme")


@dataclass
class TlsServer:
    port: int
    ca: Path
    cert: Path
    key: Path

    def url(self, **query: str) -> str:
        return f"rediss://localhost:{self.port}/0?{urlencode(query)}"

    @property
    def full_url(self) -> str:
        """Trusts the server's CA and shows the client's own certificate."""
        return self.url(ssl_ca_certs=str(self.ca), ssl_certfile=str(self.cert),
                        ssl_keyfile=str(self.key))


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsServer]:
    binary = find_redis_server()
    home = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(home / "ca.pem"))
    server_cert = ca.issue_cert("localhost", "127.0.0.1")
    server_cert.private_key_pem.write_to_path(str(home / "server.key"))
    server_cert.cert_chain_pems[0].write_to_path(str(home / "server.pem"))
    client_cert = ca.issue_cert("conveyor-client")
    client_cert.private_key_pem.write_to_path(str(home / "client.key"))
    client_cert.cert_chain_pems[0].write_to_path(str(home / "client.pem"))
    port = free_port()
    with (home / "stderr").open("wb") as stderr:
        proc = subprocess.Popen(
            [binary, "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
             "--tls-cert-file", str(home / "server.pem"),
             "--tls-key-file", str(home / "server.key"),
             "--tls-ca-cert-file", str(home / "ca.pem"), "--tls-auth-clients", "yes",
             "--save", "", "--appendonly", "no", "--dir", str(home), "--daemonize", "no",
             "--logfile", str(home / "redis.log")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr,
        )
    server = TlsServer(port, home / "ca.pem", home / "client.pem", home / "client.key")
    try:
        _wait_until_it_answers(server, proc, home / "redis.log")
        yield server
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def _wait_until_it_answers(server: TlsServer, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            said = (log.parent / "stderr").read_text(errors="replace")
            if log.exists():
                said += log.read_text(errors="replace")
            if "tls" in said.lower():  # "not compiled with TLS", "Bad directive": no TLS
                pytest.skip(f"this redis-server cannot serve TLS: {said.strip()[-300:]}")
            raise RuntimeError(f"redis-server exited: {said}")
        try:
            with redis_sync.Redis.from_url(server.full_url, socket_timeout=1) as client:
                if client.ping():
                    return
        except redis_sync.exceptions.ConnectionError:
            time.sleep(0.05)
    raise RuntimeError(f"redis-server did not answer over TLS: {log.read_text(errors='replace')}")


async def _double(job: Job) -> int:
    return 2 * int(job.data)


async def test_a_worker_runs_a_job_over_tls(tls_server: TlsServer) -> None:
    async with Queue("tls", tls_server.full_url) as queue:
        job = await queue.add("double", 21)
        async with running(Worker("tls", _double, connection=tls_server.full_url,
                                  handle_signals=False)):
            assert await job.wait_until_finished(timeout=20) == 42
        await queue.obliterate(force=True)


def test_a_client_that_does_not_trust_the_ca_or_has_no_certificate_is_refused(
    tls_server: TlsServer,
) -> None:
    untrusting = tls_server.url(ssl_certfile=str(tls_server.cert),
                                ssl_keyfile=str(tls_server.key))  # the system's CAs only
    with redis_sync.Redis.from_url(untrusting) as client, \
            pytest.raises(redis_sync.exceptions.ConnectionError, match="CERTIFICATE_VERIFY"):
        client.ping()
    anonymous = tls_server.url(ssl_ca_certs=str(tls_server.ca))
    with redis_sync.Redis.from_url(anonymous) as client, \
            pytest.raises(redis_sync.exceptions.ConnectionError):
        client.ping()


def test_the_cli_and_the_dashboard_connect_over_tls(tls_server: TlsServer) -> None:
    url = tls_server.full_url
    runner = CliRunner()
    added = runner.invoke(main, ["enqueue", "tls-cli", "hello", "--redis", url])
    assert added.exit_code == 0, added.output
    stats = runner.invoke(main, ["stats", "--json", "--redis", url])
    assert stats.exit_code == 0 and "tls-cli" in stats.stdout, stats.output

    conveyor = shutil.which("conveyor", path=str(Path(sys.executable).parent))
    assert conveyor is not None
    argv = [conveyor, "dashboard", "--port", "0", "--redis", url]
    with process_lines(argv) as (proc, lines):
        page = url_line(lines, "conveyor dashboard on")
        metrics = httpx.get(page + "api/v1/queue/metrics", timeout=10).json()
        assert any(q["queueName"] == "tls-cli" and q["waiting"] == 1
                   for q in metrics["data"]["queues"]), metrics
        proc.terminate()
        assert proc.wait(timeout=30) == 0
