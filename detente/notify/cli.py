"""``detente digest`` (print or email the digest of a period) and ``detente notify`` (post the
SLA breaches not yet posted to the webhook)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import typer

from detente.reconcile.cli import DEFAULT_RULES, _parse_as_of, load_rules_or_exit

AsOf = Annotated[str | None, typer.Option("--as-of", help="the moment to act as of (ISO); default: now")]


def digest_command(
    ctx: typer.Context,
    audience: Annotated[list[str] | None, typer.Option(
        "--audience", help="marketing, sales or leadership (repeatable; default: all three)")] = None,
    period: Annotated[str | None, typer.Option(
        "--period", help="2026-W46, 2026-11, 2026-Q4 or 2026; or week, month, quarter or year for the last "
                         "complete one; default: the last complete digest.period")] = None,
    as_of: AsOf = None,
    send: Annotated[bool, typer.Option(
        "--send/--print", help="email each audience its digest through digest.smtp, or print it (default)")] = False,
    html: Annotated[bool, typer.Option("--html", help="with --print: the HTML part instead of the text")] = False,
    rules_path: Annotated[Path, typer.Option("--rules", help="rules file or folder")] = DEFAULT_RULES,
) -> None:
    """The digest of a period per audience: its numbers and trends (those of `detente report`) and
    the open SLA breaches per owner. Run `detente audit` (or the daemon) first."""
    from detente.cli import _settings_and_store
    from detente.errors import DetenteError
    from detente.notify.digest import AUDIENCES, Audience, digest_period
    from detente.notify.mail import send_mail
    from detente.notify.run import build_digests, send_digests

    chosen: list[Audience] = []
    for name in audience or AUDIENCES:
        if name not in AUDIENCES:
            raise typer.BadParameter(f"'{name}' is not an audience; expected {', '.join(AUDIENCES)}",
                                     param_hint="--audience")
        chosen.append(name)
    moment = datetime.now(UTC) if as_of is None else _parse_as_of(as_of)
    rules = load_rules_or_exit(rules_path)
    loaded, engine = _settings_and_store(ctx)
    try:
        when = digest_period(period, loaded.digest.period, moment)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--period") from exc
    if not send:
        for i, digest in enumerate(build_digests(engine, rules, loaded.digest, when, moment, chosen)):
            if i:
                typer.echo("\n" + "=" * 100 + "\n")
            typer.echo(digest.html if html else f"Subject: {digest.subject}\n\n{digest.text}", nl=False)
        return
    try:
        sent = send_digests(engine, rules, loaded.digest, moment, partial(send_mail, loaded.digest.smtp),
                            period=when, audiences=chosen)
    except DetenteError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    for s in sent:
        typer.echo(f"{s.audience}: sent '{s.subject}' to {len(s.recipients) - len(s.refused)} of "
                   f"{len(s.recipients)} recipient(s)" + (f"; refused: {', '.join(s.refused)}" if s.refused else ""))
    skipped = [a for a in chosen if a not in {s.audience for s in sent}]
    if skipped:
        typer.echo(f"no recipients in digest.audiences for {', '.join(skipped)}; nothing sent to them", err=True)


def notify_command(
    ctx: typer.Context,
    as_of: AsOf = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="print the messages that would be posted; post and record nothing")] = False,
) -> None:
    """Post the open SLA breaches not posted yet to the webhook (webhook.url), each breach once."""
    from detente.cli import _settings_and_store
    from detente.errors import DetenteError
    from detente.notify.webhook import WebhookPoster, breach_message, notify_breaches, pending_breaches

    moment = datetime.now(UTC) if as_of is None else _parse_as_of(as_of)
    loaded, engine = _settings_and_store(ctx)
    hook = loaded.webhook
    if dry_run:
        pending = pending_breaches(engine)
        size = hook.breaches_per_message
        batches = [pending[i:i + size] for i in range(0, len(pending), size)]
        for batch in batches[:hook.max_messages_per_run]:
            typer.echo(json.dumps(breach_message(batch, dashboard_url=loaded.digest.dashboard_url), indent=2))
        typer.echo(f"{len(pending)} breach(es) pending; a run would post "
                   f"{min(len(pending), size * hook.max_messages_per_run)} in "
                   f"{min(len(batches), hook.max_messages_per_run)} message(s)", err=True)
        return
    post: Any = None
    try:
        post = WebhookPoster(hook)
        result = notify_breaches(engine, post, moment, per_message=hook.breaches_per_message,
                                 max_messages=hook.max_messages_per_run, dashboard_url=loaded.digest.dashboard_url)
    except DetenteError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    finally:
        if post is not None:
            post.close()
    typer.echo(f"posted {result.posted} breach(es) in {result.messages} message(s); "
               f"{result.left} left for the next run")
