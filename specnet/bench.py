"""``specnet bench SPEC|BUILD``: how fast each runtime runs this network on this machine.

For every runtime — the Keras and PyTorch models, ONNX Runtime on specnet's direct graph and on
each framework's export — it measures batch-1 latency and batch-N throughput, and for each
backend the training speed (one optimizer step of the spec's optimizer on a batch of N, images
per second). Measurements are **interleaved**: each round times every runtime once, so a noisy
neighbour on a shared machine slows them all alike; the table gives the median of the rounds and
their spread (± half the interquartile range; half the range under four rounds). Before
timing, each runtime runs its warm-up calls (graph tracing, oneDNN's kernel choice, ONNX
Runtime's allocation). Memory is the resident memory (RSS) the process gained while setting the
runtime up and warming it: its model, its framework's first allocations (an import already made
by an earlier runtime is not counted again, so read it as an order of magnitude). An ONNX
file is converted before that window opens — tf2onnx's working memory is the converter's, not
ONNX Runtime's — and memory an earlier runtime handed back, which would make the difference
negative, counts as none added.

Weights are the build's, or seeded initializers for a SPEC; inputs are uniform [0, 1) images.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from specnet._frameworks import require
from specnet.errors import MissingFrameworkError, RuntimeFailure, UsageError
from specnet.shapes import Plan

__all__ = ["RUNTIMES", "BenchReport", "bench"]

RUNTIMES = ("keras", "torch", "ort:direct", "ort:keras", "ort:torch", "train:keras", "train:torch")


def _rss() -> int:
    """Resident bytes of this process now (Linux), else its peak (ru_maxrss)."""
    try:
        with open("/proc/self/statm") as handle:
            pages = int(handle.read().split()[1])
        import os

        return pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@dataclass
class Row:
    runtime: str
    latency_ms: list[float] = field(default_factory=list)  # batch 1, one per round
    throughput: list[float] = field(default_factory=list)  # images/s at batch N, one per round
    memory_mb: float = 0.0
    note: str = ""

    @staticmethod
    def spread(values: list[float]) -> tuple[float, float]:
        if not values:
            return float("nan"), float("nan")
        median = statistics.median(values)
        if len(values) < 4:
            return median, (max(values) - min(values)) / 2
        q = statistics.quantiles(values, n=4)
        return median, (q[2] - q[0]) / 2


@dataclass
class BenchReport:
    target: str
    batch: int
    rounds: int
    rows: list[Row]
    notes: list[str] = field(default_factory=list)

    def fastest(self, kind: str) -> tuple[Row | None, Row | None]:
        """(lowest batch-1 latency, highest batch-N throughput) among the ``kind`` rows
        (``infer`` or ``train``)."""
        rows = [r for r in self.rows if r.runtime.startswith("train:") == (kind == "train")]
        rows = [r for r in rows if r.throughput]
        latency = min(
            (r for r in rows if r.latency_ms),
            key=lambda r: Row.spread(r.latency_ms)[0],
            default=None,
        )
        throughput = max(rows, key=lambda r: Row.spread(r.throughput)[0], default=None)
        return latency, throughput

    def to_dict(self) -> dict[str, Any]:
        def figures(row: Row) -> dict[str, Any]:
            lat, lat_spread = Row.spread(row.latency_ms)
            thr, thr_spread = Row.spread(row.throughput)
            return {
                "runtime": row.runtime,
                "latency_ms": {"median": lat, "half_iqr": lat_spread, "rounds": row.latency_ms},
                "images_per_s": {"median": thr, "half_iqr": thr_spread, "rounds": row.throughput},
                "memory_mb": row.memory_mb,
            }

        infer_lat, infer_thr = self.fastest("infer")
        _, train_thr = self.fastest("train")
        return {
            "target": self.target,
            "batch": self.batch,
            "rounds": self.rounds,
            "rows": [figures(r) for r in self.rows],
            "fastest": {
                "latency": infer_lat.runtime if infer_lat else None,
                "throughput": infer_thr.runtime if infer_thr else None,
                "training": train_thr.runtime if train_thr else None,
            },
            "notes": self.notes,
        }

    def text(self) -> str:
        lines = [
            f"bench of {self.target}: median of {self.rounds} interleaved rounds ± half the "
            + ("interquartile range" if self.rounds >= 4 else "range"),
            "",
            f"{'runtime':<13} {'batch-1 latency':>18} {f'batch-{self.batch} images/s':>22} "
            f"{'vs slowest':>10} {'RSS added':>10}",
        ]
        slowest = {
            kind: min(
                (
                    Row.spread(r.throughput)[0]
                    for r in self.rows
                    if r.throughput and r.runtime.startswith("train:") == (kind == "train")
                ),
                default=float("nan"),
            )
            for kind in ("infer", "train")
        }
        for row in self.rows:
            lat, lat_spread = Row.spread(row.latency_ms)
            thr, thr_spread = Row.spread(row.throughput)
            base = slowest["train" if row.runtime.startswith("train:") else "infer"]
            latency = f"{lat:,.2f} ± {lat_spread:,.2f} ms" if row.latency_ms else "—"
            lines.append(
                f"{row.runtime:<13} {latency:>18} {f'{thr:,.0f} ± {thr_spread:,.0f}':>22} "
                f"{f'{thr / base:.2f}×':>10} {f'{row.memory_mb:,.0f} MB':>10}"
            )
        lines.append("")
        quickest, busiest = self.fastest("infer")
        _, train = self.fastest("train")
        if quickest and busiest:
            lines.append(
                f"fastest at batch 1: {quickest.runtime}; "
                f"fastest at batch {self.batch}: {busiest.runtime}"
            )
        if train:
            lines.append(f"fastest to train: {train.runtime}")
        lines += [f"note: {note}" for note in self.notes]
        return "\n".join(lines)


def _convert(name: str, plan: Plan, weights: Any) -> Any:
    """The ONNX model of an ``ort:`` runtime (made before its memory is measured: a
    converter's working memory is not the runtime's), else None."""
    if not name.startswith("ort:"):
        return None
    from specnet.export import native_onnx

    return native_onnx(plan, weights, name[4:], "nhwc", 18)


def _setup(
    name: str, plan: Plan, weights: Any, batch: int, converted: Any = None
) -> tuple[Callable[[Any], Any], Callable[[Any], Any] | None]:
    """(a function of a batch-1 input, of a batch-N input) for ``name``; training runtimes
    have no batch-1 call."""
    from specnet.backends import get_backend

    if name in ("keras", "torch"):
        backend = get_backend(name)
        model = backend.build(plan)
        backend.set_weights(model, plan, weights)
        return (lambda x: backend.predict(model, x)), (lambda x: backend.predict(model, x))
    if name.startswith("ort:"):
        from specnet.backends.onnx import ort_session, run_session

        session = ort_session(converted)
        return (lambda x: run_session(session, x, "nhwc")), (
            lambda x: run_session(session, x, "nhwc")
        )
    if name.startswith("train:"):
        from specnet.train import training_plan

        backend = get_backend(name[6:])
        tplan = training_plan(plan)
        trainer = backend.trainer(tplan, plan.spec.train, weights)
        np = require("numpy")
        classes = plan.output_shape[0]
        binary = plan.spec.train.loss == "binary_crossentropy"
        y = np.random.default_rng(1).integers(0, 2 if binary else classes, batch).astype(np.int64)
        return (lambda x: trainer.step(x, y)), None
    raise UsageError(f"unknown runtime {name!r}; choose from {', '.join(RUNTIMES)}")


def bench(
    target: str | Path,
    runtimes: list[str] | None = None,
    batch: int = 32,
    rounds: int = 5,
    log: Callable[[str], None] | None = None,
) -> BenchReport:
    """Measure every runtime (see the module doc). A runtime whose framework is missing, or
    an export path that cannot convert the network, is left out with a note."""
    from specnet.evaluate import open_run
    from specnet.shapes import infer
    from specnet.spec import load_spec
    from specnet.weights import init_weights

    np = require("numpy")
    say = log or (lambda line: None)
    if batch < 1 or rounds < 1:
        raise UsageError("--batch and --rounds must be positive")
    chosen = list(dict.fromkeys(runtimes or RUNTIMES))
    unknown = [name for name in chosen if name not in RUNTIMES]
    if unknown:
        raise UsageError(
            f"unknown runtime(s) {', '.join(unknown)}; choose from {', '.join(RUNTIMES)}"
        )
    path = Path(target)
    if path.is_dir():
        run = open_run(path)
        plan, weights = run.plan, run.weights
    else:
        plan = infer(load_spec(path))
        weights = init_weights(plan, plan.spec.train.seed)
    rng = np.random.default_rng(0)
    one = rng.random((1, *plan.input_shape), dtype=np.float32)
    many = rng.random((batch, *plan.input_shape), dtype=np.float32)
    report = BenchReport(str(target), batch, rounds, [])
    calls: dict[str, tuple[Callable[[Any], Any], Callable[[Any], Any] | None]] = {}
    for name in chosen:
        try:
            converted = _convert(name, plan, weights)
            gc.collect()
            before = _rss()
            first, second = _setup(name, plan, weights, batch, converted)
            if second is None:  # training: warm up on the batch
                first(many)
                first(many)
            else:
                first(one)
                second(many)
                second(many)
        except (MissingFrameworkError, RuntimeFailure) as exc:
            report.notes.append(f"{name} left out: {exc}")
            say(f"bench: {name} left out")
            continue
        except Exception as exc:  # the network a training loss cannot train (an image output)
            if name.startswith("train:"):
                report.notes.append(f"{name} left out: {str(exc).splitlines()[0]}")
                continue
            raise
        calls[name] = (first, second)
        # memory an earlier runtime let go of can make the difference negative: none added
        report.rows.append(Row(name, memory_mb=max(0.0, (_rss() - before) / 2**20)))
        say(f"bench: {name} ready")
    rows = {row.runtime: row for row in report.rows}
    for r in range(rounds):
        for name, (first, second) in calls.items():
            row = rows[name]
            if second is not None:
                began = time.perf_counter()
                reps = 0
                while reps < 3 or time.perf_counter() - began < 0.05:
                    first(one)
                    reps += 1
                row.latency_ms.append((time.perf_counter() - began) / reps * 1e3)
                began = time.perf_counter()
                second(many)
                row.throughput.append(batch / (time.perf_counter() - began))
            else:
                began = time.perf_counter()
                first(many)
                row.throughput.append(batch / (time.perf_counter() - began))
        say(f"bench: round {r + 1}/{rounds}")
    return report
