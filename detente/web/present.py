"""The report, the findings and a timeline as the pages show them (pure: formatting only).

Every number on a page is a ``Shown``: its place in the report (``path``, JSON), a stable hook
(``metric``, such as ``funnel.stages.mql.reached``), its raw value (JSON) and its text, formatted
by ``detente.metrics.render``'s helpers. Each is read from the dict ``compute.report`` returns and
nothing is computed here, so a page says what ``detente report --format json`` says, and a test
can check that number by number.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from detente.metrics.render import HEADLINE_WORDS, SHARES, hours, num, pct
from detente.reconcile import timeline as tl
from detente.rules import checked as c

Segment = str | Mapping[str, Any]  # a key of a dict, or the fields that pick one row of a list

MONEY = frozenset({"bookings", "average_selling_price", "lead_value_delivered"})


def _sd(value: float | None) -> str:
    return "-" if value is None else f"{value:+.1f} sd"


def _delta(value: float | None) -> str:
    if value is None:
        return "-"
    digits = 0 if isinstance(value, int) or abs(value) >= 100 else 2
    return f"{value:+,.{digits}f}"


def _pts(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:+.1f} pts"


FORMATS: Mapping[str, Callable[[Any], str]] = {
    "count": num, "money": num, "money2": lambda v: num(v, 2), "pct": pct, "num1": lambda v: num(v, 1),
    "hours": hours, "sd": _sd, "delta": _delta, "pts": _pts,
}


def text_of(fmt: str, value: Any) -> str:
    """How a value of format ``fmt`` reads on a page."""
    return FORMATS[fmt](value)


def resolve(report: Any, path: Sequence[Segment]) -> Any:
    """The value at ``path`` in the report; a mapping segment picks the one row of a list that matches it."""
    node = report
    for seg in path:
        if isinstance(seg, str):
            node = node[seg]
            continue
        found = [row for row in node if all(row.get(k) == v for k, v in seg.items())]
        if len(found) != 1:
            raise KeyError(f"{dict(seg)} picks {len(found)} rows, not one")
        node = found[0]
    return node


def hook(path: Sequence[Segment]) -> str:
    """The stable name of a number: its path, a picked row named by its fields' values."""
    return ".".join(seg if isinstance(seg, str) else "/".join("-" if v is None else str(v) for v in seg.values())
                    for seg in path)


@dataclass(frozen=True)
class Shown:
    """One number on a page and where it comes from."""

    metric: str
    path: str
    value: str
    fmt: str
    text: str


class Reader:
    """Makes ``Shown`` numbers from one report."""

    def __init__(self, report: Mapping[str, Any]) -> None:
        self.report = report

    def __call__(self, path: Sequence[Segment], fmt: str) -> Shown:
        value = resolve(self.report, path)
        return Shown(hook(path), json.dumps(list(path), separators=(",", ":")), json.dumps(value), fmt,
                     text_of(fmt, value))


def _share(value: Any) -> float:
    """A share as a bar's fraction, 0 to 1."""
    return 0.0 if not isinstance(value, (int, float)) else max(0.0, min(float(value), 1.0))


# -- the dashboard ----------------------------------------------------------------------------------

BAR_WIDTH = 460  # the funnel's bars, in SVG units
LABEL_WIDTH = 120
ROW_HEIGHT = 30

GROUP_COLUMNS = (("leads", "count", "leads"), ("mqls", "count", "MQLs"), ("opportunities", "count", "opps"),
                 ("lead_to_opportunity", "pct", "lead → opp"), ("won", "count", "won"),
                 ("opportunity_to_won", "pct", "opp → won"), ("bookings", "money", "bookings"),
                 ("average_selling_price", "money", "ASP"), ("lead_value", "money", "lead value"),
                 ("value_per_lead", "money2", "value / lead"), ("first_touch_within_sla", "pct", "1st touch in SLA"))
SLA_COLUMNS = (("started", "count", "started"), ("met", "count", "met"), ("late", "count", "late"),
               ("missed", "count", "missed"), ("requirement", "count", "short"), ("running", "count", "running"),
               ("within_sla", "pct", "within SLA"), ("median_hours", "hours", "median"),
               ("p90_hours", "hours", "p90"))
IMPLIED = (("bookings_goal", "money", "bookings goal"), ("average_selling_price", "money", "average selling price"),
           ("win_rate", "pct", "win rate"), ("deals", "count", "deals"), ("opportunities", "count", "opportunities"),
           ("lead_to_opportunity", "pct", "lead → opportunity"), ("leads", "count", "raw leads"),
           ("mql_to_opportunity", "pct", "MQL → opportunity"), ("mqls", "count", "MQLs"))
TWO_VIEW_LINES = (("hubspot_not_salesforce", "HubSpot, not Salesforce"),
                  ("salesforce_not_hubspot", "Salesforce, not HubSpot"),
                  ("definition_not_labelled", "definition holds, no label"),
                  ("labelled_not_definition", "labelled, definition does not hold"))
COST_COLUMNS = (("cost", "money2", "cost"), ("leads", "count", "leads"), ("won", "count", "won"),
                ("cost_per_lead", "money2", "per lead"), ("cost_per_order", "money2", "per order"))
SLA_TRENDS = {"handoff": "handoff_within_sla", "first_touch": "first_touch_within_sla"}


def dashboard_view(report: Mapping[str, Any]) -> dict[str, Any]:
    """Everything the dashboard page shows of a report."""
    m = Reader(report)
    return {"headline": _headline(m), "funnel": _funnel(m), "groups": _groups(m), "lead_value": _lead_value(m),
            "slas": _slas(m), "two_views": _two_views(m), "open_findings": _open_counts(m), "cost": _cost(m),
            "breaches": _breaches(m), "columns": {"sla": SLA_COLUMNS, "group": GROUP_COLUMNS, "cost": COST_COLUMNS}}


def _headline(m: Reader) -> list[dict[str, Any]]:
    rows = []
    for name, t in m.report["trends"].items():
        fmt = "pct" if name in SHARES else "money" if name in MONEY else "count"
        change, dev = t.get("change"), t.get("deviation_sd")
        rows.append({"name": name, "words": HEADLINE_WORDS.get(name, name),
                     "current": m(["trends", name, "current"], fmt),
                     "previous": m(["trends", name, "previous"], fmt),
                     "change": m(["trends", name, "change"], "pts" if name in SHARES else "delta"),
                     "deviation": m(["trends", name, "deviation_sd"], "sd"),
                     "direction": "" if not change else "up" if change > 0 else "down",
                     "unusual": dev is not None and abs(dev) >= 2})
    return rows


def _funnel(m: Reader) -> dict[str, Any]:
    f = m.report["funnel"]
    top = max([f["cohort"], *(s["reached"] for s in f["stages"])]) or 1
    bars = []
    previous: str | None = None
    for i, s in enumerate(f["stages"]):
        at: list[Segment] = ["funnel", "stages", {"stage": s["stage"]}]
        width = round(BAR_WIDTH * s["reached"] / top, 1)
        bars.append({"stage": s["stage"], "from": s["from"], "y": i * ROW_HEIGHT, "width": width,
                     "side": s["from"] is not None and s["from"] != previous,
                     "reached": m([*at, "reached"], "count"), "at": m([*at, "at"], "count"),
                     "conversion": m([*at, "conversion"], "pct"),
                     "median_days": m([*at, "median_days_in_stage"], "num1")})
        previous = s["stage"]
    totals = {k: m(["funnel", k], fmt) for k, fmt in (
        ("cohort", "count"), ("with_opportunity", "count"), ("lead_to_opportunity", "pct"),
        ("cohort_won", "count"), ("cohort_closed", "count"), ("opportunity_to_won", "pct"), ("won", "count"),
        ("lost", "count"), ("bookings", "money"), ("average_selling_price", "money"), ("win_rate", "pct"))}
    return {"bars": bars, "totals": totals, "label_width": LABEL_WIDTH, "bar_width": BAR_WIDTH,
            "row_height": ROW_HEIGHT, "height": max(len(bars), 1) * ROW_HEIGHT,
            "width": LABEL_WIDTH + BAR_WIDTH + 130}


def _groups(m: Reader) -> dict[str, Any] | None:
    by = m.report.get("by")
    if not by or m.report.get("groups") is None:
        return None
    rows = []
    for g in m.report["groups"]:
        at: list[Segment] = ["groups", {by: g[by]}]
        rows.append({"key": g[by], "cells": [m([*at, field], fmt) for field, fmt, _ in GROUP_COLUMNS],
                     "bar": _share(g["lead_to_opportunity"])})
    return {"by": by, "rows": rows}


def _lead_value(m: Reader) -> dict[str, Any]:
    lv = m.report["lead_value"]
    by = lv["by"]
    top = sorted(lv["per_lead"], key=lambda g: (-g["value"], [str(g[k]) for k in by]))[:10]
    ms = m.report["marketing_sla"]
    return {"method": lv["method"], "by": by, "window": lv["implied"]["window"],
            "delivered": m(["lead_value", "delivered"], "money"), "goal": m(["lead_value", "goal"], "money"),
            "progress": m(["lead_value", "progress"], "pct"), "bar": _share(lv["progress"]),
            "implied": [(words, m(["lead_value", "implied", field], fmt)) for field, fmt, words in IMPLIED],
            "per_lead": [([str(g[k]) for k in by], m(["lead_value", "per_lead", {k: g[k] for k in by}, "value"],
                                                     "money2")) for g in top],
            "mqls": m(["marketing_sla", "mqls"], "count"), "mql_goal": m(["marketing_sla", "mql_goal"], "count"),
            "mql_progress": m(["marketing_sla", "mql_progress"], "pct"), "mql_bar": _share(ms["mql_progress"]),
            "mql_value": m(["marketing_sla", "mql_value"], "money"),
            "worked": m(["sales_sla", "worked"], "pct"),
            "disqualified": m(["sales_sla", "disqualified", "people"], "count"),
            "disqualified_activities": (m(["sales_sla", "disqualified", "median_activities"], "num1")
                                        if "median_activities" in m.report["sales_sla"]["disqualified"] else None)}


def _slas(m: Reader) -> list[dict[str, Any]]:
    r = m.report
    kinds = {"handoff": (r["marketing_sla"].get("handoff") or {}).get("sla"),
             "first_touch": (r["sales_sla"].get("first_touch") or {}).get("sla")}
    out = []
    for s in r["slas"]:
        at: list[Segment] = ["slas", {"sla": s["sla"]}]
        trend_name = next((SLA_TRENDS[k] for k, sla in kinds.items() if sla == s["sla"]), None)
        trend = None
        if trend_name is not None and trend_name in r["trends"]:
            trend = {"change": m(["trends", trend_name, "change"], "pts"),
                     "deviation": m(["trends", trend_name, "deviation_sd"], "sd"),
                     "direction": _direction(r["trends"][trend_name].get("change"))}
        teams: list[dict[str, Any]] = []
        for row in r["sla_by_team_and_owner"]:
            if row["sla"] != s["sla"]:
                continue
            pick: list[Segment] = ["sla_by_team_and_owner", {"sla": row["sla"], "team": row["team"],
                                                             "owner": row["owner"]}]
            line = {"name": row["owner"] or row["team"], "bar": _share(row["within_sla"]),
                    "cells": [m([*pick, field], fmt) for field, fmt, _ in SLA_COLUMNS], "owners": []}
            if row["owner"] is None:
                teams.append(line)
            elif teams and teams[-1]["name"] == row["team"]:
                teams[-1]["owners"].append(line)
            else:  # an owner row before its team's (the report lists the team first)
                teams.append({**line, "name": row["team"], "cells": [], "owners": [line]})
        out.append({"sla": s["sla"], "owner": s["owner"], "meaning": " ".join((s["meaning"] or "").split()),
                    "within": s["within"], "bar": _share(s["within_sla"]),
                    "cells": [m([*at, field], fmt) for field, fmt, _ in SLA_COLUMNS], "trend": trend,
                    "teams": teams})
    return out


def _direction(change: Any) -> str:
    return "" if not change else "up" if change > 0 else "down"


def _two_views(m: Reader) -> list[dict[str, Any]] | None:
    rec = m.report.get("reconciliation")
    if not rec:
        return None
    rows = []
    for st in rec["stages"]:
        at: list[Segment] = ["reconciliation", "stages", {"stage": st["stage"]}]
        lines = []
        for field, words in TWO_VIEW_LINES:
            part = st.get(field) or {}
            if not part.get("total"):
                continue
            lines.append({"words": words, "total": m([*at, field, "total"], "count"),
                          "reasons": [(x["reason"], m([*at, field, "reasons", {"reason": x["reason"]}, "count"],
                                                      "count")) for x in part.get("reasons", [])]})
        rows.append({"stage": st["stage"], "hubspot": m([*at, "hubspot"], "count"),
                     "salesforce": m([*at, "salesforce"], "count"), "definition": m([*at, "definition"], "count"),
                     "hubspot_label": st.get("hubspot_has_label", True),
                     "salesforce_label": st.get("salesforce_has_label", True), "lines": lines})
    return rows


def _open_counts(m: Reader) -> list[tuple[str, Shown]]:
    return [(kind, m(["open_findings", kind], "count")) for kind in m.report["open_findings"]]


def _cost(m: Reader) -> dict[str, Any]:
    cost = m.report["cost"]
    return {"campaigns": len(cost["campaigns"]),
            "total": {k: m(["cost", k], fmt) for k, fmt in (("cost", "money2"), ("leads", "count"), ("won", "count"),
                                                            ("cost_per_lead", "money2"),
                                                            ("cost_per_order", "money2"))},
            "sources": [(row["source"], [m(["cost", "sources", {"source": row["source"]}, field], fmt)
                                         for field, fmt, _ in COST_COLUMNS]) for row in cost["sources"]]}


def _breaches(m: Reader) -> list[dict[str, Any]]:
    return [{"owner": o["owner"], "team": o["team"],
             "open": m(["breaches_by_owner", {"owner": o["owner"], "team": o["team"]}, "open"], "count")}
            for o in m.report["breaches_by_owner"][:10]]


# -- findings and explanations -------------------------------------------------------------------------


def when(value: datetime | None) -> str:
    """A moment as the pages show it: UTC, to the minute."""
    if value is None:
        return "-"
    value = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M")


def explain_view(timeline: tl.Timeline, rules: c.Rules) -> dict[str, Any]:
    """One person's explanation: the same reading ``detente explain`` prints."""
    p = timeline.person
    findings = []
    for f in timeline.findings:
        clause = tl.clause_for(f["kind"], f["rule"], rules)
        findings.append({"key": f["key"], "kind": f["kind"], "rule": f["rule"], "status": f["status"],
                         "state": f.get("state"), "opened_at": when(f["opened_at"]), "due_at": when(f.get("due_at")),
                         "resolved_at": when(f.get("resolved_at")), "explanation": f["explanation"],
                         "resolution": f.get("resolution"), "team": f.get("team"), "owner": f.get("owner_email"),
                         "rules_version": f.get("rules_version"),
                         "stale": bool(f.get("rules_version")) and f.get("rules_version") != timeline.rules_version,
                         "clause_title": clause.title, "clause_lines": clause.lines})
    opportunities = [{"words": _opportunity_words(o), "created": when(o.created_at),
                      "state": (f"closed {'won' if o.is_won else 'lost'} {when(o.closed_at)}" if o.is_closed
                                else "open")} for o in timeline.opportunities]
    return {"person": p, "ids": p.ids(), "created": when(p.created_at), "now": when(timeline.now),
            "rules_version": timeline.rules_version, "stages": timeline.stages,
            "holds": [s.name for s in timeline.stages if s.holds],
            "entries": [(when(e.at), tl.entry_line(e)) for e in tl.entries(timeline)],
            "opportunities": opportunities, "findings": findings,
            "audited_at": None if timeline.last_evaluated is None else when(timeline.last_evaluated),
            "audited_with": timeline.audited_with}


def _opportunity_words(o: tl.OpportunityEntry) -> str:
    amount = "-" if o.amount is None else f"{o.amount:,.0f}"
    ids = ", ".join(x for x in (o.salesforce_id, f"deal {o.hubspot_deal_id}" if o.hubspot_deal_id else None) if x)
    return f"{o.name or '(no name)'}: stage {o.stage or o.hubspot_stage or '-'}, amount {amount} ({ids or 'no id'})"
