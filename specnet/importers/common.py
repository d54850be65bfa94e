"""What every importer shares: the result, the readable spec, the source's digest."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = ["ImportResult", "readable_spec", "rows_to_hwc", "sha256_of", "write_import"]


def rows_to_hwc(kernel: Any, image: tuple[int, ...]) -> Any:
    """A Dense kernel whose rows follow a (c, h, w) flatten of ``image`` (the spec's (h, w, c)
    shape), its rows reordered to the spec's (h, w, c) flatten."""
    h, w, c = image
    units = kernel.shape[1]
    return kernel.reshape(c, h, w, units).transpose(1, 2, 0, 3).reshape(h * w * c, units)


@dataclass
class ImportResult:
    """What an import made: the build folder, its plan, and what was done on the way."""

    out: Path
    plan: Any
    source_format: str
    convention: str | None
    notes: list[str] = field(default_factory=list)
    files: tuple[Path, ...] = ()


def fit_batch(spec: dict[str, Any], source: str, limits: Any, notes: list[str]) -> None:
    """Give an imported spec a ``train.batch_size`` whose activations fit ``limits`` when the
    default 32 would not (ResNet50 at 224×224: 4.4 GiB; the limit: 4 GiB): the largest power of
    two that fits, said in ``notes``. Inference is not concerned (batch 1 needs a 32nd), but
    training and the shape check would refuse the whole import."""
    from specnet.shapes import Limits, infer
    from specnet.spec import spec_from_dict

    limits = limits or Limits()
    unlimited = Limits(max_params=limits.max_params, max_activation_bytes=1 << 62)
    plan = infer(spec_from_dict(spec, source), unlimited)
    batch = plan.spec.train.batch_size
    if plan.activation_bytes(batch) <= limits.max_activation_bytes:
        return
    fitted = batch
    while fitted > 1 and plan.activation_bytes(fitted) > limits.max_activation_bytes:
        fitted //= 2
    spec.setdefault("train", {})["batch_size"] = fitted
    notes.append(
        f"train.batch_size {fitted}: a batch of {batch} would keep "
        f"{plan.activation_bytes(batch) / 2**30:.1f} GiB of activations for training, over "
        f"the limit of {limits.max_activation_bytes / 2**30:.1f} GiB"
    )


def readable_spec(spec: dict[str, Any], source: str) -> str:
    """The spec as a person writes it: one layer a line, Keras's names."""
    lines = [
        f"# Imported by specnet from {source}.",
        "# Every field not written here is Keras's default; spec.resolved.yaml has them all.",
        f"name: {spec['name']}",
    ]
    if spec.get("description"):
        lines.append("description: " + yaml.safe_dump(spec["description"], width=10**6).strip())
    lines.append(f"input_shape: [{', '.join(str(v) for v in spec['input_shape'])}]")
    if spec.get("class_names"):
        lines.append(
            "class_names: "
            + yaml.safe_dump(spec["class_names"], default_flow_style=True, width=10**6).strip()
        )
    lines.append("layers:")
    for layer in spec["layers"]:
        text = yaml.safe_dump(layer, default_flow_style=True, sort_keys=False, width=10**6).strip()
        lines.append(f"  - {text}")
    if spec.get("train"):  # (fit_batch's batch size)
        text = yaml.safe_dump(spec["train"], default_flow_style=True, width=10**6).strip()
        lines.append(f"train: {text}")
    return "\n".join(lines) + "\n"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_import(
    path: Path,
    spec: Any,
    spec_map: dict[str, Any],
    weights: Any,
    *,
    source_format: str,
    origin: str,
    header: str,
    imported: dict[str, Any],
    convention: str | None,
    out: str | Path | None,
    backend: str | None,
    force: bool,
    limits: Any,
) -> ImportResult:
    """The build directory of an import: :func:`specnet.build.build` with the weights in
    memory, ``imported`` in ``specnet.json``, ``spec.yaml``, and ``header`` atop the summary."""
    from specnet._io import atomic_write_text
    from specnet.build import build

    record = {"source": str(path), "source_sha256": sha256_of(path), "format": source_format}
    result = build(
        spec,
        backend,
        out=out or Path("build") / spec.name,
        weights=weights,
        force=force,
        limits=limits,
        origin=origin,
        extra={"imported": {**record, **imported}},
        texts={"spec.yaml": readable_spec(spec_map, str(path))},
    )
    summary = result.out / "summary.txt"
    atomic_write_text(summary, header + summary.read_text(), overwrite=True)
    notes = list(imported.get("notes", [])) + list(result.notes)
    return ImportResult(result.out, result.plan, source_format, convention, notes, result.files)
