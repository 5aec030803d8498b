"""What every example needs besides conveyor: a private PostgreSQL, a private
Redis, an SMTP sink, an HTTP receiver for webhooks and messages, worker
processes that a test can kill, and a dashboard screenshot.

Everything here starts real servers on free loopback ports and stops them again;
nothing is mocked. Use them from an example's ``__main__`` (one command runs the
whole application) and from its end-to-end test.
"""

from __future__ import annotations

from .postgres import PostgresServer, database_url
from .receivers import HttpReceiver, Request, SmtpSink
from .running import Services, WorkerProcess, serve_app, wait_serving, wait_until
from .screenshot import dashboard_screenshot

__all__ = [
    "HttpReceiver",
    "PostgresServer",
    "Request",
    "Services",
    "SmtpSink",
    "WorkerProcess",
    "dashboard_screenshot",
    "database_url",
    "serve_app",
    "wait_serving",
    "wait_until",
]
