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
        best/                  the epoch with the lowest val_loss: weights.safetensors, the
                               spec, specnet.json (kind best: epoch, monitor, value) — a
                               folder every verb that takes a run takes

specnet, not ``fit``, walks the epochs: batch order is a pure function of (seed, epoch), each
backend's trainer takes one optimizer step per batch, and ``last`` is written atomically after
every epoch. ``--resume`` restores it and replays the interrupted epoch, so a run killed at any
moment ends with the same weights as one that never stopped.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from specnet._frameworks import require
from specnet._io import atomic_write_bytes, atomic_write_text, json_safe, sweep_temporaries
from specnet.backends import DEFAULT_OPTIONS, Backend, TrainOptions, get_backend
from specnet.build import (
    SPEC_FILE,
    WEIGHTS_FILE,
    resolve_weights_path,
    resolved_yaml,
    spec_fingerprint,
)
from specnet.callbacks import Callbacks
from specnet.data import Dataset, anchored, batch_order, load_data
from specnet.distributed import SOLO, World, broadcast, leave, shard, tf_world, world
from specnet.errors import NothingToDo, RuntimeFailure, SpecValidationError, UsageError
from specnet.progress import Progress
from specnet.rundir import claim, empty_for_replacement, read_marker, versions, write_marker
from specnet.shapes import Limits, Plan, infer, logits_plan
from specnet.spec import (
    Spec,
    SyntheticData,
    Train,
    as_spec,
    load_spec,
    monitors_without_validation,
    regularizers,
    with_overrides,
)
from specnet.weights import (
    Weights,
    check_classes,
    encode_safetensors,
    init_weights,
    load_weights,
    save_weights,
)

__all__ = ["RunResult", "evaluate_logits", "train", "training_plan"]

BEST_FOLDER = "best"
LAST, BEST = "checkpoints/last.safetensors", f"{BEST_FOLDER}/{WEIGHTS_FILE}"
#: EarlyStopping's best weights (restore_best_weights), kept for a resume and the final weights
RESTORE = "checkpoints/restore_best.safetensors"
#: the metrics of every epoch, in Keras CSVLogger's (sorted) order; ``learning_rate`` is the
#: optimizer's at the epoch's end (Keras's ``optimizer.learning_rate``, logged by its
#: ReduceLROnPlateau before it acts; under a schedule, the next step's)
COLUMNS = ("accuracy", "learning_rate", "loss", "val_accuracy", "val_loss")


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
            [
                plan.spec.issue(
                    ("train", "loss"),
                    f"{loss} needs a vector of class scores, but the network outputs {out}",
                    "end the network with Flatten and a Dense",
                )
            ]
        )
    if loss != "binary_crossentropy":
        if out[0] < 2:
            raise SpecValidationError(
                [
                    plan.spec.issue(
                        ("train", "loss"),
                        f"{loss} needs at least 2 output units, the network has 1",
                        "use binary_crossentropy with one sigmoid unit",
                    )
                ]
            )
        return logits_plan(plan)
    last = plan.output.layer
    if out[0] != 1 or getattr(last, "activation", None) not in ("sigmoid", None, "linear"):
        raise SpecValidationError(
            [
                plan.spec.issue(
                    ("train", "loss"),
                    "binary_crossentropy needs one output unit ending in sigmoid (or logits)",
                    "end with {type: Dense, units: 1, activation: sigmoid}",
                )
            ]
        )
    return logits_plan(plan)


def _next_run(spec: str, backend: str) -> Path:
    base = Path("runs") / spec
    n = 1
    while (base / f"{backend}-{n}").exists():
        n += 1
    return base / f"{backend}-{n}"


def evaluate_logits(
    trainer_logits: Any, x: Any, y: Any, binary: bool, batch: int = 256, smoothing: float = 0.0
) -> tuple[float, float, Any]:
    """(mean loss, accuracy, predicted classes) from a logits function, computed in NumPy;
    ``smoothing``: the loss against Keras's smoothed labels (``label_smoothing``)."""
    np = require("numpy")
    if len(x) == 0:
        return math.nan, math.nan, np.zeros(0, np.int64)
    logits = np.concatenate([trainer_logits(x[i : i + batch]) for i in range(0, len(x), batch)])
    logits = logits.astype(np.float64)
    if binary:
        z = logits[:, 0]
        target = y * (1 - smoothing) + 0.5 * smoothing
        losses = np.maximum(z, 0) - z * target + np.log1p(np.exp(-np.abs(z)))
        guess = (z > 0).astype(np.int64)
    else:
        shifted = logits - logits.max(1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(1, keepdims=True))
        losses = -log_probs[np.arange(len(y)), y]
        if smoothing:  # −Σ (y(1 − s) + s/K) log p
            losses = (1 - smoothing) * losses - smoothing * log_probs.mean(1)
        guess = logits.argmax(1)
    return float(losses.mean()), float((guess == y).mean()), guess


def penalty(plan: Plan, weights: Weights) -> float:
    """The regularizers' penalty on these weights (float64): what Keras adds to ``loss`` and
    to ``val_loss`` alike (``compute_loss`` adds ``model.losses`` in both)."""
    np = require("numpy")
    total = 0.0
    for step in plan.layers:
        for suffix, chosen in regularizers(step.layer).items():
            if suffix not in step.weights:  # a bias regularizer on a layer without a bias
                continue
            value = np.asarray(weights[f"{step.name}.{suffix}"], np.float64)
            l1, l2 = chosen.factors
            total += l1 * float(np.abs(value).sum()) + l2 * float(np.square(value).sum())
    return total


def class_weights(spec: Spec, data: Dataset) -> Any:
    """One weight per class (float32), or None: ``train.class_weight`` by class name (1 for a
    class it does not name), or ``balanced``: ``n / (classes · count)`` over the training
    split (scikit-learn's ``compute_class_weight("balanced")``; a class with no training
    example keeps 1). A name that is not one of the run's classes is a located error."""
    np = require("numpy")
    chosen = spec.train.class_weight
    if chosen is None:
        return None
    names = data.class_names
    if chosen == "balanced":
        counts = np.bincount(data.y_train, minlength=len(names)).astype(np.float64)
        found = counts > 0
        weights = np.ones(len(names))
        weights[found] = len(data.y_train) / (len(names) * counts[found])
        return weights.astype(np.float32)
    unknown = [name for name in chosen if name not in names]
    if unknown:
        shown = ", ".join(names[:10]) + (", …" if len(names) > 10 else "")
        raise SpecValidationError(
            [
                spec.issue(
                    ("train", "class_weight", name),
                    f"class_weight names {name!r}, which is not one of the run's classes",
                    f"its classes: {shown}",
                )
                for name in unknown
            ]
        )
    return np.array([chosen.get(name, 1.0) for name in names], np.float32)


def train(
    spec_path: str | Path | Spec | None = None,
    backend: str | None = None,
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
    overrides: dict[str, Any] | None = None,
    tensorboard: bool | None = None,
    val_data: Any = None,
    test_data: Any = None,
) -> RunResult:
    """Train a spec (or ``resume`` a run) and write its run directory; see the module doc.

    ``overrides`` sets ``train`` fields for this run (``batch_size``, ``seed``,
    ``learning_rate`` — the optimizer's), as ``--batch-size``, ``--seed`` and
    ``--learning-rate`` do, and ``set``: a list of ``FIELD=VALUE`` assignments to any field
    (``--set train.callbacks[0].patience=3``); they are validated like the spec and recorded
    in the run (its resolved spec, and ``overrides`` in ``specnet.json``). ``tensorboard``:
    write TensorBoard event files (:mod:`specnet.events`; a resume keeps the run's choice).
    ``val_data``, ``test_data``: data sources (as ``data``) for a validation set of its own
    (``validation_split`` then unused) and a test set, as ``--val-data`` and ``--test-data``."""
    progress = progress or Progress("quiet")
    marker_overrides = list((overrides or {}).get("set") or [])
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
        if data is not None or val_data is not None or test_data is not None:
            raise UsageError(
                "--resume continues on the run's own data; --data, --val-data and --test-data "
                "cannot change it"
            )
        if overrides:
            raise UsageError(
                f"--resume continues the run's own training settings; "
                f"{', '.join('--' + key.replace('_', '-') for key in overrides)} cannot change them"
            )
        spec = load_spec(folder / SPEC_FILE)  # the run's spec: its epochs and data, resolved
        if backend is not None and backend != marker["backend"]:
            raise UsageError(
                f"{folder}: is a {marker['backend']} run; --resume continues it on "
                f"{marker['backend']} (drop --backend, or start a new run with --backend {backend})"
            )
        if spec_path is not None:
            given, given_file, _ = as_spec(spec_path)
            _same_network(given, spec, given_file, folder)
        backend = str(marker["backend"])
        marker_overrides = list(marker.get("overrides") or [])
        tensorboard = bool(marker.get("tensorboard")) if tensorboard is None else tensorboard
        done = int(marker.get("epochs_done") or 0)
        if epochs is None:  # the run's own target (its --epochs), not the spec file's
            epochs = int(marker.get("epochs") or spec.train.epochs)
        if marker.get("stopped_early"):
            raise NothingToDo(
                f"{folder}: stopped early at epoch {done} (EarlyStopping); nothing to resume"
            )
        if marker.get("status") == "finished" and epochs <= done:
            raise NothingToDo(
                f"{folder}: finished all {done} epochs; nothing to resume "
                f"(train longer with --resume {folder} --epochs N, N > {done})"
            )
        # a run killed before its first checkpoint starts again from its first weights
        origin = str(marker.get("initial_weights", "initializers"))
        spec_source = marker.get("spec_file", str(folder / SPEC_FILE))
    else:
        if spec_path is None:
            raise UsageError("train needs a SPEC (or --resume RUN)")
        backend = backend or "keras"
        loaded, spec_source, spec_folder = as_spec(spec_path)
        spec = _overridden(loaded, overrides or {})
        source = (
            anchored(data, Path.cwd())
            if data is not None
            else anchored(spec.data or SyntheticData(source="synthetic"), spec_folder)
        )
        held: dict[str, Any] = {"data": source}
        for key, given in (("validation_data", val_data), ("test_data", test_data)):
            written = getattr(spec, key)  # --val-data / --test-data beat the spec's
            if given is not None:
                held[key] = anchored(given, Path.cwd())
            elif written is not None:
                held[key] = anchored(written, spec_folder)
        spec = spec.model_copy(update=held)
    if epochs is not None:
        if epochs < 1:
            raise UsageError(f"--epochs {epochs}: expected a positive number of epochs")
        spec = spec.model_copy(update={"train": spec.train.model_copy(update={"epochs": epochs})})
    plan = infer(spec, limits)
    training_plan(plan)  # refuses a loss the network cannot take, before data is loaded
    if tensorboard:
        from specnet.events import available

        available()  # the install hint before anything is written
    chosen = get_backend(backend)
    if options.device == "cuda":  # before anything is written
        _check_cuda(backend)
    dataset = load_data(spec, plan.output_shape[0] if plan.output_shape[0] > 1 else 2)
    if spec.class_names != dataset.class_names:  # the run records the classes it learnt
        spec = spec.model_copy(update={"class_names": dataset.class_names})
        plan = infer(spec, limits)
    tplan = training_plan(plan)
    weighting = class_weights(spec, dataset)  # (a class it names must exist: before any write)
    unmonitored = [] if len(dataset.x_val) else monitors_without_validation(spec)
    if unmonitored:  # (a folder without val/ and no validation_split)
        raise SpecValidationError(unmonitored)
    for note in dataset.notes if resume is None else ():
        print(f"specnet: {note}", file=sys.stderr)
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
            if force:  # the replaced run's files must not pass for the new run's
                empty_for_replacement(folder)
            sweep_temporaries(folder)
            # first, so a run killed from here on is recognisably specnet's (and replaceable)
            write_marker(
                folder,
                kind="train",
                spec=plan.name,
                spec_file=spec_source,
                backend=backend,
                status="starting",
            )
            atomic_write_text(folder / SPEC_FILE, resolved_yaml(plan, spec_source), overwrite=True)
            atomic_write_text(
                folder / "class_names.json", json.dumps(dataset.class_names) + "\n", overwrite=True
            )
        if backend == "torch":
            folder = Path(broadcast(str(folder) if here.leader else None, here))
        elif not here.leader:  # other Keras workers write nothing; the chief owns the run
            folder = Path(out) if out else Path(".")
        origin = str(Path(weights).resolve()) if weights else "initializers"
    if origin != "initializers":
        check_classes(resolve_weights_path(Path(origin)), dataset.class_names)
    from_checkpoint = resume is not None and (folder / LAST).exists()
    if from_checkpoint:
        initial = init_weights(plan)  # replaced by the checkpoint's
    elif origin == "initializers":
        initial = init_weights(plan, spec.train.seed)
    else:
        initial = load_weights(resolve_weights_path(Path(origin)), plan)
    trainer = chosen.trainer(tplan, spec.train, initial, options)
    history: dict[str, list[float]] = {key: [] for key in COLUMNS}
    start, best = 0, math.inf
    callbacks = Callbacks.of(spec.train.callbacks)
    if resume is not None and here.leader:  # what a killed process was writing when it died
        for place in (folder, folder / "checkpoints"):
            sweep_temporaries(place)
    if from_checkpoint:
        start, history, best = _restore(folder, trainer, plan.spec, backend, callbacks)
    meta = {
        "kind": "train",
        "spec": plan.name,
        "spec_file": spec_source,
        "backend": backend,
        "seed": spec.train.seed,
        "initial_weights": origin,
        "epochs": spec.train.epochs,
        "overrides": marker_overrides,
        "tensorboard": bool(tensorboard),
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
        _fit(
            folder, trainer, dataset, plan, backend, start, history, best, progress, meta, here,
            callbacks, weighting,
        )  # fmt: skip
    except KeyboardInterrupt:
        if here.leader:  # the last epoch's checkpoint is complete: every write is atomic
            written = read_marker(folder) or {}
            epochs_done = written.get("epochs_done", start)
            write_marker(folder, **meta, status="interrupted", epochs_done=epochs_done)
            print(
                f"\ninterrupted; continue with: specnet train --resume {folder}",
                file=sys.stderr,
            )
        raise
    trainer.finish()  # fit's finalize_variable_values (use_ema: the averages), on every rank
    if here.leader:
        if callbacks.restores and (folder / RESTORE).exists():  # Keras's on_train_end, after
            trainer.set_weights(load_weights(folder / RESTORE, plan))
        _finish(folder, chosen, trainer, dataset, plan, history)
        stopped = [e for e in callbacks.events if e["callback"] == "EarlyStopping"]
        extra = {"stopped_early": stopped[-1]} if stopped else {}
        done = len(history["loss"])
        write_marker(folder, **meta, status="finished", epochs_done=done, **extra)
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
    callbacks: Callbacks | None = None,
    weighting: Any = None,
) -> None:
    """The epochs from ``start``; ``weighting``: one weight per class (``class_weight``),
    applied to each example's loss as ``fit(class_weight=…)`` applies it (training only)."""
    cfg = plan.spec.train
    callbacks = callbacks or Callbacks()
    n = len(data.x_train)
    steps = math.ceil(n / cfg.batch_size)
    binary = cfg.loss == "binary_crossentropy"
    regularized = any(regularizers(step.layer) for step in plan.layers)
    from specnet.augment import Augmenter  # (NumPy: not imported by the lighter verbs)

    augment = Augmenter(plan.augmentation, cfg.seed)
    np = require("numpy")
    for epoch in range(start, cfg.epochs):
        began = time.perf_counter()
        order = batch_order(n, cfg.seed, epoch, cfg.shuffle)
        progress.epoch_start(epoch, cfg.epochs, steps)
        loss_sum, correct = 0.0, 0
        for step in range(steps):
            index = order[step * cfg.batch_size : (step + 1) * cfg.batch_size]
            mine = shard(index, here)  # this worker's share of the global batch
            images = data.x_train[mine]
            if augment:  # the global batch augmented (its draws), then this worker's share
                whole = augment(data.x_train[index], epoch, step)
                images = whole[shard(np.arange(len(index)), here)]
            # the loss and hits of the whole global batch, however many workers share it
            labels = data.y_train[mine]
            weights = None if weighting is None else weighting[labels]
            loss, hits = trainer.step(images, labels, len(index), weights)
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
        val_loss, val_acc, _ = evaluate_logits(
            trainer.logits, data.x_val, data.y_val, binary, smoothing=cfg.label_smoothing
        )
        if regularized:  # Keras's val_loss: the penalty included, as in the training loss
            val_loss += penalty(plan, trainer.weights())
        logs = {
            "accuracy": correct / n,
            "loss": loss_sum / n,
            "val_accuracy": val_acc,
            "val_loss": val_loss,
            "learning_rate": trainer.learning_rate(),
        }
        for key in COLUMNS:
            history[key].append(logs[key])
        score = val_loss if math.isfinite(val_loss) else logs["loss"]
        improved = score < best
        best = min(best, score)
        decision = callbacks.on_epoch_end(epoch, logs, lambda: trainer.learning_rate())
        if decision["learning_rate"] is not None:  # ReduceLROnPlateau, on every rank
            trainer.set_learning_rate(decision["learning_rate"])
        state = trainer.state()  # on every rank: it gathers each rank's RNG state
        if not here.leader:
            continue
        if improved:
            _save_best(folder, trainer.weights(), epoch + 1, score, math.isfinite(val_loss), meta)
        if decision["save_best"]:
            save_weights(
                folder / RESTORE,
                trainer.weights(),
                overwrite=True,
                metadata={"epoch": str(epoch + 1), "class_names": json.dumps(data.class_names)},
            )
        _checkpoint(folder, state, backend, plan.spec, epoch + 1, history, best, callbacks)
        _write_metrics(folder, history)
        if meta.get("tensorboard"):
            from specnet.events import write_events

            write_events(folder, history)
        write_marker(folder, **meta, status="running", epochs_done=epoch + 1)
        progress.epoch_end(epoch, logs, time.perf_counter() - began)
        for event in callbacks.events:
            if event["epoch"] == epoch + 1:
                progress.note(_describe(event))
        if decision["stop"]:
            break


def _save_best(
    folder: Path, weights: Weights, epoch: int, value: float, validated: bool, meta: dict[str, Any]
) -> None:
    """``best/``: the best epoch so far (Keras's ``ModelCheckpoint(save_best_only=True)`` on
    ``val_loss``, or ``loss`` without validation data) as a folder ``evaluate``, ``predict``,
    ``export``, ``parity`` and ``build --weights`` open like a run. The weights are written
    first, its ``specnet.json`` (no times: its bytes follow the training) last."""
    monitor = "val_loss" if validated else "loss"
    names = json.dumps(meta["class_names"])
    extra = {"epoch": str(epoch), "monitor": monitor, "value": repr(value), "class_names": names}
    save_weights(folder / BEST, weights, overwrite=True, metadata=extra)
    best = folder / BEST_FOLDER
    atomic_write_bytes(best / SPEC_FILE, (folder / SPEC_FILE).read_bytes(), overwrite=True)
    marker = {
        "kind": "best",
        "spec": meta["spec"],
        "backend": meta["backend"],
        "epoch": epoch,
        "monitor": monitor,
        "value": value,
        "class_names": meta["class_names"],
    }
    text = json.dumps(json_safe(marker), indent=2, allow_nan=False) + "\n"
    atomic_write_text(best / "specnet.json", text, overwrite=True)


def _checkpoint(
    folder: Path,
    state: dict[str, Any],
    backend: str,
    spec: Spec,
    epoch: int,
    history: dict[str, list[float]],
    best: float,
    callbacks: Callbacks | None = None,
) -> None:
    progress = {
        "epoch": epoch,
        "seed": spec.train.seed,
        "spec": spec_fingerprint(spec),
        "class_names": spec.class_names,
        "history": history,
        "best": best,
        "backend": backend,
        "versions": _environment(backend),
        "callbacks": (callbacks or Callbacks()).state(),
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


def _describe(event: dict[str, Any]) -> str:
    if event["callback"] == "EarlyStopping":
        restored = (
            f"; weights of epoch {event['best_epoch']} restored"
            if event["restored_best_weights"]
            else ""
        )
        return (
            f"early stopping at epoch {event['epoch']}: {event['monitor']} last improved at "
            f"epoch {event['best_epoch']} ({event['best']:.4g}){restored}"
        )
    return f"epoch {event['epoch']}: learning rate reduced to {event['learning_rate']:.4g}"


def _restore(
    folder: Path, trainer: Any, spec: Spec, backend: str, callbacks: Callbacks | None = None
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
        raise UsageError(
            f"{folder}: checkpoint was trained with seed {progress.get('seed')}, "
            f"but {SPEC_FILE} now says seed {seed}; resuming would not reproduce "
            "the run"
        )
    if progress.get("spec") != spec_fingerprint(spec):
        raise UsageError(
            f"{folder}: {SPEC_FILE} was changed after the checkpoint was written "
            "(only --epochs may change on a resume); resuming would not reproduce "
            "the run"
        )
    now = _environment(backend)
    mismatched = {k: (v, now.get(k)) for k, v in progress["versions"].items() if now.get(k) != v}
    if mismatched:
        detail = ", ".join(f"{k} {old} → {new}" for k, (old, new) in mismatched.items())
        raise UsageError(
            f"{folder}: checkpoint was written under other versions or thread "
            f"counts ({detail}); resuming would not reproduce the run"
        )
    trainer.load_state(state)
    if callbacks is not None:
        callbacks.load(progress.get("callbacks") or {})
    history = progress["history"]
    for key in COLUMNS:  # a column added since the checkpoint was written: unknown there
        history.setdefault(key, [math.nan] * len(history["loss"]))
    return int(progress["epoch"]), history, float(progress["best"])


def _write_metrics(folder: Path, history: dict[str, list[float]]) -> None:
    rows = ["epoch," + ",".join(COLUMNS)]
    for epoch in range(len(history["loss"])):
        rows.append(f"{epoch}," + ",".join(repr(history[key][epoch]) for key in COLUMNS))
    atomic_write_text(folder / "metrics.csv", "\n".join(rows) + "\n", overwrite=True)
    text = json.dumps(json_safe(history), indent=2, allow_nan=False)  # an empty split's NaN: null
    atomic_write_text(folder / "history.json", text + "\n", overwrite=True)


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
    names = json.dumps(data.class_names)
    save_weights(
        folder / WEIGHTS_FILE,
        final,
        overwrite=True,
        metadata={"spec": plan.name, "class_names": names},
    )
    model = backend.build(plan)
    backend.set_weights(model, plan, final)
    backend.save_native(model, folder / backend.native_file, plan)
    x, y = (data.x_val, data.y_val) if len(data.x_val) else (data.x_train, data.y_train)
    binary = plan.spec.train.loss == "binary_crossentropy"
    _, _, guess = evaluate_logits(trainer.logits, x, y, binary)
    classes = len(data.class_names)
    plots.training_curves(history, folder / "training_curves.png", plan.name)
    plots.confusion_matrix(y, guess, data.class_names, folder / "confusion_matrix.png", classes)


def _overridden(spec: Spec, overrides: dict[str, Any]) -> Spec:
    """The spec with ``train`` fields set from the command line, validated like the file;
    ``set``: ``--set FIELD=VALUE`` assignments (:func:`specnet.spec.with_overrides`), first."""
    overrides = dict(overrides)
    spec = with_overrides(spec, overrides.pop("set", None) or [])
    if not overrides:
        return spec
    document = spec.train.model_dump(mode="json")
    for key, value in overrides.items():
        if key == "learning_rate":
            document["optimizer"]["learning_rate"] = value
        else:
            document[key] = value
    try:
        changed = Train.model_validate(document)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(step) for step in first["loc"] if not str(step)[0].isupper())
        raise UsageError(f"train.{where}: {first['msg'].lower()}") from None
    return spec.model_copy(update={"train": changed})


def _same_network(given: Spec, run: Spec, given_path: str | Path, folder: Path) -> None:
    """``train SPEC --resume RUN`` continues RUN's own spec: refuse a SPEC that differs."""

    def network(spec: Spec) -> dict[str, Any]:
        document = spec.model_dump(
            mode="json", exclude={"data", "class_names", "description", "schema_"}
        )
        document["train"].pop("epochs", None)
        return document

    mine, theirs = network(given), network(run)
    if mine != theirs:
        changed = sorted(
            key for key in mine.keys() | theirs.keys() if mine.get(key) != theirs.get(key)
        )
        raise UsageError(
            f"{given_path} differs from the spec {folder} was trained with ({', '.join(changed)}); "
            f"--resume continues the run's own spec: drop {given_path}, or start a new run"
        )


def _check_cuda(backend: str) -> None:
    """``--device cuda`` on a machine whose framework sees no GPU is refused (exit 1), on both
    backends, rather than trained on the CPU and recorded as cuda."""
    if backend == "torch":
        from specnet.backends.torch_train import device_for

        device_for("cuda", require("torch").cuda.is_available())
        return
    from specnet._frameworks import keras_module

    keras_module()
    if not require("tensorflow").config.list_physical_devices("GPU"):
        raise RuntimeFailure("--device cuda: TensorFlow sees no GPU here")
