"""Blocks: named, parametrised lists of layers, used like a layer and expanded before validation.

    blocks:
      identity:                                 # keras.applications' residual_block_v1
        params: [filters, out]
        layers:
          - {name: 1_conv, type: Conv2D, filters: $filters, kernel_size: 1}
          - ...
          - {name: add, type: Add, inputs: [input, 3_bn]}   # `input`: the block's input
          - {name: out, type: Activation, activation: relu}
    layers:
      - {block: identity, name: conv2_block2, filters: 64, out: 256}

A use expands in place into the block's layers, each named ``<use name>_<local name>``
(``conv2_block2_1_conv``, keras.applications' own names), so weights keep stable keys. Inside
a block, ``inputs`` names the block's own layers, and ``input`` is the block's input: the use's
``inputs`` if it has one, else the layer above the use. A block's output is its last layer; a
later layer may name it by the use's name (``inputs: [conv2_block2]``) or by its own
(``conv2_block2_out``). A field whose value is ``$param`` takes the use's value of that
parameter (inside lists too: ``padding: [[$p, $p], [$p, $p]]``). Deliberately small: no
expressions, no nesting, no repeat (a real spec has needed none so far).

Expansion works on the located data (:class:`~specnet._yaml.Located`) before pydantic sees it,
and gives every expanded value a position, so validation, shape and limit errors need no change:
a value copied from the definition keeps the definition's line, a ``$param`` the use's. Each
expanded layer carries an :class:`Origin`, which adds the line that says where it came from::

    resnet50.yaml:45:52: layers[7].filters: expected a value greater than 0, received -64
        in block `identity` as conv2_block2_1_conv (blocks.identity.layers[0] at resnet50.yaml:26:9)

A mistake in a definition's own text (a field a layer kind does not have, a bad value written
there) is the same mistake for every use: it is reported once, at the definition, saying how
many uses it reaches. The resolved spec (and a run's fingerprint) holds only expanded layers:
refactoring a spec into blocks does not change what a run is.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import Any

from specnet._yaml import Located, Path, format_path
from specnet.errors import Issue, SpecValidationError, brief

__all__ = ["MAX_LAYERS", "Origin", "expand"]

#: the most layers a spec may have once its blocks are expanded (ResNet152 has 517)
MAX_LAYERS = 10_000
_PARAM = re.compile(r"^\$([A-Za-z_][A-Za-z0-9_]*)$")
_USE_KEYS = ("block", "name", "inputs")


@dataclass(frozen=True)
class Origin:
    """Where an expanded layer came from: the use (``layers[i]`` as written) and the definition
    (``blocks.<block>.layers[k]``); ``params``: the expanded field paths a ``$param`` filled in,
    each with the use's path of that parameter."""

    block: str
    name: str
    use: Path
    use_at: tuple[int, int]
    definition: Path
    definition_at: tuple[int, int]
    uses: tuple[str, ...]
    params: dict[Path, Path] = field(default_factory=dict)

    def context(self, source: Located) -> str:
        line, column = self.definition_at
        at = f" at {source.file}:{line}:{column}" if line else ""
        return f"in block `{self.block}` as {self.name} ({format_path(self.definition)}{at})"

    def reach(self) -> str:
        count = len(self.uses)
        shown = ", ".join(self.uses[:3]) + (", …" if count > 3 else "")
        return f"in block `{self.block}`, reaching {count} use{'s' * (count != 1)} ({shown})"


def expand(source: Located) -> Located:
    """``source`` with every block use expanded and ``blocks`` removed (unchanged without
    ``blocks``). Refuses unknown blocks and parameters, missing ones, bad names and references
    within a definition, and an expansion over :data:`MAX_LAYERS` layers, all located."""
    data = source.data
    if not isinstance(data, dict) or ("blocks" not in data and not _uses(data.get("layers"))):
        return source
    issues: list[Issue] = []
    blocks = _definitions(source, issues)
    layers = data.get("layers")
    if not isinstance(layers, list):
        if issues:
            raise SpecValidationError(sorted(set(issues), key=_order))
        return _without_blocks(source)
    uses: dict[str, list[str]] = {}
    for entry in layers:
        if isinstance(entry, dict) and isinstance(entry.get("block"), str):
            name = entry.get("name")
            uses.setdefault(entry["block"], []).append(name if isinstance(name, str) else "?")
    size = sum(
        len(blocks[e["block"]].get("layers", ())) if _is_use(e) and e["block"] in blocks else 1
        for e in layers
    )
    if size > MAX_LAYERS:
        issues.append(
            source.issue(
                ("layers",),
                f"the blocks expand to {size:,} layers, over the limit of {MAX_LAYERS:,}",
                "a spec this large is a mistake (ResNet152 has 517 layers)",
                key=True,
            )
        )
        raise SpecValidationError(issues)
    out = Located(source.file, {k: v for k, v in data.items() if k != "blocks"})
    out.quoted = set(source.quoted)
    _copy_positions(source, out, lambda path: path[:1] != ("layers",) and path[:1] != ("blocks",))
    out.values[("layers",)] = source.values.get(("layers",), (0, 0))
    out.keys[("layers",)] = source.keys.get(("layers",), (0, 0))
    expanded: list[Any] = []
    aliases: dict[str, str] = {}  # use name → its block's last layer
    names: dict[Any, int] = {}  # names as written (of layers and uses) → their index
    for i, entry in enumerate(layers):
        if isinstance(entry, dict) and isinstance(entry.get("name"), str):
            names.setdefault(entry["name"], i)
    above: str | None = "input"
    for i, entry in enumerate(layers):
        if not _is_use(entry):
            j = len(expanded)
            expanded.append(_rename_refs(entry, aliases))
            out.written[j] = i
            _move(source, out, ("layers", i), ("layers", j))
            above = entry.get("name") if isinstance(entry, dict) else None
            above = above if isinstance(above, str) else None
            continue
        name = entry.get("name")
        if isinstance(name, str) and names.get(name, i) != i:
            issues.append(
                source.issue(
                    ("layers", i, "name"),
                    f"duplicate name {name!r} (also layers[{names[name]}])",
                    "every block use and layer needs its own name: weights are keyed by them",
                )
            )
            continue
        made = _expand_use(
            source, out, blocks, uses, i, entry, len(expanded), above, aliases, issues
        )
        expanded += made
        if made:
            aliases[str(entry["name"])] = above = made[-1]["name"]
    out.data["layers"] = expanded
    if issues:
        raise SpecValidationError(sorted(set(issues), key=_order))
    return out


def _shown(value: object) -> str:
    """A written value for a message: a name quoted (and clipped), anything else by its type
    (a 5,000-digit integer cannot even be turned into text)."""
    return brief(value) if isinstance(value, str) else f"a {type(value).__name__}"


def _order(issue: Issue) -> tuple[int, int, str]:
    return (issue.line, issue.column, issue.field)


def _uses(layers: object) -> bool:
    return isinstance(layers, list) and any(_is_use(entry) for entry in layers)


def _is_use(entry: object) -> bool:
    return isinstance(entry, dict) and "block" in entry


def _without_blocks(source: Located) -> Located:
    data = source.data
    out = Located(source.file, {k: v for k, v in data.items() if k != "blocks"})
    out.values, out.keys, out.quoted = dict(source.values), dict(source.keys), set(source.quoted)
    return out


def _copy_positions(source: Located, out: Located, keep: Any) -> None:
    out.values.update({p: v for p, v in source.values.items() if keep(p)})
    out.keys.update({p: v for p, v in source.keys.items() if keep(p)})


def _move(
    source: Located, out: Located, old: Path, new: Path, params: dict[Path, Path] | None = None
) -> None:
    """Positions (and quoting) of everything under ``old`` → under ``new``."""
    n = len(old)
    for table, target in ((source.values, out.values), (source.keys, out.keys)):
        for path, where in table.items():
            if path[:n] == old:
                target[new + path[n:]] = where
    out.quoted.update(new + path[n:] for path in source.quoted if path[:n] == old)
    for path, use in (params or {}).items():  # a $param's value was written at the use
        if use in source.values:
            out.values[path] = source.values[use]
        if use in source.quoted:
            out.quoted.add(path)
        else:
            out.quoted.discard(path)


def _rename_refs(entry: Any, aliases: dict[str, str]) -> Any:
    """A top-level layer's ``inputs`` with block-use names replaced by their output layer."""
    if not isinstance(entry, dict) or not aliases or "inputs" not in entry:
        return entry
    refs = entry["inputs"]
    if isinstance(refs, str):
        return {**entry, "inputs": aliases.get(refs, refs)}
    if isinstance(refs, list):
        return {**entry, "inputs": [aliases.get(r, r) if isinstance(r, str) else r for r in refs]}
    return entry


def _definitions(source: Located, issues: list[Issue]) -> dict[str, dict[str, Any]]:
    """The well-formed block definitions; a malformed one is an issue (and left out)."""
    raw = source.data.get("blocks", {})
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        issues.append(source.issue(("blocks",), "expected a mapping of block names to definitions"))
        return {}
    good: dict[str, dict[str, Any]] = {}
    for name in raw:
        good[name] = {}  # named: its uses are not "unknown" even when it is malformed
    for name, definition in raw.items():
        where: Path = ("blocks", name)
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,63}", name):
            issues.append(source.issue(where, f"block name {_shown(name)} is not a name", key=True))
            continue
        if not isinstance(definition, dict):
            issues.append(source.issue(where, "expected `params:` and `layers:`"))
            continue
        unknown = [key for key in definition if key not in ("params", "layers", "description")]
        for key in unknown:
            issues.append(
                source.issue(
                    (*where, key),
                    f"unknown field `{key}` in a block",
                    "a block has `params:` (a list of names) and `layers:`",
                    key=True,
                )
            )
        params = definition.get("params", [])
        if not isinstance(params, list) or not all(
            isinstance(p, str) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", p) for p in params
        ):
            issues.append(source.issue((*where, "params"), "expected a list of parameter names"))
            continue
        body = definition.get("layers")
        if not isinstance(body, list) or not body:
            issues.append(source.issue((*where, "layers"), "expected a non-empty list of layers"))
            continue
        if unknown or not _check_body(source, where, params, body, issues):
            continue
        good[name] = {"params": params, "layers": body}
    return good  # a malformed definition maps to {} (its issues are said once, above)


def _check_body(
    source: Located, where: Path, params: list[str], body: list[Any], issues: list[Issue]
) -> bool:
    """Names, references and ``$params`` inside one definition (reported once, there)."""
    before = len(issues)
    local: list[str] = []
    used: set[str] = set()
    for k, layer in enumerate(body):
        at: Path = (*where, "layers", k)
        if not isinstance(layer, dict):
            issues.append(source.issue(at, "expected a layer (a mapping with `type:`)"))
            continue
        if "block" in layer:
            issues.append(
                source.issue(
                    (*at, "block"), "blocks do not nest", "use the layers directly", key=True
                )
            )
        name = layer.get("name")
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_]{1,63}", name):
            issues.append(
                source.issue(
                    (*at, "name") if "name" in layer else at,
                    "every layer in a block needs a `name:` (letters, digits, _)",
                    "the expanded layer is called <use name>_<this name>, so weights keep "
                    "their keys",
                )
            )
        elif name in local:
            issues.append(source.issue((*at, "name"), f"duplicate name {name!r} in this block"))
        refs = layer.get("inputs")
        listed = [refs] if isinstance(refs, str) else refs if isinstance(refs, list) else []
        for r, ref in enumerate(listed):
            if ref == "input" or (isinstance(ref, str) and ref in local):
                continue
            path = (*at, "inputs") if isinstance(refs, str) else (*at, "inputs", r)
            choices = ["input", *local]
            close = difflib.get_close_matches(ref, choices, n=1) if isinstance(ref, str) else []
            hint = (
                f"did you mean {close[0]!r}?"
                if close
                else "inside a block, name an earlier layer of the block, or `input` (its input)"
            )
            message = f"no layer {_shown(ref)} above this one in the block"
            issues.append(source.issue(path, message, hint))
        for path, value in _leaves(layer, at):
            match = _PARAM.match(value) if isinstance(value, str) else None
            if match is None:
                continue
            if match[1] not in params:
                close = difflib.get_close_matches(match[1], params, n=1)
                issues.append(
                    source.issue(
                        path,
                        f"`{value}` is not a parameter of this block",
                        f"did you mean `${close[0]}`?"
                        if close
                        else f"declare it: `params: [{', '.join([*params, match[1]])}]`",
                    )
                )
            used.add(match[1])
        if isinstance(name, str):
            local.append(name)
    for unused in [p for p in params if p not in used]:
        issues.append(
            source.issue(
                (*where, "params"),
                f"parameter {unused!r} is used by no layer of the block",
                f"write `${unused}` where its value goes, or remove it",
            )
        )
    return len(issues) == before


def _leaves(value: Any, path: Path) -> list[tuple[Path, Any]]:
    if isinstance(value, dict):
        return [leaf for k, v in value.items() for leaf in _leaves(v, (*path, k))]
    if isinstance(value, list):
        return [leaf for i, v in enumerate(value) for leaf in _leaves(v, (*path, i))]
    return [(path, value)]


def _substitute(
    value: Any, path: Path, given: dict[str, Any], use: Path, filled: dict[Path, Path]
) -> Any:
    if isinstance(value, dict):
        return {k: _substitute(v, (*path, k), given, use, filled) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, (*path, i), given, use, filled) for i, v in enumerate(value)]
    match = _PARAM.match(value) if isinstance(value, str) else None
    if match is None:
        return value
    filled[path] = (*use, match[1])
    return given[match[1]]


def _expand_use(
    source: Located,
    out: Located,
    blocks: dict[str, dict[str, Any]],
    uses: dict[str, list[str]],
    i: int,
    entry: dict[str, Any],
    start: int,
    above: str | None,
    aliases: dict[str, str],
    issues: list[Issue],
) -> list[dict[str, Any]]:
    """The expanded layers of the use ``layers[i]``, or [] (with issues) when it is wrong."""
    where: Path = ("layers", i)
    block = entry["block"]
    if not isinstance(block, str) or block not in blocks:
        close = (
            difflib.get_close_matches(block, list(blocks), n=1) if isinstance(block, str) else []
        )
        names = ", ".join(blocks) or "none are defined under `blocks:`"
        issues.append(
            source.issue(
                (*where, "block"),
                f"no block named {_shown(block)}",
                f"did you mean {close[0]!r}?" if close else f"blocks here: {names}",
            )
        )
        return []
    definition = blocks[block]
    if not definition:
        return []  # malformed: said at the definition
    params: list[str] = definition["params"]
    name = entry.get("name")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,63}", name):
        issues.append(
            source.issue(
                (*where, "name") if "name" in entry else where,
                "a block use needs a `name:` (its layers are called <name>_<layer>)",
            )
        )
        return []
    given = {key: value for key, value in entry.items() if key not in _USE_KEYS}
    unknown = [key for key in given if key not in params]
    missing = [p for p in params if p not in given]
    for key in unknown:
        close = difflib.get_close_matches(key, params, n=1) if isinstance(key, str) else []
        hint = (
            f"did you mean {close[0]!r}?"
            if close
            else (f"block `{block}` takes: {', '.join(params) or 'no parameters'}")
        )
        issues.append(
            source.issue(
                (*where, key), f"block `{block}` has no parameter {_shown(key)}", hint, key=True
            )
        )
    if missing:
        issues.append(
            source.issue(
                where,
                f"block `{block}` needs {', '.join(missing)} (it takes {', '.join(params)})",
                "give each parameter a value: " + ", ".join(f"{p}: …" for p in missing),
            )
        )
    if unknown or missing:
        return []
    reads_input = any(
        "input" in ([refs] if isinstance(refs, str) else refs if isinstance(refs, list) else [])
        for refs in (layer.get("inputs") for layer in definition["layers"])
    )
    block_input: str | None = above  # None: the layer above, which has no name
    if "inputs" in entry:
        refs = entry["inputs"]
        block_input = refs[0] if isinstance(refs, list) and len(refs) == 1 else refs
        if not isinstance(block_input, str):
            issues.append(
                source.issue((*where, "inputs"), "a block takes one input: `inputs: [name]`")
            )
            return []
        block_input = aliases.get(block_input, block_input)
    elif above is None and reads_input:
        issues.append(
            source.issue(
                where,
                f"the layer above block use {name!r} has no name, and the block reads its "
                "input by name",
                "give the layer above a `name:`, or give this use `inputs: [name]`",
            )
        )
        return []
    made: list[dict[str, Any]] = []
    for k, layer in enumerate(definition["layers"]):
        definition_path: Path = ("blocks", block, "layers", k)
        j = start + k
        filled: dict[Path, Path] = {}
        copy = _substitute(layer, ("layers", j), given, where, filled)
        copy["name"] = f"{name}_{layer['name']}"
        refs = layer.get("inputs")
        local = {str(n["name"]) for n in definition["layers"][:k]}

        def rename(ref: str, local: set[str] = local) -> str:
            if ref == "input":
                return str(block_input)
            return f"{name}_{ref}" if ref in local else ref

        if isinstance(refs, str):
            copy["inputs"] = rename(refs)
        elif isinstance(refs, list):
            copy["inputs"] = [rename(r) if isinstance(r, str) else r for r in refs]
        elif k == 0 and "inputs" in entry:
            copy["inputs"] = [block_input]  # (else it reads the layer above, as the use would)
        made.append(copy)
        _move(source, out, definition_path, ("layers", j), filled)
        out.origins[j] = Origin(
            block,
            copy["name"],
            where,
            source.where(where),
            definition_path,
            source.where(definition_path),
            tuple(uses[block]),
            filled,
        )
    return made
