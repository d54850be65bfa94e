"""``specnet export --onnx``: one ONNX contract, whatever produced the file.

Every exported file has one float32 input named ``input`` with a dynamic batch dimension
(``batch``) in the requested layout (NHWC by default, the spec's), one output named ``output``,
opset ``DEFAULT_OPSET`` unless asked otherwise, and metadata: ``spec``, ``specnet_version``,
``class_names`` (JSON), ``layout``, ``via``. Paths:

* ``keras``  — the Keras model through Keras's ONNX export (tf2onnx); computes in NHWC;
* ``torch``  — ``torch.onnx.export`` (the dynamo exporter, one file, no ``.onnx.data``); NCHW;
* ``direct`` — specnet's own graph (:mod:`specnet.backends.onnx`), no framework imported.

:func:`conform` brings each framework's graph to the contract: it renames the input and
output, makes the batch dimension dynamic, adds one Transpose where the requested layout is not
the one the graph computes in, and stamps the metadata. Before the file takes its final name
it passes ``onnx.checker`` (full check), loads in ONNX Runtime, and matches the native model
on a batch within tolerance; otherwise the export fails (exit 1) and leaves no file behind.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from specnet._frameworks import require
from specnet._io import atomic_write_bytes
from specnet.agree import close
from specnet.backends import get_backend
from specnet.backends.onnx import (
    DEFAULT_OPSET,
    build_graph,
    ort_session,
    read_onnx,
    run_session,
    stamp,
)
from specnet.errors import RuntimeFailure, UsageError
from specnet.rundir import MARKER
from specnet.shapes import Plan

__all__ = ["VIAS", "conform", "export", "latest_run", "native_onnx"]

VIAS = ("keras", "torch", "direct")


def latest_run(root: Path = Path(".")) -> Path:
    """The most recent build or run under ``build/`` and ``runs/`` (by its specnet.json)."""
    markers = [
        *root.glob(f"build/*/{MARKER}"),
        *root.glob(f"runs/*/*/{MARKER}"),
        *root.glob(f"runs/*/{MARKER}"),
    ]
    ready = [m for m in markers if (m.parent / "weights.safetensors").exists()]
    if not ready:
        raise UsageError(
            "no build or run found under build/ or runs/; "
            "give RUN, or run `specnet build SPEC` first"
        )
    return max(ready, key=lambda m: m.stat().st_mtime).parent


def _keras_onnx(plan: Plan, weights: Any, opset: int) -> tuple[Any, str]:
    backend = get_backend("keras")
    model = backend.build(plan)
    backend.set_weights(model, plan, weights)
    tf = require("tensorflow")
    require("tf2onnx")
    onnx = require("onnx")
    signature = [tf.TensorSpec((None, *plan.input_shape), tf.float32, name="input")]
    logging.getLogger("tf2onnx").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory() as folder, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = Path(folder) / "keras.onnx"
        try:
            model.export(
                str(path),
                format="onnx",
                input_signature=signature,
                opset_version=opset,
                verbose=False,
            )
        except (ValueError, RuntimeError) as exc:
            raise RuntimeFailure(f"Keras's ONNX export failed at opset {opset}: {exc}") from None
        model = onnx.load(str(path))
    unknown = sorted(
        {n.op_type for n in model.graph.node if not onnx.defs.has(n.op_type, n.domain)}
    )
    if unknown:  # tf2onnx leaves TensorFlow ops it cannot convert in the graph, by name
        raise RuntimeFailure(
            f"Keras's ONNX path (tf2onnx) cannot convert TensorFlow op(s) {', '.join(unknown)} "
            f"(Keras's exact gelu uses Erfc); export with --via torch or --via direct instead"
        )
    _negative_pads_as_output_padding(model)
    return model, "nhwc"


def _negative_pads_as_output_padding(model: Any) -> None:
    """tf2onnx 1.17 writes a transposed convolution whose kernel is smaller than its stride
    (the output's last rows are reached by no input) as ConvTranspose with *negative*
    ``pads``, which ONNX forbids (the checker and ONNX Runtime refuse the file): at the end, or
    at the start with ``output_padding`` making up the size. TensorFlow's output starts with
    the first input row and ends with rows no input reaches, so either is ``output_padding``
    rows at the end and no negative pad: the same output size, the rows where TensorFlow puts
    them (checked against Keras by every export)."""
    onnx = require("onnx")
    for node in model.graph.node:
        if node.op_type != "ConvTranspose":
            continue
        attrs = {a.name: a for a in node.attribute}
        if "pads" not in attrs or min(attrs["pads"].ints, default=0) >= 0:
            continue
        pads = list(attrs["pads"].ints)
        rank = len(pads) // 2
        extra = list(attrs["output_padding"].ints) if "output_padding" in attrs else [0] * rank
        for axis in range(rank):
            for at in (axis, rank + axis):  # its start, its end
                if pads[at] < 0:
                    extra[axis] += -pads[at]
                    pads[at] = 0
        for name in ("pads", "output_padding"):
            if name in attrs:
                node.attribute.remove(attrs[name])
        node.attribute.extend(
            [onnx.helper.make_attribute("pads", pads),
             onnx.helper.make_attribute("output_padding", extra)]
        )  # fmt: skip


def _torch_onnx(plan: Plan, weights: Any, opset: int) -> tuple[Any, str]:
    backend = get_backend("torch")
    model = backend.build(plan)
    backend.set_weights(model, plan, weights)
    torch = require("torch")
    onnx = require("onnx")
    h, w, c = plan.input_shape
    example = torch.zeros((2, c, h, w))
    quiet = logging.getLogger("torch.onnx")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # it warns once per torchvision op it cannot register
    chatter = io.StringIO()  # onnxscript prints a traceback when it down-converts an opset
    try:
        with (
            warnings.catch_warnings(),
            contextlib.redirect_stdout(chatter),
            contextlib.redirect_stderr(chatter),
        ):
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                model,
                (example,),
                input_names=["input"],
                output_names=["output"],
                dynamic_shapes=({0: torch.export.Dim("batch")},),
                dynamo=True,
                external_data=False,
                opset_version=opset,
                verbose=False,
            )
    except Exception as exc:
        raise RuntimeFailure(f"torch.onnx.export failed at opset {opset}: {exc}") from None
    finally:
        quiet.setLevel(level)
    model = onnx.load_from_string(program.model_proto.SerializeToString())
    return _at_opset(model, opset, "torch.onnx.export"), "nchw"


def _at_opset(model: Any, opset: int, what: str) -> Any:
    """``model`` at exactly ``opset`` (ONNX's version converter where the exporter wrote
    another), or a clear failure: ``--opset`` is a promise about the file."""
    onnx = require("onnx")
    written = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if written == opset:
        return model
    try:
        converted = onnx.version_converter.convert_version(model, opset)
    except Exception as exc:
        raise RuntimeFailure(
            f"{what} wrote opset {written} and ONNX's converter cannot take it to opset "
            f"{opset} ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); "
            "export with --via direct, which writes any opset from 13"
        ) from None
    return converted


def native_onnx(plan: Plan, weights: Any, via: str, layout: str, opset: int) -> Any:
    """A contract-conforming ONNX ModelProto of ``plan`` with canonical ``weights``."""
    if via == "direct":
        return build_graph(plan, weights, layout, opset, fold_batch_norm=True)
    if via not in VIAS:
        raise UsageError(f"--via must be one of {', '.join(VIAS)}, not {via!r}")
    raw, native_layout = (_keras_onnx if via == "keras" else _torch_onnx)(plan, weights, opset)
    return conform(raw, plan, native_layout, layout, via)


def conform(model: Any, plan: Plan, native: str, layout: str, via: str) -> Any:
    """Rename I/O to ``input``/``output``, make the batch dynamic, fix the layout, stamp it."""
    onnx = require("onnx")
    helper = onnx.helper
    graph = model.graph
    inits = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in inits]
    if len(inputs) != 1 or len(graph.output) != 1:
        raise RuntimeFailure(
            f"{via} export has {len(inputs)} inputs and {len(graph.output)} outputs; "
            "expected 1 and 1"
        )
    old_in, old_out = inputs[0].name, graph.output[0].name
    inner_in = "specnet/input" if layout != native else "input"
    inner_out = "specnet/output" if layout != native and len(plan.output_shape) == 3 else "output"
    for node in graph.node:
        node.input[:] = [
            inner_in if n == old_in else inner_out if n == old_out else n for n in node.input
        ]
        node.output[:] = [inner_out if n == old_out else n for n in node.output]
    h, w, c = plan.input_shape
    shape = ["batch", h, w, c] if layout == "nhwc" else ["batch", c, h, w]
    out = plan.output_shape
    out_shape = (
        ["batch", *out] if len(out) == 1 or layout == "nhwc" else ["batch", out[2], out[0], out[1]]
    )
    del graph.input[:]
    graph.input.extend([helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, shape)])
    del graph.output[:]
    graph.output.extend(
        [helper.make_tensor_value_info("output", onnx.TensorProto.FLOAT, out_shape)]
    )
    if layout != native:
        perm = [0, 2, 3, 1] if native == "nhwc" else [0, 3, 1, 2]  # requested → native
        graph.node.insert(
            0,
            helper.make_node("Transpose", ["input"], [inner_in], perm=perm, name="specnet/layout"),
        )
        if inner_out != "output":
            back = [0, 3, 1, 2] if native == "nhwc" else [0, 2, 3, 1]
            graph.node.append(
                helper.make_node(
                    "Transpose", [inner_out], ["output"], perm=back, name="specnet/layout_out"
                )
            )
    del graph.value_info[:]  # shapes inferred for the old names would be stale
    stamp(model, plan, layout, via)
    return model


def verify(model: Any, plan: Plan, weights: Any, layout: str, what: str) -> None:
    """Full checker, ONNX Runtime load, and agreement with the native model on a batch."""
    onnx = require("onnx")
    np = require("numpy")
    try:
        onnx.checker.check_model(model, full_check=True)
        session = ort_session(model)
    except Exception as exc:
        raise RuntimeFailure(f"{what}: the exported graph is invalid: {exc}") from None
    x = np.random.default_rng(0).random((3, *plan.input_shape), dtype=np.float32)
    reference = _reference(plan, weights, x)
    if not np.isfinite(reference).all():
        raise RuntimeFailure(
            f"{what}: the model itself computes NaN or infinity on images in [0, 1], so no "
            "export of it can be checked (its weights overflow float32 at inference: an untrained "
            "deep network's initial moving statistics can do this); nothing was written"
        )
    got = run_session(session, x, layout)
    if not close(got, reference):
        diff = (
            float(np.abs(got - reference).max()) if got.shape == reference.shape else float("nan")
        )
        raise RuntimeFailure(
            f"{what}: ONNX Runtime disagrees with the model (max abs diff {diff:.2e})"
        )


def _reference(plan: Plan, weights: Any, x: Any) -> Any:
    """The native answer: PyTorch if installed, else Keras, else ONNX's reference evaluator."""
    for name in ("torch", "keras"):
        try:
            backend = get_backend(name)
            model = backend.build(plan)
        except RuntimeFailure:
            continue
        backend.set_weights(model, plan, weights)
        return backend.predict(model, x)
    from specnet.backends.onnx import reference_predict

    return reference_predict(build_graph(plan, weights, "nhwc"), x)


def export(
    run: str | Path | None = None,
    *,
    via: str | None = None,
    layout: str = "nhwc",
    opset: int = DEFAULT_OPSET,
    output: str | Path | None = None,
    force: bool = False,
    log: Callable[[str], None] | None = None,
) -> Path:
    """Export a build or run (default: the most recent) to a contract-conforming ONNX file.
    ``log`` receives one line per step (the CLI prints them on stderr)."""
    from specnet.evaluate import open_run

    say = log or (lambda line: None)
    if opset < 13:
        raise UsageError(f"--opset {opset}: specnet needs opset 13 or newer")
    if layout not in ("nhwc", "nchw"):
        raise UsageError(f"--layout must be nhwc or nchw, not {layout!r}")
    folder = Path(run) if run is not None else latest_run()
    opened = open_run(folder)
    via = via or (opened.backend if opened.backend in VIAS else "direct")
    target = Path(output) if output else folder / "model.onnx"
    if output and target.exists() and not force:
        raise UsageError(f"{target}: already exists; pass --force to replace it")
    plan = opened.plan
    say(f"export [1/3] {plan.name}: building the ONNX graph via {via} (opset {opset}, {layout})")
    model = native_onnx(plan, opened.weights, via, layout, opset)
    stamp(model, plan, layout, via, opened.class_names)
    say("export [2/3] checking: onnx.checker, ONNX Runtime, agreement with the native model")
    verify(model, plan, opened.weights, layout, f"export via {via}")
    base = _base_certificate(opened)
    prop = model.metadata_props.add()
    prop.key, prop.value = "parity_certificate", base["base_sha256"]
    atomic_write_bytes(target, model.SerializeToString(), overwrite=True)
    _certify_export(opened, base, target, model)
    say(f"export [3/3] wrote {target}")
    return target


def _base_certificate(opened: Any) -> dict[str, Any]:
    """The folder's certificate when it still certifies its spec and weights; else a new one
    of the native models in the folder and the direct graph (a training run, an older build),
    which is written only with the exported file's entry (see :func:`_certify_export`)."""
    from specnet.backends import BACKENDS
    from specnet.certificate import certify, direct_runner, native_logits, read_certificate
    from specnet.rundir import spec_fingerprint, weights_digest

    folder, plan, weights = opened.folder, opened.plan, opened.weights
    fingerprint, digest = spec_fingerprint(plan.spec), weights_digest(weights)
    try:
        old = read_certificate(folder)
    except UsageError:
        old = None
    if old and old["spec_fingerprint"] == fingerprint and old["weights_sha256"] == digest:
        return old
    runners: dict[str, Any] = {}
    for name in BACKENDS:
        backend = get_backend(name)
        if name == "onnx" or not (folder / backend.native_file).is_file():
            continue
        try:
            native = backend.load_native(folder / backend.native_file, plan)
        except RuntimeFailure:
            continue  # its framework is not installed here
        runners[name] = (backend.native_file, native_logits(backend, native, plan))
    runners["onnx"] = (None, direct_runner(plan, weights))
    return certify(
        folder, plan, weights, runners, fingerprint=fingerprint, weights_sha256=digest, write=False
    )


def _certify_export(opened: Any, base: dict[str, Any], target: Path, model: Any) -> None:
    """Add the exported file to the folder's certificate and card when it lies in the folder
    (a file exported elsewhere carries the certificate's digest, not an entry)."""
    from specnet.card import write_card
    from specnet.certificate import certify, onnx_runner

    folder = opened.folder.resolve()
    try:
        relative = target.resolve().relative_to(folder)
    except ValueError:
        return
    kept = {k: v for k, v in base["runtimes"].items() if k != f"ort:{relative}"}
    certificate = certify(
        opened.folder,
        opened.plan,
        opened.weights,
        {f"ort:{relative}": (str(relative), onnx_runner(model))},
        fingerprint=base["spec_fingerprint"],
        weights_sha256=base["weights_sha256"],
        keep=kept,
    )
    marker = opened.marker
    trained = marker.get("kind") == "train"
    made = set(marker.get("files") or ())
    theirs = {
        name for name in ("README.md", "model.svg")
        if (opened.folder / name).exists() and not trained and name not in made
    }  # fmt: skip
    write_card(
        opened.folder,
        opened.plan,
        certificate,
        f"trained by this run ({marker.get('backend')})" if trained else str(marker.get("weights")),
        opened.folder if trained else _run_of(marker),
        marker.get("spec_file"),
        skip=theirs,
    )


def _run_of(marker: dict[str, Any]) -> Path | None:
    weights = Path(str(marker.get("weights", "")))
    return weights.parent if weights.name == "weights.safetensors" else None


def describe(path: Path) -> dict[str, Any]:
    """The signature and metadata of an ONNX file (what `specnet export` prints)."""
    require("onnx")
    model = read_onnx(path)

    def dims(value: Any) -> list[Any]:
        return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]

    return {
        "file": str(path),
        "inputs": {i.name: dims(i) for i in model.graph.input},
        "outputs": {o.name: dims(o) for o in model.graph.output},
        "opset": model.opset_import[0].version,
        "nodes": len(model.graph.node),
        "metadata": {p.key: p.value for p in model.metadata_props},
        "class_names": json.loads(
            {p.key: p.value for p in model.metadata_props}.get("class_names", "[]")
        ),
    }
