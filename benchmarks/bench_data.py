"""The data pipeline next to the training step it feeds, same run: data must never be the limit.

    python benchmarks/bench_data.py [--rounds 3]

Measures, at cifar10_cnn's input size (32×32×3), images/s of: generating the built-in set;
reading an image folder of PNGs (Pillow decode + resize); assembling a shuffled batch (what
each training step does: index the arrays, hand them to the framework); augmenting the batches
(specnet.augment, Keras's defaults: bilinear, reflection): RandomFlip + RandomTranslation, the
recipe of Keras's CIFAR-10 examples, and all six layers in a row (reported beside the target,
not held to it). Next to them, the
training step of specnet's PyTorch and Keras trainers on cifar10_cnn. Target: every data
stage ≥ 5× the faster training step. Writes benchmarks/results/data.json.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _common import stats, write

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from specnet import infer, load_spec  # noqa: E402
from specnet.augment import Augmenter  # noqa: E402
from specnet.backends import get_backend  # noqa: E402
from specnet.data import batch_order, load_data, synthetic  # noqa: E402
from specnet.spec import (  # noqa: E402
    FolderData,
    RandomBrightness,
    RandomContrast,
    RandomFlip,
    RandomRotation,
    RandomTranslation,
    RandomZoom,
)
from specnet.train import training_plan  # noqa: E402
from specnet.weights import init_weights  # noqa: E402

BATCH = 64


def _rate(images: int, call: Any) -> float:
    began = time.perf_counter()
    call()
    return images / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    import numpy as np
    from PIL import Image

    plan = infer(load_spec(ROOT / "specs/keras/cifar10_cnn.yaml"))
    x, y, _ = synthetic(2048, plan.input_shape, 10, "shape", 0)
    folder = Path(tempfile.mkdtemp(prefix="specnet-bench-"))
    names = plan.spec.class_names or [f"class{label}" for label in range(10)]
    for name in names:  # the spec's own class names: labels follow them
        (folder / name).mkdir()
    for i, (image, label) in enumerate(zip(x[:1000], y[:1000], strict=True)):
        Image.fromarray((image * 255).astype(np.uint8)).save(folder / names[label] / f"{i}.png")
    source = FolderData(source="folder", path=str(folder))
    trainers = {
        name: get_backend(name).trainer(
            training_plan(plan),
            plan.spec.train.model_copy(update={"batch_size": BATCH}),
            init_weights(plan),
        )
        for name in ("torch", "keras")
    }

    def steps(name: str) -> None:
        for i in range(10):
            trainers[name].step(x[i * BATCH : (i + 1) * BATCH], y[i * BATCH : (i + 1) * BATCH])

    def assemble() -> None:
        import torch

        order = batch_order(len(x), 0, 1)
        for start in range(0, len(x), BATCH):
            index = order[start : start + BATCH]
            torch.from_numpy(x[index]).permute(0, 3, 1, 2)
            torch.from_numpy(y[index])

    class _Step:  # what Augmenter reads of a plan's augmentation steps
        def __init__(self, layer: Any) -> None:
            self.layer = layer

    geometric = (
        RandomFlip(type="RandomFlip", mode="horizontal"),
        RandomRotation(type="RandomRotation", factor=0.1),
        RandomZoom(type="RandomZoom", height_factor=0.1),
        RandomTranslation(type="RandomTranslation", height_factor=0.1, width_factor=0.1),
    )
    colour = (
        RandomContrast(type="RandomContrast", factor=0.2),
        RandomBrightness(type="RandomBrightness", factor=0.1),
    )

    def augmenting(layers: tuple[Any, ...]) -> Callable[[], None]:
        augment = Augmenter(tuple(_Step(layer) for layer in layers), seed=0)

        def run() -> None:
            order = batch_order(len(x), 0, 1)
            for step, start in enumerate(range(0, len(x), BATCH)):
                augment(x[order[start : start + BATCH]], 1, step)

        return run

    stages: dict[str, tuple[int, Callable[[], object]]] = {
        "generate built-in set": (2048, lambda: synthetic(2048, plan.input_shape, 10, "shape", 1)),
        "read image folder (PNG)": (1000, lambda: load_data(plan.spec, 10, source)),
        "assemble shuffled batches": (2048, assemble),
        "augment: flip + translation": (2048, augmenting((geometric[0], geometric[3]))),
        "augment: all six layers": (2048, augmenting(geometric + colour)),
        "training step: torch": (10 * BATCH, lambda: steps("torch")),
        "training step: keras": (10 * BATCH, lambda: steps("keras")),
    }
    for _, call in stages.values():
        call()  # warm-up
    rates: dict[str, list[float]] = {name: [] for name in stages}
    names = list(stages)
    for round_ in range(args.rounds):
        for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
            images, call = stages[name]
            rates[name].append(_rate(images, call))
    table = {name: stats(values) for name, values in rates.items()}
    fastest_step = max(statistics.median(rates[n]) for n in names if n.startswith("training"))
    print(f"{'stage':<28} {'images/s':>10} {'× training':>11}")
    for name, row in table.items():
        print(f"{name:<28} {row['median']:>10,.0f} {row['median'] / fastest_step:>11.1f}")
    # the target: what a run does each step (Keras's CIFAR recipe, flip + translation); all
    # six layers at once are reported beside it
    kept = [n for n in names if not n.startswith(("training", "augment: all"))]
    data_min = min(table[n]["median"] for n in kept)
    verdict = "met" if data_min >= 5 * fastest_step else "NOT met"
    every = table["augment: all six layers"]["median"] / fastest_step
    print(
        f"\nslowest data stage / fastest training step = {data_min / fastest_step:.1f} "
        f"(target ≥ 5: {verdict}); all six augmentation layers at once: {every:.1f}"
    )
    path = write("data", {"results": table, "ratio": data_min / fastest_step, "all_six": every})
    print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
