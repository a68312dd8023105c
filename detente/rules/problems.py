"""Located problems in a rules file, and the error that carries all of them at once.

Every problem reads ``file:line:col: what is wrong; what was expected`` so an admin can jump
to it from a terminal or an editor. Validation collects problems and returns them; nothing
stops at the first one.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from detente.errors import FatalError


@dataclass(frozen=True, order=True)
class Where:
    """A position in a rules file: 1-based line and column."""

    file: str
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


@dataclass(frozen=True)
class Problem:
    """One thing wrong in the rules: where, what is wrong and what was expected."""

    where: Where | None
    what: str
    expected: str
    file: str = ""

    def __str__(self) -> str:
        place = str(self.where) if self.where is not None else (self.file or "<rules>")
        return f"{place}: {self.what}; {self.expected}"

    def sort_key(self) -> tuple[str, int, int, str]:
        if self.where is None:
            return (self.file, 0, 0, self.what)
        return (self.where.file, self.where.line, self.where.col, self.what)


class RulesError(FatalError):
    """The rules cannot be used; ``problems`` lists every reason, located."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(sorted(problems, key=Problem.sort_key))
        lines = "\n".join(f"  {p}" for p in self.problems)
        super().__init__(f"invalid rules ({len(self.problems)} problem(s)):\n{lines}")


def nearest(word: str, choices: Iterable[str]) -> str | None:
    """The closest valid spelling of ``word``, if any is close enough to suggest."""
    options = sorted(set(choices))
    lowered = {c.lower(): c for c in options}
    if word.lower() in lowered:
        return lowered[word.lower()]
    found = difflib.get_close_matches(word.lower(), list(lowered), n=1, cutoff=0.6)
    return lowered[found[0]] if found else None


def expected_one_of(word: str, choices: Iterable[str], noun: str = "one of") -> str:
    """``did you mean 'x'? expected one of: a, b, c`` (the suggestion only when close)."""
    options = sorted(set(choices))
    guess = nearest(word, options)
    listed = ", ".join(options) if len(options) <= 24 else ", ".join(options[:24]) + ", ..."
    prefix = f"did you mean '{guess}'? " if guess is not None else ""
    return f"{prefix}expected {noun}: {listed}" if options else f"{prefix}expected nothing here"


def file_problem(file: Path | str, what: str, expected: str) -> Problem:
    """A problem with a whole file rather than a position in it (placed at 1:1)."""
    return Problem(Where(str(file), 1, 1), what, expected)
