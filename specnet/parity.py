"""``specnet parity``: prove that every runtime computes the same function.

The same canonical weights (seeded from the spec's initializers for a SPEC, the trained ones for
a RUN) go into every available runtime; one batch goes through all of them; every pair is
compared on the outputs before the final softmax (the logits plan), within float32 tolerance
(atol 1e-5, rtol 1e-4; the atol widened by the network's own float32 rounding as
:mod:`specnet.rounding` measures it, where PyTorch is there to measure it) and with identical
argmax (for a single sigmoid unit, the same decision logit > 0, i.e. p > 0.5). Runtimes:

* ``keras``, ``torch`` — the native models;
* ``onnx`` — the direct graph in ONNX Runtime; ``onnx-reference`` — the same graph in ONNX's
  pure-Python reference evaluator, an oracle independent of every framework;
* ``ort:<via>/<layout>`` — ONNX Runtime on each exported file (keras, torch and direct paths;
  NHWC and NCHW), made exactly as ``specnet export`` makes them.

A runtime whose framework is missing, or an export path that cannot convert the network, is
skipped with a note; any pair over tolerance makes the verdict fail (exit 1).

``layers=True`` (``--layers``, and by itself when the verdict fails) also compares every
layer's output between the runtimes that expose them — Keras (a sub-model of every layer's
output), PyTorch (the Graph's trace) and the direct ONNX graph (every layer's value marked as a
graph output, Polygraphy's "mark all") — and names the first layer beyond tolerance: where the
runtimes part. Values come back in Keras's layout (NHWC images; a vector that PyTorch and ONNX
keep in (c, h, w) order because the Dense after it reads it so is put back in (h, w, c) order).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from specnet._frameworks import require
from specnet.agree import ATOL, RTOL
from specnet.backends import get_backend
from specnet.backends.onnx import (
    DEFAULT_OPSET,
    build_graph,
    ort_session,
    reference_predict,
    run_session,
)
from specnet.errors import MissingFrameworkError, RuntimeFailure, UsageError
from specnet.export import native_onnx
from specnet.shapes import Plan, infer, logits_plan
from specnet.spec import load_spec
from specnet.weights import Weights, init_weights

__all__ = [
    "ATOL",
    "LAYERED",
    "RTOL",
    "RUNTIMES",
    "LayerRow",
    "ParityReport",
    "layer_values",
    "parity",
]

RUNTIMES = (
    "keras",
    "torch",
    "onnx",
    "onnx-reference",
    "ort:keras/nhwc",
    "ort:keras/nchw",
    "ort:torch/nhwc",
    "ort:torch/nchw",
    "ort:direct/nhwc",
    "ort:direct/nchw",
)


@dataclass
class Pair:
    a: str
    b: str
    max_abs: float
    max_rel: float
    argmax_agree: float
    ok: bool


#: the runtimes that expose every layer's output
LAYERED = ("keras", "torch", "onnx")


@dataclass
class LayerRow:
    """One layer's outputs compared across runtimes: (a, b) → (max |a − b|, max rel, ok)."""

    name: str
    kind: str
    shape: tuple[int, ...]
    pairs: dict[tuple[str, str], tuple[float, float, bool]]

    @property
    def ok(self) -> bool:
        return all(ok for _, _, ok in self.pairs.values())


@dataclass
class ParityReport:
    target: str
    source: str  # "seeded initializers" or "trained weights"
    batch: int
    outputs: dict[str, Any] = field(default_factory=dict)
    pairs: list[Pair] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    layers: list[LayerRow] = field(default_factory=list)
    #: layer name → the room float32 rounding needs there, added to the atol (specnet.rounding)
    rounding: dict[str, float] = field(default_factory=dict)
    #: what it adds to the outputs' atol (None: not measured)
    output_rounding: float | None = None

    @property
    def first_divergence(self) -> LayerRow | None:
        """The first layer (in the spec's order) where two runtimes are beyond tolerance."""
        return next((row for row in self.layers if not row.ok), None)

    @property
    def ok(self) -> bool:
        """Every pair of outputs within tolerance, and every layer too where they were compared
        (a converter bug can hide in the outputs: GELU's tanh approximation for the exact one
        moves a layer by 1e-4 and the logits after a tanh and a pooling by less than 1e-5)."""
        outputs = bool(self.pairs) and all(pair.ok for pair in self.pairs)
        return outputs and all(row.ok for row in self.layers)

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "weights": self.source,
            "batch": self.batch,
            "runtimes": list(self.outputs),
            "tolerance": {
                "atol": ATOL,
                "rtol": RTOL,
                "rounding": self.output_rounding,
            },
            "pairs": [pair.__dict__ for pair in self.pairs],
            "notes": self.notes,
            "ok": self.ok,
            **(
                {
                    "layers": [
                        {
                            "name": row.name,
                            "kind": row.kind,
                            "shape": list(row.shape),
                            "pairs": [
                                {"a": a, "b": b, "max_abs": d, "max_rel": r, "ok": ok}
                                for (a, b), (d, r, ok) in row.pairs.items()
                            ],
                            "ok": row.ok,
                        }
                        for row in self.layers
                    ],
                    "first_divergence": first.name if (first := self.first_divergence) else None,
                }
                if self.layers
                else {}
            ),
        }

    def layer_text(self) -> str:
        """The per-layer table: max |a − b| of each layer's output for each pair."""
        if not self.layers:
            return ""
        pairs = list(self.layers[0].pairs)
        heads = [f"{a}–{b}" for a, b in pairs]
        width = max(len(f"{row.name} ({row.kind})") for row in self.layers)
        shape_width = max(len(_shape(row.shape)) for row in self.layers)
        lines = [
            "every layer's output, max |a - b| (✓ within tolerance):",
            f"{'layer':<{width}}  {'shape':<{shape_width}}  "
            + "  ".join(f"{h:>14}" for h in heads),
        ]
        for row in self.layers:
            cells = [
                f"{d:>13.1e}{'✓' if ok else '✗'}" for d, _, ok in (row.pairs[p] for p in pairs)
            ]
            label = f"{row.name} ({row.kind})"
            lines.append(
                f"{label:<{width}}  {_shape(row.shape):<{shape_width}}  " + "  ".join(cells)
            )
        first = self.first_divergence
        if first is None:
            lines.append(f"every layer agrees in {', '.join(_runtimes(pairs))}")
        else:
            over = [f"{a} vs {b}" for (a, b), (_, _, ok) in first.pairs.items() if not ok]
            lines.append(
                f"the runtimes part at layer {first.name!r} ({first.kind}): {', '.join(over)} "
                "(every layer before it agrees)"
            )
        return "\n".join(lines)

    def text(self) -> str:
        names = list(self.outputs)
        width = max(len(name) for name in names) if names else 8
        lines = [
            f"parity of {self.target} ({self.source}, batch {self.batch}): max |a - b| of the "
            f"outputs before softmax; ✓ within atol {ATOL:g} + rtol {RTOL:g}"
            + (
                f" (atol + {extra:.1e}: this network's float32 rounding, measured)"
                if (extra := self.output_rounding)
                else ""
            )
            + " and same argmax",
            "",
            " " * (width + 2) + " ".join(f"{i:>10}" for i in range(len(names))),
        ]
        table = {(p.a, p.b): p for p in self.pairs} | {(p.b, p.a): p for p in self.pairs}
        for i, a in enumerate(names):
            cells = []
            for b in names:
                pair = table.get((a, b))
                cells.append(
                    f"{'—':>10}"
                    if pair is None
                    else f"{pair.max_abs:>9.1e}{'✓' if pair.ok else '✗'}"
                )
            lines.append(f"{a:<{width}} {i:>1} " + " ".join(cells))
        failing = [p for p in self.pairs if not p.ok]
        lines.append("")
        for pair in failing:
            lines.append(
                f"OVER TOLERANCE: {pair.a} vs {pair.b}: max abs {pair.max_abs:.2e}, "
                f"max rel {pair.max_rel:.2e}, argmax agree {pair.argmax_agree:.0%}"
            )
        lines += [f"note: {note}" for note in self.notes]
        if len(self.outputs) < 2:
            lines.append(
                f"PARITY NOT SHOWN: {len(self.outputs)} runtime ran; a comparison needs "
                "two (see the notes above)"
            )
            return "\n".join(lines)
        verdict = "all runtimes agree" if self.ok else "PARITY FAILED"
        lines.append(
            f"{verdict}: {len(self.outputs)} runtimes, {len(self.pairs)} pairs, "
            f"{len(failing)} over tolerance"
            + (
                f", layer {first.name!r} over tolerance"
                if (first := self.first_divergence) is not None and not failing
                else ""
            )
        )
        return "\n".join(lines)


def _shape(shape: tuple[int, ...]) -> str:
    return "×".join(str(n) for n in shape)


def _runtimes(pairs: list[tuple[str, str]]) -> list[str]:
    return list(dict.fromkeys(name for pair in pairs for name in pair))


def _chw_vectors(plan: Plan) -> dict[str, tuple[int, int, int]]:
    """The vectors PyTorch and ONNX hold in (c, h, w) order: a Flatten folded into the Dense
    after it, and the Dropout, Activation and Softmax layers between them → the image shape."""
    from specnet.shapes import _ORDER_BLIND, flatten_folds

    in_order = flatten_folds(plan)[1]
    readers = plan.consumers()
    out: dict[str, tuple[int, int, int]] = {}
    for step in plan.layers:
        if step.kind != "Flatten" or len(step.input_shape) != 3 or step.name in in_order:
            continue
        image = (step.input_shape[0], step.input_shape[1], step.input_shape[2])
        frontier = [step.name]
        while frontier:
            name = frontier.pop()
            out[name] = image
            frontier += [r.name for r in readers[name] if isinstance(r.layer, _ORDER_BLIND)]
    return out


def layer_values(name: str, plan: Plan, weights: Weights, x: Any) -> dict[str, Any]:
    """Every layer's output in runtime ``name`` (one of :data:`LAYERED`), in Keras's layout."""
    np = require("numpy")
    if name == "keras":
        keras = require("keras")
        backend = get_backend("keras")
        model = backend.build(plan)
        backend.set_weights(model, plan, weights)
        from specnet.backends.keras import output_names

        names = [step.name for step in plan.layers]
        last = output_names(plan)  # a spec layer may be several Keras layers
        probe = keras.Model(model.inputs, [model.get_layer(last[n]).output for n in names])
        outs = probe.predict_on_batch(x)
        outs = outs if isinstance(outs, list | tuple) else [outs]
        return {n: np.asarray(v) for n, v in zip(names, outs, strict=True)}
    if name == "torch":
        torch = require("torch")
        backend = get_backend("torch")
        model = backend.build(plan)
        backend.set_weights(model, plan, weights)
        with torch.inference_mode():
            traced = model.trace(torch.from_numpy(x).permute(0, 3, 1, 2))
        raw = {n: v.cpu().numpy() for n, v in traced.items() if n != "input"}
    elif name == "onnx":
        session = ort_session(build_graph(plan, weights, "nhwc", mark_layers=True))
        names = [step.name for step in plan.layers]
        outs = session.run([f"layer:{n}" for n in names], {"input": x})
        raw = dict(zip(names, outs, strict=True))
    else:
        raise UsageError(f"per-layer values come from {', '.join(LAYERED)}, not {name!r}")
    chw = _chw_vectors(plan)
    values = {}
    for step in plan.layers:
        value = np.asarray(raw[step.name])
        if value.ndim == 4:
            value = value.transpose(0, 2, 3, 1)
        elif step.name in chw:
            h, w, c = chw[step.name]
            value = value.reshape(len(value), c, h, w).transpose(0, 2, 3, 1).reshape(len(value), -1)
        values[step.name] = value
    return values


def compare_layers(
    plan: Plan,
    weights: Weights,
    x: Any,
    runtimes: list[str],
    rounding: dict[str, float] | None = None,
) -> list[LayerRow]:
    """Every layer's output in each of ``runtimes`` (those of :data:`LAYERED`), compared in
    pairs with the parity tolerance (its atol plus ``rounding[layer]``, :mod:`specnet.rounding`)."""
    np = require("numpy")
    values = {name: layer_values(name, plan, weights, x) for name in runtimes}
    rows = []
    for step in plan.layers:
        pairs = {}
        for a, b in itertools.combinations(runtimes, 2):
            u = np.asarray(values[a][step.name], np.float64)
            v = np.asarray(values[b][step.name], np.float64)
            if u.shape != v.shape:
                pairs[(a, b)] = (float("inf"), float("inf"), False)
                continue
            diff = np.abs(u - v)
            worst = float(diff.max()) if diff.size else 0.0
            rel = float((diff / np.maximum(np.abs(v), ATOL)).max()) if diff.size else 0.0
            atol = ATOL + (rounding or {}).get(step.name, 0.0)
            pairs[(a, b)] = (worst, rel, bool(np.allclose(u, v, atol=atol, rtol=RTOL)))
        rows.append(LayerRow(step.name, step.kind, step.output_shape, pairs))
    return rows


def _compare(a: str, b: str, x: Any, y: Any, rounding: float = 0.0) -> Pair:
    np = require("numpy")
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if x.shape != y.shape:
        return Pair(a, b, float("inf"), float("inf"), 0.0, False)
    diff = np.abs(x - y)
    rel = float((diff / np.maximum(np.abs(y), ATOL)).max())
    flat_x, flat_y = x.reshape(len(x), -1), y.reshape(len(y), -1)
    if flat_x.shape[1] == 1:  # one sigmoid unit: the decision is logit > 0 (p > 0.5)
        agree = float(((flat_x[:, 0] > 0) == (flat_y[:, 0] > 0)).mean())
    else:
        agree = float((flat_x.argmax(1) == flat_y.argmax(1)).mean())
    ok = bool(np.allclose(x, y, atol=ATOL + rounding, rtol=RTOL)) and agree == 1.0
    return Pair(a, b, float(diff.max()), rel, agree, ok)


def _run(name: str, plan: Plan, weights: Weights, x: Any) -> Any:
    if name in ("keras", "torch", "onnx"):
        backend = get_backend(name)
        model = backend.build(plan)
        backend.set_weights(model, plan, weights)
        return backend.predict(model, x)
    if name == "onnx-reference":
        return reference_predict(build_graph(plan, weights, "nhwc"), x)
    via, layout = name.removeprefix("ort:").split("/")
    model = native_onnx(plan, weights, via, layout, DEFAULT_OPSET)
    return run_session(ort_session(model), x, layout)


def _rounding(
    plan: Plan,
    weights: Weights,
    x: Any,
    every_layer: bool,
    report: ParityReport,
    say: Callable[[str], None],
) -> dict[str, float]:
    """:func:`specnet.rounding.rounding` of the logits plan, or {} with a note without PyTorch."""
    from specnet.rounding import rounding

    began = time.perf_counter()
    try:
        measured = rounding(plan, weights, x, every_layer)[1]
    except MissingFrameworkError:
        report.notes.append(
            "float32 rounding not measured (it needs PyTorch): the fixed tolerance applies"
        )
        return {}
    say(f"parity: float32 rounding measured in float64 in {time.perf_counter() - began:.1f} s")
    return measured


def parity(
    target: str | Path,
    runtimes: list[str] | None = None,
    batch: int = 8,
    seed: int | None = None,
    log: Callable[[str], None] | None = None,
    layers: bool = False,
) -> ParityReport:
    """Compare every runtime on one batch; see the module doc. ``log`` receives one line per
    runtime as it runs (the CLI prints them on stderr). ``layers`` compares every layer's output
    too; a failing verdict does that by itself, to say where the runtimes part."""
    from specnet.evaluate import open_run

    np = require("numpy")
    say = log or (lambda line: None)
    if batch < 1:
        raise UsageError(f"--batch {batch}: expected a positive number of examples")
    if runtimes is not None and len(set(runtimes)) < 2:
        raise UsageError(
            f"parity compares runtimes in pairs: give at least two (got {', '.join(runtimes)}); "
            f"choose from {', '.join(RUNTIMES)}"
        )
    path = Path(target)
    if path.is_dir():
        run = open_run(path)
        plan, weights, source = run.plan, run.weights, "trained weights"
    else:
        plan = infer(load_spec(path))
        weights = init_weights(plan, plan.spec.train.seed if seed is None else seed)
        source = "seeded initializers"
    unknown = [name for name in runtimes or [] if name not in RUNTIMES]
    if unknown:
        raise UsageError(f"unknown runtime(s) {unknown}; choose from {', '.join(RUNTIMES)}")
    logits = logits_plan(plan)
    x = np.random.default_rng(0 if seed is None else seed).random(
        (batch, *plan.input_shape), dtype=np.float32
    )
    report = ParityReport(str(target), source, batch)
    chosen = list(dict.fromkeys(runtimes or RUNTIMES))
    for i, name in enumerate(chosen, 1):
        began = time.perf_counter()
        try:
            report.outputs[name] = _run(name, logits, weights, x)
        except (MissingFrameworkError, RuntimeFailure) as exc:
            report.notes.append(f"{name} skipped: {exc}")
            say(f"parity [{i}/{len(chosen)}] {name}: skipped")
            continue
        say(f"parity [{i}/{len(chosen)}] {name}: ran in {time.perf_counter() - began:.1f} s")
    report.rounding = _rounding(logits, weights, x, layers, report, say)
    if report.rounding:
        report.output_rounding = report.rounding[logits.layers[-1].name]
    slack = report.output_rounding or 0.0
    for a, b in itertools.combinations(report.outputs, 2):
        report.pairs.append(_compare(a, b, report.outputs[a], report.outputs[b], slack))
    if layers or (report.pairs and not report.ok):
        layered = [name for name in LAYERED if name in report.outputs]
        if len(layered) >= 2:
            if not layers and report.rounding:  # measured for the outputs only so far
                report.rounding = _rounding(logits, weights, x, True, report, say)
            say(f"parity: comparing every layer in {', '.join(layered)}")
            report.layers = compare_layers(logits, weights, x, layered, report.rounding)
        else:
            report.notes.append(
                "per-layer comparison needs two of keras, torch and onnx among the runtimes"
            )
    return report
