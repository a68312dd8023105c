"""Every shared metric of one period, from the store, computed once for the CLI, the dashboard
and the digest.

What is counted, so that anyone can check a number by hand:

- **cohort**: the live people created in the period; the funnel, lead value delivered, MQLs
  and the conversion of leads are about them. A person's source, channel, offer, campaign,
  owner (Salesforce's, else HubSpot's) and agreed team slice them (``--by``).
- **reached / at a stage**: as the audit last judged them (``person_stages``): a stage whose
  definition holds, or one every path to such a stage passes through; *at* is the furthest.
  Conversion of a stage is its count over its first ``after`` stage's count. Time in a stage
  runs from the first label of the stage to the first label of any later stage, where both
  were labelled (median, days).
- **opportunities**: the cohort people with one (lead→opportunity); won (opportunity→won) over
  the cohort's closed ones. Bookings, average selling price and the win rate count the
  opportunities *closed* in the period, whoever they came from.
- **SLA clocks**: those started in the period (``person_clocks``): met, late, missed (due and
  unstopped), requirement (stopped in time without what it requires), running; the share
  within the SLA is met over the decided ones (all but running); hours are the SLA's own time.
- **disqualified**: the cohort people now disqualified, and the activities each had before it:
  the real ones (completed, not a connector's copy, not detente's own task) up to when a CRM
  first labelled them disqualified (all of them when none said when).
- **lead value**: bookings per lead of each group (``goals.lead_value.by``) over the window
  before the period's end (leads created in it, opportunities closed won in it), or the fixed
  values; the goal is the bookings goal scaled to the period. The implied goals divide the
  bookings goal by the historical average selling price, win rate and lead→opportunity rate
  (MQL→opportunity for the MQL goal), all over the same window.
- **cost**: each campaign active in the period, over its whole life: actual cost ÷ its leads
  (people it brought), ÷ its won opportunities; by source through each campaign's most common
  source among its leads.
- **trends**: the headline numbers against the previous period, and against the org's own
  baseline (mean and standard deviation of the six periods before); a deviation is reported in
  standard deviations, never against a fixed "good" value.
- **the two views**: per stage, the cohort counted by HubSpot's labels, Salesforce's and the
  definition, with the reasons they differ (``detente audit --counts``), from what the audit
  last judged of each person (``person_metrics``).

Like the stages and clocks, the counts across periods come from what the audit wrote
(``person_metrics``: each live person's lead-value fields and whether they have an
opportunity and reached MQL), so a year of people is counted from one index.
"""

from __future__ import annotations

import gc
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from statistics import mean, median, pstdev
from typing import Any

from sqlalchemy import Connection, Engine, and_, case, func, literal_column, select
from sqlalchemy.pool import SingletonThreadPool, StaticPool

from detente.metrics.periods import goal_scale, kind_of, shift
from detente.reconcile.counts import CohortPerson, Counts, Period, count_stages, open_findings
from detente.reconcile.counts import to_json as counts_json
from detente.reconcile.facts import instant, load_owners, raw_rows
from detente.reconcile.labels import later_stages
from detente.rules import checked as c
from detente.rules.durations import Duration
from detente.rules.sql import EpochMicros
from detente.store.engine import scanning
from detente.store.findings import FindingRow, PersonClock, PersonMetric, PersonStage
from detente.store.tables import Activity, Campaign, Opportunity, Owner, Person

PEOPLE = Person.__table__  # type: ignore[attr-defined]
ACTIVITIES = Activity.__table__  # type: ignore[attr-defined]
OPPS = Opportunity.__table__  # type: ignore[attr-defined]
CAMPAIGNS = Campaign.__table__  # type: ignore[attr-defined]
OWNERS = Owner.__table__  # type: ignore[attr-defined]
STAGES = PersonStage.__table__  # type: ignore[attr-defined]
CLOCKS = PersonClock.__table__  # type: ignore[attr-defined]
METRICS = PersonMetric.__table__  # type: ignore[attr-defined]
FINDINGS = FindingRow.__table__  # type: ignore[attr-defined]

DIMENSIONS = ("source", "channel", "offer", "campaign", "team", "owner")
NONE = "(none)"
VALUE_FIELDS = ("source", "channel", "offer", "campaign", "country", "email_domain", "company", "title")
BASELINE_PERIODS = 6
MICROS_PER_DAY = 86_400_000_000
HEADLINE = ("leads", "mqls", "opportunities", "lead_to_opportunity", "won", "bookings", "win_rate",
            "average_selling_price", "lead_value_delivered", "handoff_within_sla", "first_touch_within_sla")


def iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def ratio(part: float, whole: float) -> float | None:
    return round(part / whole, 4) if whole else None


def money(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def p90(values: Sequence[float]) -> float | None:
    """The 90th percentile by nearest rank (a value that occurred)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(math.ceil(0.9 * len(ordered)) - 1, 0)]


def med(values: Sequence[float]) -> float | None:
    return round(median(values), 2) if values else None


def live_clock() -> Any:
    """Clocks of people not deleted. The deleted people are few: SQLite and PostgreSQL look
    each clock's person up in that small set far faster than in all of ``people``."""
    p = PEOPLE
    return CLOCKS.c.person_id.not_in(select(p.c.id).where(p.c.deleted.is_(True)))


# -- what is read ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Who:
    """One person of a cohort and what slices them."""

    id: int
    created_at: datetime | None
    source: str
    channel: str
    offer: str
    campaign: str
    owner: str
    team: str
    activities: int
    group: tuple[str, ...] = ()  # the lead-value group (goals.lead_value.by)


@dataclass(frozen=True)
class Deal:
    person_id: int | None
    amount: float
    is_closed: bool
    is_won: bool


class Store:
    """The reads the metrics make, on one connection, with owners and campaigns looked up once."""

    def __init__(self, conn: Connection, rules: c.Rules, now: datetime, by: Sequence[str]) -> None:
        self.conn, self.rules, self.now, self.by = conn, rules, now, tuple(by)
        owners = load_owners(conn, rules, now)
        self.owner_email = {o.id: o.email for o in owners.values()}
        self.owner_team = {o.id: o.team or NONE for o in owners.values()}
        self.campaigns = {r.id: r for r in conn.execute(select(CAMPAIGNS))}

    def group_columns(self, table: Any = PEOPLE) -> list[Any]:
        """SQL for the lead-value group of a person (``goals.lead_value.by``): columns of the
        person (in ``people`` or ``person_metrics``), or the campaign's name."""
        cols = []
        for name in self.by:
            if name == "campaign":
                c_ = CAMPAIGNS
                cols.append(func.coalesce(select(c_.c.name).where(c_.c.id == table.c.campaign_id)
                                          .scalar_subquery(), NONE))
            elif name in VALUE_FIELDS:
                cols.append(func.coalesce(table.c[name], NONE))
            else:
                raise ValueError(f"goals.lead_value.by: the metrics group lead value by fields people carry "
                                 f"({', '.join(VALUE_FIELDS)}); '{name}' is not one of them")
        return cols

    def _who(self, where: Any) -> Iterator[Who]:
        p = PEOPLE
        stmt = select(p.c.id, p.c.created_at, p.c.source, p.c.channel, p.c.offer, p.c.campaign_id,
                      func.coalesce(p.c.salesforce_owner_id, p.c.hubspot_owner_id), p.c.activity_count,
                      *self.group_columns()).where(where)
        campaigns = {k: v.name for k, v in self.campaigns.items()}
        for r in raw_rows(self.conn, stmt):
            yield Who(r[0], instant(r[1]) if r[1] is not None else None, r[2] or NONE, r[3] or NONE, r[4] or NONE,
                      campaigns.get(r[5], NONE), self.owner_email.get(r[6], NONE), self.owner_team.get(r[6], NONE),
                      int(r[7] or 0), tuple(str(x) for x in r[8:]))

    def people(self, start: datetime, end: datetime) -> list[Who]:
        p = PEOPLE
        return list(self._who(and_(p.c.deleted.is_(False), p.c.created_at >= start, p.c.created_at < end)))

    def stages(self, start: datetime, end: datetime) -> dict[int, dict[str, tuple[float | None, bool]]]:
        """Per person created in [start, end): stage -> (entered, in microseconds since the epoch
        as the database works it out: the hot loops compare and subtract, never parse; current)."""
        s_, p = STAGES, PEOPLE
        stmt = select(s_.c.person_id, s_.c.stage, EpochMicros(s_.c.entered_at), s_.c.is_current) \
            .join(p, p.c.id == s_.c.person_id) \
            .where(p.c.deleted.is_(False), p.c.created_at >= start, p.c.created_at < end)
        out: dict[int, dict[str, tuple[float | None, bool]]] = defaultdict(dict)
        for pid, stage, entered, current in raw_rows(self.conn, stmt):
            out[pid][stage] = (entered, bool(current))
        return out

    def deals(self, *, people_from: tuple[datetime, datetime] | None = None,
              closed_in: tuple[datetime, datetime] | None = None) -> list[Deal]:
        o, p = OPPS, PEOPLE
        stmt = select(o.c.person_id, o.c.amount, o.c.is_closed, o.c.is_won).where(o.c.deleted.is_(False))
        if people_from is not None:
            stmt = stmt.join(p, p.c.id == o.c.person_id).where(
                p.c.deleted.is_(False), p.c.created_at >= people_from[0], p.c.created_at < people_from[1])
        if closed_in is not None:
            stmt = stmt.where(o.c.is_closed.is_(True), o.c.closed_at >= closed_in[0], o.c.closed_at < closed_in[1])
        return [Deal(pid, float(amount or 0), bool(is_closed), bool(is_won))
                for pid, amount, is_closed, is_won in raw_rows(self.conn, stmt)]

    def clocks(self, start: datetime, end: datetime) -> list[Any]:
        """The clocks started in [start, end) of people not deleted."""
        k = CLOCKS
        stmt = select(k.c.person_id, k.c.sla, k.c.team, k.c.owner_email, k.c.outcome, k.c.hours) \
            .where(live_clock(), k.c.started_at >= start, k.c.started_at < end)
        return list(raw_rows(self.conn, stmt))

    def worked_before(self, entered: Mapping[int, float | None]) -> Counter[int]:
        """Per person, the real activities (completed, not a connector's copy, not detente's own
        task: what ``people.activity_count`` counts) up to ``entered`` (microseconds since the
        epoch; all of them when it is None: no CRM ever said when)."""
        a = ACTIVITIES
        out: Counter[int] = Counter()
        ids = sorted(entered)
        for start in range(0, len(ids), 5_000):
            stmt = select(a.c.person_id, EpochMicros(a.c.occurred_at)).where(
                a.c.person_id.in_(ids[start:start + 5_000]), a.c.completed.is_(True), a.c.deleted.is_(False),
                a.c.detente_key.is_(None), a.c.copy_of.is_(None))
            for pid, at in raw_rows(self.conn, stmt):
                until = entered[pid]
                if until is None or (at is not None and at <= until):
                    out[pid] += 1
        return out

    def dims_of(self, person_ids: Iterable[int]) -> dict[int, Who]:
        """Slicing values of people outside a cohort (clocks started in the period)."""
        ids = sorted(set(person_ids))
        out: dict[int, Who] = {}
        for start in range(0, len(ids), 5_000):
            out.update((w.id, w) for w in self._who(PEOPLE.c.id.in_(ids[start:start + 5_000])))
        return out

    def campaign_leads(self) -> tuple[Counter[int], Counter[int], dict[int, str]]:
        """Per campaign: its leads (all time), its won opportunities, its most common source."""
        p, o = PEOPLE, OPPS
        leads: Counter[int] = Counter()
        sources: dict[int, Counter[str]] = defaultdict(Counter)
        stmt = select(p.c.campaign_id, func.coalesce(p.c.source, NONE), func.count()).where(
            p.c.deleted.is_(False), p.c.campaign_id.is_not(None)).group_by(p.c.campaign_id, p.c.source)
        for campaign_id, source, n in self.conn.execute(stmt):
            leads[campaign_id] += n
            sources[campaign_id][source] += n
        won: Counter[int] = Counter()
        stmt = select(p.c.campaign_id, func.count()).join(o, o.c.person_id == p.c.id).where(
            p.c.deleted.is_(False), p.c.campaign_id.is_not(None), o.c.deleted.is_(False),
            o.c.is_won.is_(True)).group_by(p.c.campaign_id)
        for campaign_id, n in self.conn.execute(stmt):
            won[campaign_id] = n
        top = {k: sorted(v.items(), key=lambda kv: (-kv[1], kv[0]))[0][0] for k, v in sources.items()}
        return leads, won, top

    def open_breaches(self, per_owner: int) -> tuple[dict[tuple[str | None, str | None], int], list[dict[str, Any]]]:
        """Per owner and owing team, how many open SLA breaches, and the ``per_owner`` most overdue."""
        f = FINDINGS
        breached = and_(f.c.status == "open", f.c.kind == "sla", f.c.state == "breached")
        counts = {(r[0], r[1]): int(r[2]) for r in self.conn.execute(
            select(f.c.owner_email, f.c.team, func.count()).where(breached).group_by(f.c.owner_email, f.c.team))}
        rank = func.row_number().over(partition_by=(f.c.owner_email, f.c.team),
                                      order_by=(f.c.due_at, f.c.key)).label("rank")
        ranked = select(f.c.owner_email, f.c.team, f.c.rule, f.c.email, f.c.salesforce_id, f.c.hubspot_id,
                        f.c.due_at, f.c.explanation, rank).where(breached).subquery()
        rows = [dict(r._mapping) for r in self.conn.execute(
            select(ranked).where(ranked.c.rank <= per_owner).order_by(ranked.c.owner_email, ranked.c.rank))]
        return counts, rows


# -- the parts ---------------------------------------------------------------------------------


# Without a goals section: no goal, lead value from a year of history by source and offer.
NO_GOALS = c.Goals(period="month", bookings=0.0, currency="USD", average_selling_price=None,
                   lead_value=c.LeadValue(method="history", window=Duration(365, "days"), by=("source", "offer"),
                                          values={}))


@dataclass(frozen=True)
class Context:
    rules: c.Rules
    implied: Mapping[str, frozenset[str]]
    after: Mapping[str, frozenset[str]]

    @property
    def goals(self) -> c.Goals:
        return self.rules.goals if self.rules.goals is not None else NO_GOALS

    def value(self, h: History, who: Who) -> float:
        """One lead's value: its group's (``goals.lead_value.by``) in the history ``h``."""
        return h.value(self.goals, who.group)

    @property
    def order(self) -> tuple[str, ...]:
        return tuple(self.rules.stages)


def funnel(ctx: Context, cohort: Sequence[Who], stages: Mapping[int, Mapping[str, tuple[float | None, bool]]],
           deals: Sequence[Deal]) -> dict[str, Any]:
    ids = {w.id for w in cohort}
    reached: Counter[str] = Counter()
    at: Counter[str] = Counter()
    days: dict[str, list[float]] = defaultdict(list)
    after = {name: ctx.after.get(name, frozenset()) for name in ctx.rules.stages}
    for pid, mine in stages.items():  # one pass over each person's few stages
        if pid not in ids:
            continue
        for name, (entered, current) in mine.items():
            reached[name] += 1
            at[name] += current
            if entered is None:
                continue
            later = after.get(name, frozenset())
            nexts = [t for s, (t, _) in mine.items() if t is not None and s in later]
            if nexts and (first := min(nexts)) >= entered:
                days[name].append((first - entered) / MICROS_PER_DAY)
    rows = []
    for name, stage in ctx.rules.stages.items():
        previous = stage.after[0] if stage.after else None
        rows.append({"stage": name, "at": at[name], "reached": reached[name], "from": previous,
                     "conversion": ratio(reached[name], reached[previous]) if previous is not None else None,
                     "median_days_in_stage": med(days[name]), "timed": len(days[name])})
    with_opp = {d.person_id for d in deals if d.person_id in ids}
    closed = [d for d in deals if d.person_id in ids and d.is_closed]
    return {"cohort": len(ids), "stages": rows, "with_opportunity": len(with_opp),
            "lead_to_opportunity": ratio(len(with_opp), len(ids)),
            "cohort_won": sum(1 for d in closed if d.is_won), "cohort_closed": len(closed),
            "opportunity_to_won": ratio(sum(1 for d in closed if d.is_won), len(closed))}


def bookings(deals: Sequence[Deal]) -> dict[str, Any]:
    won = [d for d in deals if d.is_won]
    total = sum(d.amount for d in won)
    return {"won": len(won), "lost": len(deals) - len(won), "bookings": money(total),
            "average_selling_price": money(total / len(won)) if won else None,
            "win_rate": ratio(len(won), len(deals))}


@dataclass(frozen=True)
class History:
    """What the window before the period's end says a lead, an MQL and a deal are worth."""

    start: datetime
    end: datetime
    values: Mapping[tuple[str, ...], float]
    leads: int
    leads_with_opportunity: int
    mqls: int
    mqls_with_opportunity: int
    won: int
    closed: int
    bookings: float

    def value(self, goals: c.Goals, group: Sequence[str]) -> float:
        key = tuple(group)
        if key in self.values:
            return self.values[key]
        return goals.lead_value.values.get("default", 0.0)


@dataclass
class Tally:
    """People and closed opportunities counted per (period bucket, in the value window, group)."""

    people: dict[tuple[int, bool, tuple[str, ...]], list[int]]  # -> [leads, with opportunity, mqls, mqls with one]
    closed: dict[tuple[int, bool, tuple[str, ...]], list[float]]  # -> [closed, won, bookings]


def window_start(ctx: Context, end: datetime) -> datetime:
    window = ctx.goals.lead_value.window
    return end - (window.calendar if not window.business else timedelta(days=365))


def tally(store: Store, ctx: Context, periods: Sequence[Period]) -> Tally:
    """One grouped read of people and one of closed opportunities serve the lead-value window
    before the newest period's end and every period's headline numbers."""
    hi = periods[0].end
    start = window_start(ctx, hi)
    lo = min(start, periods[-1].start)

    def bucket(column: Any) -> Any:
        return case(*[(and_(column >= p.start, column < p.end), i) for i, p in enumerate(periods)], else_=-1)

    def windowed(column: Any) -> Any:
        return case((column >= start, 1), else_=0)

    p, o, m = PEOPLE, OPPS, METRICS
    # The live people, each with whether they have an opportunity and reached MQL, as the
    # audit copied them (person_metrics): one index read for a year of people.
    groups = store.group_columns(m)
    width = len(groups)

    def flagged(*flags: Any) -> Any:
        return func.sum(case((and_(*(f.is_(True) for f in flags)), 1), else_=0))

    # GROUP BY ordinals: PostgreSQL does not see two renderings of the bucket as one expression.
    stmt = select(bucket(m.c.created_at), windowed(m.c.created_at), *groups, func.count(),
                  flagged(m.c.has_opportunity), flagged(m.c.mql), flagged(m.c.mql, m.c.has_opportunity)) \
        .where(m.c.created_at >= lo, m.c.created_at < hi).group_by(*ordinals(*range(1, 3 + width)))
    people: dict[tuple[int, bool, tuple[str, ...]], list[int]] = {}
    for row in raw_rows(store.conn, stmt):
        key = (int(row[0]), bool(row[1]), tuple(str(x) for x in row[2:2 + width]))
        people[key] = [int(x or 0) for x in row[2 + width:]]
    won = o.c.is_won.is_(True)
    stmt = select(bucket(o.c.closed_at), windowed(o.c.closed_at), *store.group_columns(p), func.count(),
                  func.sum(case((won, 1), else_=0)), func.sum(case((won, o.c.amount), else_=0))) \
        .select_from(o.outerjoin(p, p.c.id == o.c.person_id)) \
        .where(o.c.deleted.is_(False), o.c.is_closed.is_(True), o.c.closed_at >= lo, o.c.closed_at < hi) \
        .group_by(*ordinals(*range(1, 3 + width)))
    closed: dict[tuple[int, bool, tuple[str, ...]], list[float]] = {}
    for row in raw_rows(store.conn, stmt):
        key = (int(row[0]), bool(row[1]), tuple(NONE if x is None else str(x) for x in row[2:2 + width]))
        closed[key] = [float(x or 0) for x in row[2 + width:]]
    return Tally(people, closed)


def history(ctx: Context, t: Tally, end: datetime) -> History:
    """Lead values and rates over the window before ``end`` (the tally's newest period's end)."""
    goals = ctx.goals
    leads: Counter[tuple[str, ...]] = Counter()
    with_opp = mqls = mql_opp = 0
    for (_, inside, group), (n, opp, mql, both) in t.people.items():
        if inside:
            leads[group] += n
            with_opp, mqls, mql_opp = with_opp + opp, mqls + mql, mql_opp + both
    booked: dict[tuple[str, ...], float] = defaultdict(float)
    n_closed = n_won = 0
    total = 0.0
    for (_, inside, group), (closed, won, amount) in t.closed.items():
        if inside:
            booked[group] += amount
            n_closed, n_won, total = n_closed + int(closed), n_won + int(won), total + amount
    if goals.lead_value.method == "fixed":
        fixed = goals.lead_value.values
        values = {g: fixed.get(g[0] if g else "default", fixed.get("default", 0.0)) for g in leads}
    else:
        values = {g: round(booked.get(g, 0.0) / n, 2) for g, n in leads.items() if n}
    return History(window_start(ctx, end), end, values, sum(leads.values()), with_opp, mqls, mql_opp,
                   n_won, n_closed, total)


def implied(goals: c.Goals, h: History, scale: float) -> dict[str, Any]:
    """bookings goal ÷ average selling price ÷ win rate ÷ lead→opportunity rate, for this period."""
    goal = goals.bookings * scale
    asp = goals.average_selling_price if goals.average_selling_price is not None else (
        h.bookings / h.won if h.won else None)
    win = h.won / h.closed if h.closed else None
    l2o = h.leads_with_opportunity / h.leads if h.leads else None
    m2o = h.mqls_with_opportunity / h.mqls if h.mqls else None
    out: dict[str, Any] = {"bookings_goal": money(goal), "average_selling_price": money(asp),
                           "win_rate": None if win is None else round(win, 4),
                           "lead_to_opportunity": None if l2o is None else round(l2o, 4),
                           "mql_to_opportunity": None if m2o is None else round(m2o, 4),
                           "deals": None, "opportunities": None, "leads": None, "mqls": None,
                           "window": {"start": iso(h.start), "end": iso(h.end)}}
    if goal and asp and win:
        deals = goal / asp
        opps = deals / win
        out.update(deals=math.ceil(deals), opportunities=math.ceil(opps))
        if l2o:
            out["leads"] = math.ceil(opps / l2o)
        if m2o:
            out["mqls"] = math.ceil(opps / m2o)
    return out


def clock_summary(rows: Sequence[Any]) -> dict[str, Any]:
    outcomes = Counter(r.outcome for r in rows)
    decided = len(rows) - outcomes["running"]
    hours = [float(r.hours) for r in rows if r.hours is not None]
    stopped = outcomes["met"] + outcomes["late"] + outcomes["requirement"]
    return {"started": len(rows), "met": outcomes["met"], "late": outcomes["late"], "missed": outcomes["missed"],
            "requirement": outcomes["requirement"], "running": outcomes["running"],
            "within_sla": ratio(outcomes["met"], decided), "stopped": ratio(stopped, len(rows)),
            "median_hours": med(hours), "p90_hours": None if not hours else round(p90(hours) or 0, 2)}


def sla_section(ctx: Context, clocks: Sequence[Any]) -> list[dict[str, Any]]:
    by_sla: dict[str, list[Any]] = defaultdict(list)
    for r in clocks:
        by_sla[r.sla].append(r)
    return [{"sla": sla.id, "owner": sla.owner, "meaning": sla.meaning, "within": str(sla.within),
             **clock_summary(by_sla.get(sla.id, []))} for sla in ctx.rules.slas]


def per_team_and_owner(ctx: Context, clocks: Sequence[Any]) -> list[dict[str, Any]]:
    """SLA compliance per owing team and per owner."""
    groups: dict[tuple[str, str, str], list[Any]] = defaultdict(list)
    for r in clocks:
        groups[(r.sla, r.team or NONE, "")].append(r)
        groups[(r.sla, r.team or NONE, r.owner_email or NONE)].append(r)
    return [{"sla": sla, "team": team, "owner": owner or None, **clock_summary(rows)}
            for (sla, team, owner), rows in sorted(groups.items())]


def slas_by_kind(ctx: Context, slas: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Which SLA answers which question: hand-off (starts at a stage, stops at a team), first touch
    (stops at an activity), outcome (stops at stages, with a requirement)."""
    out: dict[str, Any] = {}
    for sla, row in zip(ctx.rules.slas, slas, strict=True):
        if sla.stop.kind == "owner_team" and "handoff" not in out:
            out["handoff"] = row
        elif sla.stop.kind == "first_activity" and "first_touch" not in out:
            out["first_touch"] = row
        elif sla.stop.kind == "stage" and "outcome" not in out:
            out["outcome"] = row
    return out


def disqualified(ctx: Context, cohort: Sequence[Who], stages: Mapping[int, Mapping[str, Any]],
                 worked: Mapping[int, int]) -> dict[str, Any]:
    """The cohort people now disqualified, and the activities each had before it (``worked``)."""
    if "disqualified" not in ctx.rules.stages:
        return {"people": 0}
    counts = [worked.get(w.id, 0) for w in cohort if stages.get(w.id, {}).get("disqualified", (None, False))[1]]
    return {"people": len(counts), "median_activities": med(counts),
            "mean_activities": round(mean(counts), 2) if counts else None}


def cost(store: Store, period: Period) -> dict[str, Any]:
    leads, won, source = store.campaign_leads()
    rows = []
    for cid, camp in sorted(store.campaigns.items(), key=lambda kv: kv[1].name):
        start, end = camp.start_date, camp.end_date
        if start is not None and start >= period.end.date():
            continue
        if end is not None and end < period.start.date():
            continue
        spent = float(camp.actual_cost or 0)
        rows.append({"campaign": camp.name, "source": source.get(cid, NONE), "channel": camp.channel,
                     "offer": camp.offer, "cost": money(spent), "leads": leads[cid], "won": won[cid],
                     "cost_per_lead": money(spent / leads[cid]) if leads[cid] else None,
                     "cost_per_order": money(spent / won[cid]) if won[cid] else None})
    by_source: dict[str, dict[str, float]] = defaultdict(lambda: {"cost": 0.0, "leads": 0, "won": 0})
    for r in rows:
        agg = by_source[r["source"]]
        agg["cost"] += r["cost"] or 0
        agg["leads"] += r["leads"]
        agg["won"] += r["won"]
    sources = [{"source": s, "cost": money(a["cost"]), "leads": int(a["leads"]), "won": int(a["won"]),
                "cost_per_lead": money(a["cost"] / a["leads"]) if a["leads"] else None,
                "cost_per_order": money(a["cost"] / a["won"]) if a["won"] else None}
               for s, a in sorted(by_source.items())]
    total_cost = sum(r["cost"] or 0 for r in rows)
    total_leads = sum(r["leads"] for r in rows)
    total_won = sum(r["won"] for r in rows)
    return {"campaigns": rows, "sources": sources, "cost": money(total_cost), "leads": total_leads, "won": total_won,
            "cost_per_lead": money(total_cost / total_leads) if total_leads else None,
            "cost_per_order": money(total_cost / total_won) if total_won else None}


def groups(ctx: Context, by: str, cohort: Sequence[Who], stages: Mapping[int, Mapping[str, Any]],
           deals: Sequence[Deal], clocks: Sequence[Any], dims: Mapping[int, Who], h: History) -> list[dict[str, Any]]:
    """The headline numbers per value of ``by``."""
    members: dict[str, list[Who]] = defaultdict(list)
    for w in cohort:
        members[getattr(w, by)].append(w)
    deals_of: dict[int, list[Deal]] = defaultdict(list)
    for d in deals:
        if d.person_id is not None:
            deals_of[d.person_id].append(d)
    touch: dict[str, list[Any]] = defaultdict(list)
    first = next((s.id for s in ctx.rules.slas if s.stop.kind == "first_activity"), None)
    for r in clocks:
        if r.sla == first and r.person_id in dims:
            key = r.owner_email or NONE if by == "owner" else (r.team or NONE if by == "team" else
                                                                  getattr(dims[r.person_id], by))
            touch[key].append(r)
    out = []
    for key in sorted(set(members) | set(touch)):
        people = members.get(key, [])
        mine = [d for w in people for d in deals_of.get(w.id, [])]
        closed = [d for d in mine if d.is_closed]
        won = [d for d in closed if d.is_won]
        with_opp = {d.person_id for d in mine}
        value = sum(ctx.value(h, w) for w in people)
        booked = sum(d.amount for d in won)
        out.append({by: key, "leads": len(people),
                    "mqls": sum(1 for w in people if "mql" in stages.get(w.id, {})),
                    "opportunities": len(with_opp), "lead_to_opportunity": ratio(len(with_opp), len(people)),
                    "won": len(won), "opportunity_to_won": ratio(len(won), len(closed)),
                    "bookings": money(booked), "average_selling_price": money(booked / len(won)) if won else None,
                    "lead_value": money(value), "value_per_lead": money(value / len(people)) if people else None,
                    "first_touch_within_sla": clock_summary(touch.get(key, []))["within_sla"]})
    return out


def ordinals(*positions: int) -> list[Any]:
    return [literal_column(str(n)) for n in positions]


def headlines(store: Store, ctx: Context, periods: Sequence[Period], t: Tally, h: History) -> list[dict[str, Any]]:
    """The numbers trends and baselines compare, for contiguous ``periods`` (newest first), from
    the tally and one grouped read of the clocks. Lead value is valued at ``h``'s values for every
    period, so periods compare like for like."""
    out: list[dict[str, Any]] = [dict.fromkeys(HEADLINE, 0) for _ in periods]
    for (b, _, group), (n, opp, mql, _both) in t.people.items():
        if b >= 0:
            row = out[b]
            row["leads"] += n
            row["opportunities"] += opp
            row["mqls"] += mql
            row["lead_value_delivered"] += n * h.value(ctx.goals, group)
    closed: list[list[float]] = [[0, 0, 0.0] for _ in periods]  # closed, won, bookings
    for (b, _, _group), (n_closed, won, amount) in t.closed.items():
        if b >= 0:
            closed[b] = [closed[b][0] + n_closed, closed[b][1] + won, closed[b][2] + amount]
    lo, hi = periods[-1].start, periods[0].end
    k = CLOCKS
    bucket = case(*[(and_(k.c.started_at >= x.start, k.c.started_at < x.end), i) for i, x in enumerate(periods)],
                  else_=-1)
    clocks: list[Counter[tuple[str, str]]] = [Counter() for _ in periods]
    stmt = select(bucket, k.c.sla, k.c.outcome, func.count()) \
        .where(live_clock(), k.c.started_at >= lo, k.c.started_at < hi).group_by(*ordinals(1, 2, 3))
    for b, sla, outcome, n in raw_rows(store.conn, stmt):
        if b >= 0:
            clocks[b][(sla, outcome)] += n
    kinds = {"handoff_within_sla": "owner_team", "first_touch_within_sla": "first_activity"}
    for i, row in enumerate(out):
        n_closed, n_won, booked = closed[i]
        won = int(n_won)
        row.update(won=won, bookings=money(booked), win_rate=ratio(won, n_closed),
                   average_selling_price=money(booked / won) if won else None,
                   lead_to_opportunity=ratio(row["opportunities"], row["leads"]),
                   lead_value_delivered=money(row["lead_value_delivered"]))
        for name, stop in kinds.items():
            sla = next((x.id for x in ctx.rules.slas if x.stop.kind == stop), None)
            got = {outcome: m for (sid, outcome), m in clocks[i].items() if sid == sla}
            decided = sum(got.values()) - got.get("running", 0)
            row[name] = ratio(got.get("met", 0), decided) if sla is not None else None
    return out


def trends(current: Mapping[str, Any], previous: Mapping[str, Any],
           baseline: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    out = {}
    for name in HEADLINE:
        now, before = current.get(name), previous.get(name)
        past = [b[name] for b in baseline if b.get(name) is not None]
        mu = mean(past) if past else None
        sd = pstdev(past) if len(past) >= 2 else None
        out[name] = {
            "current": now, "previous": before,
            "change": None if now is None or before is None else round(now - before, 4),
            "change_share": None if now is None or not before else round((now - before) / before, 4),
            "baseline_mean": None if mu is None else round(mu, 4),
            "baseline_sd": None if sd is None else round(sd, 4), "baseline_periods": len(past),
            "deviation_sd": None if now is None or mu is None or not sd else round((now - mu) / sd, 2),
        }
    return out


BREACHES_PER_OWNER = 25


def breaches_by_owner(counts: Mapping[tuple[str | None, str | None], int],
                      rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Open SLA breaches per owner and owing team, most first: how many, and the most overdue
    ones (at most ``BREACHES_PER_OWNER``; ``shown`` says how many are listed)."""
    listed: dict[tuple[str | None, str | None], list[Mapping[str, Any]]] = defaultdict(list)
    for r in rows:
        listed[(r["owner_email"], r["team"])].append(r)
    out = []
    for (owner, team), n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0][0] or NONE, kv[0][1] or NONE)):
        found = listed.get((owner, team), [])
        out.append({"owner": owner or NONE, "team": team, "open": n, "shown": len(found),
                    "breaches": [{"rule": f["rule"], "email": f["email"], "salesforce_id": f["salesforce_id"],
                                  "hubspot_id": f["hubspot_id"], "due_at": iso(instant(f["due_at"])),
                                  "explanation": f["explanation"]} for f in found]})
    return out


# -- the report ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class OverTime:
    """The half of a report that reads across periods: the tally, the lead-value history, the
    headline numbers per period, cost and the open findings."""

    history: History
    headlines: list[dict[str, Any]]
    cost: dict[str, Any]
    breaches: list[dict[str, Any]]
    open_counts: dict[str, int]
    breach_counts: list[dict[str, Any]]
    reconciliation: dict[str, Any] | None


def over_time(engine: Engine, ctx: Context, period: Period, periods: Sequence[Period], now: datetime,
              reconciliation: bool) -> OverTime:
    with scanning(engine) as conn:
        store = Store(conn, ctx.rules, now, ctx.goals.lead_value.by)
        tallied = tally(store, ctx, periods)
        h = history(ctx, tallied, period.end)
        heads = headlines(store, ctx, periods, tallied, h)
        spend = cost(store, period)
        breaches = breaches_by_owner(*store.open_breaches(BREACHES_PER_OWNER))
        fr = FINDINGS
        two_views = None
        if reconciliation:
            p = PEOPLE
            finding_rows = [dict(r._mapping) for r in conn.execute(
                select(fr.c.person_id, fr.c.kind, fr.c.rule, fr.c.status).join(p, p.c.id == fr.c.person_id)
                .where(fr.c.status == "open", p.c.created_at >= period.start, p.c.created_at < period.end))]
            people = judged_cohort(conn, period)
            two_views = counts_json(Counts(period, now, ctx.rules.version, len(people),
                                           tuple(count_stages(ctx.rules, people, open_findings(finding_rows)))))
        open_counts = {r[0]: int(r[1]) for r in conn.execute(
            select(fr.c.kind, func.count()).where(fr.c.status == "open").group_by(fr.c.kind))}
        breach_counts = [{"sla": r[0], "team": r[1], "open": int(r[2])} for r in conn.execute(
            select(fr.c.rule, fr.c.team, func.count()).where(fr.c.status == "open", fr.c.kind == "sla",
                                                             fr.c.state == "breached")
            .group_by(fr.c.rule, fr.c.team).order_by(func.count().desc(), fr.c.rule, fr.c.team))]
    return OverTime(h, heads, spend, breaches, open_counts, breach_counts, two_views)


def judged_cohort(conn: Connection, period: Period) -> list[CohortPerson]:
    """The period's cohort with the stages the audit last found their definitions hold and
    each CRM labels (``person_metrics``), for the reconciliation of the two views."""
    p, m = PEOPLE, METRICS
    stmt = select(p.c.id, p.c.salesforce_lead_id, p.c.hubspot_contact_id, m.c.definitions,
                  m.c.salesforce_labels, m.c.hubspot_labels) \
        .join(m, m.c.person_id == p.c.id) \
        .where(p.c.deleted.is_(False), p.c.created_at >= period.start, p.c.created_at < period.end) \
        .order_by(p.c.id)
    out = []
    sets: dict[str, frozenset[str]] = {}  # a few distinct stage sets are shared by many people
    for pid, lead_id, contact_id, defined, salesforce, hubspot in raw_rows(conn, stmt):
        names = [sets.get(x) or sets.setdefault(x, frozenset(x.split())) for x in (defined, salesforce, hubspot)]
        out.append(CohortPerson(pid, lead_id, contact_id, names[0], {"salesforce": names[1], "hubspot": names[2]}))
    return out


def side_by_side(engine: Engine) -> bool:
    """Whether a second connection, on another thread, reads the same store: not for an
    in-memory SQLite database, whose pool gives each thread its own (or shares one connection)."""
    return not isinstance(engine.pool, (StaticPool, SingletonThreadPool))


@contextmanager
def collector_paused() -> Iterator[None]:
    """The cyclic garbage collector held off while a report builds its few hundred thousand
    small rows, none of which form cycles: with it on, Python walks the growing heap again
    and again, which costs a third of the report's time. Reference counting still frees
    everything; the collector runs again as soon as the report is done (or at once if another
    report running meanwhile turned it back on)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def report(engine: Engine, rules: c.Rules, period: Period, now: datetime, *, by: str | None = None,
           reconciliation: bool = True) -> dict[str, Any]:
    """Every metric of ``period`` as one JSON-ready dict (``detente report --format json``)."""
    with collector_paused():
        return _report(engine, rules, period, now, by=by, reconciliation=reconciliation)


def _report(engine: Engine, rules: c.Rules, period: Period, now: datetime, *, by: str | None,
            reconciliation: bool) -> dict[str, Any]:
    """The report. The reads across periods (``over_time``) run on a second connection while this thread
    reads and counts the period's cohort: on SQLite and PostgreSQL alike the database works
    on one while Python works on the other. Both read the store as it was when they began;
    the daemon runs the report between audits, so they see the same audit."""
    if by is not None and by not in DIMENSIONS:
        raise ValueError(f"cannot slice by {by!r}; expected one of {', '.join(DIMENSIONS)}")
    ctx = Context(rules, _implied(rules), later_stages(rules))
    goals = ctx.goals
    scale = goal_scale(goals.period, period)
    periods = [shift(period, n) for n in range(0, 2 + BASELINE_PERIODS)]
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="metrics") as pool:
        pending = pool.submit(over_time, engine, ctx, period, periods, now, reconciliation) \
            if side_by_side(engine) else None
        with scanning(engine) as conn:
            store = Store(conn, rules, now, goals.lead_value.by)
            cohort = store.people(period.start, period.end)
            stages = store.stages(period.start, period.end)
            cohort_deals = store.deals(people_from=(period.start, period.end))
            closed = store.deals(closed_in=(period.start, period.end))
            clocks = store.clocks(period.start, period.end)
            dims = store.dims_of(r.person_id for r in clocks) if by is not None else {}
            worked = store.worked_before({pid: mine["disqualified"][0] for pid, mine in stages.items()
                                          if mine.get("disqualified", (None, False))[1]})
        f = funnel(ctx, cohort, stages, cohort_deals)
        money_in = bookings(closed)
        slas = sla_section(ctx, clocks)
        kinds = slas_by_kind(ctx, slas)
        by_team = per_team_and_owner(ctx, clocks)
        mqls = [w for w in cohort if "mql" in stages.get(w.id, {})]
        later = pending.result() if pending is not None else \
            over_time(engine, ctx, period, periods, now, reconciliation)
    h = later.history
    value_by = goals.lead_value.by
    delivered = sum(ctx.value(h, w) for w in cohort)
    mql_value = sum(ctx.value(h, w) for w in mqls)
    goal_numbers = implied(goals, h, scale)
    current, previous, *baseline = later.headlines
    spend = later.cost
    out: dict[str, Any] = {
        "period": {"label": period.label, "kind": kind_of(period), "start": iso(period.start), "end": iso(period.end)},
        "previous_period": shift(period, 1).label, "as_of": iso(now), "rules_version": rules.version,
        "currency": goals.currency, "by": by,
        "funnel": {**f, **{k: money_in[k] for k in ("won", "lost", "bookings", "average_selling_price",
                                                      "win_rate")}},
        "lead_value": {
            "method": goals.lead_value.method, "by": list(value_by),
            "per_lead": [{**dict(zip(value_by, g, strict=True)), "value": v} for g, v in sorted(h.values.items())],
            "delivered": money(delivered), "goal": money(goals.bookings * scale) if goals.bookings else None,
            "progress": ratio(delivered, goals.bookings * scale), "implied": goal_numbers},
        "marketing_sla": {"mqls": len(mqls), "mql_goal": goal_numbers["mqls"],
                          "mql_progress": ratio(len(mqls), goal_numbers["mqls"] or 0),
                          "mql_value": money(mql_value), "handoff": kinds.get("handoff")},
        "sales_sla": {"first_touch": kinds.get("first_touch"), "outcome": kinds.get("outcome"),
                      "worked": (kinds.get("first_touch") or {}).get("stopped"),
                      "disqualified": disqualified(ctx, cohort, stages, worked)},
        "slas": slas, "sla_by_team_and_owner": by_team,
        "cost": spend,
        "indicators": {
            "leading": {"contact_rate": (kinds.get("first_touch") or {}).get("stopped"),
                        "qualification_rate": _qualification(f)},
            "lagging": {"bookings": money_in["bookings"], "cost_per_order": spend["cost_per_order"]}},
        "trends": trends(current, previous, baseline),
        "open_findings": dict(sorted(later.open_counts.items())),
        "breaches_by_sla": later.breach_counts,
        "breaches_by_owner": later.breaches,
    }
    if by is not None:
        out["groups"] = groups(ctx, by, cohort, stages, cohort_deals, clocks, dims, h)
    if later.reconciliation is not None:
        out["reconciliation"] = later.reconciliation
    return out


def _qualification(f: Mapping[str, Any]) -> float | None:
    reached = {r["stage"]: r["reached"] for r in f["stages"]}
    if "sql" not in reached or "mql" not in reached:
        return None
    return ratio(reached["sql"], reached["mql"])


def _implied(rules: c.Rules) -> dict[str, frozenset[str]]:
    from detente.reconcile.funnel import implied_stages

    return implied_stages(rules)
