"""A corpus of malformed and hostile rules files: each is rejected with a located message.

Every file in ``corpus/`` starts with ``# expect: LINE:COL: text``; the file must be
rejected, some problem must sit at exactly that position and contain that text, and every
problem must be located and shaped ``what is wrong; what was expected``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from detente.rules import check_rules

CORPUS = sorted((Path(__file__).parent / "corpus").glob("*.yaml"))
EXPECT = re.compile(r"^# expect: (\d+):(\d+): (.+)$", re.MULTILINE)
SHAPE = re.compile(r"^.+:\d+:\d+: .+; .+$", re.DOTALL)


def test_the_corpus_is_large_enough() -> None:
    assert len(CORPUS) >= 30


@pytest.mark.parametrize("path", CORPUS, ids=[p.stem for p in CORPUS])
def test_hostile_file_is_rejected_with_a_located_message(path: Path) -> None:
    expectations = EXPECT.findall(path.read_text(encoding="utf-8", errors="replace"))
    assert expectations, f"{path.name} has no '# expect: LINE:COL: text' line"
    result = check_rules(path)
    assert result.rules is None
    found = [str(p) for p in result.problems]
    assert all(SHAPE.match(p) for p in found), found
    for line, col, text in expectations:
        prefix = f"{path}:{line}:{col}: "
        assert any(p.startswith(prefix) and text in p for p in found), (prefix, text, found)
