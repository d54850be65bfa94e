"""ResNet50 and MobileNetV2 as specnet builds them, next to keras.applications and hand-written
PyTorch: a training step at batch 32, inference at batch 32 and at batch 1, peak memory.

    python benchmarks/bench_applications.py [--size 64|224] [--rounds 3] [--steps 8]
                                            [--models resnet50 mobilenet_v2]

Each measurement runs in a fresh worker process (its peak RSS is its own); the workers of one
round run in rotated order (interleaved) and every figure is a median over rounds. Per model:

* keras specnet      specnet's Keras trainer on specs/applications/<model>.yaml
* keras applications ``keras.applications.ResNet50`` / ``MobileNetV2`` (``weights=None``,
  logits), compiled with the spec's optimizer, ``train_on_batch``
* torch specnet      specnet's PyTorch trainer on the same spec
* torch hand         the same network written by hand as an ``nn.Module`` (torchvision does not
  load with the CPU torch here), NCHW, the usual loop
* torch hand cl      that loop in channels-last memory format

The networks are Keras's: ResNet50 v1 (the stride in the first 1×1 convolution, convolutions
with biases) and MobileNetV2 at alpha 1; the hand-written PyTorch ones follow them layer for
layer. ``--size 64`` is the quick mode (the spec's input_shape replaced; 1000 classes kept).
The floor: training FLOPs per image (3 × the Plan's forward FLOPs) divided into the faster of
PyTorch's and TensorFlow's float32 2048² matrix product, each measured in this run.
Writes benchmarks/results/applications-<size>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _common import stats, write

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SPECS = {
    "resnet50": "specs/applications/resnet50.yaml",
    "mobilenet_v2": "specs/applications/mobilenet_v2.yaml",
}
VARIANTS = ("keras specnet", "keras applications", "torch specnet", "torch hand", "torch hand cl")
BATCH = 32


def _plan(model: str, size: int) -> Any:
    from specnet import infer, load_spec

    spec = load_spec(ROOT / SPECS[model])
    return infer(
        spec.model_copy(
            update={
                "input_shape": (size, size, 3),
                "train": spec.train.model_copy(update={"batch_size": BATCH}),
            }
        )
    )


def _keras_application(model: str, size: int, classes: int) -> Any:
    import keras

    build = keras.applications.ResNet50 if model == "resnet50" else keras.applications.MobileNetV2
    return build(
        weights=None, input_shape=(size, size, 3), classes=classes, classifier_activation=None
    )


def _torch_resnet50(classes: int) -> Any:
    """keras.applications.ResNet50 (v1) in PyTorch: stride in the first 1×1 convolution of a
    projecting block, convolutions with biases, BatchNorm epsilon 1.001e-5."""
    from torch import nn

    def bn(n: int) -> nn.Module:
        return nn.BatchNorm2d(n, eps=1.001e-5, momentum=0.01)

    class Block(nn.Module):
        def __init__(self, cin: int, filters: int, out: int, stride: int) -> None:
            super().__init__()
            self.body = nn.Sequential(
                nn.Conv2d(cin, filters, 1, stride), bn(filters), nn.ReLU(inplace=True),
                nn.Conv2d(filters, filters, 3, padding=1), bn(filters), nn.ReLU(inplace=True),
                nn.Conv2d(filters, out, 1), bn(out),
            )  # fmt: skip
            self.shortcut = (
                nn.Sequential(nn.Conv2d(cin, out, 1, stride), bn(out))
                if stride != 1 or cin != out
                else nn.Identity()
            )
            self.relu = nn.ReLU(inplace=True)

        def forward(self, x: Any) -> Any:
            return self.relu(self.body(x) + self.shortcut(x))

    layers: list[nn.Module] = [
        nn.Conv2d(3, 64, 7, 2, padding=3), bn(64), nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2, padding=1),
    ]  # fmt: skip
    cin = 64
    for filters, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
        for i in range(blocks):
            layers.append(Block(cin, filters, 4 * filters, stride if i == 0 else 1))
            cin = 4 * filters
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, classes)]
    return nn.Sequential(*layers)


def _torch_mobilenet_v2(classes: int) -> Any:
    """keras.applications.MobileNetV2 (alpha 1) in PyTorch: convolutions without biases,
    BatchNorm epsilon 1e-3, ReLU6, a residual add where a block keeps its stride and width."""
    from torch import nn

    def bn(n: int) -> nn.Module:
        return nn.BatchNorm2d(n, eps=1e-3, momentum=0.001)

    class Inverted(nn.Module):
        def __init__(self, cin: int, out: int, stride: int, expansion: int) -> None:
            super().__init__()
            wide = cin * expansion
            expand: list[nn.Module] = (
                [nn.Conv2d(cin, wide, 1, bias=False), bn(wide), nn.ReLU6(inplace=True)]
                if expansion != 1
                else []
            )
            self.body = nn.Sequential(
                *expand,
                nn.Conv2d(wide, wide, 3, stride, padding=1, groups=wide, bias=False),
                bn(wide), nn.ReLU6(inplace=True),
                nn.Conv2d(wide, out, 1, bias=False), bn(out),
            )  # fmt: skip
            self.residual = stride == 1 and cin == out

        def forward(self, x: Any) -> Any:
            y = self.body(x)
            return x + y if self.residual else y

    layers: list[nn.Module] = [
        nn.Conv2d(3, 32, 3, 2, padding=1, bias=False), bn(32), nn.ReLU6(inplace=True),
        Inverted(32, 16, 1, 1),
    ]  # fmt: skip
    cin = 16
    for expansion, out, blocks, stride in (
        (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1),
    ):  # fmt: skip
        for i in range(blocks):
            layers.append(Inverted(cin, out, stride if i == 0 else 1, expansion))
            cin = out
    layers += [
        nn.Conv2d(cin, 1280, 1, bias=False), bn(1280), nn.ReLU6(inplace=True),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(1280, classes),
    ]  # fmt: skip
    return nn.Sequential(*layers)


def _median(call: Any, times: int, skip: int) -> float:
    samples = []
    for i in range(times):
        began = time.perf_counter()
        call(i)
        samples.append(time.perf_counter() - began)
    return statistics.median(samples[skip:])  # the first calls trace, tune and warm caches


def worker(model: str, variant: str, size: int, steps: int) -> dict[str, float]:
    """One variant in this process: images/s training and at batch 32, batch-1 latency, RSS."""
    import numpy as np

    plan = _plan(model, size)
    classes = plan.output_shape[0]
    rng = np.random.default_rng(0)
    x = rng.random((BATCH, size, size, 3), dtype=np.float32)
    y = rng.integers(0, classes, BATCH)
    optimizer = plan.spec.train.optimizer.type
    framework = variant.split()[0]
    if "specnet" in variant:
        from specnet.backends import get_backend
        from specnet.train import training_plan
        from specnet.weights import init_weights

        backend = get_backend(framework)
        trainer = backend.trainer(training_plan(plan), plan.spec.train, init_weights(plan))
        step = _median(lambda i: trainer.step(x, y), steps, 3)
        net = backend.build(plan)
        backend.set_weights(net, plan, trainer.weights())

        def predict(batch: Any) -> Any:
            return backend.predict(net, batch)

    elif framework == "keras":
        import keras

        net = _keras_application(model, size, classes)
        net.compile(
            optimizer=keras.optimizers.get(optimizer),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
        step = _median(lambda i: net.train_on_batch(x, y), steps, 3)

        def predict(batch: Any) -> Any:
            return net.predict_on_batch(batch)

    else:
        import torch

        net = (_torch_resnet50 if model == "resnet50" else _torch_mobilenet_v2)(classes)
        fmt = torch.channels_last if variant.endswith("cl") else torch.contiguous_format
        net = net.to(memory_format=fmt)
        inputs = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(memory_format=fmt)
        labels = torch.from_numpy(y)
        opt = (
            torch.optim.SGD(net.parameters(), lr=0.01)
            if optimizer == "sgd"
            else torch.optim.Adam(net.parameters(), lr=1e-3, eps=1e-7)
        )
        loss_fn = torch.nn.CrossEntropyLoss()

        def train(i: int) -> None:
            net.train()
            opt.zero_grad()
            loss_fn(net(inputs), labels).backward()
            opt.step()

        step = _median(train, steps, 3)
        net.eval()

        def predict(batch: Any) -> Any:
            with torch.inference_mode():
                t = torch.from_numpy(batch).permute(0, 3, 1, 2).contiguous(memory_format=fmt)
                return net(t).numpy()

    many = _median(lambda i: predict(x), 8, 2)
    one = _median(lambda i: predict(x[:1]), 20, 5)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB → MiB on Linux
    return {
        "train": BATCH / step,
        "infer32": BATCH / many,
        "latency1_ms": one * 1e3,
        "peak_mb": peak,
    }


def gemm(framework: str) -> float:
    """float32 GFLOP/s of a 2048² matrix product in ``framework`` (its own BLAS)."""
    n = 2048
    if framework == "torch":
        import torch

        a, b = torch.randn(n, n), torch.randn(n, n)

        def product(i: int) -> Any:
            return a @ b

    else:
        import tensorflow as tf

        a, b = tf.random.normal((n, n)), tf.random.normal((n, n))

        def product(i: int) -> Any:
            return tf.matmul(a, b).numpy()

    return 2 * n**3 / _median(product, 12, 2) / 1e9


def _run(*args: str) -> Any:
    proc = subprocess.run(
        [sys.executable, __file__, *args], capture_output=True, text=True, check=True, cwd=ROOT
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--models", nargs="+", default=list(SPECS))
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS))
    parser.add_argument("--worker", nargs=2, metavar=("MODEL", "VARIANT"), help=argparse.SUPPRESS)
    parser.add_argument("--gemm", choices=("torch", "tensorflow"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.gemm:
        print(json.dumps(gemm(args.gemm)))
        return
    if args.worker:
        model, variant = args.worker
        print(json.dumps(worker(model, variant, args.size, args.steps)))
        return
    rates = {name: _run("--gemm", name) for name in ("torch", "tensorflow")}
    fastest = max(rates, key=lambda k: rates[k])
    print(
        "float32 matmul, 2048²: "
        + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in rates.items())
        + f" — the floor is {fastest}'s"
    )
    results: dict[str, Any] = {"size": args.size, "batch": BATCH, "gemm_gflops": rates}
    results["models"] = {}
    for model in args.models:
        flops = 3 * _plan(model, args.size).flops
        floor = rates[fastest] * 1e9 / flops
        samples: dict[str, list[dict[str, float]]] = {v: [] for v in args.variants}
        for round_ in range(args.rounds):
            shift = round_ % len(args.variants)
            for variant in args.variants[shift:] + args.variants[:shift]:
                samples[variant].append(
                    _run("--worker", model, variant, "--size", str(args.size),
                         "--steps", str(args.steps))
                )  # fmt: skip
        keys = ("train", "infer32", "latency1_ms", "peak_mb")
        table = {v: {k: stats([s[k] for s in rows]) for k in keys} for v, rows in samples.items()}
        entry: dict[str, Any] = {
            "train_flops_per_image": flops,
            "floor_images_per_s": floor,
            "variants": table,
        }
        print(
            f"\n{model} at {args.size}×{args.size}, batch {BATCH}: {flops / 1e9:.2f} GFLOP per "
            f"training image; floor {floor:,.1f} images/s"
        )
        print(
            f"{'variant':<20} {'train img/s':>11} {'of floor':>8} {'infer img/s':>11} "
            f"{'batch-1 ms':>10} {'peak MB':>8}"
        )
        for variant, row in table.items():
            rate = row["train"]["median"]
            print(
                f"{variant:<20} {rate:>11,.2f} {rate / floor:>8.3f} "
                f"{row['infer32']['median']:>11,.1f} {row['latency1_ms']['median']:>10,.1f} "
                f"{row['peak_mb']['median']:>8,.0f}"
            )
        for framework, references in (
            ("keras", ["keras applications"]),
            ("torch", ["torch hand", "torch hand cl"]),
        ):
            mine = table.get(f"{framework} specnet")
            present = [r for r in references if r in table]
            if not mine or not present:
                continue
            best = max(present, key=lambda r: table[r]["train"]["median"])
            ratios = {k: mine[k]["median"] / table[best][k]["median"] for k in keys}
            per_round = [
                samples[f"{framework} specnet"][r]["train"] / samples[best][r]["train"]
                for r in range(args.rounds)
            ]
            entry[f"{framework}_ratios"] = {**ratios, "against": best, "per_round": per_round}
            print(
                f"{framework} specnet / {best}: train {ratios['train']:.2f} (rounds "
                f"{min(per_round):.2f}–{max(per_round):.2f}), inference {ratios['infer32']:.2f}, "
                f"batch-1 latency {ratios['latency1_ms']:.2f}, peak memory {ratios['peak_mb']:.2f}"
            )
        results["models"][model] = entry
    path = write(f"applications-{args.size}", results)
    print(f"\nwrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
