"""Real receivers the examples talk to: an SMTP sink (aiosmtpd) and an HTTP
receiver for webhooks and messaging APIs that a test can make fail or slow."""

from __future__ import annotations

import email
import email.policy
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from conveyor.embedded import free_port

__all__ = ["HttpReceiver", "Mail", "Request", "SmtpSink"]


@dataclass(frozen=True)
class Mail:
    """One message the sink received."""

    sender: str
    recipients: list[str]
    subject: str
    body: str
    headers: dict[str, str]


class _Handler:
    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content or b""
        msg = email.message_from_bytes(raw if isinstance(raw, bytes) else raw.encode(),
                                       policy=email.policy.default)
        part = msg.get_body(preferencelist=("plain", "html"))
        body = part.get_content() if part is not None else ""
        with self.sink.lock:
            self.sink.messages.append(Mail(
                sender=str(envelope.mail_from), recipients=list(envelope.rcpt_tos),
                subject=str(msg.get("Subject", "")), body=str(body),
                headers={k: str(v) for k, v in msg.items()},
            ))
        return "250 Message accepted for delivery"


class SmtpSink:
    """An SMTP server on 127.0.0.1:<free port> that keeps every message it gets."""

    def __init__(self) -> None:
        self.port = free_port()
        self.messages: list[Mail] = []
        self.lock = threading.Lock()
        self._controller = Controller(_Handler(self), hostname="127.0.0.1", port=self.port)

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def start(self) -> SmtpSink:
        self._controller.start()
        return self

    def close(self) -> None:
        self._controller.stop()

    def to(self, address: str) -> list[Mail]:
        """Messages received for ``address``."""
        with self.lock:
            return [m for m in self.messages if address in m.recipients]


@dataclass
class Request:
    """One request the HTTP receiver got (and what it answered)."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    status: int

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class _Behaviour:
    fail_first: int = 0       # answer 500 to this many requests first
    delay: float = 0.0        # seconds to wait before answering
    status: int = 200
    answer: dict[str, Any] = field(default_factory=lambda: {"ok": True})


class HttpReceiver:
    """An HTTP server on 127.0.0.1:<free port> that records every request.

    ``behave(path, fail_first=N, delay=s)`` makes the next N requests to a path
    (prefix) answer 500, or all of them answer slowly, as a flaky webhook
    endpoint or messaging API would."""

    def __init__(self) -> None:
        self.port = free_port()
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._behaviours: dict[str, _Behaviour] = {}
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                behaviour = receiver._behaviour(self.path)
                if behaviour.delay:
                    time.sleep(behaviour.delay)
                with receiver._lock:
                    status = behaviour.status
                    if behaviour.fail_first > 0:
                        behaviour.fail_first -= 1
                        status = 500
                    receiver.requests.append(Request(
                        self.command, self.path, {k.lower(): v for k, v in self.headers.items()},
                        body, status))
                out = json.dumps(behaviour.answer if status < 400 else {"error": "boom"}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            do_POST = do_PUT = do_GET = _answer

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _behaviour(self, path: str) -> _Behaviour:
        with self._lock:
            for prefix in sorted(self._behaviours, key=len, reverse=True):
                if path.startswith(prefix):
                    return self._behaviours[prefix]
        return _Behaviour()

    def behave(self, path: str, *, fail_first: int = 0, delay: float = 0.0,
               status: int = 200, answer: dict[str, Any] | None = None) -> None:
        """How requests to ``path`` (a prefix) are answered from now on."""
        with self._lock:
            self._behaviours[path] = _Behaviour(fail_first, delay, status,
                                                answer if answer is not None else {"ok": True})

    def received(self, path: str = "", *, ok_only: bool = False) -> list[Request]:
        """Requests to ``path`` (a prefix), optionally only those answered 2xx."""
        with self._lock:
            return [r for r in self.requests
                    if r.path.startswith(path) and (not ok_only or r.status < 400)]

    def start(self) -> HttpReceiver:
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
