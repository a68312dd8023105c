"""What a rule change would do, computed over the store before it goes live.

Per stage: how many people enter and leave the definition (and each CRM's label), with
examples. Per SLA: how many clocks start, stop and breach under the old and the new rules,
and who changes. Plus the list of what changed in the text of the rules.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from detente.rules import checked as c
from detente.rules import store_view as sv
from detente.rules.clocks import Clock, clocks, gather_facts
from detente.rules.evaluate import StageEvaluator


@dataclass(frozen=True)
class Movement:
    """People who enter or leave something, with a few examples (emails, else ids)."""

    count: int = 0
    examples: tuple[str, ...] = ()


@dataclass(frozen=True)
class StageImpact:
    stage: str
    before: int
    after: int
    entering: Movement
    leaving: Movement
    labels: Mapping[str, tuple[Movement, Movement]] = field(default_factory=dict)


@dataclass(frozen=True)
class SlaImpact:
    sla: str
    before: Mapping[str, int]  # started, stopped, breached, running
    after: Mapping[str, int]
    newly_breached: Movement
    no_longer_breached: Movement
    newly_started: Movement
    no_longer_started: Movement


@dataclass(frozen=True)
class RulesDiff:
    old_version: str
    new_version: str
    as_of: datetime
    people: int
    changes: tuple[str, ...]
    stages: tuple[StageImpact, ...]
    slas: tuple[SlaImpact, ...]

    def lines(self) -> list[str]:
        out = [f"rules {self.old_version} -> {self.new_version}, over {self.people} people as of "
               f"{self.as_of.isoformat()}"]
        out.append("")
        out.append("changes in the rules:")
        out.extend(f"  {line}" for line in self.changes or ("(none)",))
        out.append("")
        out.append("stages (people meeting the definition):")
        for s in self.stages:
            out.append(f"  {s.stage}: {s.before} -> {s.after}  (+{s.entering.count} entering, "
                       f"-{s.leaving.count} leaving)")
            out.extend(_examples("entering", s.entering))
            out.extend(_examples("leaving", s.leaving))
            for system, (gain, loss) in s.labels.items():
                if gain.count or loss.count:
                    out.append(f"    {system} label: +{gain.count} / -{loss.count}")
        out.append("")
        out.append("SLA clocks:")
        for sla in self.slas:
            b, a = sla.before, sla.after
            parts = ", ".join(f"{k} {b.get(k, 0)} -> {a.get(k, 0)}" for k in ("started", "stopped", "breached",
                                                                                "running"))
            out.append(f"  {sla.sla}: {parts}")
            out.extend(_examples("newly breached", sla.newly_breached))
            out.extend(_examples("no longer breached", sla.no_longer_breached))
            out.extend(_examples("newly started", sla.newly_started))
            out.extend(_examples("no longer started", sla.no_longer_started))
        return out

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(self, default=_jsonable))  # type: ignore[no-any-return]


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if hasattr(value, "__dataclass_fields__"):
        return {k: getattr(value, k) for k in value.__dataclass_fields__}
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(type(value).__name__)


def _examples(word: str, movement: Movement) -> list[str]:
    if not movement.count:
        return []
    more = f" and {movement.count - len(movement.examples)} more" if movement.count > len(movement.examples) else ""
    return [f"    {word}: {', '.join(movement.examples)}{more}"]


def rule_changes(old: c.Rules, new: c.Rules) -> list[str]:
    """What changed in the text of the rules, one line per change."""
    out: list[str] = []
    for name in _union(old.stages, new.stages):
        a, b = old.stages.get(name), new.stages.get(name)
        if a is None or b is None:
            out.append(f"stage {name} {'added' if a is None else 'removed'}")
            continue
        if str(a.definition) != str(b.definition):
            out.append(f"stage {name} definition: {a.definition}  =>  {b.definition}")
        for system in ("salesforce", "hubspot"):
            la, lb = a.labels.get(system), b.labels.get(system)
            if str(la) != str(lb):
                out.append(f"stage {name} {system} label: {la or '(none)'}  =>  {lb or '(none)'}")
        if a.owner != b.owner:
            out.append(f"stage {name} owner: {a.owner} => {b.owner}")
    old_slas, new_slas = {s.id: s for s in old.slas}, {s.id: s for s in new.slas}
    for sla_id in _union(old_slas, new_slas):
        sa, sb = old_slas.get(sla_id), new_slas.get(sla_id)
        if sa is None or sb is None:
            out.append(f"SLA {sla_id} {'added' if sa is None else 'removed'}")
        elif _sla_text(sa) != _sla_text(sb):
            out.append(f"SLA {sla_id}: {_sla_text(sa)}  =>  {_sla_text(sb)}")
    for name in _union(old.teams, new.teams):
        ta, tb = old.teams.get(name), new.teams.get(name)
        if ta is None or tb is None:
            out.append(f"team {name} {'added' if ta is None else 'removed'}")
        elif (sorted(ta.members), str(ta.condition)) != (sorted(tb.members), str(tb.condition)):
            out.append(f"team {name} membership changed")
    return out


def _sla_text(sla: c.Sla) -> str:
    require = f", require {sla.require.condition}" if sla.require else ""
    return f"from {sla.start.describe()} until {sla.stop.describe()} within {sla.within}{require}"


def _union(a: Iterable[str], b: Iterable[str]) -> list[str]:
    seen = list(a)
    return seen + [x for x in b if x not in seen]


def _movement(ids: Sequence[int], emails: Mapping[int, str], limit: int) -> Movement:
    ordered = sorted(ids)
    return Movement(len(ordered), tuple(emails.get(i) or f"#{i}" for i in ordered[:limit]))


def _masks(conn: Connection, rules: c.Rules, now: datetime) -> dict[int, tuple[int, int, int]]:
    return {pid: (d, sf, hs) for pid, d, sf, hs in StageEvaluator(rules).rows(conn, now)}


def _emails(conn: Connection, ids: Iterable[int]) -> dict[int, str]:
    wanted = sorted(set(ids))
    out: dict[int, str] = {}
    p = sv.people
    for start in range(0, len(wanted), 500):
        chunk = wanted[start:start + 500]
        out.update({int(i): str(e) for i, e in conn.execute(select(p.c.id, p.c.email).where(p.c.id.in_(chunk)))
                    if e})
    return out


def diff_rules(conn: Connection, old: c.Rules, new: c.Rules, now: datetime, examples: int = 5) -> RulesDiff:
    """The impact of replacing ``old`` by ``new``, over the store as of ``now``."""
    old_masks, new_masks = _masks(conn, old, now), _masks(conn, new, now)
    old_names, new_names = list(old.stages), list(new.stages)
    people = sorted(set(old_masks) | set(new_masks))
    moved: dict[tuple[str, str, str], list[int]] = {}
    counts: dict[tuple[str, str], int] = {}
    for pid in people:
        before, after = old_masks.get(pid, (0, 0, 0)), new_masks.get(pid, (0, 0, 0))
        for part, kind in enumerate(("definition", "salesforce", "hubspot")):
            had = {n for i, n in enumerate(old_names) if before[part] >> i & 1}
            has = {n for i, n in enumerate(new_names) if after[part] >> i & 1}
            if kind == "definition":
                for n in had:
                    counts[(n, "before")] = counts.get((n, "before"), 0) + 1
                for n in has:
                    counts[(n, "after")] = counts.get((n, "after"), 0) + 1
            for n in has - had:
                moved.setdefault((n, kind, "enter"), []).append(pid)
            for n in had - has:
                moved.setdefault((n, kind, "leave"), []).append(pid)
    old_clocks = clocks(old, gather_facts(conn, old, now), now)
    new_clocks = clocks(new, gather_facts(conn, new, now), now)
    example_ids = [i for ids in moved.values() for i in sorted(ids)[:examples]]
    sla_changes = {sla: _clock_changes(old_clocks.get(sla, {}), new_clocks.get(sla, {}))
                   for sla in _union(old_clocks, new_clocks)}
    example_ids += [i for changes in sla_changes.values() for ids in changes.values() for i in sorted(ids)[:examples]]
    emails = _emails(conn, example_ids)

    def movement(key: tuple[str, str, str]) -> Movement:
        return _movement(moved.get(key, []), emails, examples)

    stages = tuple(
        StageImpact(
            name, counts.get((name, "before"), 0), counts.get((name, "after"), 0),
            movement((name, "definition", "enter")), movement((name, "definition", "leave")),
            {s: (movement((name, s, "enter")), movement((name, s, "leave"))) for s in ("salesforce", "hubspot")},
        )
        for name in _union(old_names, new_names)
    )
    slas = tuple(
        SlaImpact(sla, _tally(old_clocks.get(sla, {})), _tally(new_clocks.get(sla, {})),
                  *(_movement(sla_changes[sla][k], emails, examples)
                    for k in ("newly_breached", "no_longer_breached", "newly_started", "no_longer_started")))
        for sla in _union(old_clocks, new_clocks)
    )
    return RulesDiff(old.version, new.version, now, len(people), tuple(rule_changes(old, new)), stages, slas)


def _tally(by_person: Mapping[int, Clock]) -> dict[str, int]:
    out = {"started": 0, "stopped": 0, "breached": 0, "running": 0}
    for clock in by_person.values():
        if clock.state == "not_started":
            continue
        out["started"] += 1
        out["stopped"] += clock.stopped_at is not None
        out["breached"] += clock.state == "breached"
        out["running"] += clock.state == "running"
    return out


def _clock_changes(old: Mapping[int, Clock], new: Mapping[int, Clock]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {"newly_breached": [], "no_longer_breached": [], "newly_started": [],
                                 "no_longer_started": []}
    for pid in set(old) | set(new):
        a = old[pid].state if pid in old else "not_started"
        b = new[pid].state if pid in new else "not_started"
        if b == "breached" and a != "breached":
            out["newly_breached"].append(pid)
        if a == "breached" and b != "breached":
            out["no_longer_breached"].append(pid)
        if a == "not_started" and b != "not_started":
            out["newly_started"].append(pid)
        if b == "not_started" and a != "not_started":
            out["no_longer_started"].append(pid)
    return out
