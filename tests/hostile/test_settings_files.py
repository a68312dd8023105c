"""Hostile settings files: wrong-typed values and unknown keys anywhere, or text that is not
YAML at all, end in a SettingsError whose every problem is located and names the key path,
never in a traceback, and never quote a secret."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from detente.errors import SettingsError
from detente.settings import Settings, load_settings

FAST = settings(max_examples=60, deadline=None)


def _leaves(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    for name, info in model.model_fields.items():
        kind = info.annotation
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            out += _leaves(kind, (*prefix, name))
        else:
            out.append((*prefix, name))
    return out


LEAVES = _leaves(Settings)
SECTIONS = sorted({leaf[:i] for leaf in LEAVES for i in range(1, len(leaf))})
SECRET_LEAVES = [("salesforce", "password"), ("salesforce", "client_secret"), ("salesforce", "refresh_token"),
                 ("hubspot", "token"), ("dashboard", "token"), ("digest", "smtp", "password"), ("webhook", "url")]
SECRET = "s3cr3t-do-not-echo-4f2a"

yaml_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(-(10**40), 10**40),
                         st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20),
                         st.sampled_from(["", "yes", "no", "~", "-1", "1e400", "P1D", "00:00", "2026-11-16"]))
yaml_values = st.recursive(yaml_scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
    st.text(max_size=8), inner, max_size=3), max_leaves=5)
unknown_names = st.from_regex(r"[a-z][a-z_]{0,14}", fullmatch=True)


def _put(doc: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for part in path[:-1]:
        doc = doc.setdefault(part, {})
    doc[path[-1]] = value


def _load(text: str) -> tuple[Path, Settings | SettingsError]:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "detente.yaml"
        path.write_text(text, encoding="utf-8")
        try:
            return path, load_settings(path)
        except SettingsError as exc:
            return path, exc


def _keys_named(problems: list[str], file: Path) -> list[str]:
    """The key path each problem names, after checking it is located in the file."""
    keys = []
    for problem in problems:
        assert problem.startswith(f"{file}"), problem
        rest = problem.removeprefix(str(file))
        rest = re.sub(r"^:\d+:\d+", "", rest).removeprefix(": ")
        unknown = re.match(r"unknown key '([^']*)'; remove it or check its spelling$", rest)
        keys.append(unknown.group(1) if unknown else rest.partition(": ")[0])
    return keys


@FAST
@given(st.dictionaries(st.sampled_from(LEAVES), yaml_values, max_size=4),
       st.lists(st.tuples(st.sampled_from([(), *SECTIONS]), unknown_names), max_size=3),
       st.lists(st.sampled_from(SECRET_LEAVES), max_size=3, unique=True))
@example({("digest", "enabled"): True}, [], [("digest", "smtp", "password")])
@example({}, [(("digest", "schedule"), "second")], [("hubspot", "token")])
def test_wrong_types_and_unknown_keys_are_each_located_by_key_path(
        wrong: dict[tuple[str, ...], Any], unknown: list[tuple[tuple[str, ...], str]],
        secrets: list[tuple[str, ...]]) -> None:
    doc: dict[str, Any] = {}
    for path in secrets:
        _put(doc, path, SECRET)
    for path, value in wrong.items():
        _put(doc, path, value)
    added = [(*section, name) for section, name in unknown if (*section, name) not in LEAVES
             and (*section, name) not in SECTIONS]
    for path in added:
        _put(doc, path, 1)
    file, outcome = _load(yaml.safe_dump(doc, allow_unicode=True))
    if isinstance(outcome, Settings):
        assert not added
        return
    message = str(outcome)
    assert SECRET not in message and outcome.problems
    touched = [".".join(p) for p in [*wrong, *added, *secrets]]
    for key in _keys_named(outcome.problems, file):
        assert any(t == key or t.startswith(key + ".") or key.startswith(t + ".") for t in touched), (key, message)
    for path in added:
        dotted = ".".join(path)
        assert any(re.match(rf"{re.escape(str(file))}:\d+:\d+: unknown key '{re.escape(dotted)}'", p)
                   for p in outcome.problems), (dotted, message)


@FAST
@given(st.sampled_from(SECRET_LEAVES), st.one_of(
    st.just(SECRET), st.lists(st.just(SECRET), min_size=1, max_size=2), st.dictionaries(st.just("v"), st.just(SECRET)),
    st.just(f"http://{SECRET}"), st.just(f"ftp://x/{SECRET}")))
def test_a_secret_is_never_quoted_whatever_is_wrong_with_it(path: tuple[str, ...], value: Any) -> None:
    doc: dict[str, Any] = {"hubspot": {"timeout_seconds": "abc"}}
    _put(doc, path, value)
    _, outcome = _load(yaml.safe_dump(doc))
    assert isinstance(outcome, SettingsError) and SECRET not in str(outcome)


@FAST
@given(st.sampled_from(sorted({leaf[0] for leaf in LEAVES})), yaml_scalars | st.lists(yaml_scalars, max_size=2))
def test_a_section_that_is_not_a_mapping_is_named(section: str, value: Any) -> None:
    file, outcome = _load(yaml.safe_dump({section: value}))
    if isinstance(outcome, SettingsError):
        assert all(k.split(".")[0] == section for k in _keys_named(outcome.problems, file)), outcome.problems


@FAST
@given(st.lists(st.characters() | st.sampled_from(["\x00", "\t", "\n", ": ", "- ", "[", "{", "&a ", "*a", "!!",
                                                 "? ", "salesforce:", "  timeout_seconds: ", "<<: "]),
               max_size=40).map("".join))
@example("? [a, b]\n: 1\n")  # a list as a key: PyYAML's constructor refuses it (unhashable)
@example("!!python/object/apply:os.system ['true']\n")
@example("a: &x [*x]\n")  # an alias inside itself
@example("salesforce: !!binary aGVsbG8=\n")
@example("salesforce:\n  timeout_seconds: 1\nsalesforce: 5\n")
@example("\ufeffsalesforce: {}\n")
@example("? ")  # AttributeError: pydantic-settings lower-cased a null top-level key
@example("1: 2\ntrue: x\n")
@example("<<: {1: 2}\n")
def test_any_text_loads_or_is_a_located_settings_error(text: str) -> None:
    file, outcome = _load(text)
    if isinstance(outcome, SettingsError):
        assert outcome.problems and all(p.startswith(str(file)) for p in outcome.problems), outcome.problems


def test_a_key_yaml_cannot_build_is_located_not_a_traceback() -> None:
    file, outcome = _load("log:\n  ? [a, b]\n  : 1\n")
    assert isinstance(outcome, SettingsError)
    assert outcome.problems == [f"{file}:2:5: found unhashable key; expected valid YAML"]


def test_a_top_level_key_that_is_not_a_name_is_located() -> None:
    file, outcome = _load("log: {}\n1: 2\n")
    assert isinstance(outcome, SettingsError)
    assert outcome.problems == [f"{file}:2:1: '1' is not a section name; expected a name such as salesforce or hubspot"]
