"""``detente run``: the long-running daemon that pulls, audits and writes back on schedule.

    lock        exactly one active daemon per store (file lock for SQLite, advisory lock for PostgreSQL)
    rulewatch   the rules, re-read when edited; an invalid edit keeps the last good rules
    scheduler   the jobs on APScheduler, leadership, SIGHUP reloads, graceful shutdown
    metrics     Prometheus metrics in a registry of the daemon's own
    endpoints   /healthz, /readyz and /metrics on uvicorn
    cli         the ``run`` command

Threads: the main thread handles signals, leadership and reloads; one APScheduler worker runs
the jobs one at a time (they share the unified model); uvicorn serves HTTP on its own thread.
"""
