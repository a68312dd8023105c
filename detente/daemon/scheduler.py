"""The daemon: the jobs on a schedule, one leader per store, hot reloads, graceful shutdown.

Jobs (APScheduler, one worker thread, so they run one at a time and never overlap):
``pull-<system>`` for each configured CRM, then ``audit`` and ``writeback``, each on its own
interval; ``notify`` (SLA breaches to the webhook) after each audit that changed findings and on
the audit's interval, and ``digest`` on its cron schedule, when enabled. The first pulls run as
soon as this instance leads. A job that fails is logged, counted and kept for /readyz; it simply
runs again at its next tick.

The main thread owns everything else: it takes or checks the store's lock every few seconds,
notices rules edits, reloads the settings on SIGHUP and, on SIGTERM or SIGINT, stops: no new
job starts, a running pull ends at its next committed page, an audit or write-back finishes,
and the process exits within ``daemon.shutdown_seconds`` whatever happens.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from types import FrameType
from typing import Any

from apscheduler.events import EVENT_JOB_MAX_INSTANCES, JobEvent
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url
from starlette.routing import BaseRoute

from detente.connectors.base import BudgetExhausted
from detente.cycle import StepResult, audit_step, digest_step, notify_step, pull_step, writeback_step
from detente.daemon.endpoints import HttpServer, build_app, parse_listen
from detente.daemon.lock import Leadership
from detente.daemon.metrics import DaemonMetrics, budget_left
from detente.daemon.rulewatch import RulesWatch
from detente.errors import SettingsError
from detente.logs import configure_logging, describe, get_logger, redactor
from detente.pull import ObjectReport
from detente.rules import Rules
from detente.settings import Settings, load_settings
from detente.status import USAGE, interrupt_runs
from detente.sync import configured

log = get_logger("detente.daemon")

POLL_SECONDS = 5.0  # how often the lock is tried (standby) or checked (leader), at most
PING_SECONDS = 3.0  # /readyz gives the store this long to answer SELECT 1


def _trigger(when: float | tuple[Any, ...]) -> IntervalTrigger | CronTrigger:
    """An interval in seconds, or a cron schedule as ``(time zone, (field, value), ...)``."""
    if isinstance(when, tuple):
        return CronTrigger(**dict(when[1:]), timezone=when[0])
    return IntervalTrigger(seconds=when, timezone=UTC)


class StopRequested(BudgetExhausted):
    """Raised from a pull's page callback when the daemon stops or loses the lock: the pull
    ends, like a spent call budget, at the page it has just committed, and the next pull
    resumes from there."""


@dataclass(frozen=True)
class JobState:
    """The last run of one job, as /readyz shows it."""

    outcome: str  # ok, failed, stopped, skipped
    error: str | None
    started_at: datetime
    seconds: float

    def as_json(self) -> dict[str, Any]:
        return {"outcome": self.outcome, "error": redactor.scrub(self.error) if self.error else None,
                "started_at": self.started_at.isoformat().replace("+00:00", "Z"), "seconds": round(self.seconds, 3)}


def configure(settings: Settings) -> None:
    """Logging as the settings say, with their secrets registered for redaction."""
    fmt = settings.log.format
    configure_logging(settings.log.level, json=None if fmt == "auto" else fmt == "json",
                      secrets=settings.secret_values())
    bridge = _LibraryLogs()
    for name in ("apscheduler", "uvicorn", "uvicorn.error"):
        library = logging.getLogger(name)
        library.handlers[:] = [bridge]
        library.setLevel(logging.WARNING)
        library.propagate = False


class _LibraryLogs(logging.Handler):
    """Library warnings as detente events (the scheduler's overlap notice has its own event)."""

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "maximum number of running instances" in message:
            return
        get_logger(record.name).warning("library.warning", logger=record.name, message=message)


class _Waker:
    """Wakes the main thread from a signal handler or another thread (a pipe: no locks taken)."""

    def __init__(self) -> None:
        self._r, self._w = os.pipe()
        os.set_blocking(self._w, False)
        self.fileno = self._w

    def wake(self) -> None:
        with contextlib.suppress(BlockingIOError):  # a full pipe: already awake
            os.write(self._w, b"x")

    def wait(self, timeout: float) -> None:
        ready, _, _ = select.select([self._r], [], [], max(0.0, timeout))
        if ready:
            os.read(self._r, 4096)

    def close(self) -> None:
        os.close(self._r)
        os.close(self._w)


class Daemon:
    """One ``detente run`` process."""

    def __init__(self, settings: Settings, *, engine: Engine, leadership: Leadership, rules: RulesWatch,
                 config: Path | None, migrate: Callable[[Engine], None]) -> None:
        self.settings = settings
        self.engine = engine
        self.rules = rules
        self._config = config
        self._migrate = migrate
        self._leadership = leadership
        self.metrics = DaemonMetrics(lambda: self.engine, lambda: self.settings)
        self._cond = threading.Condition()
        self._leading = False
        self._stopping = False
        self._running: dict[str, float] = {}
        self._last: dict[str, JobState] = {}
        # Systems whose daily API quota the last pull found spent, and why (shown on /readyz).
        self._quota_spent: dict[str, str] = {}
        self._intervals: dict[str, float | tuple[Any, ...]] = {}
        # The CRM connectors live from one pull to the next: one login, one describe per object.
        self._connectors: dict[str, Any] = {}
        self._waker = _Waker()
        self._stop_signal: str | None = None
        self._stop_signals = 0
        self._reload_wanted = False
        self._standby_noted = False
        self._lock_error: str | None = None
        self._started = time.monotonic()
        self.scheduler = BackgroundScheduler(
            timezone=UTC,
            # The metrics job only reads: it warms the dashboard on a thread of its own, so a long
            # report never holds up a pull.
            executors={"default": ThreadPoolExecutor(max_workers=1), "metrics": ThreadPoolExecutor(max_workers=1)},
            job_defaults={"max_instances": 1, "coalesce": True, "misfire_grace_time": None},
        )
        self.scheduler.add_listener(self._overlap, EVENT_JOB_MAX_INSTANCES)
        self.http: HttpServer | None = None
        self.board: Any = None  # the dashboard, when served

    # -- the main thread ---------------------------------------------------------------------

    def run(self) -> int:
        """Serve until SIGTERM or SIGINT; return the exit code."""
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._on_signal)
        # The kernel may hand a signal to any thread; Python runs the handler on the main thread
        # only once it wakes. The wakeup fd wakes it at once, whichever thread got the signal.
        signal.set_wakeup_fd(self._waker.fileno, warn_on_full_buffer=False)
        dashboard = self._dashboard()
        self.http = HttpServer(build_app(self, dashboard), self.settings.daemon.listen)
        self.http.start()
        log.info("http.listening", host=self.http.host, port=self.http.port,
                 endpoints=["/healthz", "/readyz", "/metrics", *(["/ (dashboard)"] if dashboard else [])])
        self.scheduler.start()
        systems = configured(self.settings)
        log.info("daemon.started", pid=os.getpid(), lock=self._leadership.description,
                 store=make_url(self.settings.store.url).render_as_string(hide_password=True),
                 systems=systems, rules_version=self.rules.status().version, poll_seconds=self.poll_seconds())
        if not systems:
            log.warning("daemon.no_systems", hint="configure salesforce and/or hubspot; nothing will be pulled")
        while self._stop_signal is None:
            if self._reload_wanted:
                self._reload_wanted = False
                self.reload()
            self._tend_leadership()
            self._refresh_rules()
            if self._stop_signal is None:
                self._waker.wait(self.poll_seconds())
        return self._shutdown()

    def poll_seconds(self) -> float:
        """How often to try or check the lock: every few seconds, and at least twice per shortest
        interval, so a standby takes over within one interval of the leader's end."""
        d = self.settings.daemon
        return min(POLL_SECONDS, min(d.pull_seconds, d.audit_seconds, d.writeback_seconds) / 2)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        # Only flags and a pipe write here: a handler that took a lock the interrupted code holds would hang.
        if signum == signal.SIGHUP:
            self._reload_wanted = True
        else:
            self._stop_signal = self._stop_signal or signal.Signals(signum).name
            self._stop_signals += 1
        self._waker.wake()

    def _tend_leadership(self) -> None:
        lock = self._leadership
        if self._leading:
            if not lock.still_held():
                log.error("leadership.lost", lock=lock.description,
                          note="jobs stop; this instance stands by and tries again")
                self._step_down()
            return
        try:
            acquired = lock.try_acquire()
        except Exception as exc:  # the store is unreachable: stand by and keep trying
            error = describe(exc)
            if error != self._lock_error:
                log.warning("leadership.unavailable", lock=lock.description, error=error)
            self._lock_error = error
            return
        self._lock_error = None
        if acquired:
            self._take_lead()
        elif not self._standby_noted:
            self._standby_noted = True
            log.info("daemon.standby", lock=lock.description, poll_seconds=self.poll_seconds(),
                     note="another detente daemon leads this store; no job runs here until it stops")

    def _take_lead(self) -> None:
        try:
            self._migrate(self.engine)
        except Exception as exc:
            log.error("store.migrate_failed", error=describe(exc))
            self._leadership.release()
            return
        try:
            interrupted = interrupt_runs(self.engine, datetime.now(UTC))
        except Exception as exc:  # a bookkeeping sweep: the jobs run anyway
            log.warning("runs.sweep_failed", error=describe(exc))
        else:
            for run in interrupted:
                log.warning("run.interrupted", kind=run["kind"], system=run["system"], pid=run["pid"],
                            started_at=run["started_at"].isoformat(),
                            note="its process ended mid-run; the work resumes from what it committed")
        with self._cond:
            self._leading = True
        self._standby_noted = False
        self._last.clear()  # outcomes from an earlier term as leader say nothing about this one
        self._quota_spent.clear()
        self.metrics.leader.set(1)
        log.info("leadership.acquired", lock=self._leadership.description,
                 seconds_since_start=round(time.monotonic() - self._started, 3))
        self._schedule()

    def _step_down(self) -> None:
        with self._cond:
            self._leading = False
        self.metrics.leader.set(0)
        self.scheduler.remove_all_jobs()
        self._intervals.clear()

    def _schedule(self) -> None:
        """Bring the scheduler's jobs in line with the settings (on taking the lead and on reload)."""
        d = self.settings.daemon
        wanted: dict[str, tuple[float | tuple[Any, ...], Callable[[], None]]] = {}
        for system in configured(self.settings):
            name = f"pull-{system}"
            wanted[name] = (d.pull_seconds, partial(self._job, name, partial(self._pull, system)))
        wanted["audit"] = (d.audit_seconds, partial(self._job, "audit", self._audit))
        wanted["writeback"] = (d.writeback_seconds, partial(self._job, "writeback", self._writeback))
        if self.board is not None:  # the dashboard's report, computed before anyone asks (after each audit)
            wanted["metrics"] = (d.audit_seconds, partial(self._job, "metrics", self._metrics))
        if self.settings.webhook.enabled:  # right after an audit that changed findings, and on this interval
            wanted["notify"] = (d.audit_seconds, partial(self._job, "notify", self._notify))
        digest = self.settings.digest
        if digest.enabled:
            wanted["digest"] = ((digest.timezone, *sorted(digest.schedule.fields().items())),
                                partial(self._job, "digest", self._digest))
        for job in self.scheduler.get_jobs():
            if job.id not in wanted:
                job.remove()
                self._intervals.pop(job.id, None)
                self._last.pop(job.id, None)
                self._quota_spent.pop(job.id.removeprefix("pull-"), None)
                log.info("job.removed", job=job.id)
        now = datetime.now(UTC)
        for job_id, (seconds, func) in wanted.items():
            trigger = _trigger(seconds)
            when = {"cron": str(trigger)} if isinstance(seconds, tuple) else {"every_seconds": seconds}
            if self.scheduler.get_job(job_id) is None:
                first = (trigger.get_next_fire_time(None, now) if isinstance(seconds, tuple) else
                         now if job_id.startswith("pull-") else now + timedelta(seconds=seconds))
                self.scheduler.add_job(func, trigger, id=job_id, name=job_id, next_run_time=first,
                                       executor="metrics" if job_id == "metrics" else "default")
                log.info("job.scheduled", job=job_id, **when, first_run=first.isoformat() if first else None)
            elif self._intervals.get(job_id) != seconds:
                self.scheduler.reschedule_job(job_id, trigger=trigger)
                log.info("job.rescheduled", job=job_id, **when)
            self._intervals[job_id] = seconds

    def _refresh_rules(self, *, force: bool = False) -> Rules | None:
        rules = self.rules.refresh(force=force)
        self.metrics.rules_valid.set(1 if self.rules.status().valid else 0)
        return rules

    def reload(self) -> None:
        """SIGHUP: the rules, and what of the settings can change while running."""
        log.info("settings.reloading", signal="SIGHUP")
        try:
            new = load_settings(self._config)
        except SettingsError as exc:
            log.error("settings.reload_failed", problems=exc.problems, note="the settings in use are kept")
            self._refresh_rules(force=True)
            return
        old = self.settings
        fixed = [key for key, differs in (("store.url", new.store != old.store),
                                          ("daemon.listen", new.daemon.listen != old.daemon.listen)) if differs]
        if fixed:
            log.warning("settings.restart_needed", keys=fixed, note="kept the values in use; restart detente to apply")
        new = new.model_copy(update={"store": old.store,
                                     "daemon": new.daemon.model_copy(update={"listen": old.daemon.listen})})
        changed = [name for name in type(new).model_fields if getattr(new, name) != getattr(old, name)]
        if new.log != old.log:
            configure(new)
        else:
            redactor.add(new.secret_values())
        self.settings = new
        if new.salesforce != old.salesforce or new.hubspot != old.hubspot:
            self._connectors = {}  # new credentials or limits: the next pulls connect afresh
        self.rules.retarget(new.daemon.rules)
        self._refresh_rules(force=True)
        if self._leading:
            self._schedule()
        log.info("settings.reloaded", changed=changed)

    def _shutdown(self) -> int:
        budget = self.settings.daemon.shutdown_seconds
        began = time.monotonic()
        deadline = began + budget
        with self._cond:
            self._stopping = True
            running = sorted(self._running)
        log.info("daemon.stopping", signal=self._stop_signal, running=running, shutdown_seconds=budget)
        self.scheduler.shutdown(wait=False)
        with self._cond:
            while self._running and self._stop_signals < 2 and time.monotonic() < deadline:
                self._cond.wait(min(0.1, max(0.0, deadline - time.monotonic())))
            left = sorted(self._running)
        if left:
            # A job outlived the bound: leave anyway. Its open transaction dies with the process
            # and rolls back; pages, writes and findings already committed stay.
            log.warning("daemon.shutdown_timeout", running=left, shutdown_seconds=budget,
                        waited_seconds=round(time.monotonic() - began, 3),
                        forced_by="a second signal" if self._stop_signals >= 2 else "the time bound")
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)
        if self.http is not None:
            self.http.stop()
        for connector in self._connectors.values():
            connector.close()
        self._leadership.release()
        self.metrics.leader.set(0)
        self.engine.dispose()
        signal.set_wakeup_fd(-1)
        self._waker.close()
        log.info("daemon.stopped", seconds=round(time.monotonic() - began, 3))
        return 0

    # -- the job thread ----------------------------------------------------------------------

    def _job(self, name: str, work: Callable[[Settings, Rules, datetime], StepResult]) -> None:
        with self._cond:
            if self._stopping or not self._leading:
                return
            self._running[name] = time.monotonic()
        try:
            self._execute(name, work)
        finally:
            with self._cond:
                self._running.pop(name, None)
                self._cond.notify_all()

    def _execute(self, name: str, work: Callable[[Settings, Rules, datetime], StepResult]) -> None:
        settings = self.settings
        rules = self._refresh_rules()
        now = datetime.now(UTC)
        started = time.monotonic()
        log.debug("job.started", job=name)
        counts: dict[str, Any] = {}
        try:
            if rules is None:
                raise RuntimeError("no valid rules loaded")
            result = work(settings, rules, now)
            outcome, error, counts = result.outcome, result.error, result.counts
        except Exception as exc:  # APScheduler would swallow it: record, log, retry at the next tick
            outcome, error = "failed", describe(exc)
        seconds = time.monotonic() - started
        self._last[name] = JobState(outcome, error, now, seconds)
        self.metrics.observe(name, outcome, seconds)
        if outcome == "failed":
            log.error("job.failed", job=name, error=error, seconds=round(seconds, 3),
                      note="runs again at its next tick")
        else:
            log.info("job.finished", job=name, outcome=outcome, seconds=round(seconds, 3), counts=counts,
                     **({"error": error} if error else {}))

    def _pull(self, system: str, settings: Settings, rules: Rules, now: datetime) -> StepResult:
        fetched: dict[str, int] = {}

        def on_page(item: ObjectReport) -> None:
            delta = item.fetched - fetched.get(item.object, 0)
            fetched[item.object] = item.fetched
            if delta > 0:
                self.metrics.records_pulled.labels(system).inc(delta)
            if self._stopping:
                raise StopRequested("the daemon is stopping; the next pull resumes from this page")
            if not self._leading:
                raise StopRequested("this daemon lost the store's lock; the leader's next pull resumes from here")

        result = pull_step(self.engine, settings, now, systems=[system], on_page=on_page, rules=rules,
                           keep=self._connectors)
        stopped = (result.counts.get(system) or {}).get("stopped")
        if result.outcome == "ok" and stopped:
            result.outcome = "stopped"
            result.error = result.error or stopped  # why, on /readyz and in job.finished
        self._note_quota(system, settings, now, stopped)
        if (result.counts.get(system) or {}).get("changed"):
            self._soon("audit")  # speed to lead: what a pull brought in is audited right after it
        return result

    def _note_quota(self, system: str, settings: Settings, now: datetime, stopped: str | None) -> None:
        """Whether ``system`` has API calls left today, as the pull just recorded it (what
        detente_api_budget_remaining says): none left, and its pulls stop at their first call
        until the CRM frees calls (or detente's own calls_per_day starts afresh)."""
        try:
            with self.engine.connect() as conn:
                usage = conn.execute(USAGE.select().where(USAGE.c.system == system,
                                                          USAGE.c.day == now.date())).first()
        except Exception as exc:  # bookkeeping for /readyz: the pull itself is done
            log.warning("quota.unknown", system=system, error=describe(exc))
            return
        if budget_left(getattr(settings, system), usage) == 0:
            self._quota_spent[system] = (f"{system}: the daily API quota is spent; its pulls resume by themselves "
                                         "once calls are free again" + (f" ({stopped})" if stopped else ""))
        else:
            self._quota_spent.pop(system, None)

    def _audit(self, settings: Settings, rules: Rules, now: datetime) -> StepResult:
        result = audit_step(self.engine, rules, now)
        if any(result.counts.get(k) for k in ("opened", "updated", "resolved", "reopened", "recorded")):
            self._soon("notify")  # new breaches reach the webhook right after the audit found them
            self._soon("metrics")  # and the dashboard shows them without computing on a page load
            self._soon("writeback")  # and what the audit found is written back right after it
        return result

    def _metrics(self, settings: Settings, rules: Rules, now: datetime) -> StepResult:
        started = time.monotonic()
        counts = self.board.warm() if self.board is not None else {}
        return StepResult("metrics", "ok", time.monotonic() - started, counts)

    def _notify(self, settings: Settings, rules: Rules, now: datetime) -> StepResult:
        return notify_step(self.engine, settings, now)

    def _digest(self, settings: Settings, rules: Rules, now: datetime) -> StepResult:
        return digest_step(self.engine, settings, rules, now)

    def _soon(self, job_id: str) -> None:
        """Run a job as soon as the worker is free, besides its own interval."""
        job = self.scheduler.get_job(job_id)
        if job is not None and not self._stopping:
            job.modify(next_run_time=datetime.now(UTC))

    def _writeback(self, settings: Settings, rules: Rules, now: datetime) -> StepResult:
        return writeback_step(self.engine, settings, rules, now)

    def _overlap(self, event: JobEvent) -> None:
        log.info("job.overlap", job=event.job_id, note="the previous run has not ended; this tick is skipped")

    # -- what HTTP asks ----------------------------------------------------------------------

    def _dashboard(self) -> list[BaseRoute]:
        """The dashboard beside the endpoints: open on loopback; beyond it only with dashboard.token
        (without one, /healthz, /readyz and /metrics are served alone, as before)."""
        from detente.web.app import dashboard

        host, _ = parse_listen(self.settings.daemon.listen)
        try:
            board = dashboard(self.engine, lambda: self.rules.rules, host=host, listen_setting="daemon.listen",
                              token=lambda: self.settings.dashboard.token, now=lambda: datetime.now(UTC),
                              cache_seconds=self.settings.dashboard.cache_seconds)
        except SettingsError as exc:
            log.warning("dashboard.disabled", reason=exc.problems[0])
            return []
        self.board = board
        return board.routes()

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        reasons: list[str] = []
        leading, stopping = self._leading, self._stopping
        if stopping:
            reasons.append("the daemon is stopping")
        if not leading:
            reasons.append("standby: another detente daemon holds the store's lock; no job runs here")
        store_error = self._ping_store()
        if store_error:
            reasons.append(f"the store is unreachable: {store_error}")
        rules = self.rules.status()
        if not rules.valid:
            reasons.append(f"the rules at {rules.path} are invalid ({len(rules.problems)} problem(s)); "
                           f"still using version {rules.version}")
        last = dict(self._last)
        for name, state in sorted(last.items()):
            if state.outcome == "failed":
                reasons.append(f"the last {name} run failed: {state.error}")
        if leading:
            reasons.extend(reason for _, reason in sorted(dict(self._quota_spent).items()))
        body = {
            "status": "ready" if not reasons else "not ready",
            "role": "leader" if leading else "standby",
            "reasons": [redactor.scrub(r) for r in reasons],
            "store": {"reachable": store_error is None},
            "rules": {"path": rules.path, "version": rules.version, "valid": rules.valid,
                      "problems": [redactor.scrub(p) for p in rules.problems]},
            "jobs": {name: state.as_json() for name, state in sorted(last.items())},
        }
        return not reasons, body

    def _ping_store(self) -> str | None:
        outcome: list[str | None] = []

        def ping() -> None:
            try:
                with self.engine.connect() as conn:
                    conn.execute(text("SELECT 1"))
                outcome.append(None)
            except Exception as exc:
                outcome.append(describe(exc))

        # A thread of its own, daemonic: a hung connection must neither hang /readyz nor the exit.
        worker = threading.Thread(target=ping, name="detente-store-ping", daemon=True)
        worker.start()
        worker.join(PING_SECONDS)
        return outcome[0] if outcome else f"no answer to SELECT 1 within {PING_SECONDS:g} s"

    def metrics_text(self) -> bytes:
        self.metrics.leader.set(1 if self._leading else 0)
        self.metrics.rules_valid.set(1 if self.rules.status().valid else 0)
        return self.metrics.render()
