"""The normalizer takes ``now`` and an engine: only its CLI reads the clock, the environment or
builds engines (``run`` times its stages for the report, which no result depends on)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import detente.normalize

PACKAGE = Path(detente.normalize.__file__).parent
SHELL = {"cli.py"}
FORBIDDEN_CALLS = {("datetime", "now"), ("datetime", "utcnow"), ("date", "today"), ("time", "time"),
                   ("time", "monotonic"), ("os", "getenv")}
FORBIDDEN_NAMES = {"environ", "create_engine", "make_engine"}
ALLOWED = {("run.py", ("time", "monotonic"))}


@pytest.mark.parametrize("module", sorted(p.name for p in PACKAGE.glob("*.py") if p.name not in SHELL))
def test_core_module_reads_no_clock_environment_or_engine(module: str) -> None:
    tree = ast.parse((PACKAGE / module).read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            call = (node.value.id, node.attr)
            assert call not in FORBIDDEN_CALLS or (module, call) in ALLOWED, f"{module}:{node.lineno}"
            assert node.attr not in FORBIDDEN_NAMES, f"{module}:{node.lineno}"
        if isinstance(node, ast.Name):
            assert node.id not in FORBIDDEN_NAMES, f"{module}:{node.lineno}"


def test_every_module_says_its_job() -> None:
    for path in PACKAGE.glob("*.py"):
        assert ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))), path.name
