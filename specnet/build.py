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

import contextlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from specnet import __version__
from specnet._io import atomic_write_text
from specnet.backends import BACKENDS, Backend, get_backend
from specnet.card import CARD, PICTURE, write_card
from specnet.certificate import CERTIFICATE, certify
from specnet.errors import RuntimeFailure, UsageError
from specnet.rundir import (
    MARKER,
    SPEC_FILE,
    WEIGHTS_FILE,
    claim,
    read_marker,
    spec_fingerprint,
    staged,
    weights_digest,
    write_marker,
)
from specnet.shapes import Limits, Plan, class_names_of, infer, summary_text
from specnet.spec import Spec, as_spec
from specnet.weights import (
    check_classes,
    check_weights,
    init_weights,
    load_weights,
    save_weights,
)

if TYPE_CHECKING:
    from specnet.weights import Weights

__all__ = [
    "SPEC_FILE",
    "WEIGHTS_FILE",
    "BuildResult",
    "build",
    "resolve_weights_path",
    "spec_fingerprint",
    "weights_digest",
]


@dataclass(frozen=True)
class BuildResult:
    """What ``build`` made: the plan, the live model, and the files written."""

    plan: Plan
    backend: str | None  # None: no native model (an import without --backend)
    model: object
    out: Path
    files: tuple[Path, ...]
    notes: tuple[str, ...] = field(default=())


def resolve_weights_path(path: Path) -> Path:
    """A weights file, or a build/run directory holding ``weights.safetensors``."""
    return path / WEIGHTS_FILE if path.is_dir() else path


def resolved_yaml(plan: Plan, source: str) -> str:
    header = f"# {plan.name}: resolved by specnet {__version__} from {source}\n"
    return header + yaml.safe_dump(plan.spec.resolved(), sort_keys=False, allow_unicode=True)


def build(
    spec_path: str | Path | Spec,
    backend: str | None = "keras",
    *,
    out: str | Path | None = None,
    seed: int | None = None,
    weights: str | Path | Weights | None = None,
    force: bool = False,
    emit_source: str | Path | None = None,
    limits: Limits | None = None,
    origin: str | None = None,
    extra: dict[str, Any] | None = None,
    texts: dict[str, str] | None = None,
) -> BuildResult:
    """Build ``spec_path`` (a file or a :class:`Spec`) with ``backend`` and write its build
    directory.

    Weights are ``weights`` (a canonical file or a build/run directory, from any backend, or
    canonical arrays already in memory, described by ``origin``) or, by default, drawn from the
    spec's initializers with ``seed`` (default: the spec's train seed). ``backend=None`` writes
    no native model (``specnet import`` without ``--backend``: the folder needs no framework).
    ``extra`` adds fields to ``specnet.json``; ``texts`` adds files (name → text), never
    replacing one of yours.
    """
    spec, spec_file, _ = as_spec(spec_path)
    plan = infer(spec, limits)
    chosen = get_backend(backend) if backend is not None else None
    # first: a missing framework must fail before anything is written
    model = chosen.build(plan) if chosen is not None else None
    if isinstance(weights, dict):
        canonical = check_weights(plan, weights, origin or "weights")
        origin = origin or "imported weights"
        source_run = None
    elif weights is not None:
        source = resolve_weights_path(Path(weights))
        canonical = load_weights(source, plan)
        recorded = check_classes(source, spec.class_names)
        if spec.class_names is None and recorded is not None:  # adopt the trained order
            plan = infer(spec.model_copy(update={"class_names": recorded}), limits)
        origin = str(source)
        source_run = source.parent if source.name == WEIGHTS_FILE else None
    else:
        source_run = None
        seed = plan.spec.train.seed if seed is None else seed
        canonical = init_weights(plan, seed)
        origin = f"initializers, seed {seed}"
    folder = claim(
        Path(out or Path("build") / plan.name), kind="build", spec=plan.name, force=force
    )
    if chosen is not None:
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
    natives = [chosen.native_file] if chosen is not None else []
    names = [SPEC_FILE, WEIGHTS_FILE, *natives, "summary.txt", *kept.values()]
    texts = dict(texts or {})
    theirs = _not_ours(folder, (CARD, PICTURE, *texts))  # a README.md of yours stays yours
    what = {CARD: "the model card", PICTURE: "the picture"}
    notes += [
        f"kept your {folder / name}: {what.get(name, f'specnet’s {name}')} goes there otherwise"
        for name in sorted(theirs)
    ]
    names += [CERTIFICATE, *(name for name in (CARD, PICTURE, *texts) if name not in theirs)]
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
        if chosen is not None:
            chosen.save_native(model, stage / chosen.native_file, plan)
        atomic_write_text(stage / "summary.txt", summary_text(plan) + "\n", overwrite=True)
        for name, text in texts.items():
            if name not in theirs:
                atomic_write_text(stage / name, text, overwrite=True)
        certificate = _certify(stage, folder, plan, canonical, chosen, model, kept, identity)
        if not certificate["ok"]:
            notes.append(_failed(certificate))
        write_card(stage, plan, certificate, origin, source_run, spec_file, skip=theirs)
        write_marker(
            stage,
            kind="build",
            spec=plan.name,
            spec_file=spec_file,
            **({"backend": backend} if backend is not None else {}),
            backends=sorted((({str(backend)} if natives else set()) | set(kept)) - {"onnx"}),
            weights=origin,
            **identity,
            **(extra or {}),
            files=sorted(set(names)),
        )
    files = [folder / name for name in names]
    if emit_source is not None and chosen is not None:
        files.append(
            atomic_write_text(Path(emit_source), chosen.emit_source(plan), overwrite=force)
        )
    files.append(folder / MARKER)
    return BuildResult(plan, backend, model, folder, tuple(files), tuple(notes))


def _certify(
    stage: Path,
    folder: Path,
    plan: Plan,
    weights: Weights,
    chosen: Backend | None,
    model: object,
    kept: dict[str, str],
    identity: dict[str, object],
) -> dict[str, Any]:
    """The build's parity certificate: the native model just built, specnet's direct ONNX
    graph of the canonical weights in ONNX Runtime, and (unchanged, not re-run) the entries of
    the kept natives and ONNX file, which are the same spec and weights."""
    from specnet.backends.onnx import read_onnx
    from specnet.certificate import direct_runner, native_logits, onnx_runner

    runners: dict[str, Any] = {}
    if chosen is None:
        pass  # no native model (an import without --backend)
    elif chosen.name == "onnx":
        native = onnx_runner(read_onnx(stage / chosen.native_file))
        runners[f"ort:{chosen.native_file}"] = (chosen.native_file, native)
    else:
        runners[chosen.name] = (chosen.native_file, native_logits(chosen, model, plan))
    # (ONNX Runtime missing: the certificate holds the native model alone)
    with contextlib.suppress(RuntimeFailure, ImportError):
        runners["onnx"] = (None, direct_runner(plan, weights))
    keep = {}
    old = _old_certificate(folder)
    if old and old.get("weights_sha256") == identity["weights_sha256"]:
        files = set(kept.values())
        keep = {
            name: entry
            for name, entry in old["runtimes"].items()
            if entry.get("file") in files and (chosen is None or name != chosen.name)
        }
    return certify(
        stage,
        plan,
        weights,
        runners,
        fingerprint=str(identity["spec_fingerprint"]),
        weights_sha256=str(identity["weights_sha256"]),
        keep=keep,
    )


def _not_ours(folder: Path, names: tuple[str, ...]) -> set[str]:
    """Those of ``names`` in ``folder`` that specnet did not write there (its marker does not
    list them): a build never replaces them."""
    made = set((read_marker(folder) or {}).get("files") or ())
    return {name for name in names if (folder / name).exists() and name not in made}


def _old_certificate(folder: Path) -> dict[str, Any] | None:
    from specnet.certificate import read_certificate

    try:
        return read_certificate(folder)
    except UsageError:
        return None


def _failed(certificate: dict[str, Any]) -> str:
    pairs = certificate["pairs"]
    if not pairs:
        if list(certificate.get("runtimes", {})) == ["onnx"]:
            return (
                "parity.json: one runtime (specnet's direct ONNX graph), nothing to compare it "
                "with; --backend keras|torch adds a native model"
            )
        return "parity.json: one runtime ran (ONNX Runtime is not installed), nothing compared"
    bad = [f"{p['a']} vs {p['b']} (max |a - b| {p['max_abs']:.1e})" for p in pairs if not p["ok"]]
    return (
        f"parity.json: the runtimes disagree: {', '.join(bad)}; "
        "`specnet parity BUILD --layers` says where"
    )


def _other_natives(
    folder: Path, backend: str | None, identity: dict[str, object]
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
