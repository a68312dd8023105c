"""The handbook is generated from the rules that run, in Markdown and in HTML."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

from detente.rules import load_rules
from detente.rules.glossary import render
from tests.rules.helpers import BASE, SHIPPED, write


def test_markdown_has_every_stage_with_meaning_owner_definition_labels_and_slas() -> None:
    rules = load_rules(SHIPPED)
    text = render(rules, "md")
    assert f"Rules version `{rules.version}`" in text
    for stage in rules.stages.values():
        assert f"### {stage.name}\n" in text
        assert stage.meaning in text
    assert "- **Definition:** The score is at least 50 and the email domain is not one of 'gmail.com'" in text
    assert "(as written: `score >= 50 AND email_domain NOT IN ('gmail.com'" in text
    assert "- **Salesforce label:** `Status = 'Marketing Qualified'`" in text
    assert "- **HubSpot label:** `lifecyclestage = 'marketingqualifiedlead'`" in text
    assert "- **SLAs:** mql-handoff (starts here)" in text
    assert "- **SLAs:** outcome (stops here)" in text
    assert "| mql-handoff | marketing | Marketing hands every MQL" in text
    assert "| office | America/New_York | 09:00-17:00 | Mon, Tue, Wed, Thu, Fri | US | none |" in text
    assert text.index("### inquiry") < text.index("### mql") < text.index("### disqualified")


def test_html_is_escaped_and_well_formed(tmp_path: Path) -> None:
    rules = load_rules(write(tmp_path, BASE.replace("meaning: qualified", "meaning: '<script>alert(1)</script> & co'")))
    page = render(rules, "html")
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt; &amp; co" in page
    assert page.startswith("<!doctype html>")

    class Balance(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.open: list[str] = []

        def handle_starttag(self, tag: str, attrs: object) -> None:
            if tag not in ("meta",):
                self.open.append(tag)

        def handle_endtag(self, tag: str) -> None:
            assert self.open and self.open.pop() == tag, tag

    checker = Balance()
    checker.feed(page)
    assert checker.open == []


def test_a_rules_change_changes_the_handbook(tmp_path: Path) -> None:
    before = render(load_rules(write(tmp_path, BASE, "a.yaml")))
    after = render(load_rules(write(tmp_path, BASE.replace("score >= 50", "score >= 70"), "b.yaml")))
    assert "The score is at least 50." in before and "The score is at least 70." in after
