"""The agreed vocabulary as a handbook new team members can read, in Markdown or HTML.

Generated from the checked rules (the same objects that compile to SQL), so it cannot drift
from what runs: each stage's meaning, owner, definition in words and as written, labels per
CRM, and the SLAs that apply; then teams, SLAs, calendars, goals, fields and write-back.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from typing import Literal

from detente.rules import checked as c
from detente.rules.fields import BUILTIN_NAMES, StageEntered
from detente.rules.words import phrase

Format = Literal["md", "html"]
SYSTEM_WORDS = {"salesforce": "Salesforce", "hubspot": "HubSpot"}
_DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


@dataclass
class Section:
    title: str
    level: int = 2
    paragraphs: list[str] = field(default_factory=list)
    items: list[tuple[str, str]] = field(default_factory=list)
    table: tuple[list[str], list[list[str]]] | None = None


def sections(rules: c.Rules) -> list[Section]:
    """The handbook as sections of text, items and tables (inline code in `backticks`)."""
    out = [Section("The agreement", 1, [
        f"Rules version `{rules.version}`, generated from {', '.join(f'`{f}`' for f in rules.files)}. "
        "Do not edit this page: change the rules file and generate it again.",
        "A definition says when a person *is* in a stage; a label says when a CRM *says* so. "
        "detente reports the difference. A condition with an empty value is unknown and never counts as met.",
    ])]
    out.append(Section("Funnel stages", 2, ["In funnel order."]))
    out.extend(_stage(rules, stage) for stage in rules.stages.values())
    out.append(_teams(rules))
    out.append(_slas(rules))
    if rules.disagreements:
        out.append(Section("Labels never shown together", 2, ["A person must never carry both of these at once."],
                           table=(["HubSpot says", "while Salesforce says"],
                                  [[f"{a} (`{rules.stages[a].labels['hubspot'].text.strip()}`)",
                                    f"{b} (`{rules.stages[b].labels['salesforce'].text.strip()}`)"]
                                   for a, b in rules.disagreements])))
    if rules.feedback is not None:
        out.append(Section("Feedback", 2, [
            f"An open lead owned by {rules.feedback.team} with no activity, status or owner change for "
            f"{rules.feedback.idle_with_sales} is a feedback gap."]))
    out.append(_calendars(rules))
    if rules.goals is not None:
        out.append(_goals(rules.goals))
    out.append(_fields(rules))
    if rules.writeback is not None:
        out.append(_writeback(rules.writeback))
    return out


def _stage(rules: c.Rules, stage: c.Stage) -> Section:
    items = [("Meaning", stage.meaning), ("Owner", stage.owner)]
    if stage.after:
        items.append(("Comes after", ", ".join(stage.after)))
    items.append(("Definition", f"{_sentence(phrase(stage.definition.root))} (as written: `{stage.definition}`)"))
    for system in ("salesforce", "hubspot"):
        label = stage.labels.get(system)
        shown = " ".join(label.text.split()) if label else None
        items.append((f"{SYSTEM_WORDS[system]} label", f"`{shown}`" if shown else "none (not labelled there)"))
    if stage.grace is not None:
        items.append(("Unlabelled for", f"{stage.grace} before a missing label is reported"))
    if stage.dated:
        items.append(("Entered at", f"`{stage.name}_at`: when a CRM first labelled the person {stage.name}"))
    applying = [f"{s.id} ({role})" for s in rules.slas
                for role, ev in (("starts here", s.start), ("stops here", s.stop))
                if ev.kind == "stage" and stage.name in ev.stages]
    items.append(("SLAs", ", ".join(applying) if applying else "none"))
    return Section(stage.name, 3, items=items)


def _teams(rules: c.Rules) -> Section:
    rows = []
    for team in rules.teams.values():
        who = []
        if team.members:
            who.append("members: " + ", ".join(sorted(team.members)))
        if team.condition is not None:
            who.append(f"owners where `{team.condition}`")
        rows.append([team.name, team.meaning or "", "; or ".join(who)])
    return Section("Teams", 2, ["The first team that matches an owner is the owner's team."],
                   table=(["Team", "Who", "Membership"], rows))


def _slas(rules: c.Rules) -> Section:
    rows = []
    for sla in rules.slas:
        cal = rules.calendar_for(sla)
        within = f"{sla.within}" + (f" on the {cal.name} calendar" if sla.within.business and cal else "")
        extra = []
        if sla.applies_to is not None:
            extra.append(f"only when `{sla.applies_to}`")
        if sla.require is not None:
            at = f" when stopping at {', '.join(sla.require.before)}" if sla.require.before else ""
            extra.append(f"requires `{sla.require.condition}`{at}")
        if sla.on_warning is not None:
            extra.append(f"warns {sla.on_warning.before} before" + (f" (task {sla.on_warning.task})"
                                                                      if sla.on_warning.task else ""))
        if sla.on_breach is not None and sla.on_breach.task:
            extra.append(f"on breach: task {sla.on_breach.task}")
        rows.append([sla.id, sla.owner, sla.meaning or "", _event(sla.start), _event(sla.stop), within,
                     "; ".join(extra)])
    return Section("Service levels", 2, ["The owing team's clock starts and stops at these moments."],
                   table=(["SLA", "Owed by", "Promise", "Starts when the person", "Stops when", "Within", "Also"],
                          rows))


def _event(event: c.Event) -> str:
    if event.kind == "condition" and event.condition is not None:
        return f"`{event.condition}` becomes true"
    return event.describe()


def _calendars(rules: c.Rules) -> Section:
    rows = []
    for cal in rules.calendars.values():
        days = ", ".join(_DAY_NAMES[d] for d in cal.spec.workdays)
        extra = ", ".join(d.isoformat() for d in sorted(cal.extra_dates)) or "none"
        rows.append([cal.name, cal.spec.timezone, f"{cal.spec.start_hour:02d}:00-{cal.spec.end_hour:02d}:00",
                     days, cal.spec.holiday_country, extra])
    return Section("Calendars", 2, ["Business time counts only working hours on working days."],
                   table=(["Calendar", "Time zone", "Hours", "Days", "Public holidays", "Extra days off"], rows))


def _goals(goals: c.Goals) -> Section:
    asp = f"{goals.average_selling_price:,.0f} {goals.currency}" if goals.average_selling_price else \
        f"from closed-won opportunities over the last {goals.lead_value.window}"
    value = (f"historical bookings per lead by {', '.join(goals.lead_value.by)} over {goals.lead_value.window}"
             if goals.lead_value.method == "history" else
             "fixed: " + ", ".join(f"{k} {v:,.0f}" for k, v in goals.lead_value.values.items()))
    return Section("Goals", 2, [
        f"Bookings goal: {goals.bookings:,.0f} {goals.currency} per {goals.period}.",
        f"Average selling price: {asp}. Deals needed = bookings goal / average selling price; leads needed = "
        "deals needed / lead-to-deal conversion; the lead-value goal is the bookings goal.",
        f"Lead value: {value}.",
    ])


def _fields(rules: c.Rules) -> Section:
    rows = []
    for f in sorted(rules.catalog.fields.values(), key=lambda f: f.name):
        if isinstance(f.source, StageEntered):
            continue
        where = "; ".join(f"{SYSTEM_WORDS[s]} `{name}`" for s, name in f.systems.items())
        kind = "built-in" if f.name in BUILTIN_NAMES else "mapped"
        rows.append([f"`{f.name}`", f.type.value, f.meaning, where, kind])
    return Section("Fields", 2, ["Conditions use these names; stage entry times are `<stage>_at`."],
                   table=(["Field", "Type", "Meaning", "In the CRMs", "Kind"], rows))


def _writeback(wb: c.Writeback) -> Section:
    rows = [[f"`{name}`", c.DETENTE_VALUES.get(name, ""),
             "; ".join(f"{SYSTEM_WORDS[s]} " + ", ".join(f"`{x}`" for x in crm) for s, crm in targets.items())]
            for name, targets in wb.fields.items()]
    section = Section("What detente writes", 2, ["Only these values, only to these fields; nothing else is written."],
                      table=(["Value", "Meaning", "Written to"], rows))
    for task in wb.tasks.values():
        section.items.append((f"Task {task.name}", f"{task.subject} (priority {task.priority}, due {task.due} "
                                                   f"after creation, owner {task.owner})"))
    return section


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + "."


# -- rendering ------------------------------------------------------------------------------------


def render(rules: c.Rules, fmt: Format = "md") -> str:
    parts = sections(rules)
    return _markdown(parts) if fmt == "md" else _html(parts, rules)


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _markdown(parts: list[Section]) -> str:
    out: list[str] = []
    for s in parts:
        out.append(f"{'#' * s.level} {s.title}")
        out.append("")
        for p in s.paragraphs:
            out.extend([p, ""])
        for term, text in s.items:
            out.append(f"- **{term}:** {text}")
        if s.items:
            out.append("")
        if s.table is not None:
            headers, rows = s.table
            out.append("| " + " | ".join(headers) + " |")
            out.append("|" + "|".join("---" for _ in headers) + "|")
            out.extend("| " + " | ".join(_md_cell(cell) for cell in row) + " |" for row in rows)
            out.append("")
    return "\n".join(out).rstrip() + "\n"


_CODE = re.compile(r"`([^`]*)`")
_EMPH = re.compile(r"\*([^*]+)\*")


def _inline(text: str) -> str:
    escaped = html.escape(text, quote=False)
    escaped = _CODE.sub(lambda m: f"<code>{m.group(1)}</code>", escaped)
    return _EMPH.sub(lambda m: f"<em>{m.group(1)}</em>", escaped)


def _html(parts: list[Section], rules: c.Rules) -> str:
    body: list[str] = []
    for s in parts:
        anchor = re.sub(r"[^a-z0-9]+", "-", s.title.lower()).strip("-")
        body.append(f'<h{s.level} id="{anchor}">{html.escape(s.title)}</h{s.level}>')
        body.extend(f"<p>{_inline(p)}</p>" for p in s.paragraphs)
        if s.items:
            body.append("<dl>")
            for term, text in s.items:
                body.append(f"<dt>{html.escape(term)}</dt><dd>{_inline(text)}</dd>")
            body.append("</dl>")
        if s.table is not None:
            headers, rows = s.table
            body.append("<table><thead><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in headers)
                        + "</tr></thead><tbody>")
            body.extend("<tr>" + "".join(f"<td>{_inline(cell)}</td>" for cell in row) + "</tr>" for row in rows)
            body.append("</tbody></table>")
    style = ("body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;line-height:1.5}"
             "table{border-collapse:collapse;margin:1rem 0}td,th{border:1px solid #ccc;padding:.3rem .5rem;"
             "vertical-align:top;text-align:left}dt{font-weight:600}dd{margin:0 0 .5rem 1.5rem}"
             "code{background:#f4f4f4;padding:0 .2rem}")
    return ("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>The agreement ({html.escape(rules.version)})</title><style>{style}</style></head>\n<body>\n"
            + "\n".join(body) + "\n</body></html>\n")
