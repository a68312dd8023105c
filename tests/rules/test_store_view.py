"""The columns rules read exist in the store with the same types, and every built-in maps to one."""

from __future__ import annotations

import pytest
from sqlalchemy.sql.expression import TableClause

from detente.rules import store_view as sv
from detente.rules.fields import (
    BUILTINS,
    CampaignColumn,
    OpportunityColumn,
    OwnerColumn,
    PeopleColumn,
    TeamOfOwner,
)
from detente.store import tables

VIEWS = [(sv.people, tables.Person), (sv.owners, tables.Owner), (sv.campaigns, tables.Campaign),
         (sv.opportunities, tables.Opportunity), (sv.transitions, tables.Transition), (sv.activities, tables.Activity)]


@pytest.mark.parametrize(("view", "model"), VIEWS, ids=[v.name for v, _ in VIEWS])
def test_view_matches_the_store_table(view: TableClause, model: type) -> None:
    table = model.__table__  # type: ignore[attr-defined]
    assert view.name == table.name
    for column in view.columns:
        assert column.name in table.c, f"{table.name}.{column.name} is read by rules but not in the store"
        stored = table.c[column.name].type
        assert column.type._type_affinity is stored._type_affinity, (column.name, column.type, stored)


def test_every_builtin_field_reads_an_existing_column() -> None:
    views = {PeopleColumn: sv.people, OwnerColumn: sv.owners, CampaignColumn: sv.campaigns,
             OpportunityColumn: sv.opportunities}
    for field in BUILTINS:
        if isinstance(field.source, TeamOfOwner):
            continue
        view = views[type(field.source)]
        assert field.source.column in view.c, field.name  # type: ignore[union-attr]
