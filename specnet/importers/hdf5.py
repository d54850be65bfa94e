"""Reading Keras's HDF5 files safely: weights files of Keras 1, 2 and 3 and legacy full models.

Every layout Keras ever wrote is read into one form, :class:`LayerArrays` per layer: the arrays
in the file's order, with their names where the file has them. Nothing here knows what a layer
computes; :mod:`specnet.importers.keras_weights` turns the arrays into canonical weights.

The layouts:

* Keras 1 and 2 ``save_weights`` (and ``model_weights`` inside a full-model ``.h5``): the root
  (or group) attribute ``layer_names``; each layer's group has ``weight_names``, paths of its
  datasets — ``convolution2d_1_W`` (Keras 1), ``conv2d_1/kernel:0`` (Keras 2).
* Keras 3 ``.weights.h5``: ``layers/<key>/vars/<i>``, where ``<key>`` is the snake-cased *class*
  name with a counter (``conv2d``, ``conv2d_1``), in the order of the model's layers — not the
  layer's name; newer Keras 3 versions also put the layer's name in ``vars``'s attribute ``name``.

Safety: an HDF5 file can point outside itself. External links (another file's objects), soft
links, datasets with external storage (raw data in other files) and virtual datasets (data
mapped from other files) are refused before anything is read, so importing reads this file
and nothing else. A dataset's shape and type are checked before its data is read, and every
read is bounded by :data:`MAX_BYTES`.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from specnet._frameworks import require
from specnet.errors import UsageError

__all__ = ["HDF5", "LayerArrays", "WeightsFile", "open_hdf5", "read_weights_file"]

#: the most bytes of weights one import reads (about a 1 G-parameter float32 model)
MAX_BYTES = 4 << 30
#: HDF5's signature, the first 8 bytes of every file (or of its user block's end)
HDF5 = b"\x89HDF\r\n\x1a\n"


@dataclass
class LayerArrays:
    """One layer's weights as a file holds them: ``names`` (may be empty: Keras 3 keeps none)
    and lazily read ``datasets`` in the file's order."""

    key: str  # the group it came from (a layer name, or a Keras 3 class key)
    layer_name: str | None  # the layer's name, where the file records it
    names: list[str]
    datasets: list[Any]  # h5py.Dataset, read with :func:`read_dataset`
    where: str  # how messages name the group: "file.h5: /model_weights/conv2d_1"


@dataclass
class WeightsFile:
    """What a weights file holds: its layers in order, and what it says of itself."""

    path: str
    layout: str  # "keras1", "keras2" or "keras3"
    layers: list[LayerArrays]
    attrs: dict[str, str] = field(default_factory=dict)  # keras_version, backend
    model_config: str | None = None  # a full model's architecture (JSON text)

    def by_key(self) -> dict[str, LayerArrays]:
        return {layer.key: layer for layer in self.layers}


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _strings(value: Any) -> list[str]:
    try:
        return [_text(v) for v in value]
    except TypeError:
        return []


def open_hdf5(path: Path, data: bytes | None = None) -> Any:
    """An ``h5py.File`` for ``path`` (or for ``data``, a member of a ``.keras`` archive),
    refused with exit 2 when it is not HDF5 or cannot be read."""
    h5py = require("h5py")
    try:
        if data is not None:
            if not data.startswith(HDF5):
                raise UsageError(f"{path}: not an HDF5 file (no HDF5 signature)")
            return h5py.File(io.BytesIO(data), "r")
        with path.open("rb") as handle:
            if handle.read(8) != HDF5:
                raise UsageError(f"{path}: not an HDF5 file (no HDF5 signature)")
        return h5py.File(path, "r")
    except UsageError:
        raise
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UsageError(f"{path}: is a directory, not an HDF5 file") from None
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: cannot read it as HDF5 ({exc}); is it truncated?") from None


def _check_safe(handle: Any, path: Path) -> None:
    """Refuse links and storage that reach outside the file (module doc)."""
    h5py = require("h5py")

    def walk(group: Any, prefix: str) -> Iterator[tuple[str, Any]]:
        for name in group:
            link = group.get(name, getlink=True)
            where = f"{prefix}/{name}"
            if isinstance(link, h5py.ExternalLink):
                raise UsageError(
                    f"{path}: {where} is an external link to {link.filename}:{link.path}; "
                    "specnet reads only the file it was given"
                )
            if isinstance(link, h5py.SoftLink):
                raise UsageError(
                    f"{path}: {where} is a soft link to {link.path}; Keras never writes "
                    "links, and specnet does not follow them"
                )
            item = group[name]
            yield where, item
            if isinstance(item, h5py.Group):
                yield from walk(item, where)

    try:
        for where, item in walk(handle, ""):
            if isinstance(item, h5py.Dataset):
                if item.is_virtual:
                    raise UsageError(
                        f"{path}: dataset {where} is virtual (mapped from other files); "
                        "specnet reads only the file it was given"
                    )
                if item.external:
                    raise UsageError(
                        f"{path}: dataset {where} keeps its data in external files "
                        f"({', '.join(_text(e[0]) for e in item.external)}); specnet reads "
                        "only the file it was given"
                    )
    except UsageError:
        raise
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise UsageError(f"{path}: damaged HDF5 structure ({exc}); is it truncated?") from None


def read_dataset(dataset: Any, where: str, shape: tuple[int, ...] | None = None) -> Any:
    """The array of ``dataset`` as float32, after checking its type, size and (when given)
    shape — before any data is read."""
    np = require("numpy")
    if dataset.dtype.kind != "f":
        raise UsageError(f"{where}: holds {dataset.dtype}, not floating-point weights")
    if shape is not None and tuple(dataset.shape) != tuple(shape):
        raise UsageError(f"{where}: shape {tuple(dataset.shape)}, the model needs {tuple(shape)}")
    if int(np.prod(dataset.shape, dtype=np.int64)) * dataset.dtype.itemsize > MAX_BYTES:
        raise UsageError(f"{where}: {tuple(dataset.shape)} is larger than specnet reads")
    try:
        return np.asarray(dataset[()], dtype=np.float32)
    except (OSError, ValueError) as exc:
        raise UsageError(f"{where}: cannot read its data ({exc}); is the file truncated?") from None


def _legacy_layers(group: Any, path: Path, prefix: str) -> tuple[str, list[LayerArrays]]:
    """Keras 1/2: ``layer_names`` and each group's ``weight_names``."""
    names = _strings(group.attrs["layer_names"])
    layers: list[LayerArrays] = []
    keras1 = False
    for name in names:
        where = f"{path}: {prefix}/{name}"
        if name not in group:
            raise UsageError(f"{where}: listed in layer_names but missing; is the file truncated?")
        layer = group[name]
        weight_names = _strings(layer.attrs.get("weight_names", []))
        datasets = []
        for weight in weight_names:
            if weight not in layer:
                raise UsageError(f"{where}/{weight}: listed in weight_names but missing")
            datasets.append(layer[weight])
            keras1 = keras1 or "/" not in weight
        layers.append(LayerArrays(name, name, weight_names, datasets, where))
    return ("keras1" if keras1 else "keras2"), layers


def _keras3_layers(group: Any, path: Path) -> list[LayerArrays]:
    """Keras 3: ``layers/<key>/vars/<i>`` (nested layers' own ``layers`` are not models specnet
    imports: a layer with sub-layers is refused by the config reader first)."""
    layers: list[LayerArrays] = []
    for key in group["layers"]:
        item = group["layers"][key]
        where = f"{path}: /layers/{key}"
        variables = item.get("vars")
        if variables is None:
            layers.append(LayerArrays(key, None, [], [], where))
            continue
        count = len(variables)
        missing = [str(i) for i in range(count) if str(i) not in variables]
        if missing:
            raise UsageError(f"{where}/vars: variables {', '.join(missing)} missing")
        datasets = [variables[str(i)] for i in range(count)]
        name = variables.attrs.get("name")
        layers.append(
            LayerArrays(key, _text(name) if name is not None else None, [], datasets, where)
        )
    return layers


def read_weights_file(path: Path, data: bytes | None = None) -> WeightsFile:
    """Every layer's arrays in a Keras weights or full-model HDF5 file (module doc)."""
    handle = open_hdf5(path, data)
    _check_safe(handle, path)
    attrs = {
        key: _text(handle.attrs[key]) for key in ("keras_version", "backend") if key in handle.attrs
    }
    config = _text(handle.attrs["model_config"]) if "model_config" in handle.attrs else None
    try:
        if "layer_names" in handle.attrs:
            layout, layers = _legacy_layers(handle, path, "")
        elif "model_weights" in handle and "layer_names" in handle["model_weights"].attrs:
            group = handle["model_weights"]
            for key in ("keras_version", "backend"):
                if key in group.attrs and key not in attrs:
                    attrs[key] = _text(group.attrs[key])
            layout, layers = _legacy_layers(group, path, "/model_weights")
        elif "layers" in handle:
            layout, layers = "keras3", _keras3_layers(handle, path)
        else:
            raise UsageError(
                f"{path}: an HDF5 file, but not Keras weights (no layer_names, model_weights "
                "or layers group)"
            )
    except KeyError as exc:
        raise UsageError(f"{path}: damaged Keras weights ({exc})") from None
    return WeightsFile(str(path), layout, layers, attrs, config)


def model_config_of(path: Path) -> dict[str, Any] | None:
    """The ``model_config`` a full-model ``.h5`` carries (None for a weights-only file)."""
    handle = open_hdf5(path)
    if "model_config" not in handle.attrs:
        return None
    text = _text(handle.attrs["model_config"])
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        raise UsageError(f"{path}: its model_config attribute is not JSON") from None
    return value if isinstance(value, dict) else None
