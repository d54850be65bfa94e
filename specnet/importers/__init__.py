"""``specnet import``: the models people already have → a spec and canonical weights.

Sources (told apart by their first bytes, not their names):

* a Keras JSON config — Keras 1, 2 or 3, ``to_json()``'s output, also double-encoded — with
  ``--weights`` a Keras 1/2 ``save_weights`` HDF5 or a Keras 3 ``.weights.h5``;
* a legacy full-model ``.h5`` (``model.save`` in Keras 2 / tf.keras: ``model_config`` and
  ``model_weights`` in one file);
* a Keras 3 ``.keras`` archive (a zip of ``config.json`` and ``model.weights.h5``);
* an ONNX file (:mod:`specnet.importers.onnx_graph`).

The result is a build directory (:func:`specnet.build.build`) that every verb taking a build
accepts, plus ``spec.yaml``, the spec as a person would write it (Keras's layer names and only
the fields that differ from the defaults). ``specnet.json`` records the source, its format and
what the import did (``imported``); ``summary.txt`` starts with the same. Keras and HDF5 files
are read with h5py and NumPy alone: importing never imports TensorFlow or Keras, and never runs
code from the file (see :mod:`~specnet.importers.keras_config` for what is refused).
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path
from typing import Any

from specnet.errors import UsageError
from specnet.importers.common import ImportResult, fit_batch, readable_spec, write_import
from specnet.importers.hdf5 import HDF5, WeightsFile, read_weights_file
from specnet.importers.keras_config import KerasModel, ModelImportError, read_json, translate
from specnet.importers.keras_weights import CONVENTIONS, canonical_weights, convention_of

__all__ = ["CONVENTIONS", "ImportResult", "ModelImportError", "import_model", "readable_spec"]

#: the largest member of a .keras archive an import reads
MAX_MEMBER = 4 << 30
_ZIP = b"PK\x03\x04"


def _read(path: Path) -> bytes:
    try:
        with path.open("rb") as handle:
            head = handle.read(8)
            if head.startswith(HDF5) or head.startswith(_ZIP):
                return head  # read by h5py / zipfile, not into memory
            return head + handle.read()
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UsageError(f"{path}: is a directory, not a model file") from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot read ({exc.strerror})") from None


def _keras_archive(path: Path) -> tuple[bytes, bytes]:
    """(config.json, model.weights.h5) of a ``.keras`` zip, sizes checked before reading."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = {info.filename: info for info in archive.infolist()}
            for name in ("config.json", "model.weights.h5"):
                if name not in members:
                    raise UsageError(f"{path}: a zip without {name}; not a Keras 3 .keras archive")
                if members[name].file_size > MAX_MEMBER:
                    raise UsageError(f"{path}: {name} is {members[name].file_size:,} bytes")
            return archive.read("config.json"), archive.read("model.weights.h5")
    except zipfile.BadZipFile as exc:
        raise UsageError(f"{path}: a damaged zip ({exc}); is it truncated?") from None
    except (OSError, EOFError, zipfile.LargeZipFile) as exc:
        raise UsageError(f"{path}: cannot read the archive ({exc})") from None


def _sniff(path: Path) -> str:
    head = _read(path)
    if head.startswith(HDF5):
        return "hdf5"
    if head.startswith(_ZIP):
        return "keras"
    if path.suffix.lower() == ".onnx" or (head[:1] == b"\x08" and b"{" not in head[:4]):
        return "onnx"
    return "json"


def _theano_padding(model: KerasModel, plan: Any) -> list[str]:
    """Rewrite each ``same`` convolution whose Theano padding differs from TensorFlow's as an
    explicit ZeroPadding2D and a ``valid`` convolution (exact); refuse such pooling."""
    from specnet.shapes import same_padding

    steps = plan.by_name()
    notes = []
    for name in model.same_pools:
        raise UsageError(
            f"layer {name!r}: a 'same' pooling that ran under Theano, which pads both sides with "
            "zeros; specnet cannot reproduce it exactly"
        )
    layers = model.spec["layers"]
    for name in model.same_convs:
        step = steps[name]
        layer = step.layer
        kernel = tuple(layer.kernel_size)
        strides = tuple(layer.strides)
        dilation = tuple(getattr(layer, "dilation_rate", (1, 1)))
        pads = []
        for axis in range(2):
            size, k, s = step.input_shape[axis], kernel[axis], strides[axis]
            out = -(-size // s)
            before = k // 2
            after = (out - 1) * s + k - size - before
            if dilation[axis] != 1 or after < 0:
                raise UsageError(
                    f"layer {name!r}: a 'same' convolution that ran under Theano with "
                    f"kernel {kernel}, strides {strides}, dilation {dilation} on "
                    f"{step.input_shape[:2]}; specnet cannot reproduce its padding exactly"
                )
            pads.append((before, after))
        tf = [same_padding(step.input_shape[a], kernel[a], strides[a]) for a in range(2)]
        if [p[0] for p in pads] == [t[0] for t in tf]:
            continue  # the same windows: the rows after only feed windows past the input
        index = next(i for i, item in enumerate(layers) if item["name"] == name)
        item = layers[index]
        pad_name = f"{name}_theano_pad"
        pad: dict[str, Any] = {
            "name": pad_name,
            "type": "ZeroPadding2D",
            "padding": [list(p) for p in pads],
        }
        if "inputs" in item:
            pad["inputs"] = item.pop("inputs")
        item.pop("padding", None)
        layers.insert(index, pad)
        notes.append(
            f"layer {name!r}: Theano's 'same' padding {pads} (TensorFlow's would be {tf}) "
            f"written out as {pad_name}"
        )
    return notes


def _conv_kernels(model: KerasModel) -> bool:
    return any(
        rule.keras_class not in ("Dense", "BatchNormalization", "LayerNormalization")
        for rule in model.rules.values()
    )


def import_model(
    src: str | Path,
    *,
    weights: str | Path | None = None,
    out: str | Path | None = None,
    kernel_convention: str | None = None,
    backend: str | None = None,
    force: bool = False,
    limits: Any = None,
) -> ImportResult:
    """Import ``src`` (module doc) into a build directory, default ``build/<model name>``."""
    from specnet.shapes import infer
    from specnet.spec import spec_from_dict

    path = Path(src)
    kind = _sniff(path)
    if kind == "onnx":
        if weights is not None:
            raise UsageError("--weights: an ONNX file holds its own weights")
        from specnet.importers.onnx_graph import import_onnx

        return import_onnx(path, out=out, backend=backend, force=force, limits=limits)
    weights_file: WeightsFile | None = None
    if kind == "hdf5":
        weights_file = read_weights_file(path)
        if weights_file.model_config is None:
            raise UsageError(
                f"{path}: a weights file, without the model's architecture; give the "
                f"architecture (the to_json() file) as the source and this file as --weights"
            )
        top, where = read_json(weights_file.model_config.encode(), f"{path} (model_config)")
        source_format = "legacy full-model HDF5"
    elif kind == "keras":
        config, data = _keras_archive(path)
        top, where = read_json(config, f"{path} (config.json)")
        weights_file = read_weights_file(Path(f"{path}:model.weights.h5"), data)
        source_format = "Keras 3 .keras archive"
    else:
        top, where = read_json(_read(path), str(path))
        source_format = "JSON config"
    if weights is not None:
        if weights_file is not None:
            raise UsageError(f"--weights: {path} holds its own weights")
        weights_file = read_weights_file(Path(weights))
    stem = re.sub(r"(\.(json|h5|hdf5|keras|weights))+$", "", path.name, flags=re.IGNORECASE)
    model = translate(top, where, re.sub(r"[^A-Za-z0-9_]", "_", stem))
    source_format = f"{model.dialect}{f' {model.version}' if model.version else ''} {source_format}"
    fit_batch(model.spec, str(path), limits, model.notes)
    spec = spec_from_dict(model.spec, str(path))
    plan = infer(spec, limits)
    convention, why = convention_of(kernel_convention, weights_file, model)
    if convention is None:
        differ = _theano_sensitive(model, plan)
        if (weights_file is not None and _conv_kernels(model)) or differ:
            what = (
                "whether its convolution kernels are flipped (Theano) or not (TensorFlow)"
                if weights_file is not None and _conv_kernels(model)
                else f"how {', '.join(differ)} padded 'same' (Theano and TensorFlow differ)"
            )
            hint = (
                "a Keras 1 model with dim_ordering 'th' most often ran on Theano"
                if model.channels_first
                else "a model with dim_ordering 'tf' most often ran on TensorFlow"
            )
            raise UsageError(
                f"{path}: the file does not say which backend wrote it, which decides {what}; "
                f"say it with --kernel-convention theano|tensorflow ({hint})"
            )
    notes = list(model.notes)
    if convention == "theano":
        notes += _theano_padding(model, plan)
        spec = spec_from_dict(model.spec, str(path))
        plan = infer(spec, limits)
    canonical = None
    if weights_file is not None:
        canonical, more = canonical_weights(plan, model, weights_file, convention)
        notes += more
        origin = f"imported from {weights_file.path}"
    else:
        origin = f"initializers (imported {path} has no weights), seed {spec.train.seed}"
    header = _header(path, source_format, convention, why, notes, weights_file)
    imported = {
        "weights": weights_file.path if weights_file else None,
        "kernel_convention": convention,
        "kernel_convention_from": why if convention else None,
        "notes": notes,
    }
    return write_import(
        path,
        spec,
        model.spec,
        canonical,
        source_format=source_format,
        origin=origin,
        header=header,
        imported=imported,
        convention=convention,
        out=out,
        backend=backend,
        force=force,
        limits=limits,
    )


def _theano_sensitive(model: KerasModel, plan: Any) -> list[str]:
    """The ``same`` layers whose padding Theano and TensorFlow would choose differently."""
    from specnet.shapes import same_padding

    steps = plan.by_name()
    found = list(model.same_pools)
    for name in model.same_convs:
        step = steps[name]
        for axis in range(2):
            size = step.input_shape[axis]
            k, s = step.layer.kernel_size[axis], step.layer.strides[axis]
            if same_padding(size, k, s)[0] != k // 2:
                found.append(name)
                break
    return found


def _header(
    path: Path,
    source_format: str,
    convention: str | None,
    why: str,
    notes: list[str],
    weights_file: WeightsFile | None,
) -> str:
    lines = [f"Imported from {path} ({source_format})"]
    if weights_file is not None:
        lines.append(f"weights: {weights_file.path} ({weights_file.layout} layout)")
    if convention is not None:
        lines.append(f"kernel convention: {convention} ({why})")
    lines += [f"note: {note}" for note in notes]
    return "\n".join(lines) + "\n\n"
