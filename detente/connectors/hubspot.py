"""The HubSpot pull connector: owners, deal pipelines, contacts, companies, deals and the
engagements (tasks, calls, emails, meetings) as pages of plain records, each with its
associations and, for contacts and deals, the history of stage and owner.

How records are read, and what it costs in API calls (N records of an object; a page of the
runner holds up to ``records_per_page`` = 1,000 records):

==============================  ===========================================================
step                            calls
==============================  ===========================================================
property definitions            1 per object per connector instance (``/crm/v3/properties``)
changed records                 N / 200 searches (+1 per page boundary that falls inside a
                                millisecond shared by more than a page of records)
all properties + history        N / 100 batch reads, for contacts and deals (history of
                                lifecyclestage, hs_lead_status, hubspot_owner_id; dealstage,
                                hubspot_owner_id), and for any object whose property list
                                does not fit a search body (3,000 characters)
associations                    N / 1,000 v4 batch reads per associated object type:
                                contacts → companies, deals; companies → contacts, deals;
                                deals → contacts, companies; engagements → contacts, deals
deletions (``deleted()``)       archived / 100 list calls per object on every incremental
                                pull (the archived list has no time filter)
owners, pipelines               (active + archived owners) / 100, and 1
==============================  ===========================================================

So a contact or deal costs 1/200 + 1/100 + 2/1000 = 0.017 calls, a company or engagement
0.007. A full pull uses the same search path: listing (100 per call, 50 with history) would
cost 0.01-0.02 calls per record, more in every case.

Incremental pulls search by the modification property (``lastmodifieddate`` for contacts,
``hs_lastmodifieddate`` for the others) between ``since`` and ``until`` with keyset paging
(``detente.connectors.hs_window``): the 10,000-result cap is never reached and records that
change mid-pull are never skipped. Merged-away records come out of the survivor's
``hs_merged_object_ids`` as deletions pointing at it; archived ones come from ``deleted()``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any

from detente.connectors.base import CallBudget, Page, Position, Record, Reject
from detente.connectors.hs_records import (
    PropertyDef,
    build,
    merged_away,
    modified_ms,
    parse_instant,
    property_defs,
    record_id,
    safe_payload,
    value_problem,
)
from detente.connectors.hs_transport import HubSpotHttp, Meter
from detente.connectors.hs_window import first_window, search_body, step, to_ms
from detente.errors import RetriableError
from detente.logs import get_logger
from detente.settings import HubSpotSettings

log = get_logger("detente.connectors.hubspot")

SEARCH_BODY_LIMIT = 3_000  # characters HubSpot accepts in a search request body
BATCH_READ_SIZE = 100
ASSOCIATION_READ_SIZE = 1_000
LIST_PAGE_SIZE = 100
# Association errors that mean "nothing to report for this id", not a failure.
_QUIET_ERRORS = frozenset({"OBJECT_NOT_FOUND"})


@dataclass(frozen=True)
class ObjectSpec:
    """How one CRM object is pulled."""

    name: str
    modified: str
    associations: tuple[str, ...] = ()
    history: tuple[str, ...] = ()


_ENGAGEMENT_LINKS = ("contacts", "deals")
SPECS: dict[str, ObjectSpec] = {
    s.name: s
    for s in (
        ObjectSpec("contacts", "lastmodifieddate", ("companies", "deals"),
                   ("lifecyclestage", "hs_lead_status", "hubspot_owner_id")),
        ObjectSpec("companies", "hs_lastmodifieddate", ("contacts", "deals")),
        ObjectSpec("deals", "hs_lastmodifieddate", ("contacts", "companies"), ("dealstage", "hubspot_owner_id")),
        ObjectSpec("tasks", "hs_lastmodifieddate", _ENGAGEMENT_LINKS),
        ObjectSpec("calls", "hs_lastmodifieddate", _ENGAGEMENT_LINKS),
        ObjectSpec("emails", "hs_lastmodifieddate", _ENGAGEMENT_LINKS),
        ObjectSpec("meetings", "hs_lastmodifieddate", _ENGAGEMENT_LINKS),
    )
}
OBJECTS: tuple[str, ...] = ("owners", "pipelines", *SPECS)
PIPELINE_OBJECTS = ("deals",)


class HubSpotConnector:
    """Reads HubSpot CRM v3 through hubspot-api-client; satisfies ``Connector``."""

    system = "hubspot"
    listed_whole = frozenset({"owners", "pipelines"})  # no change feed: read whole, now and then

    def __init__(
        self, settings: HubSpotSettings, *, budget: CallBudget | None = None, meter: Meter | None = None
    ) -> None:
        self.settings = settings
        self.meter = meter or Meter(
            budget,
            burst_per_10s=settings.burst_per_10s,
            search_per_second=settings.search_per_second,
            reserve=settings.quota_reserve,
        )
        self.http = HubSpotHttp(settings, self.meter)
        self._defs: dict[str, dict[str, PropertyDef]] = {}
        # Set by the pull: the stored modification times of records by id, so that an
        # incremental pull drops the search hits it already holds (the unchanged records of
        # the lookback overlap) before their batch and association reads.
        self.stored: Callable[[str, list[str]], Mapping[str, datetime]] | None = None

    @property
    def budget(self) -> CallBudget | None:
        return self.meter.budget

    @budget.setter
    def budget(self, budget: CallBudget | None) -> None:
        self.meter.budget = budget

    # -- the Connector protocol -----------------------------------------------------------

    def objects(self) -> Sequence[str]:
        return OBJECTS

    def pull(self, object: str, since: Position | None, *, until: datetime, full: bool = False) -> Iterator[Page]:
        """Pages of ``object`` modified after ``since`` up to ``until``, in modification order.
        A full pull reads everything, without the upper bound, so that a record changed while
        it runs is read (at its new time) rather than missed and taken for deleted."""
        if object == "owners":
            return self._owners()
        if object == "pipelines":
            return self._pipelines()
        spec = _spec(object)
        return self._records(spec, None if full else since, None if full else until)

    def deleted(self, object: str, since: datetime, *, until: datetime) -> Iterator[Page]:
        """Records archived since ``since`` (HubSpot's archived list has no time filter, so
        every archived record is listed and filtered on ``archivedAt`` here). Merged-away
        records are reported by ``pull`` through the survivor instead."""
        if object in {"owners", "pipelines"}:
            return iter(())
        return self._archived(_spec(object), since)

    # -- the connector's own surface ------------------------------------------------------

    @property
    def daily_remaining(self) -> int | None:
        """HubSpot's daily call allowance left, as the last response reported it."""
        return self.meter.daily_remaining

    def properties(self, object: str) -> dict[str, PropertyDef]:
        """The object's property definitions (read once per connector instance)."""
        if object not in self._defs:
            answer = self.http.properties(object)
            self._defs[object] = property_defs(r for r in answer.get("results") or [] if isinstance(r, Mapping))
        return self._defs[object]

    def close(self) -> None:
        self.http.close()
        self.meter.close()

    def __enter__(self) -> HubSpotConnector:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- records --------------------------------------------------------------------------

    def _records(self, spec: ObjectSpec, since: Position | None, until: datetime | None) -> Iterator[Page]:
        mark = self.meter.calls
        defs = self.properties(spec.name)
        names = sorted(defs)
        history = [n for n in spec.history if n in defs]
        fits = len(json.dumps(names)) + 600 <= SEARCH_BODY_LIMIT
        read = bool(history) or not fits
        wanted = [spec.modified, "hs_object_id"] if read else names
        size = self.settings.page_size
        window = first_window(since, until)
        edge: frozenset[int] = frozenset()
        pending: dict[Any, dict[str, Any]] = {}
        position: Position | None = None
        if window is None:  # ``since`` is already past ``until``
            yield Page(spec.name, [], [], None, calls=self.meter.calls - mark)
        while window is not None:
            answer = self.http.search(spec.name, search_body(window, spec.modified, wanted, size))
            results = [r for r in answer.get("results") or [] if isinstance(r, dict)]
            more = bool(((answer.get("paging") or {}).get("next") or {}).get("after"))
            hits = [(modified_ms(r, spec.modified), record_id(r)) for r in results]
            moved = step(window, hits, more, edge, size)
            for i in moved.emit:
                rid = hits[i][1]
                pending[rid if rid is not None else ("anonymous", len(pending))] = results[i]
            if moved.next is not None and moved.next.after_id == 0 and window.after_id is None:
                log.debug("pull.hubspot.split", object=spec.name, millisecond=moved.next.lo)
            position = moved.position or position
            window, edge = moved.next, moved.edge
            if window is None or len(pending) > self.settings.records_per_page - size:
                raws = list(pending.values())
                if since is not None and self.stored is not None:
                    raws = self._unheld(spec, raws)
                yield self._page(spec, raws, position, read, names, history, mark)
                pending, position, mark = {}, None, self.meter.calls

    def _unheld(self, spec: ObjectSpec, raws: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The hits the store does not hold at the same modification time."""
        assert self.stored is not None
        ids = [str(rid) for rid in (record_id(r) for r in raws) if rid is not None]
        held = {rid: to_ms(at) for rid, at in self.stored(spec.name, ids).items()} if ids else {}
        out = []
        for raw in raws:
            rid = record_id(raw)
            if rid is None or held.get(str(rid)) is None or held[str(rid)] != modified_ms(raw, spec.modified):
                out.append(raw)
        return out

    def _page(
        self,
        spec: ObjectSpec,
        raws: list[dict[str, Any]],
        position: Position | None,
        read: bool,
        names: list[str],
        history: list[str],
        mark: int,
    ) -> Page:
        if read:
            raws = self._read(spec, raws, names, history)
        ids = [str(rid) for rid in (record_id(r) for r in raws) if rid is not None]
        links = {to: self._associations(spec.name, to, ids) for to in spec.associations}
        defs = self.properties(spec.name)
        records: list[Record] = []
        rejects: list[Reject] = []
        for raw in raws:
            rid = record_id(raw)
            found = {to: links[to].get(str(rid), []) for to in spec.associations} if rid is not None else None
            item = build(spec.name, raw, modified=spec.modified, defs=defs,
                         max_chars=self.settings.max_value_chars, associations=found)
            if isinstance(item, Reject):
                rejects.append(item)
            else:
                records.append(item)
                records.extend(merged_away(item))
        records.sort(key=lambda r: (r.modified_at, int(r.id)))
        return Page(spec.name, records, rejects, position, calls=self.meter.calls - mark)

    def _read(
        self, spec: ObjectSpec, hits: list[dict[str, Any]], names: list[str], history: list[str]
    ) -> list[dict[str, Any]]:
        """The records of search hits, read with every property and the history asked for.
        A hit whose record is gone by now (archived, merged) is left out: ``deleted()`` or
        the survivor reports it."""
        out: list[dict[str, Any]] = [h for h in hits if record_id(h) is None]
        ids = list(dict.fromkeys(str(rid) for rid in (record_id(h) for h in hits) if rid is not None))
        for start in range(0, len(ids), BATCH_READ_SIZE):
            chunk = ids[start : start + BATCH_READ_SIZE]
            body: dict[str, Any] = {"inputs": [{"id": i} for i in chunk], "properties": names}
            if history:
                body["propertiesWithHistory"] = history
            answer = self.http.batch_read(spec.name, body)
            _raise_unexpected(answer, f"batch read {spec.name}")
            by_id = {str(record_id(r)): r for r in answer.get("results") or [] if isinstance(r, dict)}
            out.extend(by_id[i] for i in chunk if i in by_id)
        return out

    def _associations(self, from_object: str, to_object: str, ids: list[str]) -> dict[str, list[str]]:
        """id → associated ids (sorted), by v4 batch reads of up to 1,000 ids."""
        found: dict[str, set[str]] = {}
        size = min(ASSOCIATION_READ_SIZE, self.settings.records_per_page)
        for start in range(0, len(ids), size):
            chunk = ids[start : start + size]
            answer = self.http.associations(from_object, to_object, chunk)
            _raise_unexpected(answer, f"read {from_object} associations")
            for result in answer.get("results") or []:
                source = str(((result or {}).get("from") or {}).get("id") or "")
                targets = found.setdefault(source, set())
                targets.update(_targets(result))
                after = ((result.get("paging") or {}).get("next") or {}).get("after")
                while after:  # more associations than one batch result holds
                    more = self.http.associations_of(from_object, source, to_object, str(after))
                    targets.update(_targets(more))
                    after = ((more.get("paging") or {}).get("next") or {}).get("after")
        return {k: sorted(v, key=_id_key) for k, v in found.items()}

    # -- deletions ------------------------------------------------------------------------

    def _archived(self, spec: ObjectSpec, since: datetime) -> Iterator[Page]:
        mark = self.meter.calls
        after: str | None = None
        records: list[Record] = []
        rejects: list[Reject] = []
        while True:
            answer = self.http.list_page(
                spec.name, limit=LIST_PAGE_SIZE, after=after, properties=[spec.modified], archived=True
            )
            for raw in answer.get("results") or []:
                if not isinstance(raw, dict):
                    continue
                rid = record_id(raw)
                stamp = raw.get("archivedAt") or raw.get("updatedAt")
                at = parse_instant(stamp) if isinstance(stamp, str) else None
                if rid is None or at is None:
                    what = "id: missing or not a record id" if rid is None else "archivedAt: not a timestamp"
                    rejects.append(Reject(spec.name, str(rid) if rid is not None else "no-id-archived",
                                          f"archived record: {what}", safe_payload(raw)))
                elif at >= since:
                    records.append(Record(spec.name, str(rid), at, safe_payload(raw), deleted=True))
            after = ((answer.get("paging") or {}).get("next") or {}).get("after")
            if not after or len(records) + len(rejects) >= self.settings.records_per_page:
                yield Page(spec.name, records, rejects, None, calls=self.meter.calls - mark)
                records, rejects, mark = [], [], self.meter.calls
            if not after:
                return
            after = str(after)

    # -- owners and pipelines -------------------------------------------------------------

    def _owners(self) -> Iterator[Page]:
        """Every owner, archived ones too (deactivated users still own old records)."""
        mark = self.meter.calls
        found: dict[str, Record | Reject] = {}
        for archived in (False, True):
            after: str | None = None
            while True:
                answer = self.http.owners(after=after, archived=archived, limit=LIST_PAGE_SIZE)
                for raw in answer.get("results") or []:
                    if isinstance(raw, dict):
                        item = _plain("owners", raw, self.settings.max_value_chars)
                        found[item.id] = item
                nxt = ((answer.get("paging") or {}).get("next") or {}).get("after")
                if not nxt:
                    break
                after = str(nxt)
        yield _plain_page("owners", list(found.values()), self.meter.calls - mark)

    def _pipelines(self) -> Iterator[Page]:
        mark = self.meter.calls
        items: list[Record | Reject] = []
        for object_name in PIPELINE_OBJECTS:
            answer = self.http.pipelines(object_name)
            for raw in answer.get("results") or []:
                if isinstance(raw, dict):
                    items.append(_plain("pipelines", {**raw, "objectType": object_name}, self.settings.max_value_chars))
        yield _plain_page("pipelines", items, self.meter.calls - mark)


def _spec(object_name: str) -> ObjectSpec:
    spec = SPECS.get(object_name)
    if spec is None:
        raise ValueError(f"the HubSpot connector does not pull {object_name!r}; it pulls {', '.join(OBJECTS)}")
    return spec


def _targets(answer: Mapping[str, Any]) -> set[str]:
    """Associated ids in a v4 answer (batch result ``to`` or single-record ``results``)."""
    items = answer.get("to") if "to" in answer else answer.get("results")
    return {str(t["toObjectId"]) for t in items or [] if isinstance(t, Mapping) and t.get("toObjectId") is not None}


def _id_key(value: str) -> tuple[int, str]:
    return (int(value), "") if value.isdigit() else (1 << 62, value)


def _raise_unexpected(answer: Mapping[str, Any], what: str) -> None:
    """A 207 answer's errors that mean more than "no such record" or "nothing associated"."""
    for error in answer.get("errors") or []:
        category = (error or {}).get("category") if isinstance(error, Mapping) else None
        if category not in _QUIET_ERRORS:
            raise RetriableError(
                f"HubSpot could not complete {what} ({category or 'unknown error'} for part of the batch);"
                " the pull resumes from its last committed page"
            )


def _plain(object_name: str, raw: dict[str, Any], max_chars: int) -> Record | Reject:
    """An owner or pipeline: an id, ``updatedAt`` and sane values, or a reject."""
    rid = raw.get("id")
    stamp = raw.get("updatedAt") or raw.get("createdAt")
    at = parse_instant(stamp) if isinstance(stamp, str) else None
    problems = [] if isinstance(rid, (str, int)) and str(rid) else ["id: missing"]
    if at is None:
        problems.append("updatedAt: missing or not a timestamp")
    problems += [f"{k}: {p}" for k, v in raw.items() if isinstance(v, str) and (p := value_problem(None, v, max_chars))]
    if not problems and "\\u0000" in json.dumps(raw):
        problems.append("a nested value contains a NUL byte")
    if problems or at is None:
        return Reject(object_name, str(rid) if rid else "no-id", "; ".join(problems), safe_payload(raw))
    return Record(object_name, str(rid), at, raw)


def _plain_page(object_name: str, items: list[Record | Reject], calls: int) -> Page:
    records = sorted((i for i in items if isinstance(i, Record)), key=lambda r: (r.modified_at, _id_key(r.id)))
    rejects = [i for i in items if isinstance(i, Reject)]
    # Owners and pipelines are read whole every time: no cursor, so nothing to resume.
    return Page(object_name, records, rejects, None, calls=calls)
