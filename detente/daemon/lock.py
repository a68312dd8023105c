"""Exactly one active daemon per store: who holds the store's lock leads, the others stand by.

A SQLite store is guarded by an exclusive ``flock`` on ``<db file>.lock``; a PostgreSQL store
by a session-level advisory lock held on a connection of its own. Either way the operating
system or the database server frees the lock when the holder dies, so a standby that keeps
trying takes over without anyone cleaning up.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from pathlib import Path
from typing import Protocol

from sqlalchemy import Connection, create_engine, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

# One key for every detente daemon; advisory locks are per database, so per store.
ADVISORY_KEY = int.from_bytes(hashlib.sha256(b"detente.daemon.leader").digest()[:8], "big", signed=True)


class Leadership(Protocol):
    """The store's lock, seen from one daemon."""

    description: str

    def try_acquire(self) -> bool:
        """Take the lock if it is free (never waits); True when this daemon holds it."""
        ...

    def still_held(self) -> bool:
        """Whether the lock taken earlier is still this daemon's."""
        ...

    def release(self) -> None: ...


class FileLeadership:
    """An exclusive, non-blocking ``flock`` on a file beside the SQLite database."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.description = f"file lock {path}"
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        if self._fd is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        # The pid is for the operator who wonders who holds it; the lock is the flock, not the text.
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return True

    def still_held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is None:
            return
        # The file stays: removing it would let a newcomer lock a fresh file while another waits on the old one.
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None


class AdvisoryLeadership:
    """``pg_try_advisory_lock`` on a dedicated connection that stays open while leading.

    Keepalives on both ends make the server notice a vanished leader host within about half a
    minute (the default is two hours); a leader process that dies outright closes its socket
    and frees the lock at once.
    """

    def __init__(self, url: str, key: int = ADVISORY_KEY, connect_timeout: int = 5) -> None:
        parsed = make_url(url)
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        self.description = f"PostgreSQL advisory lock {key} on {parsed.render_as_string(hide_password=True)}"
        self.key = key
        self._engine = create_engine(
            parsed, poolclass=NullPool, isolation_level="AUTOCOMMIT",
            connect_args={"connect_timeout": connect_timeout, "application_name": "detente-daemon-lock",
                          "keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3},
        )
        self._conn: Connection | None = None

    def try_acquire(self) -> bool:
        if self._conn is not None:
            return self.still_held()
        conn = self._engine.connect()
        try:
            # The lock lives as long as this session: no server timeout may end an idle one,
            # and the server probes the leader's host so a dead host frees it.
            for setting in ("idle_session_timeout = 0", "idle_in_transaction_session_timeout = 0",
                            "tcp_keepalives_idle = 10", "tcp_keepalives_interval = 5", "tcp_keepalives_count = 3"):
                try:
                    conn.execute(text(f"SET {setting}"))
                except Exception:  # an older server without the setting: not needed for the lock
                    conn.rollback()
            acquired = bool(conn.execute(select(func.pg_try_advisory_lock(self.key))).scalar())
        except Exception:
            conn.close()
            raise
        if not acquired:
            conn.close()
            return False
        self._conn = conn
        return True

    def still_held(self) -> bool:
        if self._conn is None:
            return False
        try:
            self._conn.execute(text("SELECT 1"))
        except Exception:
            # The session is gone, and the server freed the lock with it.
            self._drop()
            return False
        return True

    def release(self) -> None:
        if self._conn is None:
            return
        with contextlib.suppress(Exception):  # closing the session below frees it anyway
            self._conn.execute(select(func.pg_advisory_unlock(self.key)))
        self._drop()
        self._engine.dispose()

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()


class SoleLeadership:
    """An in-memory store cannot be shared: its one daemon always leads."""

    description = "in-memory store (no lock)"

    def try_acquire(self) -> bool:
        return True

    def still_held(self) -> bool:
        return True

    def release(self) -> None:
        return None


def leadership_for(url: str) -> Leadership:
    """The lock that guards the store at ``url``."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            return SoleLeadership()
        return FileLeadership(Path(parsed.database + ".lock").resolve())
    if parsed.get_backend_name() == "postgresql":
        return AdvisoryLeadership(url)
    raise ValueError(f"store.url: detente cannot guard a {parsed.get_backend_name()} store; "
                     "use sqlite:///path.db or postgresql+psycopg://...")
