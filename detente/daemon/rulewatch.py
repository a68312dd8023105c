"""The daemon's rules: re-read when the file or folder changes, kept when an edit is invalid.

``refresh`` hashes the rules files' contents (cheap: a rules set is a few kilobytes) and
validates them again only when the digest changed, so each problem of a broken edit is
logged once, not once per job.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from detente.logs import get_logger
from detente.rules import Rules, check_rules
from detente.rules.source import rules_files

log = get_logger("detente.daemon")
# An edit younger than this is not read yet: an editor may still be writing it (a truncated,
# half-written file would be rejected as broken, and its problems logged, for nothing).
SETTLE_SECONDS = 0.5


@dataclass(frozen=True)
class RulesStatus:
    """What /readyz and the metrics say about the rules."""

    path: str
    version: str | None  # of the rules in use (the last good ones)
    valid: bool  # whether the file as it is now is valid
    problems: tuple[str, ...]


def newest_change(path: Path) -> float:
    """The latest modification time among the rules files (0 when none can be read)."""
    try:
        files = rules_files(path) if path.exists() else []
        return max((f.stat().st_mtime for f in files), default=0.0)
    except OSError:
        return 0.0


def has_empty_file(path: Path) -> bool:
    """Whether one of the rules files is empty (0 bytes)."""
    try:
        return any(f.stat().st_size == 0 for f in (rules_files(path) if path.exists() else []))
    except OSError:
        return False


def digest(path: Path) -> str:
    """A digest of the rules set's names and contents (a missing or unreadable one has its own)."""
    h = hashlib.sha256()
    files: list[Path] = []
    try:
        files = rules_files(path) if path.exists() else []
        for file in files:
            h.update(str(file).encode() + b"\0" + file.read_bytes() + b"\0")
    except OSError as exc:
        h.update(f"unreadable {exc.errno}".encode())
    if not files:
        h.update(b"missing")
    return h.hexdigest()


class RulesWatch:
    """The rules in use, the path they come from and the problems of the latest edit."""

    def __init__(self, path: Path) -> None:
        self._lock = threading.Lock()
        self.path = path
        self.rules: Rules | None = None
        self.problems: tuple[str, ...] = ()
        self._digest: str | None = None
        self._seen: tuple[str, float] = ("", 0.0)  # the digest last seen, and since when (monotonic)

    def retarget(self, path: Path) -> None:
        """Watch another file or folder (a settings reload changed ``daemon.rules``)."""
        with self._lock:
            if path != self.path:
                log.info("rules.path_changed", path=str(path), previous=str(self.path))
                self.path, self._digest = path, None

    def refresh(self, *, force: bool = False) -> Rules | None:
        """The rules to use now: the edited ones when valid, otherwise the last good ones."""
        with self._lock:
            now = digest(self.path)
            if now != self._seen[0]:
                self._seen = (now, time.monotonic())
            if now == self._digest and not force:
                return self.rules
            settling = self.rules is not None and not force
            if settling and not self._settled():
                return self.rules  # still being written: read it at the next refresh
            result = check_rules(self.path)
            if settling and (digest(self.path) != now or not self._settled()):
                # Written to while it was read (the digest, the times and the validation each read
                # the files): what was validated may be half of an edit. Read it once it settles.
                return self.rules
            self._digest = now
            if result.rules is None:
                self.problems = tuple(str(p) for p in result.problems)
                kept = self.rules.version if self.rules is not None else None
                log.error("rules.invalid", path=str(self.path), problems=len(self.problems), kept_version=kept)
                for problem in self.problems:
                    log.error("rules.problem", path=str(self.path), problem=problem)
                return self.rules
            previous = self.rules.version if self.rules is not None else None
            self.rules, self.problems = result.rules, ()
            if previous != result.rules.version:
                log.info("rules.reloaded" if previous else "rules.loaded", path=str(self.path),
                         version=result.rules.version, previous=previous)
            return self.rules

    def _settled(self) -> bool:
        """Whether the edit last seen is done being written: its files were modified
        SETTLE_SECONDS ago or more and, when one of them is empty, it has been seen unchanged
        that long (a file being truncated shows its size 0 before its new modification time)."""
        if time.time() - newest_change(self.path) < SETTLE_SECONDS:
            return False
        return not has_empty_file(self.path) or time.monotonic() - self._seen[1] >= SETTLE_SECONDS

    def status(self) -> RulesStatus:
        with self._lock:
            return RulesStatus(str(self.path), self.rules.version if self.rules else None,
                               not self.problems and self.rules is not None, self.problems)
