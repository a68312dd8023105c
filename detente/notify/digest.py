"""The digest: one email per audience (marketing, sales, leadership) with the last complete
period's shared numbers, their trends against the period before, and the open SLA breaches.

Every number is read from the dict ``metrics.compute.report`` returns and formatted with
``metrics.render``'s helpers, so the digest, ``detente report`` and the dashboard agree. Which
breaches an audience sees follows the team that owes each SLA (the rules' ``slas[].owner``):
marketing gets the breaches of SLAs marketing owes, listed per owner; sales likewise; leadership
gets every breach, counted per SLA and per owner rather than listed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr
from functools import cache
from typing import Any, Literal, get_args

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from detente.metrics.periods import KINDS, containing, period_of, shift
from detente.metrics.render import HEADLINE_WORDS, SHARES, hours, num, pct, show, trend_words
from detente.reconcile.counts import Period
from detente.rules import checked as c

Audience = Literal["marketing", "sales", "leadership"]
AUDIENCES: tuple[Audience, ...] = get_args(Audience)
TITLES = {"marketing": "Marketing digest", "sales": "Sales digest", "leadership": "Leadership digest"}
# The headline numbers each team reads (leadership reads every one the report has).
HEADLINES: dict[str, tuple[str, ...]] = {
    "marketing": ("leads", "mqls", "lead_to_opportunity", "lead_value_delivered", "handoff_within_sla"),
    "sales": ("opportunities", "won", "bookings", "win_rate", "average_selling_price", "first_touch_within_sla"),
}


@dataclass(frozen=True)
class Digest:
    """One audience's digest, rendered."""

    audience: Audience
    period: str
    subject: str
    text: str
    html: str
    breaches: int  # open SLA breaches this audience is shown (listed or counted)


def last_complete(kind: str, now: datetime) -> Period:
    """The last period of ``kind`` that ended by ``now`` (the week before this one, say)."""
    return shift(containing(kind, now), 1)


def digest_period(text: str | None, kind: str, now: datetime) -> Period:
    """The period a digest reports: a named one (``2026-W46``) as named; a kind (``month``) or
    nothing (the settings' kind) as the last complete period of that kind.

    Raises ValueError naming the accepted forms.
    """
    if text is None:
        return last_complete(kind, now)
    if text.strip().lower() in KINDS:
        return last_complete(text.strip().lower(), now)
    return period_of(text, now)


def owed_by(rules: c.Rules) -> dict[str, str]:
    """The team that owes each SLA, by SLA id."""
    return {sla.id: sla.owner for sla in rules.slas}


def render_digest(report: Mapping[str, Any], rules: c.Rules, audience: Audience, *,
                  dashboard_url: str | None = None, max_per_owner: int = 20) -> Digest:
    """The digest of ``audience`` from one ``report(...)`` dict."""
    if audience not in AUDIENCES:
        raise ValueError(f"{audience!r} is not an audience; expected one of {', '.join(AUDIENCES)}")
    view = digest_view(report, rules, audience, dashboard_url=dashboard_url, max_per_owner=max_per_owner)
    env = _templates()
    return Digest(audience, report["period"]["label"], view["subject"], env.get_template("digest.txt").render(view),
                  env.get_template("digest.html").render(view), view["breaches"]["total"])


def message(digest: Digest, sender: str, recipients: Sequence[str], now: datetime) -> EmailMessage:
    """The email: a plain-text part and an HTML part (multipart/alternative)."""
    msg = EmailMessage()
    msg["Subject"] = digest.subject
    msg["From"] = sender
    msg["To"] = ", ".join(recipients)
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = make_msgid(f"digest.{digest.audience}.{digest.period}",
                                   domain=parseaddr(sender)[1].rpartition("@")[2] or None)
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies to a robot
    msg.set_content(digest.text)
    msg.add_alternative(digest.html, subtype="html")
    return msg


# -- what the templates show ---------------------------------------------------------------------


def digest_view(report: Mapping[str, Any], rules: c.Rules, audience: Audience, *,
                dashboard_url: str | None = None, max_per_owner: int = 20) -> dict[str, Any]:
    """Everything the two templates show, formatted once, so the text and HTML parts agree."""
    period = report["period"]
    names = HEADLINES.get(audience, tuple(report["trends"]))
    headlines = [{"metric": name, "name": HEADLINE_WORDS.get(name, name), "current": show(name, t["current"]),
                  "previous": show(name, t["previous"]), "trend": trend_words(t, share=name in SHARES)}
                 for name in names if (t := report["trends"].get(name)) is not None]
    breaches = _breaches(report, owed_by(rules), audience, max_per_owner)
    return {
        "audience": audience, "title": TITLES[audience],
        "period": {"label": period["label"], "first_day": period["start"][:10],
                   "last_day": (_parse(period["end"]) - timedelta(days=1)).strftime("%Y-%m-%d")},
        "previous": report["previous_period"], "as_of": _when(report["as_of"]),
        "rules_version": report["rules_version"], "currency": report["currency"],
        "headlines": headlines, "sections": _sections(report, audience), "breaches": breaches,
        "dashboard_url": dashboard_url, "subject": _subject(report, audience, breaches["total"]),
    }


def _subject(r: Mapping[str, Any], audience: Audience, breaches: int) -> str:
    t, cur, label = r["trends"], r["currency"], r["period"]["label"]
    counted = f"{breaches} open SLA breach{'es' if breaches != 1 else ''}"
    if audience == "marketing":
        bits = [f"{show('mqls', t['mqls']['current'])} MQLs",
                f"MQL handoff within SLA {show('handoff_within_sla', t['handoff_within_sla']['current'])}"]
    elif audience == "sales":
        bits = [f"bookings {show('bookings', t['bookings']['current'])} {cur}",
                f"first touch within SLA {show('first_touch_within_sla', t['first_touch_within_sla']['current'])}"]
    else:
        bits = [f"{show('leads', t['leads']['current'])} leads", f"{show('mqls', t['mqls']['current'])} MQLs",
                f"bookings {show('bookings', t['bookings']['current'])} {cur}"]
    return f"[detente] {TITLES[audience]} {label}: {', '.join([*bits, counted])}"


def _sla_line(s: Mapping[str, Any]) -> str:
    return (f"{s['sla']} (owed by {s['owner']}, within {s['within']}): {s['started']} started, {s['met']} met, "
            f"{s['late']} late, {s['missed']} missed, {s['requirement']} short of the requirement, {s['running']} "
            f"running; within SLA {pct(s['within_sla'])}; median {hours(s['median_hours'])}, "
            f"p90 {hours(s['p90_hours'])}")


def _sections(r: Mapping[str, Any], audience: Audience) -> list[dict[str, Any]]:
    cur, f, lv, m, s, cost = r["currency"], r["funnel"], r["lead_value"], r["marketing_sla"], r["sales_sla"], r["cost"]
    d = s["disqualified"]
    mqls = (f"{m['mqls']} MQLs against a goal of {num(m['mql_goal'])} ({pct(m['mql_progress'])}), worth "
            f"{num(m['mql_value'])} {cur}")
    value = (f"Lead value delivered {num(lv['delivered'])} of a {num(lv['goal'])} {cur} goal "
             f"({pct(lv['progress'])})")
    spend = (f"Campaigns active in the period cost {num(cost['cost'], 2)} {cur} over their life: "
             f"{num(cost['cost_per_lead'], 2)} per lead ({cost['leads']} leads), "
             f"{num(cost['cost_per_order'], 2)} per order ({cost['won']} won)")
    closed = (f"Closed in the period: {f['won']} won, {f['lost']} lost, win rate {pct(f['win_rate'])}; bookings "
              f"{num(f['bookings'])} {cur}, average selling price {num(f['average_selling_price'])} {cur}")
    worked = (f"Leads worked {pct(s['worked'])}; disqualified {d['people']} with a median of "
              f"{num(d.get('median_activities'), 1)} activities (mean {num(d.get('mean_activities'), 1)})")

    def slas(team: str | None) -> list[str]:
        return [_sla_line(x) for x in r["slas"] if team is None or x["owner"] == team]

    if audience == "marketing":
        return [{"title": "Marketing", "lines": [mqls, value, spend]},
                {"title": "SLAs owed by marketing", "lines": slas("marketing")}]
    if audience == "sales":
        return [{"title": "Sales", "lines": [closed, worked]},
                {"title": "SLAs owed by sales", "lines": slas("sales")}]
    imp = lv["implied"]
    funnel = (f"{f['cohort']} people created in {r['period']['label']}; lead → opportunity "
              f"{pct(f['lead_to_opportunity'])} ({f['with_opportunity']} of {f['cohort']})")
    goals = (f"The bookings goal implies {num(imp['deals'])} deals, {num(imp['opportunities'])} opportunities, "
             f"{num(imp['mqls'])} MQLs and {num(imp['leads'])} raw leads for the period")
    return [{"title": "Funnel", "lines": [funnel, closed]},
            {"title": "Marketing", "lines": [mqls, value, spend]},
            {"title": "Sales", "lines": [worked]},
            {"title": "Goals", "lines": [goals]},
            {"title": "SLAs", "lines": slas(None)}]


def _breaches(r: Mapping[str, Any], owed: Mapping[str, str], audience: Audience, limit: int) -> dict[str, Any]:
    """The audience's open SLA breaches: per owner, listed (marketing, sales) or counted (leadership).

    The report groups them by owner and the team owing the SLA, with every breach counted and the
    most overdue listed; an SLA no longer in the rules keeps the team the finding recorded."""
    owners: list[dict[str, Any]] = []
    for group in r["breaches_by_owner"]:
        team = group["team"] or "-"
        if audience != "leadership" and team != audience:
            continue
        listed = [b for b in group["breaches"] if owed.get(b["rule"], team) == team][:limit]
        owners.append({"owner": group["owner"], "team": team, "open": group["open"],
                       "more": max(0, group["open"] - len(listed)), "breaches": [_breach(b) for b in listed]})
    owners.sort(key=lambda o: (-o["open"], o["owner"]))
    by_sla = [s for s in r.get("breaches_by_sla", []) if audience == "leadership" or (s["team"] or "-") == audience]
    return {"total": sum(o["open"] for o in owners), "owners": owners, "listed": audience != "leadership",
            "team": None if audience == "leadership" else audience,
            "by_sla": [{"sla": s["sla"], "team": s["team"] or "-", "open": s["open"]} for s in by_sla]}


def _breach(b: Mapping[str, Any]) -> dict[str, str]:
    ids = [f"Salesforce {b['salesforce_id']}" if b.get("salesforce_id") else "",
           f"HubSpot {b['hubspot_id']}" if b.get("hubspot_id") else ""]
    return {"rule": b["rule"], "person": b.get("email") or b.get("salesforce_id") or b.get("hubspot_id") or "-",
            "records": ", ".join(i for i in ids if i), "due": _when(b.get("due_at")),
            "explanation": b.get("explanation") or ""}


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _when(text: str | None) -> str:
    return "-" if not text else _parse(text).strftime("%Y-%m-%d %H:%M UTC")


@cache
def _templates() -> Environment:
    return Environment(loader=PackageLoader("detente.notify", "templates"), autoescape=select_autoescape(["html"]),
                       undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
