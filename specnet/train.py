"""``specnet train``: compile → fit(epochs) → evaluate → save, on either framework.

    runs/<spec name>/<backend>-<n>/
        specnet.json           kind train, spec, backend, seed, data, classes, versions, status
        spec.resolved.yaml     the spec with defaults filled in
        class_names.json       the class of each output unit
        weights.safetensors    final canonical weights (any backend loads them)
        model.keras | model.torch.safetensors   the final native model (with its softmax)
        metrics.csv            per epoch, Keras CSVLogger's columns (epoch, accuracy, loss, …)
        history.json           the same, as Keras's History.history
        training_curves.png, confusion_matrix.png
        checkpoints/last.safetensors   every model, optimizer and RNG variable + progress
        checkpoints/best.safetensors   canonical weights of the epoch with the lowest val_loss

specnet, not ``fit``, walks the epochs: batch order is a pure function of (seed, epoch), each
backend's trainer takes one optimizer step per batch, and ``last`` is written atomically after
every epoch. ``--resume`` restores it and replays the interrupted epoch, so a run killed at any
moment ends with the same weights as one that never stopped.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from specnet._frameworks import require
from specnet._io import atomic_write_bytes, atomic_write_text, sweep_temporaries
from specnet.backends import DEFAULT_OPTIONS, Backend, TrainOptions, get_backend
from specnet.build import SPEC_FILE, WEIGHTS_FILE, resolved_yaml
from specnet.data import Dataset, anchored, batch_order, load_data
from specnet.distributed import SOLO, World, broadcast, leave, shard, tf_world, world
from specnet.errors import RuntimeFailure, SpecValidationError, UsageError
from specnet.progress import Progress
from specnet.rundir import claim, read_marker, versions, write_marker
from specnet.shapes import Limits, Plan, infer, logits_plan
from specnet.spec import Spec, SyntheticData, load_spec
from specnet.weights import encode_safetensors, init_weights, load_weights, save_weights

__all__ = ["RunResult", "evaluate_logits", "train", "training_plan"]

LAST, BEST = "checkpoints/last.safetensors", "checkpoints/best.safetensors"
COLUMNS = ("accuracy", "loss", "val_accuracy", "val_loss")


@dataclass(frozen=True)
class RunResult:
    out: Path
    plan: Plan
    backend: str
    history: dict[str, list[float]]


def training_plan(plan: Plan) -> Plan:
    """The plan a loss on logits trains: no final softmax (or sigmoid, for binary loss)."""
    loss = plan.spec.train.loss
    out = plan.output_shape
    if len(out) != 1:
        raise SpecValidationError(
            [plan.spec.issue(("train", "loss"), f"{loss} needs a vector of class scores, but the "
             f"network outputs {out}", "end the network with Flatten and a Dense")]
        )  # fmt: skip
    if loss != "binary_crossentropy":
        if out[0] < 2:
            raise SpecValidationError(
                [plan.spec.issue(("train", "loss"), f"{loss} needs at least 2 output units, the "
                 "network has 1", "use binary_crossentropy with one sigmoid unit")]
            )  # fmt: skip
        return logits_plan(plan)
    last = plan.spec.layers[-1]
    if out[0] != 1 or getattr(last, "activation", None) not in ("sigmoid", None, "linear"):
        raise SpecValidationError(
            [plan.spec.issue(("train", "loss"), "binary_crossentropy needs one output unit "
             "ending in sigmoid (or logits)",
             "end with {type: Dense, units: 1, activation: sigmoid}")]
        )  # fmt: skip
    return logits_plan(plan)


def _next_run(spec: str, backend: str) -> Path:
    base = Path("runs") / spec
    n = 1
    while (base / f"{backend}-{n}").exists():
        n += 1
    return base / f"{backend}-{n}"


def evaluate_logits(
    trainer_logits: Any, x: Any, y: Any, binary: bool, batch: int = 256
) -> tuple[float, float, Any]:
    """(mean loss, accuracy, predicted classes) from a logits function, computed in NumPy."""
    np = require("numpy")
    if len(x) == 0:
        return math.nan, math.nan, np.zeros(0, np.int64)
    logits = np.concatenate([trainer_logits(x[i : i + batch]) for i in range(0, len(x), batch)])
    logits = logits.astype(np.float64)
    if binary:
        z = logits[:, 0]
        losses = np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))
        guess = (z > 0).astype(np.int64)
    else:
        shifted = logits - logits.max(1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(1, keepdims=True))
        losses = -log_probs[np.arange(len(y)), y]
        guess = logits.argmax(1)
    return float(losses.mean()), float((guess == y).mean()), guess


def train(
    spec_path: str | Path | None = None,
    backend: str = "keras",
    *,
    data: Any = None,
    epochs: int | None = None,
    out: str | Path | None = None,
    resume: str | Path | None = None,
    weights: str | Path | None = None,
    force: bool = False,
    progress: Progress | None = None,
    limits: Limits | None = None,
    options: TrainOptions = DEFAULT_OPTIONS,
) -> RunResult:
    """Train a spec (or ``resume`` a run) and write its run directory; see the module doc."""
    progress = progress or Progress("quiet")
    if resume is not None:
        folder = Path(resume)
        marker = read_marker(folder)
        if marker is None or marker.get("kind") != "train":
            raise UsageError(
                f"{folder}: not a specnet training run (no specnet.json of kind train)"
            )
        if marker.get("status") == "starting":
            raise UsageError(
                f"{folder}: was stopped before training began; start it again with: "
                f"specnet train {marker.get('spec_file', 'SPEC')} --out {folder}"
            )
        if data is not None:
            raise UsageError("--resume continues on the run's own data; --data cannot change it")
        spec = load_spec(folder / SPEC_FILE)  # the run's spec: its epochs and data, resolved
        backend = marker["backend"]
        # a run killed before its first checkpoint starts again from its first weights
        origin = str(marker.get("initial_weights", "initializers"))
        spec_source = marker.get("spec_file", str(folder / SPEC_FILE))
    else:
        if spec_path is None:
            raise UsageError("train needs a SPEC (or --resume RUN)")
        spec = load_spec(spec_path)
        spec_source = str(spec_path)
        source = (
            anchored(data, Path.cwd())
            if data is not None
            else anchored(spec.data or SyntheticData(source="synthetic"), Path(spec_path).parent)
        )
        spec = spec.model_copy(update={"data": source})
    if epochs is not None:
        spec = spec.model_copy(update={"train": spec.train.model_copy(update={"epochs": epochs})})
    plan = infer(spec, limits)
    tplan = training_plan(plan)
    chosen = get_backend(backend)
    dataset = load_data(spec, plan.output_shape[0] if plan.output_shape[0] > 1 else 2)
    here = world(options.device) if backend == "torch" else SOLO
    if backend == "keras" and options.strategy == "multi-worker":
        here = tf_world()

    if resume is None:
        if here.leader:
            folder = claim(
                Path(out) if out else _next_run(plan.name, backend),
                kind="train",
                spec=plan.name,
                force=force,
                reuse=False,
            )
            sweep_temporaries(folder)
            # first, so a run killed from here on is recognisably specnet's (and replaceable)
            write_marker(folder, kind="train", spec=plan.name, spec_file=spec_source,
                         backend=backend, status="starting")  # fmt: skip
            atomic_write_text(folder / SPEC_FILE, resolved_yaml(plan, spec_source), overwrite=True)
            atomic_write_text(
                folder / "class_names.json", json.dumps(dataset.class_names) + "\n", overwrite=True
            )
        if backend == "torch":
            folder = Path(broadcast(str(folder) if here.leader else None, here))
        elif not here.leader:  # other Keras workers write nothing; the chief owns the run
            folder = Path(out) if out else Path(".")
        origin = str(Path(weights).resolve()) if weights else "initializers"
    from_checkpoint = resume is not None and (folder / LAST).exists()
    if from_checkpoint:
        initial = init_weights(plan)  # replaced by the checkpoint's
    elif origin == "initializers":
        initial = init_weights(plan, spec.train.seed)
    else:
        initial = load_weights(Path(origin), plan)
    trainer = chosen.trainer(tplan, spec.train, initial, options)
    history: dict[str, list[float]] = {key: [] for key in COLUMNS}
    start, best = 0, math.inf
    if resume is not None and here.leader:  # what a killed process was writing when it died
        for place in (folder, folder / "checkpoints"):
            sweep_temporaries(place)
    if from_checkpoint:
        start, history, best = _restore(folder, trainer, plan.spec, backend)
    meta = {
        "kind": "train",
        "spec": plan.name,
        "spec_file": spec_source,
        "backend": backend,
        "seed": spec.train.seed,
        "initial_weights": origin,
        "epochs": spec.train.epochs,
        "data": dataset.describe(),
        "class_names": dataset.class_names,
        "device": options.device,
        "workers": here.size,
        "strategy": options.strategy,
        "replicas": getattr(trainer, "strategy", None) and trainer.strategy.num_replicas_in_sync,
    }
    if not here.leader:
        progress = Progress("quiet")
    else:
        write_marker(folder, **meta, status="running", epochs_done=start)
    try:
        _fit(folder, trainer, dataset, plan, backend, start, history, best, progress, meta, here)
    except KeyboardInterrupt:
        if here.leader:  # the last epoch's checkpoint is complete: every write is atomic
            print(
                f"\ninterrupted; continue with: specnet train --resume {folder}",
                file=sys.stderr,
            )
        raise
    if here.leader:
        _finish(folder, chosen, trainer, dataset, plan, history)
        write_marker(folder, **meta, status="finished", epochs_done=spec.train.epochs)
    del trainer  # release DistributedDataParallel before its process group goes
    leave(here)
    return RunResult(folder, plan, backend, history)


def _fit(
    folder: Path,
    trainer: Any,
    data: Dataset,
    plan: Plan,
    backend: str,
    start: int,
    history: dict[str, list[float]],
    best: float,
    progress: Progress,
    meta: dict[str, Any],
    here: World = SOLO,
) -> None:
    cfg = plan.spec.train
    n = len(data.x_train)
    steps = math.ceil(n / cfg.batch_size)
    binary = cfg.loss == "binary_crossentropy"
    for epoch in range(start, cfg.epochs):
        began = time.perf_counter()
        order = batch_order(n, cfg.seed, epoch, cfg.shuffle)
        progress.epoch_start(epoch, cfg.epochs, steps)
        loss_sum, correct = 0.0, 0
        for step in range(steps):
            index = order[step * cfg.batch_size : (step + 1) * cfg.batch_size]
            mine = shard(index, here)  # this worker's share of the global batch
            # the loss and hits of the whole global batch, however many workers share it
            loss, hits = trainer.step(data.x_train[mine], data.y_train[mine], len(index))
            if not math.isfinite(loss):
                kept = (
                    f"the last good checkpoint is {folder / LAST}"
                    if (folder / LAST).exists()
                    else "no checkpoint was written yet"
                )
                raise RuntimeFailure(
                    f"training diverged: loss is {loss} at epoch {epoch + 1}, step {step + 1}; "
                    f"{kept} (lower the learning rate)"
                )
            loss_sum += loss * len(index)
            correct += int(hits)
            progress.step(step + 1, loss_sum / min(n, (step + 1) * cfg.batch_size))
        val_loss, val_acc, _ = evaluate_logits(trainer.logits, data.x_val, data.y_val, binary)
        logs = {
            "accuracy": correct / n,
            "loss": loss_sum / n,
            "val_accuracy": val_acc,
            "val_loss": val_loss,
        }
        for key in COLUMNS:
            history[key].append(logs[key])
        score = val_loss if math.isfinite(val_loss) else logs["loss"]
        improved = score < best
        best = min(best, score)
        state = trainer.state()  # on every rank: it gathers each rank's RNG state
        if not here.leader:
            continue
        if improved:
            save_weights(
                folder / BEST, trainer.weights(), overwrite=True, metadata={"epoch": str(epoch + 1)}
            )
        _checkpoint(folder, state, backend, plan.spec, epoch + 1, history, best)
        _write_metrics(folder, history)
        write_marker(folder, **meta, status="running", epochs_done=epoch + 1)
        progress.epoch_end(epoch, logs, time.perf_counter() - began)


def _checkpoint(
    folder: Path,
    state: dict[str, Any],
    backend: str,
    spec: Spec,
    epoch: int,
    history: dict[str, list[float]],
    best: float,
) -> None:
    progress = {
        "epoch": epoch,
        "seed": spec.train.seed,
        "spec": _fingerprint(spec),
        "history": history,
        "best": best,
        "backend": backend,
        "versions": _environment(backend),
    }
    data = encode_safetensors(state, metadata={"progress": json.dumps(progress)})
    (folder / "checkpoints").mkdir(exist_ok=True)
    atomic_write_bytes(folder / LAST, data, overwrite=True)


def _environment(backend: str) -> dict[str, Any]:
    """What a bit-exact resume depends on: library versions and the framework's thread count
    (float sums split over other thread counts round differently)."""
    found: dict[str, Any] = dict(versions())
    if backend == "torch":
        found["threads"] = require("torch").get_num_threads()
    else:
        threading = require("tensorflow").config.threading
        found["threads"] = threading.get_intra_op_parallelism_threads() or os.cpu_count()
    return found


def _fingerprint(spec: Spec) -> str:
    """What a resume must not change: the whole resolved spec but ``train.epochs`` (which
    ``--epochs`` may raise to train on), as a short SHA-256."""
    document = spec.model_dump(mode="json", exclude={"train": {"epochs"}})
    text = json.dumps(document, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _restore(
    folder: Path, trainer: Any, spec: Spec, backend: str
) -> tuple[int, dict[str, list[float]], float]:
    safetensors = require("safetensors")
    try:
        with safetensors.safe_open(folder / LAST, framework="np") as checkpoint:
            state = {key: checkpoint.get_tensor(key) for key in checkpoint.keys()}  # noqa: SIM118
            progress = json.loads(checkpoint.metadata()["progress"])
        if not isinstance(progress, dict):
            raise TypeError("its progress metadata is not a JSON object")
        missing = {"epoch", "history", "best", "backend", "versions"} - set(progress)
        if missing:
            raise KeyError(f"no {', '.join(sorted(missing))} in its metadata")
    except (OSError, ValueError, KeyError, TypeError, safetensors.SafetensorError) as exc:
        raise UsageError(f"{folder / LAST}: not a readable specnet checkpoint ({exc})") from None
    if progress["backend"] != backend:
        raise UsageError(f"{folder}: checkpoint is from {progress['backend']}, not {backend}")
    seed = spec.train.seed
    if progress.get("seed") != seed:
        raise UsageError(f"{folder}: checkpoint was trained with seed {progress.get('seed')}, "
                         f"but {SPEC_FILE} now says seed {seed}; resuming would not reproduce "
                         "the run")  # fmt: skip
    if progress.get("spec") != _fingerprint(spec):
        raise UsageError(f"{folder}: {SPEC_FILE} was changed after the checkpoint was written "
                         "(only --epochs may change on a resume); resuming would not reproduce "
                         "the run")  # fmt: skip
    now = _environment(backend)
    mismatched = {k: (v, now.get(k)) for k, v in progress["versions"].items() if now.get(k) != v}
    if mismatched:
        detail = ", ".join(f"{k} {old} → {new}" for k, (old, new) in mismatched.items())
        raise UsageError(f"{folder}: checkpoint was written under other versions or thread "
                         f"counts ({detail}); resuming would not reproduce the run")  # fmt: skip
    trainer.load_state(state)
    return int(progress["epoch"]), progress["history"], float(progress["best"])


def _write_metrics(folder: Path, history: dict[str, list[float]]) -> None:
    rows = ["epoch," + ",".join(COLUMNS)]
    for epoch in range(len(history["loss"])):
        rows.append(f"{epoch}," + ",".join(repr(history[key][epoch]) for key in COLUMNS))
    atomic_write_text(folder / "metrics.csv", "\n".join(rows) + "\n", overwrite=True)
    atomic_write_text(folder / "history.json", json.dumps(history, indent=2) + "\n", overwrite=True)


def _finish(
    folder: Path,
    backend: Backend,
    trainer: Any,
    data: Dataset,
    plan: Plan,
    history: dict[str, list[float]],
) -> None:
    from specnet import plots

    final = trainer.weights()
    save_weights(folder / WEIGHTS_FILE, final, overwrite=True, metadata={"spec": plan.name})
    model = backend.build(plan)
    backend.set_weights(model, plan, final)
    backend.save_native(model, folder / backend.native_file)
    x, y = (data.x_val, data.y_val) if len(data.x_val) else (data.x_train, data.y_train)
    binary = plan.spec.train.loss == "binary_crossentropy"
    _, _, guess = evaluate_logits(trainer.logits, x, y, binary)
    classes = len(data.class_names)
    plots.training_curves(history, folder / "training_curves.png", plan.name)
    plots.confusion_matrix(y, guess, data.class_names, folder / "confusion_matrix.png", classes)
