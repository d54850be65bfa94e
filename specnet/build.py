"""``specnet build``: a spec → a native model with canonical weights, in a build directory.

build/<spec name>/
    specnet.json          what made it: kind, spec, backend, seed, weights source, versions
    spec.resolved.yaml    the spec with every default and layer name filled in
    weights.safetensors   canonical weights (NumPy-readable; any backend loads them)
    model.keras | model.torch.safetensors   the native model
    summary.txt           the layer table

A rebuild replaces the folder as a whole (written beside it, then swapped in): the native
model of another backend and a ``model.onnx`` exported from the old weights go with it; files
specnet did not make stay. A build killed at any moment leaves the previous one intact.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from specnet import __version__
from specnet._io import atomic_write_text
from specnet.backends import BACKENDS, get_backend
from specnet.rundir import MARKER, claim, staged, write_marker
from specnet.shapes import Limits, Plan, infer, summary_text
from specnet.spec import load_spec
from specnet.weights import init_weights, load_weights, save_weights

__all__ = ["BuildResult", "build", "resolve_weights_path"]

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


def resolve_weights_path(path: Path) -> Path:
    """A weights file, or a build/run directory holding ``weights.safetensors``."""
    return path / WEIGHTS_FILE if path.is_dir() else path


def resolved_yaml(plan: Plan, source: str) -> str:
    header = f"# {plan.name}: resolved by specnet {__version__} from {source}\n"
    return header + yaml.safe_dump(plan.spec.resolved(), sort_keys=False, allow_unicode=True)


def build(
    spec_path: str | Path,
    backend: str = "keras",
    *,
    out: str | Path | None = None,
    seed: int | None = None,
    weights: str | Path | None = None,
    force: bool = False,
    emit_source: str | Path | None = None,
    limits: Limits | None = None,
) -> BuildResult:
    """Build ``spec_path`` with ``backend`` and write its build directory.

    Weights are ``weights`` (a canonical file or a build/run directory, from any backend) or, by
    default, drawn from the spec's initializers with ``seed`` (default: the spec's train seed).
    """
    plan = infer(load_spec(spec_path), limits)
    chosen = get_backend(backend)
    model = chosen.build(plan)  # first: a missing framework must fail before anything is written
    folder = claim(
        Path(out or Path("build") / plan.name), kind="build", spec=plan.name, force=force
    )
    if weights is not None:
        source = resolve_weights_path(Path(weights))
        canonical = load_weights(source, plan)
        origin = str(source)
    else:
        seed = plan.spec.train.seed if seed is None else seed
        canonical = init_weights(plan, seed)
        origin = f"initializers, seed {seed}"
    chosen.set_weights(model, plan, canonical)

    # everything is written into a staged copy that replaces the folder in one step: a build
    # killed at any moment leaves the previous build whole (see rundir.staged)
    derived = {get_backend(other).native_file for other in BACKENDS} | {"model.onnx"}
    names = [SPEC_FILE, WEIGHTS_FILE, chosen.native_file, "summary.txt"]
    with staged(folder, replaces=derived) as stage:
        atomic_write_text(stage / SPEC_FILE, resolved_yaml(plan, str(spec_path)), overwrite=True)
        save_weights(
            stage / WEIGHTS_FILE,
            canonical,
            overwrite=True,
            metadata={"spec": plan.name, "specnet": __version__, "origin": origin},
        )
        chosen.save_native(model, stage / chosen.native_file)
        atomic_write_text(stage / "summary.txt", summary_text(plan) + "\n", overwrite=True)
        write_marker(
            stage,
            kind="build",
            spec=plan.name,
            spec_file=str(spec_path),
            backend=backend,
            weights=origin,
            files=sorted(names),
        )
    files = [folder / name for name in names]
    if emit_source is not None:
        files.append(
            atomic_write_text(Path(emit_source), chosen.emit_source(plan), overwrite=force)
        )
    files.append(folder / MARKER)
    return BuildResult(plan, backend, model, folder, tuple(files))
