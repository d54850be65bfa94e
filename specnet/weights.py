"""Canonical weights: one layout for every backend, stored as ``weights.safetensors``.

Keys are ``<layer name>.<Keras variable name>`` (``conv2d.kernel``, ``conv2d.bias``,
``conv1_bn.gamma``, ``conv1_bn.moving_mean``: :data:`specnet.shapes.WEIGHTS`), so weights
transplant by name from a Keras model; values are float32 arrays in Keras's layout, which is the
canonical one:

* ``Conv2D.kernel``: (kernel_h, kernel_w, in_channels, filters) — HWIO;
* ``Dense.kernel``: (inputs, units), and when the Dense follows a Flatten its rows are in the
  order Keras flattens an NHWC tensor: (height, width, channel), channel fastest;
* ``*.bias``: (units,) or (filters,);
* ``BatchNormalization``: ``gamma``, ``beta``, ``moving_mean``, ``moving_variance``, each
  (channels,); the moving statistics are weights too (Keras's ``count_params`` counts them).

Each backend converts to and from this layout in exactly one place (its converter table).
Initial weights are drawn here, in NumPy, with Keras's initializer formulas, so an untrained
model is the same function on every backend. The file is readable with NumPy alone (a safetensors
file is an 8-byte header length, a JSON header and raw little-endian data); no pickle anywhere.
"""

from __future__ import annotations

import json
import math
import struct
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from specnet import _standalone
from specnet._frameworks import require
from specnet._io import atomic_write_bytes
from specnet.errors import UsageError

if TYPE_CHECKING:
    import numpy as np

    from specnet.shapes import Plan

__all__ = [
    "Weights",
    "encode_safetensors",
    "expected_shapes",
    "init_weights",
    "load_weights",
    "read_metadata",
    "read_safetensors",
    "save_weights",
    "weights_classes",
]

Weights = dict[str, "np.ndarray"]

_TRUNCATED_STD = 0.87962566103423978  # std of a unit normal truncated to [-2, 2], as Keras uses


def expected_shapes(plan: Plan) -> dict[str, tuple[int, ...]]:
    """Canonical key → shape, for every weight of the plan, in layer order (and, within a layer,
    Keras's variable order): ``<layer name>.<Keras variable name>``."""
    return {
        f"{step.name}.{suffix}": shape
        for step in plan.layers
        for suffix, (shape, _) in step.weights.items()
    }


def _fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """Keras's ``compute_fans``: the receptive field multiplies both fans of a conv kernel."""
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive = math.prod(shape[:-2])
    return shape[-2] * receptive, shape[-1] * receptive


#: Keras's initializers as data: name → (scale, fan mode, distribution) of its VarianceScaling,
#: or the constant it fills with. A table, not closures, so the sampler is one plain function.
INITIALIZERS: dict[str, tuple[float, str, str] | float] = {
    "glorot_uniform": (1.0, "fan_avg", "uniform"),
    "glorot_normal": (1.0, "fan_avg", "truncated_normal"),
    "he_uniform": (2.0, "fan_in", "uniform"),
    "he_normal": (2.0, "fan_in", "truncated_normal"),
    "lecun_uniform": (1.0, "fan_in", "uniform"),
    "lecun_normal": (1.0, "fan_in", "truncated_normal"),
    "zeros": 0.0,
    "ones": 1.0,
}


def draw(initializer: str, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """One array drawn as Keras's ``initializer`` draws it (VarianceScaling or a constant)."""
    np = require("numpy")
    rule = INITIALIZERS[initializer]
    if not isinstance(rule, tuple):
        return np.full(shape, rule)  # type: ignore[no-any-return]
    scale, mode, distribution = rule
    fan_in, fan_out = _fans(shape)
    fan = {"fan_in": fan_in, "fan_avg": (fan_in + fan_out) / 2}[mode]
    variance = scale / max(1.0, fan)
    if distribution == "uniform":
        limit = math.sqrt(3.0 * variance)
        return rng.uniform(-limit, limit, size=shape)
    std = math.sqrt(variance) / _TRUNCATED_STD
    values = rng.standard_normal(size=shape)
    while (bad := abs(values) > 2).any():  # resample outside ±2σ: truncated, as Keras draws it
        values[bad] = rng.standard_normal(size=int(bad.sum()))
    return values * std


def init_weights(plan: Plan, seed: int = 0) -> Weights:
    """Seeded initial weights in the canonical layout, drawn with each layer's initializers.

    Each array has its own generator seeded by (seed, crc32 of its key), so renaming or adding
    one layer does not change the draws of the others.
    """
    np = require("numpy")
    weights: Weights = {}
    for key, shape in expected_shapes(plan).items():
        name, kind = key.rsplit(".", 1)
        layer = next(step.layer for step in plan.layers if step.name == name)
        # Keras names each initializer after its variable, but depthwise_kernel's is
        # depthwise_initializer (and pointwise_kernel's pointwise_initializer)
        field = f"{kind.removesuffix('_kernel')}_initializer"
        initializer = getattr(layer, field)
        rng = np.random.default_rng([seed, zlib.crc32(key.encode())])
        weights[key] = np.asarray(draw(initializer, rng, shape), dtype=np.float32)
    return weights


def check_weights(plan: Plan, weights: Weights, source: str = "weights") -> Weights:
    """Refuse weights whose keys or shapes do not match the plan; return them as float32."""
    np = require("numpy")
    expected = expected_shapes(plan)
    missing = [key for key in expected if key not in weights]
    extra = [key for key in weights if key not in expected]
    wrong = [
        f"{key} is {tuple(weights[key].shape)}, expected {shape}"
        for key, shape in expected.items()
        if key in weights and tuple(weights[key].shape) != shape
    ]
    problems = []
    if missing:
        problems.append("missing " + ", ".join(missing))
    if extra:
        problems.append("unexpected " + ", ".join(extra))
    problems += wrong
    if problems:
        raise UsageError(
            f"{source} do not fit spec {plan.name!r}: "
            + "; ".join(problems)
            + " (were they saved from another spec?)"
        )
    return {key: np.ascontiguousarray(weights[key], dtype=np.float32) for key in expected}


def save_weights(
    path: str | Path, weights: Weights, *, overwrite: bool, metadata: dict[str, str] | None = None
) -> Path:
    """Write canonical weights atomically as safetensors."""
    return atomic_write_bytes(path, encode_safetensors(weights, metadata), overwrite=overwrite)


_DTYPES = {
    "float64": "F64", "float32": "F32", "float16": "F16", "int64": "I64", "int32": "I32",
    "int16": "I16", "int8": "I8", "uint64": "U64", "uint32": "U32", "uint16": "U16",
    "uint8": "U8", "bool": "BOOL",
}  # fmt: skip


def encode_safetensors(tensors: dict[str, Any], metadata: dict[str, str] | None = None) -> bytes:
    """NumPy arrays → the bytes of a safetensors file, the same bytes for the same content.

    ``safetensors.numpy.save`` writes ``__metadata__`` in hash order, so two saves of one model
    can differ; this writes tensors and metadata keys sorted (the format allows any order), so
    a resumed run or a rebuild is byte-identical to an uninterrupted one.
    """
    np = require("numpy")
    header: dict[str, Any] = {}
    if metadata:
        header["__metadata__"] = {key: str(metadata[key]) for key in sorted(metadata)}
    chunks, offset = [], 0
    for name in sorted(tensors):
        array = np.asarray(tensors[name])
        if array.dtype.name not in _DTYPES:
            raise TypeError(f"{name}: safetensors has no dtype {array.dtype}")
        # little-endian whatever the array's byte order; tobytes() writes C order whatever its
        # layout (and keeps a 0-d array 0-d, which ascontiguousarray would not)
        data = np.asarray(array, array.dtype.newbyteorder("<")).tobytes()
        header[name] = {
            "dtype": _DTYPES[array.dtype.name],
            "shape": list(array.shape),
            "data_offsets": [offset, offset + len(data)],
        }
        chunks.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)  # the data starts 8-byte aligned, as the library writes it
    return struct.pack("<Q", len(text)) + text + b"".join(chunks)


def load_weights(path: str | Path, plan: Plan | None = None) -> Weights:
    """Read canonical weights (checked against ``plan`` when given)."""
    try:
        weights = read_safetensors(path)
    except FileNotFoundError:
        raise UsageError(f"{path}: no such weights file") from None
    except (ValueError, KeyError, struct.error) as exc:
        raise UsageError(f"{path}: not a safetensors weights file ({exc})") from None
    return check_weights(plan, weights, str(path)) if plan is not None else weights


def read_safetensors(path: str | Path) -> Weights:
    """Read a safetensors file with NumPy and the standard library only (no pickle, no code)."""
    require("numpy")
    return _standalone.read_safetensors(path)


def read_metadata(path: str | Path) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors file (empty when it has none or is unreadable:
    reading the tensors reports the damage)."""
    try:
        with open(path, "rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            header = json.loads(handle.read(min(length, 100 << 20)))
    except (OSError, ValueError, struct.error):
        return {}
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    return {str(k): str(v) for k, v in meta.items()} if isinstance(meta, dict) else {}


def weights_classes(path: str | Path) -> list[str] | None:
    """The class order recorded with a weights file or checkpoint (``class_names``), if any."""
    text = read_metadata(path).get("class_names")
    try:
        names = json.loads(text) if text else None
    except ValueError:
        return None
    return [str(n) for n in names] if isinstance(names, list) else None


def check_classes(path: str | Path, names: list[str] | None) -> list[str] | None:
    """Refuse weights trained for other classes (or the same ones in another order) than
    ``names``; returns the weights' class order (which a spec without class names adopts)."""
    recorded = weights_classes(path)
    if recorded is not None and names is not None and recorded != list(names):
        same = sorted(recorded) == sorted(names)
        raise UsageError(
            f"{path}: these weights were trained for classes {recorded}, but the spec names "
            f"{list(names)}"
            + (
                "; the same classes in another order would swap predictions: write class_names "
                "in the weights' order"
                if same
                else "; were they trained for another spec?"
            )
        )
    return recorded
