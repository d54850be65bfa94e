"""``specnet diff A B``: what changed between two specs or builds.

Each side is a spec file or a build/run folder. Layers are matched by name (a renamed layer is
one removed and one added, as in a text diff); for each layer in both, every field that differs
(the resolved fields, defaults filled in, so ``padding: valid`` written or not is no change),
its output shape and its parameter count. The spec's other fields (input shape, classes,
training) are compared the same way. When both sides have weights (folders), every tensor of the
same name and shape gets its max absolute difference.

Like ``diff``, the exit code is 0 when the two are the same network with the same weights, 1
when they differ, 2 for bad input.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from specnet.errors import UsageError
from specnet.shapes import Plan, infer

__all__ = ["Diff", "diff"]


@dataclass
class Diff:
    a: str
    b: str
    added: list[dict[str, Any]] = field(default_factory=list)
    removed: list[dict[str, Any]] = field(default_factory=list)
    changed: list[dict[str, Any]] = field(default_factory=list)
    spec: list[dict[str, Any]] = field(default_factory=list)  # fields outside the layers
    params: tuple[int, int] = (0, 0)
    weights: list[dict[str, Any]] | None = None  # None: not both sides have weights

    @property
    def same(self) -> bool:
        tensors_same = self.weights is None or all(w.get("max_abs") == 0.0 for w in self.weights)
        return not (self.added or self.removed or self.changed or self.spec) and tensors_same

    def to_dict(self) -> dict[str, Any]:
        return {
            "a": self.a,
            "b": self.b,
            "same": self.same,
            "params": {"a": self.params[0], "b": self.params[1]},
            "spec": self.spec,
            "added": self.added,
            "removed": self.removed,
            "changed": self.changed,
            "weights": self.weights,
        }

    def text(self) -> str:
        lines = [f"--- {self.a}", f"+++ {self.b}"]
        pa, pb = self.params
        lines.append(f"params: {pa:,} → {pb:,} ({pb - pa:+,})" if pa != pb else f"params: {pa:,}")
        for item in self.spec:
            lines.append(f"~ {item['field']}: {_show(item['a'])} → {_show(item['b'])}")
        for sign, layers in (("-", self.removed), ("+", self.added)):
            lines += [f"{sign} {_layer(layer)}" for layer in layers]
        for layer in self.changed:
            lines.append(f"~ {layer['name']} ({layer['kind']})")
            for change in layer["fields"]:
                lines.append(f"    {change['field']}: {_show(change['a'])} → {_show(change['b'])}")
        if self.weights is not None:
            moved = [w for w in self.weights if w.get("max_abs") != 0.0]
            lines.append(
                f"weights: {len(self.weights)} tensors, "
                + (f"{len(moved)} differ:" if moved else "all identical")
            )
            for w in moved:
                detail = (
                    f"max |Δ| {w['max_abs']:.3g} ({w['differing']:,} of {w['size']:,} values)"
                    if "max_abs" in w
                    else w["note"]
                )
                lines.append(f"    {w['tensor']}: {detail}")
        lines.append(
            "same network" + (" and weights" if self.weights is not None else "")
            if self.same
            else "they differ"
        )
        return "\n".join(lines)


def _show(value: Any) -> str:
    if isinstance(value, str) and len(value) > 60:
        return repr(value[:57] + "…")
    if isinstance(value, list | tuple) and len(value) > 8:
        return f"[{', '.join(map(str, value[:8]))}, … {len(value)} items]"
    return "(absent)" if value is None else str(value)


def _layer(row: dict[str, Any]) -> str:
    return f"{row['name']} ({row['kind']}) {_shape(row['shape'])}, {row['params']:,} params"


def _shape(shape: list[int]) -> str:
    return "(" + ", ".join(map(str, shape)) + ")"


def _side(target: str | Path) -> tuple[Plan, Any | None]:
    """A spec file or a folder → its plan, and its weights when it has them."""
    from specnet.rundir import SPEC_FILE, WEIGHTS_FILE, read_marker
    from specnet.spec import load_spec
    from specnet.weights import load_weights

    path = Path(target)
    if path.is_dir():
        if read_marker(path) is None or not (path / SPEC_FILE).is_file():
            raise UsageError(f"{path}: not a specnet build or run (no specnet.json or {SPEC_FILE})")
        plan = infer(load_spec(path / SPEC_FILE))
        weights = load_weights(path / WEIGHTS_FILE) if (path / WEIGHTS_FILE).is_file() else None
        return plan, weights
    return infer(load_spec(path)), None


def _fields(step: Any) -> dict[str, Any]:
    document: dict[str, Any] = step.layer.model_dump(mode="json", exclude={"name"})
    document["inputs"] = list(step.inputs)
    return document


def _row(step: Any) -> dict[str, Any]:
    return {
        "name": step.name,
        "kind": step.kind,
        "shape": list(step.output_shape),
        "params": step.params,
    }


def diff(a: str | Path, b: str | Path) -> Diff:
    np = __import__("numpy")
    plan_a, weights_a = _side(a)
    plan_b, weights_b = _side(b)
    out = Diff(str(a), str(b), params=(plan_a.total_params, plan_b.total_params))
    doc_a = plan_a.spec.model_dump(mode="json", exclude={"layers", "schema_"})
    doc_b = plan_b.spec.model_dump(mode="json", exclude={"layers", "schema_"})
    for key, (va, vb) in _flat_pairs(doc_a, doc_b).items():
        if va != vb:
            out.spec.append({"field": key, "a": va, "b": vb})
    steps_a, steps_b = plan_a.by_name(), plan_b.by_name()
    out.removed = [_row(s) for name, s in steps_a.items() if name not in steps_b]
    out.added = [_row(s) for name, s in steps_b.items() if name not in steps_a]
    for name, sa in steps_a.items():
        sb = steps_b.get(name)
        if sb is None:
            continue
        changes: list[dict[str, Any]] = []
        if sa.kind != sb.kind:
            changes.append({"field": "type", "a": sa.kind, "b": sb.kind})
        fa, fb = _fields(sa), _fields(sb)
        for key in dict.fromkeys([*fa, *fb]):
            if fa.get(key) != fb.get(key):
                changes.append({"field": key, "a": fa.get(key), "b": fb.get(key)})
        if sa.output_shape != sb.output_shape:
            changes.append(
                {"field": "output shape", "a": list(sa.output_shape), "b": list(sb.output_shape)}
            )
        if sa.params != sb.params:
            changes.append({"field": "params", "a": sa.params, "b": sb.params})
        if changes:
            out.changed.append({"name": name, "kind": sb.kind, "fields": changes})
    if weights_a is not None and weights_b is not None:
        rows = []
        for key in sorted(weights_a.keys() | weights_b.keys()):
            u, v = weights_a.get(key), weights_b.get(key)
            if u is None or v is None:
                rows.append({"tensor": key, "note": f"only in {'B' if u is None else 'A'}"})
            elif u.shape != v.shape:
                rows.append({"tensor": key, "note": f"shape {list(u.shape)} → {list(v.shape)}"})
            else:
                delta = np.abs(u.astype(np.float64) - v.astype(np.float64))
                rows.append(
                    {
                        "tensor": key,
                        "max_abs": float(delta.max()) if delta.size else 0.0,
                        "differing": int((u != v).sum()),
                        "size": int(u.size),
                    }
                )
        out.weights = rows
    return out


def _flat_pairs(
    a: dict[str, Any], b: dict[str, Any], prefix: str = ""
) -> dict[str, tuple[Any, Any]]:
    """Dotted field → (a's value, b's value), through nested mappings."""
    out: dict[str, tuple[Any, Any]] = {}
    for key in dict.fromkeys([*a, *b]):
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            out |= _flat_pairs(va, vb, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = (va, vb)
    return out
