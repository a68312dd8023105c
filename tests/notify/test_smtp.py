"""Sending mail through a local SMTP server (aiosmtpd): plain, STARTTLS and implicit TLS, with
and without a login; each failure names the server and what to check, never the password."""

from __future__ import annotations

import logging
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from structlog.testing import capture_logs

from detente.errors import FatalError, RetriableError
from detente.notify.mail import send_mail
from detente.settings import SmtpSettings
from tests.notify.support import PASSWORD, PLAIN_LOGIN, USER, SmtpServer, free_port, smtp_server, tls

pytestmark = PLAIN_LOGIN


def note(to: str = "ops@example.com") -> EmailMessage:
    msg = EmailMessage()
    msg["Subject"], msg["From"], msg["To"] = "hello", "detente@example.com", to
    msg.set_content("a test")
    return msg


def settings(port: int, **kw: Any) -> SmtpSettings:
    base: dict[str, Any] = {"host": "127.0.0.1", "port": port, "starttls": False, "timeout_seconds": 5,
                            "from_address": "detente@example.com"}
    return SmtpSettings(**{**base, **kw})


def test_a_message_reaches_the_server_with_its_recipients(smtp: SmtpServer) -> None:
    refused = send_mail(settings(smtp.port), note("a@example.com, b@example.com"))
    assert refused == []
    assert [sorted(m.rcpt_tos) for m in smtp.mails] == [["a@example.com", "b@example.com"]]
    assert smtp.mails[0].mail_from == "detente@example.com"


def test_login_with_the_password_over_starttls(tmp_path: Path) -> None:
    cert = tls(tmp_path)
    with smtp_server(login=True, starttls=cert) as server:
        send_mail(settings(server.port, starttls=True, username=USER, password=SecretStr(PASSWORD),
                           ca_file=cert.ca_file), note())
        assert len(server.mails) == 1


def test_implicit_tls_with_a_private_ca(tmp_path: Path) -> None:
    cert = tls(tmp_path)
    with smtp_server(implicit=cert) as server:
        send_mail(settings(server.port, ssl=True, ca_file=cert.ca_file), note())
        assert len(server.mails) == 1


def test_an_untrusted_certificate_is_a_fatal_error_that_points_at_ca_file(tmp_path: Path) -> None:
    cert = tls(tmp_path)
    with smtp_server(starttls=cert) as server, pytest.raises(FatalError) as caught:
        send_mail(settings(server.port, starttls=True), note())
    assert f"127.0.0.1:{server.port}" in str(caught.value) and "digest.smtp.ca_file" in str(caught.value)


def test_a_refused_login_names_the_server_and_never_the_password(tmp_path: Path, capfd: pytest.CaptureFixture[str],
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    wrong = "Wr0ng-but-secret-password"
    caplog.set_level(logging.DEBUG)
    with smtp_server(login=True) as server, capture_logs() as logs, pytest.raises(FatalError) as caught:
        send_mail(settings(server.port, username=USER, password=SecretStr(wrong)), note())
    message = str(caught.value)
    assert f"the SMTP server 127.0.0.1:{server.port} refused the login of '{USER}'" in message
    assert "535" in message and "DETENTE_DIGEST__SMTP__PASSWORD" in message
    out, err = capfd.readouterr()
    seen = [message, repr(caught.value), str(caught.value.__cause__), str(caught.value.__context__), out, err,
            caplog.text, repr(logs)]
    assert not [s for s in seen if wrong in s]
    assert server.mails == []


def test_login_is_refused_before_tls_when_the_server_demands_tls(tmp_path: Path) -> None:
    """A server that offers AUTH only after STARTTLS, asked to log in on a plain connection."""
    cert = tls(tmp_path)
    with smtp_server(login=True, starttls=cert) as server, pytest.raises(FatalError) as caught:
        send_mail(settings(server.port, username=USER, password=SecretStr(PASSWORD)), note())
    assert f"127.0.0.1:{server.port}" in str(caught.value)
    assert PASSWORD not in str(caught.value)


def test_starttls_against_a_server_without_it_says_what_to_change(smtp: SmtpServer) -> None:
    with pytest.raises(FatalError, match=r"does not offer STARTTLS; set digest.smtp.starttls: false"):
        send_mail(settings(smtp.port, starttls=True), note())


def test_an_unreachable_server_is_retriable_and_says_what_to_check() -> None:
    port = free_port()  # nothing listens there
    with pytest.raises(RetriableError) as caught:
        send_mail(settings(port), note())
    assert f"cannot reach the SMTP server 127.0.0.1:{port}" in str(caught.value)
    assert "digest.smtp.host and digest.smtp.port" in str(caught.value)
