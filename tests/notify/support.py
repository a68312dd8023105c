"""Local servers the notify tests talk to: an SMTP server (aiosmtpd, optionally with TLS and a
login) and an HTTP server that plays a webhook, answering as each test scripts it."""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

USER = "detente-mailer"
PASSWORD = "s3cret-Pa55word-for-smtp"
HOOK_PATH = "/services/T0DETENTE/B0NOTIFY/xoxWebhookS3cretT0ken"
# The tests log in without TLS on purpose (a local server); aiosmtpd warns of it every time.
PLAIN_LOGIN = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Mail:
    """What the SMTP server received: the envelope and the parsed message."""

    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage


class _Inbox:
    def __init__(self) -> None:
        self.mails: list[Mail] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        parsed = message_from_bytes(envelope.original_content or b"", policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        self.mails.append(Mail(str(envelope.mail_from), list(envelope.rcpt_tos), parsed))
        return "250 Message accepted for delivery"


def _authenticator(server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any) -> AuthResult:
    ok = isinstance(data, LoginPassword) and data.login == USER.encode() and data.password == PASSWORD.encode()
    return AuthResult(success=ok, handled=False)


@dataclass
class SmtpServer:
    port: int
    inbox: _Inbox
    ca_file: Path | None = None

    @property
    def mails(self) -> list[Mail]:
        return self.inbox.mails


@dataclass
class Tls:
    ca_file: Path
    server: ssl.SSLContext


def tls(where: Path) -> Tls:
    """A private CA (trustme) and a server context for 127.0.0.1 it signed."""
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    ca_file = where / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return Tls(ca_file, context)


@contextmanager
def smtp_server(*, login: bool = False, starttls: Tls | None = None,
                implicit: Tls | None = None) -> Iterator[SmtpServer]:
    """aiosmtpd on 127.0.0.1 and a free port; with a login (USER/PASSWORD) when asked, STARTTLS
    or implicit TLS with the given certificate."""
    inbox = _Inbox()
    kwargs: dict[str, Any] = {}
    if login:
        kwargs.update(authenticator=_authenticator, auth_required=True, auth_require_tls=starttls is not None)
    if starttls is not None:
        kwargs.update(tls_context=starttls.server, require_starttls=True)
    if implicit is not None:
        kwargs.update(ssl_context=implicit.server)
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port(), **kwargs)
    controller.start()
    try:
        yield SmtpServer(controller.port, inbox, (starttls or implicit).ca_file if (starttls or implicit) else None)
    finally:
        controller.stop()


# -- the webhook ---------------------------------------------------------------------------------


@dataclass
class Received:
    at: float  # time.monotonic()
    path: str
    body: dict[str, Any]


@dataclass
class Hook:
    """A webhook receiver: answers the scripted (status, headers) first, then 200 ``ok``."""

    port: int
    script: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{HOOK_PATH}"

    def answer(self, *responses: tuple[int, dict[str, str]]) -> None:
        with self.lock:
            self.script[:] = list(responses)

    def bodies(self) -> list[dict[str, Any]]:
        with self.lock:
            return [r.body for r in self.received]


@contextmanager
def webhook_server() -> Iterator[Hook]:
    hook = Hook(0)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"null")
            with hook.lock:
                hook.received.append(Received(time.monotonic(), self.path, body))
                status, headers = hook.script.pop(0) if hook.script else (200, {})
            payload = b"ok" if status == 200 else b"error"
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    hook.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), name="test-webhook", daemon=True)
    thread.start()
    try:
        yield hook
    finally:
        server.shutdown()
        server.server_close()
