"""``specnet build``: a spec → a native model with canonical weights, in a build directory.

build/<spec name>/
    specnet.json          what made it: kind, spec, backend, seed, weights source, versions
    spec.resolved.yaml    the spec with every default and layer name filled in
    weights.safetensors   canonical weights (NumPy-readable; any backend loads them)
    model.keras | model.torch.safetensors   the native model
    summary.txt           the layer table

A rebuild replaces the folder as a whole (written beside it, then swapped in). The native model
of another backend stays when it was built from the same spec and the same weights (so
``build --backend keras`` then ``build --backend torch --weights`` of that folder leaves both);
one built from another spec or other weights goes, and so does a ``model.onnx`` exported from
the old weights; :attr:`BuildResult.notes` says what went and why. Files specnet did not make
stay. A build killed at any moment leaves the previous one intact.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from specnet import __version__
from specnet._io import atomic_write_text
from specnet.backends import BACKENDS, get_backend
from specnet.rundir import MARKER, claim, read_marker, staged, write_marker
from specnet.shapes import Limits, Plan, class_names_of, infer, summary_text
from specnet.spec import Spec, as_spec
from specnet.weights import check_classes, init_weights, load_weights, save_weights

if TYPE_CHECKING:
    from specnet.weights import Weights

__all__ = [
    "BuildResult",
    "build",
    "resolve_weights_path",
    "spec_fingerprint",
    "weights_digest",
]

WEIGHTS_FILE = "weights.safetensors"
SPEC_FILE = "spec.resolved.yaml"


@dataclass(frozen=True)
class BuildResult:
    """What ``build`` made: the plan, the live model, and the files written."""

    plan: Plan
    backend: str
    model: object
    out: Path
    files: tuple[Path, ...]
    notes: tuple[str, ...] = field(default=())


def spec_fingerprint(spec: Spec) -> str:
    """What a model depends on: the whole resolved spec but ``train.epochs`` (which a resume's
    ``--epochs`` may raise), as a short SHA-256."""
    document = spec.model_dump(mode="json", exclude={"train": {"epochs"}})
    text = json.dumps(document, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def weights_digest(weights: Weights) -> str:
    """A SHA-256 of canonical weights (keys, shapes and bytes), to tell two sets apart."""
    digest = hashlib.sha256()
    for key in sorted(weights):
        array = weights[key]
        digest.update(f"{key}:{tuple(array.shape)}:{array.dtype.str}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()[:16]


def resolve_weights_path(path: Path) -> Path:
    """A weights file, or a build/run directory holding ``weights.safetensors``."""
    return path / WEIGHTS_FILE if path.is_dir() else path


def resolved_yaml(plan: Plan, source: str) -> str:
    header = f"# {plan.name}: resolved by specnet {__version__} from {source}\n"
    return header + yaml.safe_dump(plan.spec.resolved(), sort_keys=False, allow_unicode=True)


def build(
    spec_path: str | Path | Spec,
    backend: str = "keras",
    *,
    out: str | Path | None = None,
    seed: int | None = None,
    weights: str | Path | None = None,
    force: bool = False,
    emit_source: str | Path | None = None,
    limits: Limits | None = None,
) -> BuildResult:
    """Build ``spec_path`` (a file or a :class:`Spec`) with ``backend`` and write its build
    directory.

    Weights are ``weights`` (a canonical file or a build/run directory, from any backend) or, by
    default, drawn from the spec's initializers with ``seed`` (default: the spec's train seed).
    """
    spec, spec_file, _ = as_spec(spec_path)
    plan = infer(spec, limits)
    chosen = get_backend(backend)
    model = chosen.build(plan)  # first: a missing framework must fail before anything is written
    if weights is not None:
        source = resolve_weights_path(Path(weights))
        canonical = load_weights(source, plan)
        recorded = check_classes(source, spec.class_names)
        if spec.class_names is None and recorded is not None:  # adopt the trained order
            plan = infer(spec.model_copy(update={"class_names": recorded}), limits)
        origin = str(source)
    else:
        seed = plan.spec.train.seed if seed is None else seed
        canonical = init_weights(plan, seed)
        origin = f"initializers, seed {seed}"
    folder = claim(
        Path(out or Path("build") / plan.name), kind="build", spec=plan.name, force=force
    )
    chosen.set_weights(model, plan, canonical)
    classes = class_names_of(plan)
    identity: dict[str, object] = {
        "spec_fingerprint": spec_fingerprint(plan.spec),
        "weights_sha256": weights_digest(canonical),
        "class_names": classes,
    }
    kept, notes = _other_natives(folder, backend, identity)

    # everything is written into a staged copy that replaces the folder in one step: a build
    # killed at any moment leaves the previous build whole (see rundir.staged)
    derived = {get_backend(other).native_file for other in BACKENDS} | {"model.onnx"}
    derived -= set(kept.values())
    names = [SPEC_FILE, WEIGHTS_FILE, chosen.native_file, "summary.txt", *kept.values()]
    with staged(folder, replaces=derived) as stage:
        atomic_write_text(stage / SPEC_FILE, resolved_yaml(plan, spec_file), overwrite=True)
        save_weights(
            stage / WEIGHTS_FILE,
            canonical,
            overwrite=True,
            metadata={
                "spec": plan.name,
                "specnet": __version__,
                "origin": origin,
                "class_names": json.dumps(classes),
            },
        )
        chosen.save_native(model, stage / chosen.native_file, plan)
        atomic_write_text(stage / "summary.txt", summary_text(plan) + "\n", overwrite=True)
        write_marker(
            stage,
            kind="build",
            spec=plan.name,
            spec_file=spec_file,
            backend=backend,
            backends=sorted({backend, *kept} - {"onnx"}),
            weights=origin,
            **identity,
            files=sorted(set(names)),
        )
    files = [folder / name for name in names]
    if emit_source is not None:
        files.append(
            atomic_write_text(Path(emit_source), chosen.emit_source(plan), overwrite=force)
        )
    files.append(folder / MARKER)
    return BuildResult(plan, backend, model, folder, tuple(files), tuple(notes))


def _other_natives(
    folder: Path, backend: str, identity: dict[str, object]
) -> tuple[dict[str, str], list[str]]:
    """The other backends' native models in ``folder`` that a rebuild keeps (backend → file):
    those built from the same spec and weights; and a note for each one that goes."""
    marker = read_marker(folder) or {}
    if marker.get("kind") != "build":
        return {}, []
    built = marker.get("backends") or [marker.get("backend")]
    same = all(marker.get(key) == value for key, value in identity.items())
    kept, notes = {}, []
    for other in built:
        if other == backend or other not in BACKENDS:
            continue
        native = get_backend(other).native_file
        if not (folder / native).exists():
            continue
        if same:
            kept[other] = native
        else:
            notes.append(
                f"removed {folder / native}: it was built from another spec or other "
                f"weights; rebuild it with --backend {other}"
            )
    if (folder / "model.onnx").exists():
        if same:
            kept["onnx"] = "model.onnx"
        else:
            notes.append(f"removed {folder / 'model.onnx'}: it was exported from other weights")
    return kept, notes
