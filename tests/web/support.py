"""Helpers of the dashboard tests: the numbers a page shows, read through their hooks, and the
check that each one is the report's."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from html.parser import HTMLParser
from typing import Any

from detente.web.present import text_of


class _Numbers(HTMLParser):
    """Every element carrying ``data-path``, with its hooks and its text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[dict[str, Any]] = []
        self._open: list[tuple[str, dict[str, Any] | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        number = None
        if "data-path" in a:
            number = {"metric": a.get("data-metric"), "path": a["data-path"], "value": a.get("data-value"),
                      "format": a.get("data-format"), "text": ""}
            self.found.append(number)
        self._open.append((tag, number))

    def handle_endtag(self, tag: str) -> None:
        while self._open:
            open_tag, _ = self._open.pop()
            if open_tag == tag:
                break

    def handle_data(self, data: str) -> None:
        for _, number in self._open:
            if number is not None:
                number["text"] += data


def numbers(html: str) -> list[dict[str, Any]]:
    """The numbers of a page: metric, path (JSON), value (JSON), format and text of each hook."""
    parser = _Numbers()
    parser.feed(html)
    parser.close()
    return parser.found


def resolve(report: Any, path: Iterable[Any]) -> Any:
    """The value at a hook's path: a key of a dict, or the fields that pick one row of a list."""
    node = report
    for seg in path:
        if isinstance(seg, str):
            node = node[seg]
        else:
            [node] = [row for row in node if all(row.get(k) == v for k, v in seg.items())]
    return node


def assert_numbers_are_the_reports(shown: Iterable[Mapping[str, Any]], report: Mapping[str, Any]) -> set[str]:
    """Each number's value is the report's at its path, and its text that value formatted; returns the metrics."""
    metrics = set()
    for n in shown:
        want = resolve(report, json.loads(n["path"]))
        assert json.loads(n["value"]) == want, n
        assert n["text"].strip() == text_of(n["format"], want), n
        metrics.add(n["metric"])
    return metrics


def expected_metrics(report: Mapping[str, Any]) -> set[str]:
    """Hooks the dashboard must show for a report sliced by source: one per funnel stage, source,
    SLA row, stage of the two views, headline trend and kind of open finding, and the lead value."""
    want = {"lead_value.delivered", "lead_value.goal", "lead_value.progress", "lead_value.implied.leads",
            "lead_value.implied.mqls", "funnel.lead_to_opportunity", "funnel.cohort"}
    want |= {f"funnel.stages.{s['stage']}.reached" for s in report["funnel"]["stages"]}
    want |= {f"funnel.stages.{s['stage']}.conversion" for s in report["funnel"]["stages"]}
    want |= {f"groups.{g['source']}.lead_to_opportunity" for g in report["groups"]}
    want |= {f"sla_by_team_and_owner.{r['sla']}/{r['team']}/{r['owner'] or '-'}.within_sla"
             for r in report["sla_by_team_and_owner"]}
    want |= {f"reconciliation.stages.{s['stage']}.{side}" for s in report["reconciliation"]["stages"]
             for side in ("hubspot", "salesforce", "definition")}
    want |= {f"trends.{name}.{part}" for name in report["trends"] for part in ("current", "change", "deviation_sd")}
    want |= {f"open_findings.{kind}" for kind in report["open_findings"]}
    return want
