"""The model card (``README.md``) and picture (``model.svg``) of a build or run folder.

The card is what a person opening the folder needs without specnet: what the model is, its size,
how to feed it (the I/O contract and preprocessing), its classes, how it was trained when it
came from a run, and the parity certificate as a table. It is rewritten whenever the folder's
certificate changes (a build, an export, a run's end).
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection
from pathlib import Path
from typing import Any

from specnet import __version__
from specnet._io import atomic_write_text
from specnet.shapes import BYTES_PER_VALUE, Plan, class_names_of, summary_text

__all__ = ["CARD", "PICTURE", "card_text", "write_card"]

CARD = "README.md"
PICTURE = "model.svg"


def _si(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:,.2f} {unit}"
    return f"{n:,.0f}"


def _training(run: Path | None) -> list[str]:
    """The training facts of the run the weights came from (empty when they did not)."""
    from specnet.rundir import read_marker

    if run is None:
        return []
    marker = read_marker(run) or {}
    if marker.get("kind") != "train":
        return []
    try:
        history = json.loads((run / "history.json").read_text())
    except (OSError, ValueError):
        history = {}
    lines = ["", "## Training", ""]
    data = marker.get("data")
    lines.append(f"- run: `{run}` ({marker.get('backend', '?')}, seed {marker.get('seed', '?')})")
    if data:
        lines.append(f"- data: `{json.dumps(data) if not isinstance(data, str) else data}`")
    epochs = len(history.get("loss", []))
    lines.append(f"- epochs: {epochs}")
    if epochs:
        lines += [
            "",
            "| epoch | loss | accuracy | val_loss | val_accuracy |",
            "|---|---|---|---|---|",
        ]
        for i in range(epochs):
            cells = []
            for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
                values = history.get(key) or []
                value = values[i] if i < len(values) else None
                cells.append(
                    "—"
                    if value is None or (isinstance(value, float) and math.isnan(value))
                    else f"{value:.4f}"
                )
            lines.append(f"| {i + 1} | " + " | ".join(cells) + " |")
    if (run / "training_curves.png").exists():
        lines += ["", f"![training curves]({run.resolve() / 'training_curves.png'})"]
    return lines


def _certificate(certificate: dict[str, Any] | None) -> list[str]:
    lines = ["", "## Parity certificate (`parity.json`)", ""]
    if not certificate:
        return [*lines, "None yet: `specnet export` writes one."]
    shape = "×".join(str(n) for n in certificate["input"]["shape"])
    lines.append(
        f"{len(certificate['runtimes'])} runtimes on one batch ({shape}, "
        f"{certificate['input']['distribution']}, seed {certificate['input']['seed']}); "
        "the logits (before the final softmax or sigmoid) compared. "
        "`specnet verify FOLDER` re-checks it here."
    )
    lines += ["", "| runtime | file | versions |", "|---|---|---|"]
    for name, entry in certificate["runtimes"].items():
        versions = ", ".join(f"{k} {v}" for k, v in entry.get("versions", {}).items())
        lines.append(f"| {name} | {entry.get('file') or '(built from the weights)'} | {versions} |")
    lines += [
        "",
        "| pair | max abs diff | max rel diff | argmax agree | tolerance | |",
        "|---|---|---|---|---|---|",
    ]
    for pair in certificate["pairs"]:
        lines.append(
            f"| {pair['a']} vs {pair['b']} | {pair['max_abs']:.1e} | {pair['max_rel']:.1e} | "
            f"{pair['argmax_agree']:.0%} | atol {pair['atol']:g} + rtol {pair['rtol']:g} | "
            f"{'✓' if pair['ok'] else '✗'} |"
        )
    lines += ["", f"Verdict: {'all runtimes agree' if certificate['ok'] else 'PARITY FAILED'}."]
    return lines


def card_text(
    plan: Plan,
    certificate: dict[str, Any] | None,
    origin: str,
    run: Path | None = None,
    bench: str | None = None,
) -> str:
    h, w, c = plan.input_shape
    channels = {1: "grey", 3: "RGB", 4: "RGBA"}.get(c, f"{c} channels")
    classes = class_names_of(plan)
    head = plan.output
    final = (
        "softmax probabilities"
        if head.kind == "Softmax" or getattr(head.layer, "activation", None) == "softmax"
        else (
            "a sigmoid probability"
            if getattr(head.layer, "activation", None) == "sigmoid"
            else "the last layer's values"
        )
    )
    out = ", ".join(str(n) for n in plan.output_shape)
    lines = [
        f"# {plan.name}",
        "",
        plan.spec.description.strip() or "(the spec has no `description:`)",
        "",
        f"Made by specnet {__version__}; weights: {origin}.",
        "",
        f"![{plan.name}]({PICTURE})",
        "",
        "## Size",
        "",
        "| parameters | trainable | forward FLOPs per example | float32 weights |",
        "|---|---|---|---|",
        f"| {plan.total_params:,} | {plan.trainable_params:,} | {_si(plan.flops)} | "
        f"{plan.total_params * BYTES_PER_VALUE / 2**20:,.2f} MiB |",
        "",
        "## Input and output",
        "",
        f"- input: float32 `[batch, {h}, {w}, {c}]` (NHWC; an ONNX export with `--layout nchw` "
        f"takes `[batch, {c}, {h}, {w}]`), {channels}",
        f"- preprocessing: resize to {h}×{w} (bilinear, Pillow's `Image.resize`), then pixel / 255 "
        "(8-bit; / 65535 for 16-bit): values in [0, 1], no mean or std",
        f"- output: `[batch, {out}]`, {final}",
        f"- classes ({len(classes)}): "
        + ", ".join(f"`{name}`" for name in classes[:50])
        + (" …" if len(classes) > 50 else ""),
    ]
    lines += _training(run)
    lines += _certificate(certificate)
    if bench:
        lines += ["", "## Speed on the machine that measured it", "", "```text", bench, "```"]
    lines += ["", "## Layers", "", "```text", summary_text(plan), "```", ""]
    return "\n".join(lines)


def write_card(
    folder: Path,
    plan: Plan,
    certificate: dict[str, Any] | None,
    origin: str,
    run: Path | None = None,
    spec_file: str | None = None,
    skip: Collection[str] = (),
) -> None:
    """Write ``README.md`` and ``model.svg`` into ``folder`` (but those named in ``skip``)."""
    from specnet.diagram import scene_for, svg_text

    if PICTURE not in skip:
        text = svg_text(scene_for(plan, spec_file))
        atomic_write_text(folder / PICTURE, text, overwrite=True)
    if CARD not in skip:
        text = card_text(plan, certificate, origin, run)
        atomic_write_text(folder / CARD, text, overwrite=True)
