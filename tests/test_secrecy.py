"""Secrecy: a full pass over the sandbox CRMs with credentials made up for this run leaves none of
them in the log, the store, the dashboard, the metrics, the digest, the webhook posts or the text
of an error; and no generated person's email address reaches the log above debug level."""

from __future__ import annotations

import html
import json
import os
import re
import secrets
import shutil
import socket
import sqlite3
import ssl
import subprocess
import sys
import traceback
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import requests
import trustme
import yaml
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from detente.errors import DetenteError
from detente.sandbox.credentials import SandboxCredentials
from detente.sandbox.server import Sandbox
from detente.sandbox.store import World
from tests.daemon.support import REPO, RULES, Daemon, write_settings
from tests.notify.support import Hook, webhook_server

SMTP_USER = "detente-mailer"
# A Salesforce access token as the sandbox issues them (org id, '!', the session): never to be shown.
SESSION_ID = re.compile(r"00D[A-Za-z0-9]{12,15}![A-Za-z0-9._]{10,}")
EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")


def _pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


@dataclass(frozen=True)
class Secrets:
    """Every credential of one test run, each marked with the run's own tag."""

    tag: str
    crm: SandboxCredentials
    smtp_password: str
    dashboard_token: str
    hook_path: str
    wrong: dict[str, str] = field(default_factory=dict)  # the wrong ones the failing logins try

    @classmethod
    def create(cls) -> Secrets:
        tag = "Tq" + secrets.token_hex(6)
        crm = replace(SandboxCredentials.create(),
                      sf_client_secret=f"SECRET-CLIENT-{tag}-{secrets.token_hex(16)}",
                      sf_password=f"SECRET-PASSWORD-{tag}-{secrets.token_hex(8)}",
                      sf_refresh_token=f"SECRET-REFRESH-{tag}-{secrets.token_hex(20)}",
                      sf_jwt_private_key=_pem(),
                      hs_token=f"SECRET-HUBSPOT-{tag}-{secrets.token_hex(16)}")
        wrong = {name: f"WRONG-{name.upper()}-{tag}-{secrets.token_hex(8)}"
                 for name in ("client_secret", "password", "refresh_token", "hs_token", "smtp_password")}
        wrong["private_key"] = _pem()
        return cls(tag, crm, f"SECRET-SMTP-{tag}-{secrets.token_hex(8)}",
                   f"SECRET-DASHBOARD-{tag}-{secrets.token_hex(16)}",
                   f"/services/T0{tag}/SECRET-HOOK-{tag}-{secrets.token_hex(12)}", wrong)

    def needles(self) -> list[str]:
        """What must never show: every secret whole, the run's tag (a piece of any of them), and
        each line of the private keys' bodies (a key quoted in part)."""
        found = [self.tag, self.crm.sf_client_secret, self.crm.sf_password, self.crm.sf_refresh_token,
                 self.crm.hs_token, self.smtp_password, self.dashboard_token, self.hook_path, *self.wrong.values()]
        for pem in (self.crm.sf_jwt_private_key, self.wrong["private_key"]):
            found += [line for line in pem.splitlines() if line and not line.startswith("-----")]
        return found


class Scan:
    """Texts looked through, by where they came from, and what was found in them."""

    def __init__(self, secrets_: Secrets) -> None:
        self.needles = secrets_.needles()
        self.counts: dict[str, int] = {}
        self.leaks: list[str] = []

    def text(self, where: str, text: str, kind: str) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        for needle in self.needles:
            if needle in text:
                self.leaks.append(f"{where}: {needle[:40]!r} in {_around(text, needle)!r}")
        for match in SESSION_ID.finditer(text):
            self.leaks.append(f"{where}: a Salesforce session id {match.group()[:20]!r}...")

    def log(self, where: str, text: str, emails: set[str]) -> None:
        """Every line for secrets; lines above debug (or not JSON, so of no known level) for emails."""
        for number, line in enumerate(text.splitlines(), 1):
            self.text(f"{where}:{number}", line, "log lines")
            try:
                level = json.loads(line).get("level", "?")
            except (ValueError, AttributeError):
                level = "?"
            if level != "debug":
                for address in EMAIL.findall(line):
                    if address.lower() in emails:
                        self.leaks.append(f"{where}:{number}: {address} at level {level}: {line[:300]}")

    def store(self, path: Path) -> None:
        """Every value of every row of every table, and the file's bytes besides."""
        conn = sqlite3.connect(path)
        try:
            tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            for table in tables:
                for row in conn.execute(f'SELECT * FROM "{table}"'):
                    values = [v.decode(errors="replace") if isinstance(v, bytes) else str(v) for v in row]
                    self.text(f"{path.name}:{table}", "\x00".join(values), "store rows")
        finally:
            conn.close()
        for file in path.parent.glob(path.name + "*"):
            self.text(file.name, file.read_bytes().decode("latin-1"), "store files")


def _around(text: str, needle: str) -> str:
    at = text.find(needle)
    return text[max(0, at - 80):at + len(needle) + 40]


# -- servers and processes -----------------------------------------------------------------------


@dataclass
class Smtp:
    port: int
    ca_file: Path
    mails: list[EmailMessage] = field(default_factory=list)
    logins: list[bool] = field(default_factory=list)  # each AUTH: accepted or not


@pytest.fixture
def smtp(tmp_path: Path, run_secrets: Secrets) -> Iterator[Smtp]:
    """aiosmtpd on loopback with STARTTLS (a private CA) and a login that takes this run's password."""
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    ca_file = tmp_path / "smtp-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = Smtp(port, ca_file)

    class Inbox:
        async def handle_DATA(self, smtp: SMTP, session: Session, envelope: Envelope) -> str:
            parsed = message_from_bytes(envelope.original_content or b"", policy=policy.default)
            assert isinstance(parsed, EmailMessage)
            server.mails.append(parsed)
            return "250 Message accepted for delivery"

    def authenticate(smtp: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any) -> AuthResult:
        ok = (isinstance(data, LoginPassword) and data.login == SMTP_USER.encode()
              and data.password == run_secrets.smtp_password.encode())
        server.logins.append(ok)
        return AuthResult(success=ok, handled=False)

    controller = Controller(Inbox(), hostname="127.0.0.1", port=port, authenticator=authenticate,
                            auth_required=True, auth_require_tls=True, tls_context=context, require_starttls=True)
    controller.start()
    try:
        yield server
    finally:
        controller.stop()


@pytest.fixture(scope="module")
def run_secrets() -> Secrets:
    return Secrets.create()


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory, run_secrets: Secrets) -> Iterator[Sandbox]:
    """A small demo world whose CRMs accept this run's credentials and no others."""
    state = tmp_path_factory.mktemp("secrecy") / "sandbox"
    state.mkdir()
    world = World(state / "world.sqlite3")
    world.set_meta("credentials", asdict(run_secrets.crm))
    world.conn.close()
    as_of = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    sb = Sandbox(state_dir=state, dataset="demo", size=60, seed=41, as_of=as_of)
    assert sb.credentials == run_secrets.crm
    sb.start()
    yield sb
    sb.stop()


def _emails(sb: Sandbox) -> set[str]:
    found = {str(p["email"]).lower() for p in sb.manifest()["people"] if p.get("email")}
    assert len(found) > 20
    return found


def _config(sb: Sandbox, s: Secrets, tmp: Path, name: str, *, smtp: Smtp | None = None,
            hook_url: str | None = None, **changes: Any) -> Path:
    """A settings file with every kind of secret set, JSON logs at debug level, writeback on;
    ``changes`` replace whole sections' keys, e.g. salesforce={"auth": "jwt"}."""
    path = write_settings(sb, tmp / f"{name}.yaml", f"sqlite:///{tmp / (name + '.db')}", tmp / "rules.yaml")
    data = yaml.safe_load(path.read_text())
    data["log"] = {"level": "debug", "format": "json"}
    data["daemon"].update(listen="0.0.0.0:0", pull_seconds=300, audit_seconds=300, writeback_seconds=300)
    data["dashboard"] = {"token": s.dashboard_token}
    data["webhook"] = {"enabled": hook_url is not None, "url": hook_url or f"http://127.0.0.1:9{s.hook_path}",
                       "retries": 1, "backoff_factor": 0.01}
    data["digest"] = {"enabled": smtp is not None, "schedule": {"day_of_week": "mon", "hour": 8, "minute": 0},
                      "smtp": {"host": "127.0.0.1", "port": smtp.port if smtp else 25, "username": SMTP_USER,
                               "password": s.smtp_password, "from_address": "detente@example.com",
                               "ca_file": str(smtp.ca_file) if smtp else None, "timeout_seconds": 10},
                      "audiences": {"sales": ["cro@example.com"], "marketing": ["cmo@example.com"],
                                    "leadership": ["ceo@example.com"]}}
    for section, values in changes.items():
        for key, value in values.items():
            target = data[section]
            for part in key.split(".")[:-1]:
                target = target[part]
            target[key.split(".")[-1]] = value
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _cli(config: Path, *args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DETENTE_")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return subprocess.Popen([sys.executable, "-m", "detente", "--config", str(config), *args], cwd=config.parent,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen[str], timeout: float = 60) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _mail_texts(mail: EmailMessage) -> str:
    """The message as sent and every part decoded (a secret may hide in base64 or quoted-printable)."""
    parts = [mail.as_string()]
    parts += [str(part.get_content()) for part in mail.walk() if not part.is_multipart()]
    return "\n".join(parts)


# -- the tests -----------------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_a_full_pass_leaves_no_secret_anywhere_and_no_email_in_the_log_above_debug(
        tmp_path: Path, sandbox: Sandbox, run_secrets: Secrets, smtp: Smtp) -> None:
    """The daemon (password login) pulls, audits, posts breaches and writes back; `detente cycle` (JWT
    login) and `detente sync` (refresh-token login) run beside it; `detente digest --send` mails
    through an SMTP login. Each credential is used and accepted, and none shows anywhere."""
    s, scan, emails = run_secrets, Scan(run_secrets), _emails(sandbox)
    shutil.copy(RULES, tmp_path / "rules.yaml")
    with webhook_server() as hook:
        hook_url = f"http://127.0.0.1:{hook.port}{s.hook_path}"
        config = _config(sandbox, s, tmp_path, "daemon", smtp=smtp, hook_url=hook_url,
                         writeback={"enabled": True})
        cycle = _cli(_config(sandbox, s, tmp_path, "cycle", hook_url=hook_url, salesforce={"auth": "jwt"}),
                     "cycle", "--rules", str(tmp_path / "rules.yaml"))
        refresh = _cli(_config(sandbox, s, tmp_path, "refresh", salesforce={"auth": "refresh_token"}),
                       "sync", "--system", "salesforce")
        daemon = Daemon(config, tmp_path / "daemon.log")
        try:
            daemon.wait_for("job.finished", 60, lambda e: e["job"] == "writeback")
            daemon.wait_for("job.finished", 60, lambda e: e["job"] == "metrics" and e["counts"].get("warmed"))
            pulls = [e for e in daemon.events("job.finished") if e["job"].startswith("pull-")]
            assert {e["job"] for e in pulls if e["outcome"] == "ok"} == {"pull-salesforce", "pull-hubspot"}, \
                daemon.tail()
            pages = _dashboard(daemon, s, scan)
            assert daemon.stop()[0] == 0
        finally:
            daemon.kill()
        code, out, err = _finish(cycle)
        assert code == 0, out + err
        scan.text("cycle stdout", out, "cli outputs")
        scan.log("cycle log", err, emails)
        code, out, err = _finish(refresh)
        assert code == 0 and "salesforce" in out, out + err
        scan.text("sync stdout", out, "cli outputs")
        scan.log("sync log", err, emails)
        posts = _webhook(hook, s, scan)

    digest = _cli(config, "digest", "--send", "--rules", str(tmp_path / "rules.yaml"))
    code, out, err = _finish(digest)
    assert code == 0 and smtp.mails and smtp.logins and all(smtp.logins), out + err
    scan.text("digest stdout", out, "cli outputs")
    scan.log("digest log", err, emails)
    for i, mail in enumerate(smtp.mails):
        scan.text(f"digest mail {i}", _mail_texts(mail), "emails sent")

    scan.log("daemon log", daemon.log_path.read_text(errors="replace"), emails)
    for db in ("daemon.db", "cycle.db", "refresh.db"):
        scan.store(tmp_path / db)
    print(f"\nscanned {scan.counts}; {pages} pages; {len(smtp.mails)} digest emails; {posts} webhook posts")
    assert scan.counts["store rows"] > 1000 and scan.counts["log lines"] > 50
    assert not scan.leaks, "\n".join(scan.leaks[:20])


def _dashboard(daemon: Daemon, s: Secrets, scan: Scan) -> int:
    """The dashboard's pages, its API, /metrics and /readyz as served beyond loopback (so behind
    dashboard.token); answers to a missing and a wrong token too. Returns the pages read."""
    base = f"http://127.0.0.1:{daemon.port}"
    web = requests.Session()
    web.trust_env = False
    bearer = {"Authorization": f"Bearer {s.dashboard_token}"}
    refused = web.get(base + "/findings", timeout=10)
    wrong = web.get(base + "/findings", headers={"Authorization": f"Bearer {s.wrong['password']}"}, timeout=10)
    assert refused.status_code == wrong.status_code == 401
    # Once with ?token=: a cookie and a redirect to the address without it.
    once = web.get(base + "/?token=" + s.dashboard_token, allow_redirects=False, timeout=10)
    assert once.status_code == 303 and web.cookies
    answers = [refused, wrong, once, web.get(base + "/", timeout=10)]
    findings = web.get(base + "/findings", headers=bearer, timeout=10)
    links = [html.unescape(h) for h in re.findall(r'href="([^"]*/explain/[^"]*)"', findings.text)]
    assert links, "no finding links to an explanation"
    answers += [findings, web.get(base + links[0], headers=bearer, timeout=10)]
    answers += [web.get(base + p, headers=bearer, timeout=10) for p in ("/api/report", "/metrics", "/readyz")]
    for answer in answers[3:]:
        assert answer.status_code == 200, (answer.url, answer.status_code)
    assert "detente_records_pulled_total" in answers[-2].text
    for answer in answers:
        head = "\n".join(f"{k}: {v}" for k, v in answer.headers.items())
        scan.text(f"GET {answer.url.split('?')[0]}", f"{head}\n{answer.text}", "http answers")
    return len(answers)


def _webhook(hook: Hook, s: Secrets, scan: Scan) -> int:
    """The posts as received: at the secret address (so it was used), its address in no body."""
    assert hook.received and {r.path for r in hook.received} == {s.hook_path}
    for i, received in enumerate(hook.received):
        scan.text(f"webhook post {i}", json.dumps(received.body), "webhook posts")
    return len(hook.received)


@pytest.mark.timeout(120)
def test_failed_logins_name_no_secret_in_their_errors_or_logs(
        tmp_path: Path, sandbox: Sandbox, run_secrets: Secrets, smtp: Smtp) -> None:
    """Wrong CRM credentials (each way of logging in), unreachable CRMs, a wrong SMTP password and an
    unreachable webhook: the errors the CLI prints and the exceptions raised in-process quote none of
    the secrets, wrong or right."""
    s, scan, emails = run_secrets, Scan(run_secrets), _emails(sandbox)
    shutil.copy(RULES, tmp_path / "rules.yaml")
    key_file = tmp_path / "wrong-key.pem"
    key_file.write_text(s.wrong["private_key"])
    dead = f"https://127.0.0.1:{_closed_port()}"
    configs = {
        "wrong-password": _config(sandbox, s, tmp_path, "wrong-password", salesforce={
            "client_secret": s.wrong["client_secret"], "password": s.wrong["password"]},
            hubspot={"token": s.wrong["hs_token"]}),
        "wrong-refresh": _config(sandbox, s, tmp_path, "wrong-refresh", salesforce={
            "auth": "refresh_token", "refresh_token": s.wrong["refresh_token"]}),
        "wrong-key": _config(sandbox, s, tmp_path, "wrong-key", salesforce={
            "auth": "jwt", "private_key_file": str(key_file)}),
        "unreachable": _config(sandbox, s, tmp_path, "unreachable", salesforce={
            "instance_url": dead, "login_url": dead}, hubspot={"base_url": dead}),
        "wrong-smtp": _config(sandbox, s, tmp_path, "wrong-smtp", smtp=smtp, digest={
            "smtp.password": s.wrong["smtp_password"]}),
        "dead-hook": _config(sandbox, s, tmp_path, "dead-hook",
                             hook_url=f"http://127.0.0.1:{_closed_port()}{s.hook_path}"),
    }
    only_sf = ("wrong-refresh", "wrong-key")
    procs = {name: _cli(configs[name], "sync", *(["--system", "salesforce"] if name in only_sf else []))
             for name in ("wrong-password", "wrong-refresh", "wrong-key", "unreachable")}
    procs["wrong-smtp"] = _cli(configs["wrong-smtp"], "digest", "--send", "--audience", "sales",
                               "--rules", str(tmp_path / "rules.yaml"))
    for name, proc in procs.items():
        code, out, err = _finish(proc)
        assert code != 0, (name, out, err)
        scan.text(f"{name} stdout", out, "cli outputs")
        scan.log(f"{name} stderr", err, emails)
    assert smtp.logins and not any(smtp.logins)  # the wrong SMTP password was tried and refused

    texts = _raised_in_process(configs)
    for name, text in texts.items():
        scan.text(f"{name} exception", text, "exception texts")
    print(f"\nscanned {scan.counts}")
    assert len(texts) == 4
    assert not scan.leaks, "\n".join(scan.leaks[:20])


def _raised_in_process(configs: dict[str, Path]) -> dict[str, str]:
    """The whole chain (causes, contexts, tracebacks) of each error a failed login raises in-process."""
    from detente.connectors.hubspot import HubSpotConnector
    from detente.connectors.salesforce import SalesforceConnector
    from detente.notify.mail import send_mail
    from detente.notify.webhook import WebhookPoster
    from detente.settings import load_settings

    def chain(exc: BaseException) -> str:
        return "".join(traceback.format_exception(exc)) + repr(exc) + repr(exc.args)

    texts: dict[str, str] = {}
    wrong = load_settings(configs["wrong-password"])
    with pytest.raises(DetenteError) as sf:
        SalesforceConnector(wrong.salesforce).connect()
    texts["salesforce login"] = chain(sf.value)
    hubspot = HubSpotConnector(wrong.hubspot)
    with pytest.raises(DetenteError) as hs:
        next(iter(hubspot.pull("contacts", None, until=datetime.now(UTC))))
    hubspot.close()
    texts["hubspot call"] = chain(hs.value)
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = "detente@example.com", "cro@example.com", "test"
    with pytest.raises(DetenteError) as smtp_error:
        send_mail(load_settings(configs["wrong-smtp"]).digest.smtp, mail)
    texts["smtp login"] = chain(smtp_error.value)
    poster = WebhookPoster(load_settings(configs["dead-hook"]).webhook)
    with pytest.raises(DetenteError) as hook_error:
        poster({"text": "test"})
    poster.close()
    texts["webhook post"] = chain(hook_error.value)
    return texts
