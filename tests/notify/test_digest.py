"""The digest of the demo world's last complete month, emailed per audience through a local SMTP
server (SQLite and PostgreSQL): multipart text and HTML, the report's numbers, and the open SLA
breaches of the audience per owner, as the store holds them."""

from __future__ import annotations

import html
import re
from collections import Counter, defaultdict
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import select, text
from structlog.testing import capture_logs
from typer.testing import CliRunner

from detente.cli import app
from detente.cycle import digest_step
from detente.metrics.compute import report
from detente.metrics.periods import period_of
from detente.metrics.render import HEADLINE_WORDS, pct, show
from detente.notify.digest import AUDIENCES, HEADLINES, TITLES, Audience
from detente.notify.mail import send_mail
from detente.notify.run import build_digests, send_digests
from detente.reconcile.ledger import FINDINGS
from detente.rules import Rules
from detente.settings import Audiences, DigestSettings, Settings, SmtpSettings, StoreSettings
from tests.normalize.conftest import NOW, World
from tests.notify.support import PASSWORD, PLAIN_LOGIN, USER, Mail, smtp_server
from tests.reconcile.conftest import RULES

WEEK = period_of("2026-W46", NOW)  # NOW is Tuesday 2026-11-17: the last complete week
MONTH = period_of("2026-10", NOW)  # and the last complete month, a fuller one in a 300-person world
RECIPIENTS: dict[str, list[str]] = {"marketing": ["cmo@example.com", "demand@example.com"],
                                    "sales": ["cro@example.com"], "leadership": ["ceo@example.com"]}
DASHBOARD = "https://detente.example.com/board?x=1&y=2"

pytestmark = PLAIN_LOGIN


def digest_settings(port: int, **kw: Any) -> DigestSettings:
    smtp = {"host": "127.0.0.1", "port": port, "starttls": False, "timeout_seconds": 5,
            "from_address": "detente <detente@example.com>", **kw.pop("smtp", {})}
    return DigestSettings(enabled=True, period="month", smtp=SmtpSettings(**smtp),
                          audiences=Audiences(**RECIPIENTS), dashboard_url=DASHBOARD, max_breaches_per_owner=1000,
                          **kw)


@pytest.fixture(scope="module")
def expected(audited: World, rules: Rules) -> dict[str, Any]:
    """What ``detente report --period 2026-10`` computes."""
    return report(audited.engine, rules, MONTH, NOW)


@pytest.fixture(scope="module")
def mails(audited: World, rules: Rules) -> Iterator[dict[str, Mail]]:
    """The three digests, sent once through a local SMTP server, by audience."""
    with smtp_server() as server:
        settings = digest_settings(server.port)
        sent = send_digests(audited.engine, rules, settings, NOW, partial(send_mail, settings.smtp))
        assert [s.audience for s in sent] == list(AUDIENCES)
        by_subject = {m.message["Subject"]: m for m in server.mails}
        yield {s.audience: by_subject[s.subject] for s in sent}


def open_breaches(world: World) -> list[dict[str, Any]]:
    f = FINDINGS
    with world.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(
            select(f.c.owner_email, f.c.team, f.c.rule, f.c.email, f.c.salesforce_id, f.c.hubspot_id)
            .where(f.c.kind == "sla", f.c.status == "open", f.c.state == "breached"))]


def parts(mail: Mail) -> tuple[str, str]:
    plain = mail.message.get_body(("plain",))
    rich = mail.message.get_body(("html",))
    assert plain is not None and rich is not None
    return plain.get_content().replace("\r\n", "\n"), rich.get_content().replace("\r\n", "\n")


def headline_row(text_part: str, name: str) -> list[str]:
    words = HEADLINE_WORDS[name]
    line = next(ln for ln in text_part.splitlines() if ln.startswith(words + " "))
    return [words, *re.split(r"\s{2,}", line[len(words):].strip())]


@pytest.mark.parametrize("audience", AUDIENCES)
def test_each_audience_gets_one_multipart_email_with_text_and_html(mails: dict[str, Mail], audience: Audience,
                                                                   expected: dict[str, Any]) -> None:
    mail = mails[audience]
    msg = mail.message
    assert msg.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
    assert sorted(mail.rcpt_tos) == sorted(RECIPIENTS[audience])
    assert msg["To"].addresses and sorted(a.addr_spec for a in msg["To"].addresses) == sorted(RECIPIENTS[audience])
    assert msg["From"].addresses[0].addr_spec == "detente@example.com" and msg["Auto-Submitted"] == "auto-generated"
    assert msg["Subject"].startswith(f"[detente] {TITLES[audience]} 2026-10: ")
    t = expected["trends"]
    if audience == "marketing":
        assert f"{t['mqls']['current']} MQLs" in msg["Subject"]
    else:
        assert f"bookings {show('bookings', t['bookings']['current'])} USD" in msg["Subject"]
    plain, rich = parts(mail)
    assert plain.startswith(f"{TITLES[audience]} for 2026-10 (2026-10-01 to 2026-10-31)")
    assert f"{TITLES[audience]} for 2026-10" in rich


@pytest.mark.parametrize("audience", AUDIENCES)
def test_the_headline_numbers_are_the_report_s(mails: dict[str, Mail], audience: Audience,
                                               expected: dict[str, Any]) -> None:
    """Each headline row shows the report's value this week and last, in text and in HTML alike."""
    plain, rich = parts(mails[audience])
    names = HEADLINES.get(audience, tuple(expected["trends"]))
    for name in names:
        t = expected["trends"][name]
        row = headline_row(plain, name)
        assert row[1:3] == [show(name, t["current"]), show(name, t["previous"])], name
        cells = re.search(rf'<tr data-metric="{name}"[^>]*>\s*<td>(.*?)</td><td[^>]*>(.*?)</td><td[^>]*>(.*?)</td>',
                          rich)
        assert cells is not None, name
        assert [html.unescape(c) for c in cells.groups()] == [HEADLINE_WORDS[name], *row[1:3]], name
    # And the raw values, read back: leads, MQLs and bookings as counted, shares as percentages.
    if audience in ("marketing", "leadership"):
        assert int(headline_row(plain, "leads")[1].replace(",", "")) == t_of(expected, "leads") > 0
        assert int(headline_row(plain, "mqls")[1].replace(",", "")) == t_of(expected, "mqls")
        handoff = expected["marketing_sla"]["handoff"]["within_sla"]
        assert headline_row(plain, "handoff_within_sla")[1] == f"{handoff * 100:.1f}%"
    if audience in ("sales", "leadership"):
        assert float(headline_row(plain, "bookings")[1].replace(",", "")) == round(expected["funnel"]["bookings"])
        first = expected["sales_sla"]["first_touch"]["within_sla"]
        assert headline_row(plain, "first_touch_within_sla")[1] == f"{first * 100:.1f}%"


def t_of(r: dict[str, Any], name: str) -> Any:
    return r["trends"][name]["current"]


@pytest.mark.parametrize("audience", AUDIENCES)
def test_the_sla_lines_are_the_slas_the_audience_owes(mails: dict[str, Mail], audience: Audience,
                                                      expected: dict[str, Any]) -> None:
    plain, rich = parts(mails[audience])
    for s in expected["slas"]:
        line = (f"{s['sla']} (owed by {s['owner']}, within {s['within']}): {s['started']} started, {s['met']} met, "
                f"{s['late']} late, {s['missed']} missed")
        mine = audience == "leadership" or s["owner"] == audience
        assert (line in plain) is mine, s["sla"]
        if mine:
            assert f"within SLA {pct(s['within_sla'])}" in plain and html.escape(line) in rich


@pytest.mark.parametrize("audience", ["marketing", "sales"])
def test_the_breaches_listed_per_owner_are_the_open_breaches_the_audience_owes(
        mails: dict[str, Mail], audience: Audience, audited: World) -> None:
    store: dict[str, Counter[tuple[str, str]]] = defaultdict(Counter)
    for b in open_breaches(audited):
        if b["team"] == audience:
            person = b["email"] or b["salesforce_id"] or b["hubspot_id"]
            store[b["owner_email"] or "(none)"][(b["rule"], person)] += 1
    assert store, f"the demo world should hold open {audience} breaches"
    plain, rich = parts(mails[audience])
    listed: dict[str, Counter[tuple[str, str]]] = defaultdict(Counter)
    counted: dict[str, int] = {}
    owner = None
    for line in plain.splitlines():
        if m := re.fullmatch(r"  (\S+): (\d+) open", line):
            owner = m.group(1)
            counted[owner] = int(m.group(2))
        elif (m := re.match(r"    - (\S+): (\S+)", line)) and owner is not None:
            listed[owner][(m.group(1), m.group(2))] += 1
    assert listed == store
    assert counted == {o: sum(c.values()) for o, c in store.items()}
    assert f"owed by {audience}, whenever they fell due: {sum(counted.values())}" in plain
    assert sorted(re.findall(r'<h3 class="owner" data-owner="([^"]+)"', rich)) == sorted(store)
    assert rich.count('<tr class="breach"') == sum(counted.values())


def test_leadership_counts_every_breach_per_sla_and_per_owner(mails: dict[str, Mail], audited: World) -> None:
    breaches = open_breaches(audited)
    plain, rich = parts(mails["leadership"])
    assert f"Open SLA breaches, whenever they fell due: {len(breaches)}" in plain
    per_owner = Counter(b["owner_email"] or "(none)" for b in breaches)
    for owner, n in per_owner.items():
        assert re.search(rf"^    {re.escape(owner)}\s+\S+\s+{n}$", plain, re.M), owner
    for (rule, team), n in Counter((b["rule"], b["team"]) for b in breaches).items():
        assert re.search(rf"^    {re.escape(rule)}\s+{team}\s+{n}$", plain, re.M), rule
    assert '<tr class="breach"' not in rich  # counted, not listed


def test_the_dashboard_is_linked_when_configured(mails: dict[str, Mail], audited: World, rules: Rules) -> None:
    plain, rich = parts(mails["sales"])
    assert f"Dashboard: {DASHBOARD}" in plain and f'href="{html.escape(DASHBOARD)}"' in rich
    bare = build_digests(audited.engine, rules, DigestSettings(), MONTH, NOW, ["sales"])[0]
    assert "Dashboard" not in bare.text and "Open the dashboard" not in bare.html


def test_digest_step_records_its_run_and_a_failed_login_never_shows_the_password(audited: World,
                                                                                 rules: Rules) -> None:
    url = audited.engine.url.render_as_string(hide_password=False)
    with smtp_server(login=True) as server:
        good = Settings(store=StoreSettings(url=url), digest=digest_settings(
            server.port, smtp={"username": USER, "password": SecretStr(PASSWORD)}))
        ok = digest_step(audited.engine, good, rules, NOW)
        assert ok.outcome == "ok", ok.error
        assert ok.counts == {"period": "2026-10", "sent": {"marketing": 2, "sales": 1, "leadership": 1},
                             "refused": 0}
        assert len(server.mails) == 3
        wrong = "An0ther-wrong-Passw0rd"
        bad = good.model_copy(update={"digest": digest_settings(
            server.port, smtp={"username": USER, "password": SecretStr(wrong)})})
        with capture_logs() as logs:
            failed = digest_step(audited.engine, bad, rules, NOW)
    assert failed.outcome == "failed" and failed.error is not None
    assert "0 of 3 digests sent" in failed.error and f"127.0.0.1:{server.port}" in failed.error
    with audited.engine.connect() as conn:
        last = conn.execute(text("SELECT outcome, error FROM runs WHERE kind = 'digest' ORDER BY id DESC")).first()
    assert last is not None and last.outcome == "failed"
    assert wrong not in f"{failed.error} {last.error} {logs}"


def test_digest_step_is_skipped_unless_enabled(audited: World, rules: Rules) -> None:
    result = digest_step(audited.engine, Settings(), rules, NOW)
    assert (result.outcome, result.counts) == ("skipped", {"why": "digest.enabled is false"})


def test_the_cli_prints_the_text_part_and_sends_with_send(audited: World, rules: Rules, tmp_path: Path) -> None:
    url = audited.engine.url.render_as_string(hide_password=False)
    config = tmp_path / "detente.yaml"
    with smtp_server() as server:
        config.write_text(f"log:\n  level: warning\ndigest:\n  smtp:\n    host: 127.0.0.1\n    port: {server.port}\n"
                          "    starttls: false\n    from_address: detente@example.com\n"
                          "  audiences:\n    sales: [cro@example.com]\n")
        env = {"DETENTE_STORE__URL": url, "DETENTE_CONFIG": ""}
        common = ["--config", str(config), "digest", "--audience", "sales", "--as-of", "2026-11-17T15:00:00Z",
                  "--rules", str(RULES)]
        printed = CliRunner().invoke(app, common, env=env)
        assert printed.exit_code == 0, printed.output
        digest = build_digests(audited.engine, rules, DigestSettings(), WEEK, NOW, ["sales"])[0]
        assert printed.stdout == f"Subject: {digest.subject}\n\n{digest.text}"
        assert server.mails == []
        sent = CliRunner().invoke(app, [*common, "--send"], env=env)
        assert sent.exit_code == 0, sent.output
        assert f"sales: sent '{digest.subject}' to 1 of 1 recipient(s)" in sent.stdout
        assert [m.rcpt_tos for m in server.mails] == [["cro@example.com"]]
        marketing = CliRunner().invoke(app, [*common[:3], "--audience", "marketing", *common[5:], "--send"], env=env)
        assert marketing.exit_code == 1 and "no address for marketing" in marketing.stderr
