"""Training and inference cost of specnet-built models next to hand-written ones, and the floor.

    python benchmarks/bench_train.py [--rounds 3] [--steps 30] [--specs seed_cnn cifar10_cnn]

Each measurement runs in a fresh worker process (so its peak RSS is its own), workers of one
round run in rotated order (interleaved), and every figure is a median over rounds. Per spec:

* keras specnet      specnet's Keras trainer (Keras's compiled train step, specnet's batches)
* keras hand         a hand-written ``keras.Sequential`` trained with ``model.fit``
* keras specnet xla  specnet's Keras trainer with ``--compile`` (XLA ``jit_compile``)
* torch specnet      specnet's PyTorch trainer (the default path)
* torch hand         a hand-written NCHW ``nn.Module`` and the usual loop
* torch hand cl      the same loop in channels-last memory format
* torch specnet compile   specnet's PyTorch trainer with ``--compile`` (``torch.compile``)

Training is timed per step (median step time after warm-up; for ``fit`` by a batch callback),
inference as images/s at batch 64 (``predict`` for specnet, ``predict_on_batch`` / eager
``inference_mode`` by hand). The floor: training FLOPs per image (3 × the Plan's forward FLOPs)
divided into the machine's float32 matrix-multiply rate, measured here with PyTorch.
Writes benchmarks/results/train.json.
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

SPECS = {"seed_cnn": "specs/seed_cnn.yaml", "cifar10_cnn": "specs/keras/cifar10_cnn.yaml"}
VARIANTS = (
    "keras specnet",
    "keras hand",
    "keras specnet xla",
    "torch specnet",
    "torch hand",
    "torch hand cl",
    "torch specnet compile",
)
BATCH = 64


def _keras_hand(name: str, shape: tuple[int, ...], classes: int) -> Any:
    import keras
    from keras import layers

    if name == "seed_cnn":
        body = [
            layers.Conv2D(32, 3, activation="relu"),
            layers.MaxPooling2D(),
            layers.Dropout(0.5),
            layers.Flatten(),
            layers.Dense(classes),
        ]
    else:
        body = [
            layers.Conv2D(32, 3, padding="same", activation="relu"),
            layers.Conv2D(32, 3, activation="relu"),
            layers.MaxPooling2D(),
            layers.Dropout(0.25),
            layers.Conv2D(64, 3, padding="same", activation="relu"),
            layers.Conv2D(64, 3, activation="relu"),
            layers.MaxPooling2D(),
            layers.Dropout(0.25),
            layers.Flatten(),
            layers.Dense(512, activation="relu"),
            layers.Dropout(0.5),
            layers.Dense(classes),
        ]
    return keras.Sequential([keras.Input(shape), *body])


def _torch_hand(name: str, shape: tuple[int, ...], classes: int) -> Any:
    from torch import nn

    h, w, c = shape
    if name == "seed_cnn":
        return nn.Sequential(
            nn.Conv2d(c, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Dropout(0.5), nn.Flatten(),
            nn.Linear(32 * ((h - 2) // 2) * ((w - 2) // 2), classes),
        )  # fmt: skip
    return nn.Sequential(
        nn.Conv2d(c, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3), nn.ReLU(),
        nn.MaxPool2d(2), nn.Dropout(0.25),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 3), nn.ReLU(),
        nn.MaxPool2d(2), nn.Dropout(0.25), nn.Flatten(),
        nn.Linear(64 * 6 * 6, 512), nn.ReLU(), nn.Dropout(0.5), nn.Linear(512, classes),
    )  # fmt: skip


def _median_step(step: Any, steps: int) -> float:
    times = []
    for i in range(steps):
        began = time.perf_counter()
        step(i)
        times.append(time.perf_counter() - began)
    return statistics.median(times[3:])  # the first steps warm caches and traces


def worker(spec_name: str, variant: str, steps: int) -> dict[str, float]:
    """One variant in this process: per-step training rate, inference rate, peak RSS."""
    from specnet import infer, load_spec
    from specnet.data import synthetic
    from specnet.train import training_plan
    from specnet.weights import init_weights

    plan = infer(load_spec(ROOT / SPECS[spec_name]))
    spec = plan.spec.model_copy(
        update={"train": plan.spec.train.model_copy(update={"batch_size": BATCH})}
    )
    plan = infer(spec)
    classes = plan.output_shape[0]
    x, y, _ = synthetic(BATCH * steps, plan.input_shape, classes, "shape", 0)
    batches = [
        (x[i * BATCH : (i + 1) * BATCH], y[i * BATCH : (i + 1) * BATCH]) for i in range(steps)
    ]
    framework = variant.split()[0]
    infer_x = x[:BATCH]
    if "specnet" in variant:
        from specnet.backends import TrainOptions, get_backend

        backend = get_backend(framework)
        trainer = backend.trainer(
            training_plan(plan),
            spec.train,
            init_weights(plan),
            TrainOptions(compile=variant.endswith(("xla", "compile"))),
        )
        step_time = _median_step(lambda i: trainer.step(*batches[i]), steps)
        model = backend.build(plan)
        backend.set_weights(model, plan, trainer.weights())

        def predict() -> Any:
            return backend.predict(model, infer_x)

    elif framework == "keras":
        import keras

        model = _keras_hand(spec_name, plan.input_shape, classes)
        model.compile(
            optimizer=keras.optimizers.Adam()
            if spec_name == "seed_cnn"
            else keras.optimizers.RMSprop(1e-4),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
        times: list[float] = []

        class Timer(keras.callbacks.Callback):  # type: ignore[misc]
            def on_train_batch_begin(self, batch: int, logs: Any = None) -> None:
                self.began = time.perf_counter()

            def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
                times.append(time.perf_counter() - self.began)

        model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0, shuffle=True, callbacks=[Timer()])
        step_time = statistics.median(times[3:])

        def predict() -> Any:
            return model.predict_on_batch(infer_x)

    else:
        import torch

        model = _torch_hand(spec_name, plan.input_shape, classes)
        inputs = [torch.from_numpy(bx).permute(0, 3, 1, 2).contiguous() for bx, _ in batches]
        if variant.endswith("cl"):
            model = model.to(memory_format=torch.channels_last)
            inputs = [t.contiguous(memory_format=torch.channels_last) for t in inputs]
        labels = [torch.from_numpy(by) for _, by in batches]
        opt = (
            torch.optim.Adam(model.parameters(), lr=1e-3)
            if spec_name == "seed_cnn"
            else torch.optim.RMSprop(model.parameters(), lr=1e-4, alpha=0.9)
        )
        loss_fn = torch.nn.CrossEntropyLoss()

        def step(i: int) -> None:
            model.train()
            opt.zero_grad()
            loss_fn(model(inputs[i]), labels[i]).backward()
            opt.step()

        step_time = _median_step(step, steps)
        model.eval()

        def predict() -> Any:
            with torch.inference_mode():
                return model(inputs[0])

    predict()
    infer_time = statistics.median([_timed(predict) for _ in range(15)])
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB → MiB on Linux
    return {"train": BATCH / step_time, "infer": BATCH / infer_time, "peak_mb": peak}


def _timed(call: Any) -> float:
    began = time.perf_counter()
    call()
    return time.perf_counter() - began


def matmul_rate() -> float:
    """float32 GFLOP/s of a 2048² matrix product with PyTorch (the framework's BLAS)."""
    import torch

    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    a @ b
    return 2 * 2048**3 / statistics.median([_timed(lambda: a @ b) for _ in range(10)]) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--specs", nargs="+", default=list(SPECS))
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS))
    parser.add_argument("--worker", nargs=2, metavar=("SPEC", "VARIANT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker[0], args.worker[1], args.steps)))
        return
    from specnet import infer, load_spec

    gflops = matmul_rate()
    print(f"float32 matmul rate: {gflops:.0f} GFLOP/s (PyTorch, 2048², {os.cpu_count()} cores)")
    results: dict[str, Any] = {"matmul_gflops": gflops, "specs": {}}
    for name in args.specs:
        flops = 3 * infer(load_spec(ROOT / SPECS[name])).flops
        floor = gflops * 1e9 / flops
        samples: dict[str, list[dict[str, float]]] = {v: [] for v in args.variants}
        for round_ in range(args.rounds):
            order = (
                args.variants[round_ % len(args.variants) :]
                + args.variants[: round_ % len(args.variants)]
            )
            for variant in order:
                proc = subprocess.run(
                    [sys.executable, __file__, "--worker", name, variant, "--steps",
                     str(args.steps)],
                    capture_output=True, text=True, check=True, cwd=ROOT,
                )  # fmt: skip
                samples[variant].append(json.loads(proc.stdout.strip().splitlines()[-1]))
        table = {
            v: {k: stats([s[k] for s in rows]) for k in ("train", "infer", "peak_mb")}
            for v, rows in samples.items()
        }
        results["specs"][name] = {
            "train_flops_per_image": flops,
            "floor_images_per_s": floor,
            "variants": table,
        }
        print(f"\n{name}: {flops / 1e6:.1f} MFLOP per training image; floor {floor:,.0f} images/s")
        print(
            f"{'variant':<22} {'train img/s':>11} {'of floor':>8} "
            f"{'infer img/s':>11} {'peak MB':>8}"
        )
        for variant, row in table.items():
            rate = row["train"]["median"]
            print(
                f"{variant:<22} {rate:>11,.0f} {rate / floor:>8.2f} "
                f"{row['infer']['median']:>11,.0f} {row['peak_mb']['median']:>8,.0f}"
            )
        for framework, hands in (
            ("keras", ["keras hand"]),
            ("torch", ["torch hand", "torch hand cl"]),
        ):
            mine = table.get(f"{framework} specnet")
            best = max(
                (table[h] for h in hands if h in table),
                key=lambda r: r["train"]["median"],
                default=None,
            )
            if mine and best:
                ratios = {
                    k: mine[k]["median"] / best[k]["median"] for k in ("train", "infer", "peak_mb")
                }
                # each round's own ratio (specnet against the best hand-written loop of the
                # same round): how far the machine's load moved it, not only the medians'
                present = [h for h in hands if h in samples]
                per_round = [
                    samples[f"{framework} specnet"][r]["train"]
                    / max(samples[h][r]["train"] for h in present)
                    for r in range(args.rounds)
                ]
                ratios["train_per_round"] = per_round  # type: ignore[assignment]
                results["specs"][name][f"{framework}_ratios"] = ratios
                print(
                    f"{framework} specnet / best hand-written: train {ratios['train']:.2f} "
                    f"(rounds {min(per_round):.2f}–{max(per_round):.2f}), "
                    f"inference {ratios['infer']:.2f}, peak memory {ratios['peak_mb']:.2f}"
                )
        if "torch specnet" in table and "keras specnet" in table:
            ratio = (
                table["torch specnet"]["train"]["median"]
                / table["keras specnet"]["train"]["median"]
            )
            results["specs"][name]["torch_over_keras"] = ratio
            print(f"torch specnet / keras specnet training: {ratio:.2f}")
    path = write("train", results)
    print(f"\nwrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
