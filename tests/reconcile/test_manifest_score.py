"""The audit against the sandbox's ground truth: every planted problem found, and nothing
else (precision and recall printed per kind; running SLA clocks are not problems)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from detente.reconcile.ledger import FINDINGS, reconcile
from detente.reconcile.score import KINDS, manifest_kind
from detente.rules import Rules
from tests.conftest import AS_OF
from tests.normalize.conftest import World

Key = tuple[str, frozenset[tuple[str, str]]]


def _records(by_object: dict[str, Any], system: str) -> set[tuple[str, str]]:
    return {(f"{system}/{o}", i) for o, ids in by_object.items() for i in ids}


def expected(manifest: dict[str, Any]) -> dict[Key, str]:
    return {(p["kind"], frozenset(_records(p["salesforce"], "salesforce") | _records(p["hubspot"], "hubspot"))):
            p["true_as_of"] for p in manifest["problems"]}


def found(rows: list[Any]) -> dict[Key, str]:
    out = {}
    for r in rows:
        kind = manifest_kind(r)
        if kind is None:
            continue
        records = frozenset((obj, i) for obj, ids in r.records.items() for i in ids)
        out[(kind, records)] = r.opened_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    return out


def test_implemented_kinds_score_full_precision_and_recall(world: World, rules: Rules) -> None:
    """Recall and precision are 100% per implemented kind; the score is printed."""
    reconcile(world.engine, rules, AS_OF)
    with world.engine.connect() as conn:
        rows = list(conn.execute(select(FINDINGS)))
    want, got = expected(world.manifest), found(rows)
    lines, on_time = [], 0
    for kind in sorted({k[0] for k in want} | {k[0] for k in got}, key=lambda k: (k not in KINDS, k)):
        w = {k for k in want if k[0] == kind}
        g = {k for k in got if k[0] == kind}
        hit = len(w & g)
        on_time += sum(1 for k in w & g if want[k] == got[k])
        lines.append(f"{kind:30} expected {len(w):3} found {len(g):3} "
                     f"precision {hit / len(g) if g else 1:.0%} recall {hit / len(w) if w else 1:.0%}")
    print("\naudit score vs manifest at", AS_OF.isoformat())
    print("\n".join(lines))
    print(f"opened_at equal to true_as_of: {on_time}/{len(want)}")
    for k in sorted(set(want) & set(got)):
        if want[k] != got[k]:
            print("  opened", got[k], "planted true as of", want[k], k[0])
    assert set(got) == set(want), (sorted(set(want) - set(got), key=str), sorted(set(got) - set(want), key=str))


def test_running_again_with_no_new_data_changes_nothing(world: World, rules: Rules) -> None:
    reconcile(world.engine, rules, AS_OF)
    with world.engine.connect() as conn:
        before = [dict(r._mapping) for r in conn.execute(select(FINDINGS).order_by(FINDINGS.c.key))]
    assert reconcile(world.engine, rules, AS_OF) == {}
    with world.engine.connect() as conn:
        after = [dict(r._mapping) for r in conn.execute(select(FINDINGS).order_by(FINDINGS.c.key))]
    assert before == after
