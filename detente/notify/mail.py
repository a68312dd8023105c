"""Sending an email over SMTP (smtplib): implicit TLS or STARTTLS, optional login, a timeout.

Every failure becomes a detente error that names the server (host:port), what it was doing and
what to check, classified as retriable (the server is down or busy) or fatal (settings or
credentials must change). The password never appears in one: the server's reply is quoted by
its first line only, with the password and its base64 forms masked should a server echo them.
"""

from __future__ import annotations

import base64
import smtplib
import socket
import ssl
from email.message import EmailMessage

from detente.errors import DetenteError, FatalError, RetriableError
from detente.settings import SmtpSettings

PASSWORD_HINT = "digest.smtp.password (DETENTE_DIGEST__SMTP__PASSWORD)"


def send_mail(smtp: SmtpSettings, message: EmailMessage) -> list[str]:
    """Send ``message`` to its To/Cc recipients; return the recipients the server refused (the
    others got it). Raises RetriableError or FatalError."""
    if not smtp.host:
        raise FatalError("digest.smtp.host is not set; set the SMTP server the digest is sent through")
    where = f"{smtp.host}:{smtp.effective_port}"
    secret = smtp.password.get_secret_value() if smtp.password is not None else ""
    context = ssl.create_default_context(cafile=str(smtp.ca_file) if smtp.ca_file else None)
    step = "connecting"
    try:
        client = (smtplib.SMTP_SSL(smtp.host, smtp.effective_port, timeout=smtp.timeout_seconds, context=context)
                  if smtp.ssl else smtplib.SMTP(smtp.host, smtp.effective_port, timeout=smtp.timeout_seconds))
        with client:
            step = "greeting"
            client.ehlo()
            if smtp.use_starttls:
                step = "starting TLS"
                client.starttls(context=context)
                client.ehlo()
            if smtp.username:
                step = "logging in"
                client.login(smtp.username, secret)
            step = "sending"
            refused = client.send_message(message)
    except DetenteError:
        raise
    except Exception as exc:
        raise _translate(exc, smtp, where, step, secret) from None  # the cause may quote the SMTP dialogue
    return sorted(refused)


def _translate(exc: Exception, smtp: SmtpSettings, where: str, step: str, secret: str) -> DetenteError:
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return FatalError(f"the SMTP server {where} refused the login of '{smtp.username}' "
                          f"({_reply(exc, secret, smtp.username)}); check digest.smtp.username and {PASSWORD_HINT}")
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        offer = "STARTTLS" if step == "starting TLS" else "login (AUTH)" if step == "logging in" else "this"
        return FatalError(f"the SMTP server {where} does not offer {offer}; "
                          + ("set digest.smtp.starttls: false (or ssl: true for a TLS port)" if offer == "STARTTLS"
                             else "use a port that offers AUTH after TLS (usually 587 with starttls) or remove "
                                  "digest.smtp.username"))
    if isinstance(exc, smtplib.SMTPSenderRefused):
        return FatalError(f"the SMTP server {where} refused the sender '{smtp.from_address}' "
                          f"({_reply(exc, secret, smtp.username)}); check digest.smtp.from_address is an address "
                          "this server lets detente send as")
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return FatalError(f"the SMTP server {where} refused every recipient ({', '.join(sorted(exc.recipients))}); "
                          "check the addresses in digest.audiences")
    if isinstance(exc, smtplib.SMTPResponseException):
        kind = RetriableError if 400 <= exc.smtp_code < 500 else FatalError
        return kind(f"the SMTP server {where} answered {_reply(exc, secret, smtp.username)} while {step}")
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return RetriableError(f"the SMTP server {where} closed the connection while {step}; check that "
                              "digest.smtp.ssl matches the port (ssl: true for 465, starttls for 587)")
    if isinstance(exc, ssl.SSLError):
        return FatalError(f"TLS with the SMTP server {where} failed while {step} ({exc.reason or type(exc).__name__});"
                          " check that digest.smtp.ssl / starttls match the port, and digest.smtp.ca_file for a "
                          "server whose certificate a private CA signed")
    if isinstance(exc, TimeoutError):
        return RetriableError(f"the SMTP server {where} did not answer within {smtp.timeout_seconds:g} s while "
                              f"{step}; check digest.smtp.host and digest.smtp.port, and any firewall on the way")
    if isinstance(exc, socket.gaierror):
        return FatalError(f"cannot resolve the SMTP server's name in {where}; check digest.smtp.host")
    if isinstance(exc, OSError):
        return RetriableError(f"cannot reach the SMTP server {where} ({exc.strerror or type(exc).__name__}); check "
                              "digest.smtp.host and digest.smtp.port, and that the server accepts connections from "
                              "this host")
    if isinstance(exc, smtplib.SMTPException):
        return RetriableError(f"SMTP with {where} failed while {step} ({type(exc).__name__})")
    return RetriableError(f"sending through the SMTP server {where} failed while {step} ({type(exc).__name__})")


def _reply(exc: smtplib.SMTPResponseException, secret: str, user: str | None = None) -> str:
    raw = exc.smtp_error.decode("utf-8", "replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
    text = f"{exc.smtp_code} {raw.strip().splitlines()[0] if raw.strip() else ''}".strip()[:200]
    if secret:
        # The password as sent: itself (AUTH LOGIN, base64) and inside AUTH PLAIN's base64.
        plain = (secret, f"\0{user or ''}\0{secret}", f"{user or ''}\0{user or ''}\0{secret}")
        for form in (secret, *(base64.b64encode(p.encode()).decode() for p in plain)):
            text = text.replace(form, "[redacted]")
    return text
