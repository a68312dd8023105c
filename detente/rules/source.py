"""Read rules YAML into plain data plus the file position of every key and value.

A rules file is read node by node (``yaml.compose``), never by constructing arbitrary
objects: mappings and sequences are rebuilt here and only scalars go through PyYAML's safe
constructor. Anchors, aliases, tags on collections, duplicate keys and non-text keys are
problems, reported with their position like every other. A folder of files is one rules
set: named sections (``stages``, ``fields``, ...) are merged by name and lists (``slas``)
are concatenated in file-name order.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from detente.rules.problems import Problem, Where, file_problem

PathKey = tuple[str | int, ...]

MAX_FILE_BYTES = 1_000_000
MAX_DEPTH = 32
MAX_INDENT = 160
RULES_SUFFIXES = (".yaml", ".yml")

# How sections from several files combine into one rules set.
MERGED_BY_NAME = frozenset({"fields", "teams", "stages", "calendars"})
MERGED_NESTED = {"writeback": frozenset({"fields", "tasks"})}
CONCATENATED = frozenset({"slas", "disagreements"})


@dataclass(frozen=True)
class Lines:
    """Character offsets of line starts in one file, to turn an index into line:col."""

    file: str
    text: str
    starts: tuple[int, ...]

    @classmethod
    def of(cls, file: str, text: str) -> Lines:
        starts = [0]
        starts.extend(i + 1 for i, ch in enumerate(text) if ch == "\n")
        return cls(file, text, tuple(starts))

    def where(self, index: int) -> Where:
        line = bisect.bisect_right(self.starts, index) - 1
        return Where(self.file, line + 1, index - self.starts[line] + 1)


@dataclass(frozen=True)
class Span:
    """Where a text value sits in its file, so an offset inside the value can be located."""

    lines: Lines
    start: int
    end: int
    style: str | None
    value: str

    def where(self, offset: int) -> Where:
        """The file position of character ``offset`` of the value (best effort for escapes)."""
        text = self.lines.text
        j = self.start
        if self.style in ("|", ">"):
            newline = text.find("\n", j, self.end)
            j = newline + 1 if newline >= 0 else j
        elif self.style in ("'", '"'):
            j += 1
        if offset <= 0:
            return self.lines.where(self._skip_space(j) if self.style in ("|", ">") else j)
        for i, ch in enumerate(self.value):
            found = text.find(ch, j, self.end) if ch not in "\n" else text.find("\n", j, self.end)
            if found >= 0:
                j = found
            if i == offset:
                return self.lines.where(j)
            j += 1
        return self.lines.where(min(j, max(self.start, self.end - 1)))

    def _skip_space(self, j: int) -> int:
        text = self.lines.text
        while j < self.end and text[j] == " ":
            j += 1
        return j


@dataclass
class Doc:
    """Plain data read from rules YAML, with positions for keys, values and text spans."""

    data: dict[str, Any] = field(default_factory=dict)
    keys: dict[PathKey, Where] = field(default_factory=dict)
    values: dict[PathKey, Where] = field(default_factory=dict)
    spans: dict[PathKey, Span] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    digest_parts: list[bytes] = field(default_factory=list)

    def at(self, path: PathKey, *, key: bool = False) -> Where | None:
        """The position of the value (or key) at ``path``, else of its nearest ancestor."""
        probe = path
        while probe:
            table = self.keys if key else self.values
            if probe in table:
                return table[probe]
            if probe in self.keys:
                return self.keys[probe]
            if probe in self.values:
                return self.values[probe]
            probe = probe[:-1]
        return Where(self.files[0], 1, 1) if self.files else None

    def where_in(self, path: PathKey, offset: int) -> Where | None:
        """The position of character ``offset`` inside the text value at ``path``."""
        span = self.spans.get(path)
        if span is None:
            return self.at(path)
        return span.where(offset)


@dataclass
class _Reader:
    lines: Lines
    loader: yaml.SafeLoader
    problems: list[Problem]
    doc: Doc
    seen: set[int] = field(default_factory=set)

    def where(self, mark: Any) -> Where:
        return self.lines.where(int(mark.index))

    def build(self, node: yaml.Node, path: PathKey, depth: int) -> Any:
        if id(node) in self.seen:
            self.problems.append(Problem(
                self.where(node.start_mark), "anchors and aliases are not allowed in rules files",
                "write the value out where it is used"))
            return None
        self.seen.add(id(node))
        if depth > MAX_DEPTH:
            self.problems.append(Problem(
                self.where(node.start_mark), f"the rules are nested more than {MAX_DEPTH} levels deep",
                "expected the sections described in config/rules.yaml"))
            return None
        self.doc.values[path] = self.where(node.start_mark)
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path, depth)
        if isinstance(node, yaml.SequenceNode):
            if node.tag != "tag:yaml.org,2002:seq":
                self._tag_problem(node)
                return None
            return [self.build(item, (*path, i), depth + 1) for i, item in enumerate(node.value)]
        return self._scalar(node, path)

    def _mapping(self, node: yaml.MappingNode, path: PathKey, depth: int) -> dict[str, Any]:
        if node.tag != "tag:yaml.org,2002:map":
            self._tag_problem(node)
            return {}
        out: dict[str, Any] = {}
        first: dict[str, Where] = {}
        for key_node, value_node in node.value:
            key_where = self.where(key_node.start_mark)
            if key_node.tag == "tag:yaml.org,2002:merge":
                self.problems.append(Problem(key_where, "merge keys (<<) are not allowed in rules files",
                                             "write the keys out where they are used"))
                continue
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag != "tag:yaml.org,2002:str":
                shown = key_node.value if isinstance(key_node, yaml.ScalarNode) else "a collection"
                self.problems.append(Problem(key_where, f"key {shown!r} is not text",
                                             "expected a name such as 'stages' (quote it if it looks like a number)"))
                continue
            key = str(key_node.value)
            if key in first:
                self.problems.append(Problem(
                    key_where, f"duplicate key '{key}' (first at line {first[key].line})",
                    "expected each key once in a mapping"))
                continue
            first[key] = key_where
            self.doc.keys[(*path, key)] = key_where
            out[key] = self.build(value_node, (*path, key), depth + 1)
        return out

    def _scalar(self, node: yaml.Node, path: PathKey) -> Any:
        assert isinstance(node, yaml.ScalarNode)
        try:
            value = self.loader.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None) or node.start_mark
            self.problems.append(Problem(self.where(mark), f"cannot read the value ({_clean(exc)})",
                                         "expected plain text, a number, true/false or a date"))
            return None
        if isinstance(value, str):
            self.doc.spans[path] = Span(self.lines, int(node.start_mark.index), int(node.end_mark.index),
                                        node.style, value)
        return value

    def _tag_problem(self, node: yaml.Node) -> None:
        self.problems.append(Problem(self.where(node.start_mark), f"YAML tag {node.tag!r} is not allowed",
                                     "expected plain mappings, lists and values without tags"))


def _clean(exc: yaml.YAMLError) -> str:
    problem = getattr(exc, "problem", None) or getattr(exc, "context", None) or "malformed YAML"
    return str(problem).strip()


def read_file(path: Path, display: str | None = None) -> tuple[Doc, list[Problem]]:
    """One rules file as located plain data, and the problems found reading it."""
    name = display or str(path)
    doc = Doc(files=[name])
    try:
        raw = path.read_bytes()
    except OSError as exc:
        return doc, [file_problem(name, f"cannot read the rules file ({exc.strerror or exc})",
                                  "expected a readable YAML file")]
    if len(raw) > MAX_FILE_BYTES:
        return doc, [file_problem(name, f"the file is {len(raw)} bytes",
                                  f"expected a rules file under {MAX_FILE_BYTES} bytes")]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return doc, [file_problem(name, f"the file is not UTF-8 text (byte {exc.start})", "expected UTF-8 text")]
    doc.digest_parts.append(raw)
    lines = Lines.of(name, text)
    problems: list[Problem] = []
    too_deep = _too_deep(text, lines)
    if too_deep is not None:
        return doc, [too_deep]
    aliases = _aliases(text, lines)
    if aliases:
        return doc, aliases
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = lines.where(int(mark.index)) if mark is not None else Where(name, 1, 1)
        return doc, [Problem(where, f"malformed YAML: {_clean(exc)}", "expected valid YAML")]
    except yaml.YAMLError as exc:
        return doc, [file_problem(name, f"malformed YAML: {_clean(exc)}", "expected valid YAML")]
    except RecursionError:
        return doc, [file_problem(name, "the YAML is nested too deeply to read",
                                  "expected the sections described in config/rules.yaml")]
    finally:
        loader.dispose()
    if node is None:
        return doc, [file_problem(name, "the rules file is empty",
                                  "expected a mapping with version, stages, slas, ...")]
    if not isinstance(node, yaml.MappingNode):
        return doc, [Problem(lines.where(int(node.start_mark.index)), "the rules file is not a mapping of sections",
                             "expected keys such as version, fields, teams, stages, slas")]
    reader = _Reader(lines, loader, problems, doc)
    data = reader.build(node, (), 0)
    doc.data = data if isinstance(data, dict) else {}
    return doc, problems


def _too_deep(text: str, lines: Lines) -> Problem | None:
    """A cheap guard before parsing: PyYAML slows down badly on pathological nesting."""
    depth = 0
    quote = ""
    for i, ch in enumerate(text):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return Problem(lines.where(i), f"the rules are nested more than {MAX_DEPTH} levels deep",
                               "expected the sections described in config/rules.yaml")
        elif ch in "]}":
            depth = max(0, depth - 1)
        elif ch == "\n":
            quote = ""
    for number, start in enumerate(lines.starts):
        indent = len(text[start:start + MAX_INDENT + 1]) - len(text[start:start + MAX_INDENT + 1].lstrip(" "))
        if indent > MAX_INDENT:
            return Problem(Where(lines.file, number + 1, 1), f"a line is indented more than {MAX_INDENT} spaces",
                           "expected the sections described in config/rules.yaml")
    return None


def _aliases(text: str, lines: Lines) -> list[Problem]:
    """Aliases, found from the event stream before anything is built (no expansion, no bombs)."""
    found: list[Problem] = []
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent):
                index = int(event.start_mark.index) if event.start_mark is not None else 0
                found.append(Problem(lines.where(index),
                                     "anchors and aliases are not allowed in rules files",
                                     "write the value out where it is used"))
    except (yaml.YAMLError, RecursionError):
        return []  # composing reports the same error with its position
    return found


def rules_files(path: Path) -> list[Path]:
    """The files of a rules set: the file itself, or every *.yaml/*.yml under a folder."""
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in RULES_SUFFIXES)
    return [path]


def read_rules(path: Path) -> tuple[Doc, list[Problem]]:
    """A rules file or folder as one located document, and every problem reading it."""
    if not path.exists():
        return Doc(files=[str(path)]), [file_problem(path, "no such rules file or folder",
                                                     "pass the path of config/rules.yaml or a folder of YAML files")]
    files = rules_files(path)
    if not files:
        return Doc(files=[str(path)]), [file_problem(path, "the folder holds no .yaml or .yml files",
                                                     "expected one or more rules files in it")]
    merged = Doc()
    problems: list[Problem] = []
    for file in files:
        doc, found = read_file(file)
        problems.extend(found)
        merged.files.extend(doc.files)
        merged.digest_parts.extend(doc.digest_parts)
        problems.extend(_merge(merged, doc))
    return merged, problems


def _merge(into: Doc, doc: Doc) -> Iterator[Problem]:
    """Fold one file's sections into the rules set, reporting names defined twice."""
    for section, value in doc.data.items():
        top: PathKey = (section,)
        if section not in into.data:
            into.data[section] = value
            _copy(doc, into, top, top)
        elif section in CONCATENATED and isinstance(value, list) and isinstance(into.data[section], list):
            offset = len(into.data[section])
            into.data[section].extend(value)
            for i in range(len(value)):
                _copy(doc, into, (section, i), (section, i + offset))
        elif section in MERGED_BY_NAME and isinstance(value, dict) and isinstance(into.data[section], dict):
            yield from _merge_names(into, doc, top, value)
        elif section in MERGED_NESTED and isinstance(value, dict) and isinstance(into.data[section], dict):
            for sub, subvalue in value.items():
                path: PathKey = (section, sub)
                if sub in MERGED_NESTED[section] and isinstance(subvalue, dict) \
                        and isinstance(into.data[section].get(sub), dict):
                    yield from _merge_names(into, doc, path, subvalue)
                elif sub in into.data[section]:
                    yield _twice(into, doc, path)
                else:
                    into.data[section][sub] = subvalue
                    _copy(doc, into, path, path)
        elif section == "version" and value == into.data[section]:
            continue
        else:
            yield _twice(into, doc, top)


def _merge_names(into: Doc, doc: Doc, path: PathKey, value: dict[str, Any]) -> Iterator[Problem]:
    target = _get(into.data, path)
    for name, item in value.items():
        child = (*path, name)
        if name in target:
            yield _twice(into, doc, child)
            continue
        target[name] = item
        _copy(doc, into, child, child)


def _get(data: dict[str, Any], path: PathKey) -> dict[str, Any]:
    node: Any = data
    for part in path:
        node = node[part]
    assert isinstance(node, dict)
    return node


def _twice(into: Doc, doc: Doc, path: PathKey) -> Problem:
    first = into.at(path, key=True)
    again = doc.at(path, key=True)
    label = ".".join(str(p) for p in path)
    return Problem(again, f"'{label}' is defined twice (also at {first})",
                   "expected each section, name or value once across the rules files")


def _copy(src: Doc, dst: Doc, old: PathKey, new: PathKey) -> None:
    n = len(old)
    for table_name in ("keys", "values", "spans"):
        source: dict[PathKey, Any] = getattr(src, table_name)
        target: dict[PathKey, Any] = getattr(dst, table_name)
        for path, where in source.items():
            if path[:n] == old:
                target[(*new, *path[n:])] = where


def digest(doc: Doc) -> str:
    """A hash of the files' bytes, to tell whether anything on disk changed."""
    h = hashlib.sha256()
    for part in doc.digest_parts:
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return h.hexdigest()
