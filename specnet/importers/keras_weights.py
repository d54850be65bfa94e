"""A Keras weights file's arrays → canonical weights for a translated spec.

Per layer (a :class:`~specnet.importers.keras_config.WeightRule`): find its group in the file
(by layer name in Keras 1/2 files; in Keras 3 files by the name ``vars`` records, else by the
class key Keras 3 writes — ``conv2d``, ``conv2d_1`` in the order of the model's layers), name
each array (by the file's weight names, else by position in Keras's variable order), check its
shape against the Plan before reading it, then convert:

* Keras 1 channels-first kernels ``(out, in, rows, cols)`` → ``(rows, cols, in, out)``;
* kernels written under Theano, whose ``conv2d`` is a true convolution, flipped 180° over
  rows and columns (``--kernel-convention theano``; TensorFlow's, CNTK's and every Keras 3
  backend's convolution is a cross-correlation, as specnet's);
* the first Dense after a channels-first Flatten: rows reordered from (c, h, w) to (h, w, c).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from specnet._frameworks import require
from specnet.errors import UsageError
from specnet.importers.common import rows_to_hwc
from specnet.importers.hdf5 import LayerArrays, WeightsFile, read_dataset
from specnet.importers.keras_config import KerasModel, WeightRule, _snake

if TYPE_CHECKING:
    from specnet.shapes import Plan
    from specnet.weights import Weights

__all__ = ["CONVENTIONS", "canonical_weights", "convention_of"]

CONVENTIONS = ("theano", "tensorflow")
#: a file's weight name (its last part) → the canonical variable
_NAMES = {
    "W": "kernel",
    "kernel": "kernel",
    "b": "bias",
    "bias": "bias",
    "gamma": "gamma",
    "beta": "beta",
    "running_mean": "moving_mean",
    "moving_mean": "moving_mean",
    "running_std": "moving_variance",  # Keras 1 named the moving variance so
    "moving_variance": "moving_variance",
    "depthwise_kernel": "depthwise_kernel",
    "pointwise_kernel": "pointwise_kernel",
}
_KERNELS = {"kernel", "depthwise_kernel"}


def convention_of(
    given: str | None, file: WeightsFile | None, model: KerasModel
) -> tuple[str | None, str]:
    """(the kernel convention, how it was decided)."""
    if given is not None:
        if given not in CONVENTIONS:
            raise UsageError(f"--kernel-convention must be theano or tensorflow, not {given!r}")
        return given, "given with --kernel-convention"
    backend = (file.attrs.get("backend") if file else None) or model.backend
    if backend:
        return (
            "theano" if backend == "theano" else "tensorflow"
        ), f"the file says backend {backend!r}"
    if model.dialect == "Keras 3" or (file is not None and file.layout == "keras3"):
        return "tensorflow", "Keras 3 (every backend cross-correlates)"
    return None, "the file does not say which backend wrote it"


def _keras3_keys(model: KerasModel) -> dict[str, str]:
    """Keras layer name → the group Keras 3 writes its variables under."""
    counts: dict[str, int] = {}
    keys = {}
    for name, cls in model.config_order:
        base = _snake(cls)
        n = counts.get(base, 0)
        counts[base] = n + 1
        keys[name] = base if n == 0 else f"{base}_{n}"
    return keys


def _group(rule: WeightRule, file: WeightsFile, model: KerasModel) -> LayerArrays:
    by_key = file.by_key()
    if file.layout == "keras3":
        named = {layer.layer_name: layer for layer in file.layers if layer.layer_name}
        if named:
            found = named.get(rule.keras_name)
        else:
            found = by_key.get(_keras3_keys(model).get(rule.keras_name, ""))
    else:
        found = by_key.get(rule.keras_name)
    if found is None:
        raise UsageError(
            f"{file.path}: no weights for layer {rule.keras_name!r} ({rule.keras_class}); the file "
            f"holds {', '.join(layer.key for layer in file.layers if layer.datasets) or 'none'}"
            " — is it the weights of this model?"
        )
    return found


def _variable(name: str, layer: str) -> str:
    last = name.split("/")[-1]
    last = re.sub(r":\d+$", "", last)
    if "/" not in name and last.startswith(f"{layer}_"):  # Keras 1: <layer>_W
        last = last[len(layer) + 1 :]
    return _NAMES.get(last, last)


def _file_shape(suffix: str, shape: tuple[int, ...], rule: WeightRule) -> tuple[int, ...]:
    if rule.kernel_channels_first and suffix == "kernel" and len(shape) == 4:
        rows, cols, inputs, out = shape
        return (out, inputs, rows, cols)
    return shape


def canonical_weights(
    plan: Plan, model: KerasModel, file: WeightsFile, convention: str | None
) -> tuple[Weights, list[str]]:
    """Every weight of ``plan`` from ``file`` (module doc), and notes on what was done."""
    np = require("numpy")
    steps = plan.by_name()
    weights: Weights = {}
    flipped = 0
    for spec_name, rule in model.rules.items():
        step = steps[spec_name]
        group = _group(rule, file, model)
        suffixes = list(step.weights)
        if len(group.datasets) != len(suffixes):
            raise UsageError(
                f"{group.where}: {len(group.datasets)} arrays, layer {rule.keras_name!r} "
                f"({rule.keras_class}) has {len(suffixes)} ({', '.join(suffixes)})"
            )
        if group.names:
            named = [_variable(n, rule.keras_name) for n in group.names]
            if step.kind == "DepthwiseConv2D":
                named = ["depthwise_kernel" if n == "kernel" else n for n in named]
            if sorted(named) != sorted(suffixes):
                raise UsageError(
                    f"{group.where}: weights {', '.join(group.names)}; layer "
                    f"{rule.keras_name!r} needs {', '.join(suffixes)}"
                )
        else:
            named = suffixes  # Keras 3: Keras's variable order, which the Plan keeps
        for suffix, dataset in zip(named, group.datasets, strict=True):
            want = tuple(step.weights[suffix][0])
            where = f"{group.where}/{dataset.name.rsplit('/', 1)[-1]}"
            value = read_dataset(dataset, where, _file_shape(suffix, want, rule))
            if rule.kernel_channels_first and suffix == "kernel" and value.ndim == 4:
                value = value.transpose(2, 3, 1, 0)
            if convention == "theano" and suffix in _KERNELS and value.ndim == 4:
                value = value[::-1, ::-1]
                flipped += 1
            if suffix == "kernel" and rule.rows_chw is not None:
                value = rows_to_hwc(value, steps[rule.rows_chw].input_shape)
            weights[f"{spec_name}.{suffix}"] = np.ascontiguousarray(value, dtype=np.float32)
        if rule.input_dim is not None and step.input_shape[-1] != rule.input_dim:
            raise UsageError(
                f"{group.where}: layer {rule.keras_name!r} records input_dim {rule.input_dim}, "
                f"but its input has {step.input_shape[-1]} values"
            )
    notes = []
    if flipped:
        notes.append(f"{flipped} convolution kernel(s) flipped 180° (Theano's convolution)")
    chw = [rule.keras_name for rule in model.rules.values() if rule.rows_chw]
    if chw:
        notes.append(
            f"rows of {', '.join(chw)} reordered from (c, h, w) to (h, w, c): the Flatten "
            "before it read a channels-first image"
        )
    return weights, notes
