"""The parity certificate (``parity.json``) that ``build`` and ``export`` leave beside the
models they write, and ``specnet verify``, which re-checks it on the machine at hand.

A certificate says: on one recorded batch, each runtime of the folder computes these outputs,
and every pair of runtimes agrees within a stated tolerance. It holds

* ``spec`` and ``spec_fingerprint``, ``weights_sha256`` and a SHA-256 of every weight tensor,
  and a SHA-256 of every model file it certifies;
* ``input``: the batch — ``numpy.random.default_rng(seed).random((batch, h, w, c), float32)``,
  uniform in [0, 1) like the images specnet feeds a model, NHWC;
* ``machine`` and, per runtime, the versions it ran with and its outputs on that batch as
  float32 bytes: the logits, before a final softmax or sigmoid, as ``specnet parity`` compares
  them (a 1000-way softmax squeezes a wrong logit below any absolute tolerance). A native file's
  logits come from its weights as its framework loads them, in the network without its final
  squash; an ONNX file's from the file itself with its final Softmax or Sigmoid made an
  Identity;
* ``pairs``: each pair's max absolute and relative difference, argmax agreement, tolerance and
  why that tolerance, and pass or fail.

Runtimes: ``keras`` and ``torch`` (the native model files), ``onnx`` (specnet's direct ONNX
graph of ``weights.safetensors`` in ONNX Runtime: the framework-free witness that the canonical
weights and the native file are one model) and ``ort:<file>`` (an exported ONNX file in ONNX
Runtime, in its own layout).

Tolerances: two runtimes are compared in float32 — ``|a − b| ≤ atol + rtol·|b|`` with
:data:`~specnet.agree.ATOL`, :data:`~specnet.agree.RTOL`, and the same argmax (for one sigmoid
unit, the same side of 0.5) — since two frameworks sum in different orders. A runtime against
its own recorded outputs is compared bit for bit when its versions and the machine are the ones
recorded (the same code on the same inputs computes the same bits), and within the float32
tolerance otherwise, saying so. There are no quantized files yet; they will get a looser,
documented pair tolerance of their own.

The base of a certificate (everything but the exported files' entries) has a digest,
:func:`base_digest`; every exported ONNX file carries it in its metadata (``parity_certificate``)
so that a file and the certificate it was checked under can be matched.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import os
import platform
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from specnet._frameworks import require
from specnet._io import atomic_write_text
from specnet.agree import ATOL, RTOL
from specnet.errors import UsageError
from specnet.rundir import versions

__all__ = [
    "CERTIFICATE",
    "Check",
    "Verification",
    "base_digest",
    "certify",
    "compare",
    "file_digest",
    "input_batch",
    "read_certificate",
    "verify",
]

CERTIFICATE = "parity.json"
FORMAT = "specnet-parity/1"
BATCH, SEED = 4, 0

#: the distributions whose versions decide a runtime's bits
_STACKS = {
    "keras": ("keras", "tensorflow-cpu", "tensorflow", "numpy"),
    "torch": ("torch", "numpy"),
    "onnx": ("onnxruntime", "onnx", "numpy"),
}
_ACROSS = "float32 across runtimes: two frameworks sum in different orders"
_SAME = "the same runtime, versions and machine: the same bits"
_MOVED = "the same runtime on other versions or another machine: float32 rounding may differ"


def native_logits(backend: Any, model: Any, plan: Any) -> Callable[[Any], Any]:
    """A function of a batch giving ``model``'s logits (see the module doc)."""
    from specnet.shapes import logits_plan

    head = logits_plan(plan)
    if head is plan:
        return lambda x: backend.predict(model, x)
    logits = backend.build(head)
    backend.set_weights(logits, head, backend.get_weights(model, plan))
    return lambda x: backend.predict(logits, x)


def onnx_logits(model: Any) -> Any:
    """A copy of an ONNX ModelProto whose final Softmax or Sigmoid (the node writing
    ``output``) is an Identity."""
    onnx = require("onnx")
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    for node in copy.graph.node:
        if "output" in node.output and node.op_type in ("Softmax", "Sigmoid"):
            node.op_type = "Identity"
            del node.attribute[:]
    return copy


def onnx_runner(model: Any) -> Callable[[Any], Any]:
    """The logits of an exported ONNX file in ONNX Runtime, in the file's own layout."""
    from specnet.backends.onnx import ort_session, run_session

    layout = {p.key: p.value for p in model.metadata_props}.get("layout", "nhwc")
    session = ort_session(onnx_logits(model))
    return lambda x: run_session(session, x, layout)


def direct_runner(plan: Any, weights: Any) -> Callable[[Any], Any]:
    """specnet's direct ONNX graph of the logits in ONNX Runtime."""
    from specnet.backends.onnx import build_graph, ort_session, run_session
    from specnet.shapes import logits_plan

    session = ort_session(build_graph(logits_plan(plan), weights, "nhwc"))
    return lambda x: run_session(session, x, "nhwc")


def _stack(runtime: str) -> str:
    return "onnx" if runtime.startswith("ort:") else runtime


def runtime_versions(runtime: str) -> dict[str, str]:
    found = versions()
    return {name: found[name] for name in _STACKS[_stack(runtime)] if name in found}


def machine() -> dict[str, Any]:
    """What decides float32 rounding besides the versions: the CPU and the threads."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"system": platform.system(), "cpu": cpu, "cores": os.cpu_count()}


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def tensor_digests(weights: Any) -> dict[str, str]:
    out = {}
    for key in sorted(weights):
        array = weights[key]
        digest = hashlib.sha256(f"{tuple(array.shape)}:{array.dtype.str}".encode())
        digest.update(array.tobytes())
        out[key] = digest.hexdigest()[:16]
    return out


def input_batch(shape: tuple[int, ...], seed: int = SEED, batch: int = BATCH) -> Any:
    np = require("numpy")
    return np.random.default_rng(seed).random((batch, *shape), dtype=np.float32)


def _encode(array: Any) -> dict[str, Any]:
    np = require("numpy")
    data = np.ascontiguousarray(array, dtype="<f4")
    return {"shape": list(data.shape), "float32": base64.b64encode(data.tobytes()).decode()}


def _decode(entry: dict[str, Any]) -> Any:
    np = require("numpy")
    raw = base64.b64decode(entry["float32"], validate=True)
    return np.frombuffer(raw, dtype="<f4").reshape(entry["shape"])


@dataclass(frozen=True)
class Comparison:
    max_abs: float
    max_rel: float
    argmax_agree: float
    ok: bool


def compare(got: Any, reference: Any, exact: bool = False) -> Comparison:
    """``got`` against ``reference``: within the float32 tolerance with the same argmax, or
    (``exact``) bit for bit."""
    np = require("numpy")
    a, b = np.asarray(got, np.float64), np.asarray(reference, np.float64)
    if a.shape != b.shape:
        return Comparison(float("inf"), float("inf"), 0.0, False)
    diff = np.abs(a - b)
    worst = float(diff.max()) if diff.size else 0.0
    rel = float((diff / np.maximum(np.abs(b), ATOL)).max()) if diff.size else 0.0
    flat_a, flat_b = a.reshape(len(a), -1), b.reshape(len(b), -1)
    if flat_a.shape[1] == 1:  # one sigmoid unit (its logit): the decision logit > 0
        agree = float(((flat_a[:, 0] > 0) == (flat_b[:, 0] > 0)).mean())
    else:
        agree = float((flat_a.argmax(1) == flat_b.argmax(1)).mean())
    if exact:
        same = np.asarray(got, "<f4").tobytes() == np.asarray(reference, "<f4").tobytes()
        return Comparison(worst, rel, agree, same)
    ok = bool(np.allclose(a, b, atol=ATOL, rtol=RTOL)) and agree == 1.0
    return Comparison(worst, rel, agree, ok)


def _pair(a: str, b: str, x: Any, y: Any) -> dict[str, Any]:
    c = compare(x, y)
    return {
        "a": a,
        "b": b,
        "max_abs": c.max_abs,
        "max_rel": c.max_rel,
        "argmax_agree": c.argmax_agree,
        "atol": ATOL,
        "rtol": RTOL,
        "why": _ACROSS,
        "ok": c.ok,
    }


def _entry(name: str, file: str | None, outputs: Any, **extra: Any) -> dict[str, Any]:
    return {
        "runtime": name,
        "file": file,
        "versions": runtime_versions(name),
        "outputs": _encode(outputs),
        **extra,
    }


def base_digest(certificate: dict[str, Any]) -> str:
    """A SHA-256 of what the certificate claims of the model: the spec, the weights, the input
    and the outputs of the base runtimes (not the exported files' entries, not versions or the
    machine): what every exported file carries."""
    base = {
        key: certificate.get(key)
        for key in ("spec", "spec_fingerprint", "weights_sha256", "tensors", "input")
    }
    base["outputs"] = {  # what the runtimes computed (their versions are not a claim)
        name: entry["outputs"]
        for name, entry in certificate["runtimes"].items()
        if not name.startswith("ort:")
    }
    text = json.dumps(base, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


#: a runtime to certify: name → (the file it reads, relative to the folder, or None; a function
#: of an NHWC batch giving the model's outputs)
Runner = tuple[str | None, Callable[[Any], Any]]


def certify(
    folder: Path,
    plan: Any,
    weights: Any,
    runners: dict[str, Runner],
    *,
    fingerprint: str,
    weights_sha256: str,
    keep: dict[str, Any] | None = None,
    write: bool = True,
) -> dict[str, Any]:
    """Run every runner on the recorded batch and write ``folder/parity.json``. ``keep``:
    entries of an earlier certificate that still hold (same spec and weights) and are not
    re-run. Returns the certificate."""
    x = input_batch(plan.input_shape)
    entries: dict[str, Any] = dict(keep or {})
    for name, (file, run) in runners.items():
        extra = {"sha256": file_digest(folder / file)} if file else {}
        entries[name] = _entry(name, file, run(x), **extra)
    certificate: dict[str, Any] = {
        "format": FORMAT,
        "spec": plan.name,
        "spec_fingerprint": fingerprint,
        "weights_sha256": weights_sha256,
        "tensors": tensor_digests(weights),
        "input": {
            "distribution": "uniform [0, 1) float32: numpy.random.default_rng(seed).random",
            "seed": SEED,
            "shape": [BATCH, *plan.input_shape],
            "layout": "nhwc",
        },
        "machine": machine(),
        "runtimes": entries,
    }
    outputs = {name: _decode(entry["outputs"]) for name, entry in entries.items()}
    certificate["pairs"] = [
        _pair(a, b, outputs[a], outputs[b]) for a, b in itertools.combinations(outputs, 2)
    ]
    certificate["ok"] = bool(certificate["pairs"]) and all(p["ok"] for p in certificate["pairs"])
    certificate["base_sha256"] = base_digest(certificate)
    if write:
        atomic_write_text(
            folder / CERTIFICATE, json.dumps(certificate, indent=1) + "\n", overwrite=True
        )
    return certificate


def read_certificate(folder: Path) -> dict[str, Any]:
    """``folder/parity.json``, checked for its form (a clear usage error otherwise)."""
    path = folder / CERTIFICATE
    if not path.is_file():
        raise UsageError(
            f"{path}: no parity certificate; `specnet build` and `specnet export` write one"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise UsageError(f"{path}: not a parity certificate (unreadable JSON: {exc})") from None
    need = ("spec", "spec_fingerprint", "weights_sha256", "tensors", "input", "runtimes")
    if (
        not isinstance(data, dict)
        or data.get("format") != FORMAT
        or any(k not in data for k in need)
    ):
        raise UsageError(f"{path}: not a {FORMAT} certificate (a field is missing)")
    try:
        for entry in data["runtimes"].values():
            _decode(entry["outputs"])
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise UsageError(f"{path}: a runtime's recorded outputs are damaged ({exc})") from None
    return data


@dataclass
class Check:
    what: str
    ok: bool
    detail: str


@dataclass
class Verification:
    folder: Path
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(check.ok for check in self.checks)

    def add(self, what: str, ok: bool, detail: str) -> None:
        self.checks.append(Check(what, ok, detail))

    def text(self) -> str:
        width = max((len(c.what) for c in self.checks), default=0)
        lines = [f"verifying {self.folder / CERTIFICATE}:"]
        lines += [f"  {'✓' if c.ok else '✗'} {c.what:<{width}}  {c.detail}" for c in self.checks]
        failed = [c.what for c in self.checks if not c.ok]
        lines.append(
            "certificate holds on this machine"
            if not failed
            else f"VERIFY FAILED: {', '.join(failed)}"
        )
        return "\n".join(lines)


def verify(folder: str | Path) -> Verification:
    """Re-check a build's (or run's) certificate here: the spec, every weight tensor and file,
    and every runtime's outputs on the recorded batch (see the module doc)."""
    from specnet.rundir import SPEC_FILE, WEIGHTS_FILE, read_marker, spec_fingerprint
    from specnet.shapes import infer
    from specnet.spec import load_spec
    from specnet.weights import load_weights

    folder = Path(folder)
    if not folder.is_dir():
        raise UsageError(f"{folder}: not a build folder (verify reads BUILD/{CERTIFICATE})")
    certificate = read_certificate(folder)
    report = Verification(folder)
    marker = read_marker(folder)
    if marker is None or not (folder / SPEC_FILE).is_file():
        raise UsageError(f"{folder}: not a specnet build or run (no specnet.json or {SPEC_FILE})")
    plan = infer(load_spec(folder / SPEC_FILE))
    fingerprint = spec_fingerprint(plan.spec)
    same_spec = fingerprint == certificate["spec_fingerprint"]
    report.add(
        "spec",
        same_spec,
        f"{plan.name} ({fingerprint})"
        if same_spec
        else f"the certificate is for spec {certificate['spec']!r} "
        f"({certificate['spec_fingerprint']}), this folder holds {plan.name!r} ({fingerprint})",
    )
    if not same_spec:
        return report
    try:
        weights = load_weights(folder / WEIGHTS_FILE, plan)
    except UsageError as exc:
        report.add(WEIGHTS_FILE, False, f"cannot be read: {exc}")
        return report
    recorded = certificate["tensors"]
    now = tensor_digests(weights)
    changed = [key for key in recorded if now.get(key) != recorded[key]]
    report.add(
        WEIGHTS_FILE,
        not changed,
        f"{len(now)} tensors as certified"
        if not changed
        else f"{len(changed)} tensor(s) differ from the certified ones: "
        + ", ".join(changed[:5])
        + (", …" if len(changed) > 5 else ""),
    )
    here = machine()
    outputs = {}
    for name, entry in certificate["runtimes"].items():
        file = entry.get("file")
        if file and not (folder / file).is_file():
            report.add(name, False, f"{file} is missing")
            continue
        if file and entry.get("sha256") and file_digest(folder / file) != entry["sha256"]:
            report.add(name, False, f"{file} differs from the certified file (its SHA-256)")
            continue
        try:
            got = _rerun(name, file, folder, plan, weights)
        except Exception as exc:  # a missing framework, a file that no longer loads
            report.add(name, False, f"could not run here: {type(exc).__name__}: {exc}")
            continue
        outputs[name] = got
        versions_now = runtime_versions(name)
        exact = versions_now == entry["versions"] and here == certificate.get("machine")
        c = compare(got, _decode(entry["outputs"]), exact=exact)
        moved = {
            k: f"{entry['versions'].get(k)} → {v}"
            for k, v in versions_now.items()
            if entry["versions"].get(k) != v
        }
        why = (
            _SAME
            if exact
            else _MOVED
            + (
                f" ({', '.join(f'{k} {v}' for k, v in moved.items())})"
                if moved
                else " (another machine)"
            )
        )
        report.add(
            name,
            c.ok,
            f"{'bit-exact' if exact and c.ok else f'max |Δ| {c.max_abs:.1e}'} against the "
            f"recorded outputs; {why}",
        )
    for a, b in itertools.combinations(outputs, 2):
        c = compare(outputs[a], outputs[b])
        if not c.ok:
            report.add(
                f"{a} vs {b}",
                False,
                f"max |Δ| {c.max_abs:.1e} beyond atol {ATOL:g} + rtol {RTOL:g}",
            )
    digest = base_digest(certificate)
    for name, entry in certificate["runtimes"].items():
        if name.startswith("ort:") and entry.get("file") and (folder / entry["file"]).is_file():
            carried = _onnx_certificate(folder / entry["file"])
            if carried != digest:
                report.add(
                    f"{entry['file']} metadata",
                    False,
                    f"carries certificate {carried}, this one is {digest}",
                )
    return report


def _onnx_certificate(path: Path) -> str | None:
    from specnet.backends.onnx import read_onnx

    model = read_onnx(path)
    return {p.key: p.value for p in model.metadata_props}.get("parity_certificate")


def _rerun(name: str, file: str | None, folder: Path, plan: Any, weights: Any) -> Any:
    from specnet.backends import get_backend
    from specnet.backends.onnx import read_onnx

    x = input_batch(plan.input_shape)
    if name == "onnx":
        return direct_runner(plan, weights)(x)
    assert file is not None
    if name.startswith("ort:"):
        return onnx_runner(read_onnx(folder / file))(x)
    backend = get_backend(name)
    return native_logits(backend, backend.load_native(folder / file, plan), plan)(x)
