"""The report as text: a table for people, CSV for spreadsheets (JSON is the dict itself).

Every number shown comes from the dict ``compute.report`` returns; nothing is computed here
except formatting, so the CLI, the dashboard and the digest cannot disagree.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Mapping
from typing import Any


def pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def num(value: float | int | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def hours(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} h"


def trend_words(t: Mapping[str, Any], *, share: bool = False) -> str:
    """``+12 (+9.4%) vs 2026-09; 1.2 sd above the baseline``."""
    change, dev = t.get("change"), t.get("deviation_sd")
    parts = []
    if change is not None:
        sign = "+" if change >= 0 else ""
        parts.append(f"{sign}{change * 100:.1f} pts" if share else
                     f"{sign}{num(change, 0 if isinstance(change, int) or abs(change) >= 10 else 2)}"
                     + (f" ({sign}{t['change_share'] * 100:.1f}%)" if t.get("change_share") is not None else ""))
    if dev is not None:
        parts.append(f"{abs(dev):.1f} sd {'above' if dev >= 0 else 'below'} baseline")
    return "; ".join(parts) or "-"


SHARES = frozenset({"lead_to_opportunity", "win_rate", "handoff_within_sla", "first_touch_within_sla"})
HEADLINE_WORDS = {
    "leads": "leads created", "mqls": "MQLs", "opportunities": "leads with an opportunity",
    "lead_to_opportunity": "lead → opportunity", "won": "opportunities won", "bookings": "bookings",
    "win_rate": "win rate", "average_selling_price": "average selling price",
    "lead_value_delivered": "lead value delivered", "handoff_within_sla": "MQL handoff within SLA",
    "first_touch_within_sla": "first touch within SLA",
}


def show(name: str, value: Any) -> str:
    if name in SHARES:
        return pct(value)
    if name in ("bookings", "average_selling_price", "lead_value_delivered"):
        return num(value)
    return num(value)


def table(r: Mapping[str, Any]) -> Iterator[str]:
    p = r["period"]
    cur = r["currency"]
    yield (f"{p['label']} ({p['start'][:10]} to {p['end'][:10]}, end excluded) as of {r['as_of']}, "
           f"rules {r['rules_version']}")
    yield ""
    yield f"{'headline':28} {'this period':>14} {'previous':>14}   trend"
    for name, t in r["trends"].items():
        yield (f"{HEADLINE_WORDS.get(name, name):28} {show(name, t['current']):>14} {show(name, t['previous']):>14}"
               f"   {trend_words(t, share=name in SHARES)}")
    f = r["funnel"]
    yield ""
    yield f"Funnel: {f['cohort']} people created in {p['label']}, by the agreement"
    yield f"  {'stage':14} {'at':>7} {'reached':>8} {'from':>13} {'conversion':>11} {'median days':>12}"
    for s in f["stages"]:
        yield (f"  {s['stage']:14} {s['at']:>7} {s['reached']:>8} {s['from'] or '-':>13} {pct(s['conversion']):>11} "
               f"{num(s['median_days_in_stage'], 1):>12}")
    yield (f"  lead → opportunity {pct(f['lead_to_opportunity'])} ({f['with_opportunity']} of {f['cohort']}); "
           f"opportunity → won {pct(f['opportunity_to_won'])} ({f['cohort_won']} of {f['cohort_closed']} closed)")
    yield (f"  closed in the period: {f['won']} won, {f['lost']} lost, win rate {pct(f['win_rate'])}; bookings "
           f"{num(f['bookings'])} {cur}, average selling price {num(f['average_selling_price'])} {cur}")
    lv = r["lead_value"]
    imp = lv["implied"]
    yield ""
    yield (f"Lead value: delivered {num(lv['delivered'])} of a {num(lv['goal'])} {cur} goal "
           f"({pct(lv['progress'])}); method {lv['method']} by {', '.join(lv['by'])}")
    yield (f"  the bookings goal implies {num(imp['deals'])} deals, {num(imp['opportunities'])} opportunities, "
           f"{num(imp['mqls'])} MQLs, {num(imp['leads'])} raw leads (ASP {num(imp['average_selling_price'])}, "
           f"win rate {pct(imp['win_rate'])}, lead → opportunity {pct(imp['lead_to_opportunity'])}, "
           f"MQL → opportunity {pct(imp['mql_to_opportunity'])})")
    top = sorted(lv["per_lead"], key=lambda g: -g["value"])[:8]
    for g in top:
        label = " / ".join(str(g[k]) for k in lv["by"])
        yield f"  {label:48} {num(g['value'], 2):>12} {cur} per lead"
    m = r["marketing_sla"]
    yield ""
    yield (f"Marketing: {m['mqls']} MQLs against a goal of {num(m['mql_goal'])} ({pct(m['mql_progress'])}), worth "
           f"{num(m['mql_value'])} {cur}")
    yield from _sla_lines(r["slas"])
    s = r["sales_sla"]
    d = s["disqualified"]
    yield (f"Sales: leads worked {pct(s['worked'])}; disqualified {d['people']} with a median of "
           f"{num(d.get('median_activities'), 1)} activities (mean {num(d.get('mean_activities'), 1)})")
    ind = r["indicators"]
    yield (f"Leading: contact rate {pct(ind['leading']['contact_rate'])}, qualification rate (SQL per MQL) "
           f"{pct(ind['leading']['qualification_rate'])}.  Lagging: bookings {num(ind['lagging']['bookings'])} "
           f"{cur}, cost per order {num(ind['lagging']['cost_per_order'], 2)} {cur}")
    c = r["cost"]
    yield ""
    yield (f"Cost of the {len(c['campaigns'])} campaigns active in the period (whole life): {num(c['cost'], 2)} {cur}; "
           f"{c['leads']} leads, {c['won']} won: {num(c['cost_per_lead'], 2)} per lead, "
           f"{num(c['cost_per_order'], 2)} per order")
    yield f"  {'source':24} {'cost':>12} {'leads':>7} {'won':>5} {'per lead':>10} {'per order':>11}"
    for row in c["sources"]:
        yield (f"  {row['source']:24} {num(row['cost'], 2):>12} {row['leads']:>7} {row['won']:>5} "
               f"{num(row['cost_per_lead'], 2):>10} {num(row['cost_per_order'], 2):>11}")
    if r.get("groups"):
        by = r["by"]
        yield ""
        yield f"By {by}"
        yield (f"  {by:32} {'leads':>6} {'MQLs':>6} {'opps':>5} {'L→O':>7} {'won':>4} {'O→W':>7} "
               f"{'bookings':>11} {'value/lead':>10} {'1st touch':>9}")
        for g in r["groups"]:
            yield (f"  {str(g[by])[:32]:32} {g['leads']:>6} {g['mqls']:>6} {g['opportunities']:>5} "
                   f"{pct(g['lead_to_opportunity']):>7} {g['won']:>4} {pct(g['opportunity_to_won']):>7} "
                   f"{num(g['bookings']):>11} {num(g['value_per_lead']):>10} {pct(g['first_touch_within_sla']):>9}")
    if r.get("reconciliation"):
        yield ""
        yield "The two views, per stage (people created in the period, at or past the stage):"
        yield f"  {'stage':14} {'HubSpot':>8} {'Salesforce':>10} {'agreement':>10}"
        for st in r["reconciliation"]["stages"]:
            yield f"  {st['stage']:14} {st['hubspot']:>8} {st['salesforce']:>10} {st['definition']:>10}"
        yield "  (detente audit --counts --period ... explains each difference by reason)"
    yield ""
    open_total = sum(r["open_findings"].values())
    yield (f"Open findings: {open_total} ("
           + ", ".join(f"{k} {v}" for k, v in r["open_findings"].items()) + ")")
    for o in r["breaches_by_owner"][:10]:
        yield f"  {o['owner']:44} {o['team'] or '-':10} {o['open']:>4} open SLA breach(es)"


def _sla_lines(slas: list[Mapping[str, Any]]) -> Iterator[str]:
    for s in slas:
        yield (f"  SLA {s['sla']} ({s['owner']}, {s['within']}): {s['started']} started, {s['met']} met, "
               f"{s['late']} late, {s['missed']} missed, {s['requirement']} short of the requirement, "
               f"{s['running']} running; within SLA {pct(s['within_sla'])}; median {hours(s['median_hours'])}, "
               f"p90 {hours(s['p90_hours'])}")


def rows(r: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Flat (section, name, group, value) rows of every number, for CSV."""
    period = r["period"]["label"]

    def flat(section: str, group: str, values: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
        for k, v in values.items():
            if (isinstance(v, (int, float)) and not isinstance(v, bool)) or v is None:
                yield {"period": period, "section": section, "group": group, "metric": k, "value": v}

    yield from flat("funnel", "", r["funnel"])
    for s in r["funnel"]["stages"]:
        yield from flat("funnel_stage", s["stage"], s)
    yield from flat("lead_value", "", r["lead_value"])
    yield from flat("implied_goals", "", r["lead_value"]["implied"])
    for g in r["lead_value"]["per_lead"]:
        yield from flat("lead_value_per_lead", " / ".join(str(g[k]) for k in r["lead_value"]["by"]), g)
    yield from flat("marketing_sla", "", r["marketing_sla"])
    for s in r["slas"]:
        yield from flat("sla", s["sla"], s)
    for s in r["sla_by_team_and_owner"]:
        yield from flat("sla_by_team_and_owner", f"{s['sla']} / {s['team']} / {s['owner'] or ''}", s)
    yield from flat("sales_sla", "", r["sales_sla"]["disqualified"])
    yield from flat("cost", "", r["cost"])
    for c in r["cost"]["campaigns"]:
        yield from flat("cost_campaign", c["campaign"], c)
    for c in r["cost"]["sources"]:
        yield from flat("cost_source", c["source"], c)
    for name, t in r["trends"].items():
        yield from flat("trend", name, t)
    for g in r.get("groups") or []:
        yield from flat(f"by_{r['by']}", str(g[r["by"]]), g)
    for st in (r.get("reconciliation") or {}).get("stages", []):
        yield from flat("two_views", st["stage"], {k: st[k] for k in ("hubspot", "salesforce", "definition")})


def to_csv(r: Mapping[str, Any]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["period", "section", "group", "metric", "value"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows(r))
    return buf.getvalue()
