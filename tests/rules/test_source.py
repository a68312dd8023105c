"""Reading rules YAML: located YAML errors, hostile YAML, and rules split across a folder."""

from __future__ import annotations

from pathlib import Path

from detente.rules import check_rules
from detente.rules.source import Lines, Span
from tests.rules.helpers import BASE, problems, write


def test_malformed_yaml_is_located(tmp_path: Path) -> None:
    path = write(tmp_path, "version: 1\nstages:\n  mql: [\n")
    [found] = problems(path)
    assert found.startswith(f"{path}:4:1: malformed YAML:")
    assert found.endswith("; expected valid YAML")


def test_duplicate_keys_are_reported_at_the_second(tmp_path: Path) -> None:
    path = write(tmp_path, BASE.replace("  mql:\n", "  lead:\n    meaning: again\n  mql:\n", 1))
    found = problems(path)
    assert f"{path}:14:3: duplicate key 'lead' (first at line 8); expected each key once in a mapping" in found


def test_anchors_and_aliases_are_rejected(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + "slas:\n  - &x {id: a}\n  - *x\n")
    found = problems(path)
    assert any(p.startswith(f"{path}:24:5: anchors and aliases are not allowed in rules files") for p in found)


def test_a_billion_laughs_is_rejected_quickly(tmp_path: Path) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 12)]
    path = write(tmp_path, "\n".join(lines) + "\n")
    found = problems(path)
    assert any("anchors and aliases are not allowed" in p for p in found)


def test_python_tags_are_rejected(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + "goals: !!python/object/apply:os.system ['echo hi']\n")
    found = problems(path)
    assert any(p.startswith(f"{path}:22:8: YAML tag 'tag:yaml.org,2002:python/object/apply:os.system' is not allowed")
               for p in found)


def test_tags_on_scalars_are_rejected(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + "goals: !!python/name:os.system\n")
    found = problems(path)
    assert any(p.startswith(f"{path}:22:8: cannot read the value") for p in found)


def test_non_text_keys_are_rejected(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + "1: one\n")
    assert f"{path}:22:1: key '1' is not text; expected a name such as 'stages' (quote it if it looks like a " \
           "number)" in problems(path)


def test_empty_file(tmp_path: Path) -> None:
    path = write(tmp_path, "# nothing\n")
    assert problems(path) == [f"{path}:1:1: the rules file is empty; expected a mapping with version, stages, "
                              "slas, ..."]


def test_a_list_at_the_top(tmp_path: Path) -> None:
    path = write(tmp_path, "- version: 1\n")
    assert problems(path) == [f"{path}:1:1: the rules file is not a mapping of sections; expected keys such as "
                              "version, fields, teams, stages, slas"]


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_bytes(b"version: 1\nname: \xff\xfe\n")
    assert problems(path) == [f"{path}:1:1: the file is not UTF-8 text (byte 17); expected UTF-8 text"]


def test_a_huge_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("version: 1\n" + "# padding\n" * 200_000)
    [found] = problems(path)
    assert found.startswith(f"{path}:1:1: the file is ") and "expected a rules file under 1000000 bytes" in found


def test_deep_nesting_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "version: " + "[" * 5000 + "]" * 5000 + "\n")
    [found] = problems(path)
    assert "nested" in found and found.startswith(f"{path}:")


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    assert problems(path) == [f"{path}:1:1: no such rules file or folder; pass the path of config/rules.yaml or "
                              "a folder of YAML files"]


def test_a_folder_is_one_rules_set(tmp_path: Path) -> None:
    write(tmp_path, BASE, "rules/10-base.yaml")
    write(tmp_path, """\
stages:
  sql:
    meaning: s
    owner: sales
    after: mql
    definition: score >= 80
    labels: {salesforce: "Status = 'Sales Qualified'"}
slas:
  - {id: a, owner: sales, start: {stage: mql}, stop: {stage: sql}, within: 2 days}
""", "rules/20-sales.yaml")
    write(tmp_path, "slas:\n  - {id: b, owner: sales, start: {stage: sql}, stop: {owner_team: sales}, within: 1h}\n",
          "rules/sub/30-more.yml")
    result = check_rules(tmp_path / "rules")
    assert result.problems == ()
    assert result.rules is not None
    assert list(result.rules.stages) == ["lead", "mql", "sql"]
    assert [s.id for s in result.rules.slas] == ["a", "b"]
    assert len(result.rules.files) == 3


def test_a_name_defined_in_two_files_is_located_in_the_second(tmp_path: Path) -> None:
    first = write(tmp_path, BASE, "rules/a.yaml")
    second = write(tmp_path, "stages:\n  mql:\n    meaning: again\n    owner: sales\n    definition: score > 1\n",
                   "rules/b.yaml")
    found = problems(tmp_path / "rules")
    assert found == [f"{second}:2:3: 'stages.mql' is defined twice (also at {first}:14:3); expected each section, "
                     "name or value once across the rules files"]


def test_problems_in_a_folder_are_located_in_their_own_file(tmp_path: Path) -> None:
    write(tmp_path, BASE, "rules/a.yaml")
    second = write(tmp_path, "slas:\n  - {id: a, owner: sales, start: {stage: mq}, stop: {stage: mql}, within: 1h}\n",
                   "rules/b.yaml")
    [found] = problems(tmp_path / "rules")
    assert found.startswith(f"{second}:2:42: slas[0].start.stage: unknown stage 'mq'")


def test_span_maps_offsets_in_quoted_and_block_values() -> None:
    text = 'a: "x = \'y\'"\nb: |\n  first\n  second z\n'
    lines = Lines.of("f", text)
    quoted = Span(lines, 3, 12, '"', "x = 'y'")
    assert (quoted.where(4).line, quoted.where(4).col) == (1, 9)
    block = Span(lines, 16, len(text), "|", "first\nsecond z\n")
    assert (block.where(13).line, block.where(13).col) == (4, 10)
