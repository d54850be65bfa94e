"""Inference of each ONNX export path next to Keras and PyTorch, same run, same weights.

    python benchmarks/bench_export.py [--spec specs/keras/cifar10_cnn.yaml] [--rounds 5]

For each export path (keras via tf2onnx, torch via torch.onnx, specnet's direct graph; NHWC) it
prints the node count and op types, then — interleaved with Keras (``predict_on_batch``) and
PyTorch eager (``inference_mode``) — the latency of one image (median over 200 calls) and the
throughput at batch 64 (images/s, median over 20 calls), rounds rotated. Writes
benchmarks/results/export.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from _common import stats, write

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from specnet import infer, load_spec  # noqa: E402
from specnet.backends import get_backend  # noqa: E402
from specnet.export import native_onnx  # noqa: E402
from specnet.weights import init_weights  # noqa: E402


def _median_seconds(run: Callable[[], Any], calls: int) -> float:
    times = []
    for _ in range(calls):
        began = time.perf_counter()
        run()
        times.append(time.perf_counter() - began)
    return sorted(times)[len(times) // 2]


def _ort_run(session: Any, x: Any) -> Any:
    return session.run(None, {"input": x})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default="specs/keras/cifar10_cnn.yaml")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    import numpy as np
    import onnxruntime as ort
    import torch

    plan = infer(load_spec(ROOT / args.spec))
    weights = init_weights(plan, seed=0)
    rng = np.random.default_rng(0)
    one = rng.random((1, *plan.input_shape), dtype=np.float32)
    many = rng.random((64, *plan.input_shape), dtype=np.float32)

    runners: dict[str, tuple[Callable[[Any], Any], str]] = {}
    structure: dict[str, Any] = {}
    for via in ("keras", "torch", "direct"):
        model = native_onnx(plan, weights, via, "nhwc", 18)
        ops = Counter(node.op_type for node in model.graph.node)
        structure[via] = {"nodes": sum(ops.values()), "ops": dict(sorted(ops.items()))}
        session = ort.InferenceSession(
            model.SerializeToString(), providers=["CPUExecutionProvider"]
        )
        runners[f"ort {via}"] = (partial(_ort_run, session), via)
        if via == "direct":  # ONNX Runtime's own options, measured on the direct graph
            for label, level, threads in (
                ("no graph optimisation", ort.GraphOptimizationLevel.ORT_DISABLE_ALL, 0),
                ("1 thread", ort.GraphOptimizationLevel.ORT_ENABLE_ALL, 1),
            ):
                options = ort.SessionOptions()
                options.graph_optimization_level = level
                options.intra_op_num_threads = threads
                variant = ort.InferenceSession(
                    model.SerializeToString(), options, providers=["CPUExecutionProvider"]
                )
                runners[f"ort direct, {label}"] = (partial(_ort_run, variant), via)
    keras_backend, torch_backend = get_backend("keras"), get_backend("torch")
    keras_model = keras_backend.build(plan)
    keras_backend.set_weights(keras_model, plan, weights)
    torch_model = torch_backend.build(plan)
    torch_backend.set_weights(torch_model, plan, weights)

    def torch_eager(x: Any) -> Any:
        with torch.inference_mode():
            return torch_model(torch.from_numpy(x).permute(0, 3, 1, 2))

    runners["keras predict_on_batch"] = (keras_model.predict_on_batch, "keras")
    runners["torch eager"] = (torch_eager, "torch")

    print(
        f"{plan.name}: {plan.flops / 1e6:.1f} MFLOP per image forward; "
        f"torch threads {torch.get_num_threads()}"
    )
    print(f"{'export':<8} {'nodes':>5}  op types")
    for via, info in structure.items():
        print(
            f"{via:<8} {info['nodes']:>5}  {', '.join(f'{k}×{v}' for k, v in info['ops'].items())}"
        )

    latency: dict[str, list[float]] = {name: [] for name in runners}
    throughput: dict[str, list[float]] = {name: [] for name in runners}
    names = list(runners)
    for name in names:  # warm-up
        runners[name][0](one)
        runners[name][0](many)
    for round_ in range(args.rounds):
        for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
            run = runners[name][0]
            latency[name].append(_median_seconds(partial(run, one), 200) * 1e3)
            throughput[name].append(64 / _median_seconds(partial(run, many), 20))
    results = {
        name: {"latency_ms": stats(latency[name]), "images_per_s": stats(throughput[name])}
        for name in names
    }
    print(f"\n{'runtime':<34} {'batch 1 ms':>11} {'batch 64 img/s':>15}")
    for name, row in results.items():
        ms, rate = row["latency_ms"]["median"], row["images_per_s"]["median"]
        print(f"{name:<34} {ms:>11.3f} {rate:>15.0f}")
    fastest_export = min(
        (results[f"ort {via}"]["latency_ms"]["median"], via) for via in ("keras", "torch")
    )
    direct = results["ort direct"]["latency_ms"]["median"]
    print(
        f"\ndirect graph: {structure['direct']['nodes']} nodes "
        f"(keras {structure['keras']['nodes']}, torch {structure['torch']['nodes']}); "
        f"batch-1 latency {direct:.3f} ms vs the faster framework export ({fastest_export[1]}) "
        f"{fastest_export[0]:.3f} ms: ratio {direct / fastest_export[0]:.2f}"
    )
    path = write("export", {"spec": plan.name, "structure": structure, "results": results})
    print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
