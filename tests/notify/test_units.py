"""Pure parts of notify: which period a digest reports, the webhook message's shape and escaping,
and that only the CLI reads the clock or the environment."""

from __future__ import annotations

import ast
from datetime import UTC, datetime
from pathlib import Path

import pytest

import detente.notify
from detente.notify.digest import digest_period, last_complete
from detente.notify.webhook import SECTION_CHARS, Breach, breach_message

PACKAGE = Path(detente.notify.__file__).parent
SHELL = {"cli.py"}
FORBIDDEN_CALLS = {("datetime", "now"), ("datetime", "utcnow"), ("date", "today"), ("time", "time"),
                   ("time", "monotonic"), ("os", "getenv")}
FORBIDDEN_NAMES = {"environ", "create_engine", "make_engine"}
TUESDAY = datetime(2026, 11, 17, 15, 0, tzinfo=UTC)


def breach(n: int, **kw: object) -> Breach:
    base: dict[str, object] = {
        "key": f"sla|first-contact|person:{n}", "opened_at": TUESDAY, "rule": "first-contact", "team": "sales",
        "owner_email": "rep@example.com", "email": f"lead{n}@example.com", "salesforce_id": f"00Q{n:015d}",
        "hubspot_id": str(n), "due_at": datetime(2026, 11, 16, 14, 0, tzinfo=UTC),
        "explanation": "with sales since 2026-11-13 14:00 UTC; no activity by the owner"}
    return Breach(**{**base, **kw})  # type: ignore[arg-type]


@pytest.mark.parametrize(("given", "kind", "label"), [
    (None, "week", "2026-W46"), (None, "month", "2026-10"), (None, "quarter", "2026-Q3"), (None, "year", "2025"),
    ("week", "month", "2026-W46"), ("Month", "week", "2026-10"), ("2026-W40", "week", "2026-W40"),
    ("2026-07", "week", "2026-07"),
])
def test_a_digest_reports_the_last_complete_period_or_the_one_named(given: str | None, kind: str,
                                                                    label: str) -> None:
    assert digest_period(given, kind, TUESDAY).label == label


def test_on_a_period_s_first_moment_the_one_just_ended_is_reported() -> None:
    assert last_complete("week", datetime(2026, 11, 16, 0, 0, tzinfo=UTC)).label == "2026-W46"


def test_an_unknown_period_names_the_accepted_forms() -> None:
    with pytest.raises(ValueError, match="an ISO week"):
        digest_period("last tuesday", "week", TUESDAY)


def test_one_breach_makes_a_message_titled_by_its_sla() -> None:
    msg = breach_message([breach(1)])
    assert msg["blocks"][0] == {"type": "header", "text": {"type": "plain_text", "text": "SLA breached: first-contact"}}
    assert msg["text"] == ("SLA breached: first-contact\n• first-contact (owed by sales): lead1@example.com, owner "
                           "rep@example.com, due 2026-11-16 14:00 UTC")
    assert msg["blocks"][1]["text"]["text"] == (
        "*first-contact* breached, owed by sales · owner rep@example.com\n"
        "*lead1@example.com* (Salesforce 00Q000000000000001, HubSpot 1) · due 2026-11-16 14:00 UTC\n"
        "with sales since 2026-11-13 14:00 UTC; no activity by the owner")
    assert [b["type"] for b in msg["blocks"]] == ["header", "section", "context"]
    assert "dashboard" not in msg["blocks"][-1]["elements"][0]["text"]


def test_many_breaches_are_one_section_each_and_mrkdwn_is_escaped() -> None:
    odd = breach(2, email=None, owner_email=None, explanation="score <50 & x > y " + "z" * 5000)
    msg = breach_message([breach(1), odd], dashboard_url="https://board.example.com/?a=1&b=2")
    assert msg["blocks"][0]["text"]["text"] == "2 SLA breaches"
    section = msg["blocks"][2]["text"]["text"]
    assert section.startswith("*first-contact* breached, owed by sales · owner none\n*Salesforce 00Q000000000000002*")
    assert "score &lt;50 &amp; x &gt; y" in section and len(section) == SECTION_CHARS
    assert msg["blocks"][-1]["elements"][0]["text"].endswith("<https://board.example.com/?a=1&amp;b=2|Open the "
                                                             "dashboard>")


@pytest.mark.parametrize("module", sorted(p.name for p in PACKAGE.glob("*.py") if p.name not in SHELL))
def test_core_module_reads_no_clock_environment_or_engine(module: str) -> None:
    tree = ast.parse((PACKAGE / module).read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            assert (node.value.id, node.attr) not in FORBIDDEN_CALLS, f"{module}:{node.lineno}"
            assert node.attr not in FORBIDDEN_NAMES, f"{module}:{node.lineno}"
        if isinstance(node, ast.Name):
            assert node.id not in FORBIDDEN_NAMES, f"{module}:{node.lineno}"


def test_every_module_says_its_job() -> None:
    for path in PACKAGE.glob("*.py"):
        assert ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))), path.name
