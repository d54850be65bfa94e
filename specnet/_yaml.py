"""Safe, located YAML: text → plain Python values plus where each value came from.

PyYAML's own constructors are not used. We compose the node graph with a resolver that only
marks scalars as plain or quoted, then build values ourselves so that we can:

* read scalars by the YAML 1.2 core schema, not PyYAML's YAML 1.1 one: ``no``/``on``/``yes``
  stay strings (a bool field then rejects them with a hint), ``1e-3`` is a float, and a plain
  integer with a leading zero (``010``, octal in 1.1, ten in 1.2) is refused as ambiguous;
* refuse every tag outside the core schema (``!!python/object``, ``!custom``) — no code runs;
* refuse duplicate keys, and keys that are not scalars;
* bound the file size, the nesting depth (checked on the event stream before the recursive
  composer runs, so ``[[[[…`` cannot hit RecursionError) and the number of values after alias
  expansion (an alias bomb is refused after at most ``MAX_VALUES`` steps, never expanded);
* record ``path → (line, column)`` for every value and every key.

Paths are tuples of mapping keys and 0-based list indices: ``("layers", 3, "units")``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from specnet.errors import Issue, SpecSyntaxError, brief

__all__ = ["MAX_BYTES", "MAX_DEPTH", "MAX_VALUES", "Located", "Path", "format_path", "load_yaml"]

MAX_BYTES = 1 << 20  # 1 MiB: a spec is a page of text
MAX_DEPTH = 32
MAX_VALUES = 100_000

Path = tuple[str | int, ...]

_PLAIN = "specnet:plain"
_CORE = "tag:yaml.org,2002:"
_ALLOWED_TAGS = {f"{_CORE}{name}" for name in ("str", "int", "float", "bool", "null")}
_NULL = re.compile(r"^(~|null|Null|NULL|)$")
_BOOL = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
_INT = re.compile(r"^[-+]?[0-9]+$")
_INT_OCT = re.compile(r"^0o[0-7]+$")
_INT_HEX = re.compile(r"^0x[0-9a-fA-F]+$")
_FLOAT = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")
_INF = re.compile(r"^[-+]?\.(inf|Inf|INF)$")
_NAN = re.compile(r"^\.(nan|NaN|NAN)$")


def format_path(path: Path) -> str:
    """``("layers", 3, "units")`` → ``layers[3].units``."""
    text = ""
    for step in path:
        text += f"[{step}]" if isinstance(step, int) else (f".{step}" if text else str(step))
    return text


@dataclass
class Located:
    """Values loaded from one file, with the 1-based (line, column) of each value and key."""

    file: str
    data: Any
    values: dict[Path, tuple[int, int]] = field(default_factory=dict)
    keys: dict[Path, tuple[int, int]] = field(default_factory=dict)
    #: paths of scalars written in quotes ("64"): a hint to remove quotes applies only there
    quoted: set[Path] = field(default_factory=set)
    #: expanded layer index → the ``specnet.blocks.Origin`` it came from (a block use)
    origins: dict[int, Any] = field(default_factory=dict)
    #: expanded layer index → its index as written, for the layers outside blocks (messages
    #: name ``layers[i]`` as the file has it)
    written: dict[int, int] = field(default_factory=dict)
    #: whether issues are about the text as written (schema errors): a mistake in a block
    #: definition is then reported once, at the definition, for all its uses
    as_written: bool = False

    def where(self, path: Path, *, key: bool = False) -> tuple[int, int]:
        """Position of ``path`` (its key if ``key``), else of its nearest located ancestor;
        (0, 0) for data that was never text."""
        if key and path in self.keys:
            return self.keys[path]
        for end in range(len(path), -1, -1):
            if path[:end] in self.values:
                return self.values[path[:end]]
        return (0, 0)  # data that came with no text (spec_from_dict): no line to name

    def issue(self, path: Path, message: str, hint: str = "", *, key: bool = False) -> Issue:
        origin = None
        if len(path) >= 2 and path[0] == "layers" and isinstance(path[1], int):
            origin = self.origins.get(path[1])
        line, column = self.where(path, key=key)
        if origin is None:
            if len(path) >= 2 and path[0] == "layers" and path[1] in self.written:
                path = ("layers", self.written[path[1]], *path[2:])
            return Issue(self.file, line, column, format_path(path), message, hint)
        param = next((use for p, use in origin.params.items() if path[: len(p)] == p), None)
        if self.as_written and param is not None:  # the use's value, wrong wherever it goes
            line, column = self.where(path, key=key)
            context = f"the value of parameter `{param[-1]}` of block `{origin.block}`"
            return Issue(self.file, line, column, format_path(param), message, hint, context)
        from_param = param is not None
        if self.as_written and not from_param:  # the definition's own text, for every use
            written = (*origin.definition, *path[2:])
            return Issue(
                self.file, line, column, format_path(written), message, hint, origin.reach()
            )
        if not from_param:  # a problem of this use (a shape, a name): point at the use
            line, column = origin.use_at
        return Issue(
            self.file, line, column, format_path(path), message, hint, origin.context(self)
        )


class _PlainResolver:
    """Resolver override: scalars are only "plain" or "quoted"; we resolve them ourselves."""

    def resolve(self, kind: type[Node], value: Any, implicit: Any) -> str:
        if kind is ScalarNode:
            return _PLAIN if implicit[0] else f"{_CORE}str"
        return super().resolve(kind, value, implicit)  # type: ignore[misc,no-any-return]


class _PyLoader(_PlainResolver, yaml.SafeLoader):
    """Pure-Python parser: slower, but its error messages are the clearest."""


# libyaml's parser when PyYAML was built with it: about 10× faster on valid files. On an error
# the pure-Python parser runs again for its clearer message (which names tabs, tokens, aliases).
_FastLoader: type[Any] = (
    type("_FastLoader", (_PlainResolver, yaml.CSafeLoader), {})
    if hasattr(yaml, "CSafeLoader")
    else _PyLoader
)


def _fail(
    file: str, line: int, column: int, message: str, hint: str = "", path: Path = ()
) -> SpecSyntaxError:
    return SpecSyntaxError([Issue(file, line, column, format_path(path), message, hint)])


def _decode(raw: bytes, file: str) -> str:
    if not raw.strip():
        raise _fail(
            file, 1, 1, "the file is empty", "a spec is a mapping; `specnet init` writes a starter"
        )
    if len(raw) > MAX_BYTES:
        raise _fail(
            file, 1, 1, f"the file is {len(raw):,} bytes; specs are limited to {MAX_BYTES:,} bytes"
        )
    if b"\x00" in raw:
        line = raw[: raw.index(b"\x00")].count(b"\n") + 1
        raise _fail(file, line, 1, "this is a binary file, not YAML text (it contains NUL bytes)")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        before = raw[: exc.start]
        line = before.count(b"\n") + 1
        column = exc.start - (before.rfind(b"\n") + 1) + 1
        raise _fail(
            file, line, column, f"the file is not UTF-8 text (byte 0x{raw[exc.start]:02x})"
        ) from None


def _yaml_error(exc: yaml.YAMLError, text: str, file: str) -> SpecSyntaxError:
    if isinstance(exc, yaml.reader.ReaderError):
        before = text[: exc.position]
        line = before.count("\n") + 1
        column = exc.position - (before.rfind("\n") + 1) + 1
        code = exc.character if isinstance(exc.character, int) else ord(str(exc.character)[:1])
        return _fail(
            file, line, column, f"control character 0x{code:02x} is not allowed in YAML text"
        )
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        indented = _misindented(text, mark.line, exc.problem or "")
        if indented is not None:
            line, column, message, hint = indented
            return _fail(file, line, column, message, hint)
        problem = (exc.problem or "invalid YAML").replace("\t", "\\t")
        context = f" ({exc.context})" if exc.context else ""
        hint = "indent with spaces, not tabs" if "'\\t'" in problem else ""
        return _fail(file, mark.line + 1, mark.column + 1, f"YAML syntax: {problem}{context}", hint)
    return _fail(file, 1, 1, f"YAML syntax: {type(exc).__name__}")


_KEY = re.compile(r"^( *)(?:- +)?([^\s:#'\"{\[-][^:#]*?) *:(?: |$)")


def _misindented(text: str, line: int, problem: str) -> tuple[int, int, str, str] | None:
    """For PyYAML's indentation errors ("mapping values are not allowed here", "expected
    <block end>"): the key on the failing line (0-based ``line``) and the one above it that it
    should line up with, as (line, column, message, hint); None when it is something else."""
    if "mapping values are not allowed" not in problem and "expected <block end>" not in problem:
        return None
    lines = text.splitlines()
    if line >= len(lines):
        return None
    here = _KEY.match(lines[line])
    if here is None:
        return None
    column = here.start(2) + 1
    for above in range(line - 1, -1, -1):
        other = _KEY.match(lines[above])
        if other is None:
            continue
        other_column = other.start(2) + 1
        if other_column == column:
            return None
        key, parent = here.group(2), other.group(2)
        return (
            line + 1,
            column,
            f"YAML indentation: `{brief(key, 30)[1:-1]}:` starts at column {column}, but "
            f"`{brief(parent, 30)[1:-1]}:` on line {above + 1} starts at column {other_column}",
            "the keys of one mapping must start in the same column (indent with spaces)",
        )
    return None


def _check_depth(text: str, file: str, loader: type[Any]) -> None:
    """Walk the event stream (iterative in PyYAML) and refuse deep nesting before composing."""
    depth = 0
    for event in yaml.parse(text, Loader=loader):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                mark = event.start_mark
                line, column = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
                raise _fail(
                    file,
                    line,
                    column,
                    f"nesting is deeper than {MAX_DEPTH} levels",
                    "a spec needs only a few levels; this looks generated or corrupted",
                )
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


class _Builder:
    """Turns a composed node graph into Python values, recording positions."""

    def __init__(self, file: str) -> None:
        self.out = Located(file, None)
        self.budget = MAX_VALUES
        self.building: set[int] = set()  # the collections being built: an alias to one is a loop

    def fail(self, node: Node, message: str, hint: str = "", path: Path = ()) -> SpecSyntaxError:
        mark = node.start_mark
        return _fail(self.out.file, mark.line + 1, mark.column + 1, message, hint, path)

    def _tag(self, node: Node, path: Path) -> SpecSyntaxError:
        tag = node.tag.replace(_CORE, "!!")
        return self.fail(
            node,
            f"YAML tag {brief(tag)} is not allowed: a spec is plain data",
            "remove the tag",
            path,
        )

    def build(self, node: Node, path: Path) -> Any:
        self.budget -= 1
        if self.budget < 0:
            raise self.fail(
                node,
                f"the document expands to more than {MAX_VALUES:,} values",
                "a spec needs far fewer; YAML aliases (*name) count once per use",
            )
        self.out.values[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
        if isinstance(node, ScalarNode):
            return self.scalar(node, path)
        if node.tag not in (f"{_CORE}seq", f"{_CORE}map"):
            raise self._tag(node, path)
        if id(node) in self.building:  # `&a {x: *a}` or `&a {<<: *a}`: PyYAML makes a cycle
            raise self.fail(
                node,
                "a YAML alias refers to a collection that contains it: the document is infinite",
                "aliases (*name) may only repeat a finished mapping or list",
                path,
            )
        self.building.add(id(node))
        try:
            if isinstance(node, SequenceNode):
                return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
            assert isinstance(node, MappingNode)
            return self.mapping(node, path)
        finally:
            self.building.discard(id(node))

    def scalar(self, node: ScalarNode, path: Path) -> Any:
        value: str = node.value
        if node.tag == f"{_CORE}str":
            if node.style in ("'", '"'):
                self.out.quoted.add(path)
            return value
        if node.tag != _PLAIN:
            if node.tag not in _ALLOWED_TAGS:
                raise self._tag(node, path)
            plain = self._plain(node, value, path)
            if node.tag.endswith("float") and isinstance(plain, int):
                return float(plain)
            return plain
        return self._plain(node, value, path)

    def _plain(self, node: ScalarNode, value: str, path: Path) -> Any:
        if _NULL.match(value):
            return None
        if value in _BOOL:
            return _BOOL[value]
        if _INT.match(value) or _INT_OCT.match(value) or _INT_HEX.match(value):
            return self._int(node, value, path)
        if _FLOAT.match(value):
            return float(value)
        if _INF.match(value):
            return float("-inf") if value.startswith("-") else float("inf")
        if _NAN.match(value):
            return float("nan")
        return value

    def _int(self, node: ScalarNode, value: str, path: Path) -> int:
        """A YAML 1.2 integer; anything beyond 64 bits is refused before Python converts it
        (decimal strings over 4,300 digits raise ValueError, and no spec field needs them)."""
        sign = "-" if value.startswith("-") else ""
        digits = value.lstrip("+-")
        base = {"0o": 8, "0x": 16}.get(digits[:2], 10)
        if base != 10:
            digits = digits[2:]
        significant = digits.lstrip("0") or "0"
        if len(significant) > {8: 22, 10: 20, 16: 16}[base] or int(significant, base) >= 2**64:
            shown = value if len(value) <= 24 else f"{value[:20]}… ({len(value)} characters)"
            raise self.fail(node, f"the number {shown} is too large (more than 64 bits)", "", path)
        if base == 10 and len(digits) > 1 and digits.startswith("0"):
            raise self.fail(
                node,
                f"the number {value[:24]} has a leading zero, which YAML 1.1 reads as octal",
                f"write {sign}{significant} (or 0o{significant} if you meant octal)",
                path,
            )
        return int(sign + significant, base)

    def mapping(self, node: MappingNode, path: Path) -> dict[str, Any]:
        result: dict[str, Any] = {}
        seen: dict[str, int] = {}
        merged: list[dict[str, Any]] = []
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode):
                raise self.fail(
                    key_node, "mapping keys must be plain names, not collections", "", path
                )
            if key_node.tag == _PLAIN and key_node.value == "<<":
                merged.extend(self.merge(value_node, path))
                continue
            key = self.scalar(key_node, path)
            if not isinstance(key, str):
                raise self.fail(
                    key_node, f"mapping key {brief(key)} must be a name, not a number", "", path
                )
            if key in seen:
                raise self.fail(
                    key_node,
                    f"duplicate key {brief(key)} (first defined on line {seen[key]})",
                    "remove one of the two",
                    (*path, key),
                )
            seen[key] = key_node.start_mark.line + 1
            self.out.keys[(*path, key)] = (
                key_node.start_mark.line + 1,
                key_node.start_mark.column + 1,
            )
            result[key] = self.build(value_node, (*path, key))
        for extra in merged:
            for key, value in extra.items():
                result.setdefault(key, value)
        return result

    def merge(self, node: Node, path: Path) -> list[dict[str, Any]]:
        sources = node.value if isinstance(node, SequenceNode) else [node]
        out = []
        for source in sources:
            value = self.build(source, path)
            if not isinstance(value, dict):
                raise self.fail(
                    source, "a merge key (<<) takes a mapping or a list of mappings", "", path
                )
            out.append(value)
        return out


def _compose(text: str, file: str, loader: type[Any]) -> Node | None:
    _check_depth(text, file, loader)
    try:
        return yaml.compose(text, Loader=loader)
    except RecursionError:  # belt and braces: _check_depth makes this unreachable
        raise _fail(file, 1, 1, f"nesting is deeper than {MAX_DEPTH} levels") from None


def load_yaml(raw: bytes, file: str) -> Located:
    """Parse one YAML document safely; raise :class:`SpecSyntaxError` with a location."""
    text = _decode(raw, file)
    try:
        node = _compose(text, file, _FastLoader)
    except yaml.YAMLError as fast_error:
        try:
            node = _compose(text, file, _PyLoader)
        except yaml.YAMLError as exc:
            raise _yaml_error(exc, text, file) from None
        raise _yaml_error(fast_error, text, file) from None
    if node is None:
        raise _fail(file, 1, 1, "the file holds no YAML document (only comments or blanks)")
    builder = _Builder(file)
    builder.out.data = builder.build(node, ())
    return builder.out
