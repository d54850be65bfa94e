"""Training throughput: a specnet-built model next to a hand-written one, same framework, same run.

    python benchmarks/bench_train.py [--rounds 3] [--images 2048] [--batch 64]

For the seed spec and Keras's cifar10_cnn, four variants train one epoch of the same synthetic
images per round, in rotated order (interleaved, so machine noise hits all alike):

* keras specnet — specnet's Keras trainer (compiled train step, specnet's batch order);
* keras hand    — a hand-written ``keras.Sequential`` and ``model.fit``;
* torch specnet — specnet's PyTorch trainer;
* torch hand    — a hand-written NCHW ``nn.Module`` and the usual PyTorch loop.

It prints images/s (median, min, max) and the ratio specnet / hand-written per framework, and
writes benchmarks/results/train.json. Each variant is warmed up once before timing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _common import stats, write

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from specnet import infer, load_spec  # noqa: E402
from specnet.backends import get_backend  # noqa: E402
from specnet.data import batch_order, synthetic  # noqa: E402
from specnet.train import training_plan  # noqa: E402
from specnet.weights import init_weights  # noqa: E402

SPECS = {"seed_cnn": "specs/seed_cnn.yaml", "cifar10_cnn": "specs/keras/cifar10_cnn.yaml"}


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


def _variants(name: str, x: Any, y: Any, batch: int) -> dict[str, Callable[[], None]]:
    import keras
    import torch

    plan = infer(load_spec(ROOT / SPECS[name]))
    spec = plan.spec.model_copy(
        update={"train": plan.spec.train.model_copy(update={"batch_size": batch})}
    )
    tplan = training_plan(infer(spec))
    classes = plan.output_shape[0]
    weights = init_weights(plan)
    trainers = {b: get_backend(b).trainer(tplan, spec.train, weights) for b in ("keras", "torch")}
    epoch = [0]

    def specnet_epoch(backend: str) -> Callable[[], None]:
        def run() -> None:
            order = batch_order(len(x), 0, epoch[0])
            epoch[0] += 1
            for start in range(0, len(x), batch):
                index = order[start : start + batch]
                trainers[backend].step(x[index], y[index])

        return run

    keras_model = _keras_hand(name, plan.input_shape, classes)
    keras_model.compile(
        optimizer=_keras_optimizer(keras, spec),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )

    def keras_hand() -> None:
        keras_model.fit(x, y, batch_size=batch, epochs=1, verbose=0, shuffle=True)

    torch_model = _torch_hand(name, plan.input_shape, classes)
    optimizer = _torch_optimizer(torch, spec, torch_model)
    x_nchw = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
    y_torch = torch.from_numpy(y)
    loss_fn = torch.nn.CrossEntropyLoss()

    def torch_hand() -> None:
        torch_model.train()
        order = torch.randperm(len(x_nchw))
        for start in range(0, len(x_nchw), batch):
            index = order[start : start + batch]
            optimizer.zero_grad()
            loss = loss_fn(torch_model(x_nchw[index]), y_torch[index])
            loss.backward()
            optimizer.step()

    return {
        "keras specnet": specnet_epoch("keras"),
        "keras hand": keras_hand,
        "torch specnet": specnet_epoch("torch"),
        "torch hand": torch_hand,
    }


def _keras_optimizer(keras: Any, spec: Any) -> Any:
    config = spec.train.optimizer
    if config.type.lower() == "rmsprop":
        return keras.optimizers.RMSprop(learning_rate=config.learning_rate)
    return keras.optimizers.Adam(learning_rate=config.learning_rate)


def _torch_optimizer(torch: Any, spec: Any, model: Any) -> Any:
    config = spec.train.optimizer
    if config.type.lower() == "rmsprop":
        return torch.optim.RMSprop(model.parameters(), lr=config.learning_rate, alpha=0.9)
    return torch.optim.Adam(model.parameters(), lr=config.learning_rate)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--specs", nargs="+", default=list(SPECS))
    args = parser.parse_args()
    import torch

    results: dict[str, Any] = {}
    print(
        f"torch threads {torch.get_num_threads()}, {args.images} images/epoch, batch {args.batch}"
    )
    print(f"{'spec':<12} {'variant':<14} {'images/s':>9} {'min':>8} {'max':>8}")
    for name in args.specs:
        plan = infer(load_spec(ROOT / SPECS[name]))
        x, y, _ = synthetic(args.images, plan.input_shape, plan.output_shape[0], "shape", 0)
        variants = _variants(name, x, y, args.batch)
        for run in variants.values():  # warm-up: tracing, allocator, caches
            run()
        rates: dict[str, list[float]] = {key: [] for key in variants}
        keys = list(variants)
        for round_ in range(args.rounds):
            for key in keys[round_ % len(keys) :] + keys[: round_ % len(keys)]:
                began = time.perf_counter()
                variants[key]()
                rates[key].append(len(x) / (time.perf_counter() - began))
        results[name] = {key: stats(values) for key, values in rates.items()}
        for key, row in results[name].items():
            print(
                f"{name:<12} {key:<14} {row['median']:>9.0f} {row['min']:>8.0f} {row['max']:>8.0f}"
            )
        for framework in ("keras", "torch"):
            ratio = statistics.median(rates[f"{framework} specnet"]) / statistics.median(
                rates[f"{framework} hand"]
            )
            results[name][f"{framework} ratio"] = ratio
            print(f"{name:<12} {framework} specnet / hand-written = {ratio:.2f}")
    path = write("train", {"images": args.images, "batch": args.batch, "results": results})
    print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
