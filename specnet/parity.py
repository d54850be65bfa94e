"""``specnet parity``: prove that every runtime computes the same function.

The same canonical weights (seeded from the spec's initializers for a SPEC, the trained ones for
a RUN) go into every available runtime; one batch goes through all of them; every pair is
compared on the outputs before the final softmax (the logits plan), within float32 tolerance
(atol 1e-5, rtol 1e-4) and with identical argmax (for a single sigmoid unit, the same decision
logit > 0, i.e. p > 0.5). Runtimes:

* ``keras``, ``torch`` — the native models;
* ``onnx`` — the direct graph in ONNX Runtime; ``onnx-reference`` — the same graph in ONNX's
  pure-Python reference evaluator, an oracle independent of every framework;
* ``ort:<via>/<layout>`` — ONNX Runtime on each exported file (keras, torch and direct paths;
  NHWC and NCHW), made exactly as ``specnet export`` makes them.

A runtime whose framework is missing, or an export path that cannot convert the network, is
skipped with a note; any pair over tolerance makes the verdict fail (exit 1).
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

__all__ = ["ATOL", "RTOL", "RUNTIMES", "ParityReport", "parity"]

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


@dataclass
class ParityReport:
    target: str
    source: str  # "seeded initializers" or "trained weights"
    batch: int
    outputs: dict[str, Any] = field(default_factory=dict)
    pairs: list[Pair] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.pairs) and all(pair.ok for pair in self.pairs)

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "weights": self.source,
            "batch": self.batch,
            "runtimes": list(self.outputs),
            "tolerance": {"atol": ATOL, "rtol": RTOL},
            "pairs": [pair.__dict__ for pair in self.pairs],
            "notes": self.notes,
            "ok": self.ok,
        }

    def text(self) -> str:
        names = list(self.outputs)
        width = max(len(name) for name in names) if names else 8
        lines = [
            f"parity of {self.target} ({self.source}, batch {self.batch}): max |a - b| of the "
            f"outputs before softmax; ✓ within atol {ATOL:g} + rtol {RTOL:g} and same argmax",
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
        )
        return "\n".join(lines)


def _compare(a: str, b: str, x: Any, y: Any) -> Pair:
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
    ok = bool(np.allclose(x, y, atol=ATOL, rtol=RTOL)) and agree == 1.0
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


def parity(
    target: str | Path,
    runtimes: list[str] | None = None,
    batch: int = 8,
    seed: int | None = None,
    log: Callable[[str], None] | None = None,
) -> ParityReport:
    """Compare every runtime on one batch; see the module doc. ``log`` receives one line per
    runtime as it runs (the CLI prints them on stderr)."""
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
    for a, b in itertools.combinations(report.outputs, 2):
        report.pairs.append(_compare(a, b, report.outputs[a], report.outputs[b]))
    return report
