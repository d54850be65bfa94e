"""Text that ``specnet init`` writes."""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from pathlib import Path
from typing import Any

from specnet.errors import UsageError

__all__ = ["bundled_specs", "example_spec", "folder_spec", "starter_spec"]

_STARTER = """\
# Run: specnet summary {file}
# yaml-language-server: $schema=specnet.schema.json
#
# A starter spec: the classic Keras CNN. Every field is named as in Keras; see the README's
# "The spec language" for the full list. `specnet validate {file}` checks it.
name: {name}
input_shape: [32, 32, 3]        # height, width, channels
class_names: [red, blue, yellow]

layers:
  - type: Conv2D
    filters: 32
    kernel_size: 3
    activation: relu
  - type: MaxPool               # pool_size 2 by default
  - type: Dropout
    rate: 0.5
  - type: Flatten
  - type: Dense
    units: 3
    activation: softmax

train:
  optimizer: adam               # or {{type: sgd, learning_rate: 0.01, momentum: 0.9}}
  loss: categorical_crossentropy
  epochs: 5
  batch_size: 32
  validation_split: 0.2
  seed: 0

data:
  source: synthetic             # coloured shapes drawn in memory; no download
  classes_by: colour
"""


def _name(stem: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_-]", "_", stem)[:64] or "my_net"
    if not re.match(r"[A-Za-z_]", name):
        name = f"net_{name}"[:64]
    return name


def _run_line(path: str) -> str:
    """``path`` as a shell word for the ``# Run:`` comment (quoted when it needs it)."""
    import shlex

    return shlex.quote(path)


def starter_spec(stem: str, path: str | None = None) -> str:
    """The starter spec, named after the file (``my-net.yaml`` → ``my-net``)."""
    return _STARTER.format(name=_name(stem), file=_run_line(path or f"{stem}.yaml"))


#: the longest side of the input a spec made from a folder starts with (bigger photos are
#: resized to it on load; a 4000-pixel input would make a network nobody wants to train first)
LONGEST_SIDE = 64


def folder_spec(target: Path, root: Path) -> str:
    """A starter spec for an image folder (``root/<class>/*.png``): ``input_shape`` from the
    images (their most common size, the longest side at most :data:`LONGEST_SIDE`; grey if
    every image is grey), ``class_names`` the class folders in sorted order, and ``data``
    pointing at the folder (relative to the spec)."""
    from specnet._frameworks import require
    from specnet.data import class_folders, image_files

    image = require("PIL.Image")
    folders = class_folders(root)
    if len(folders) < 2:
        raise UsageError(f"{root}: {len(folders)} class folder; a classifier needs at least 2")
    sizes: Counter[tuple[int, int]] = Counter()
    grey = True
    for folder in folders:
        files = image_files(folder)
        if not files:
            raise UsageError(f"{folder}: no images")
        for file in files[:50]:
            try:
                with image.open(file) as img:
                    sizes[img.size] += 1
                    grey = grey and img.mode in ("1", "L", "LA", "I", "I;16", "F")
            except (OSError, ValueError, SyntaxError) as exc:
                raise UsageError(f"{file}: cannot read this image ({exc})") from None
    (width, height), _ = sizes.most_common(1)[0]
    scale = min(1.0, LONGEST_SIDE / max(width, height))
    h, w = max(1, round(height * scale)), max(1, round(width * scale))
    pool = "  - type: MaxPool               # pool_size 2 by default\n" if min(h, w) >= 8 else ""
    data_path = os.path.relpath(root.resolve(), target.resolve().parent)
    return _FROM_FOLDER.format(
        file=_run_line(str(target)),
        name=_name(target.stem),
        folder=root,
        size=f"{width}×{height}",
        input_shape=f"[{h}, {w}, {1 if grey else 3}]",
        class_names=json.dumps([f.name for f in folders], ensure_ascii=False),
        units=len(folders),
        pool=pool,
        path=json.dumps(data_path, ensure_ascii=False),
    )


_FROM_FOLDER = """\
# Run: specnet train {file}
# yaml-language-server: $schema=specnet.schema.json
#
# Made by `specnet init --from-folder {folder}`: the classic Keras CNN for its classes. Most of
# its images are {size}; they are resized to input_shape on load (bilinear), scaled to [0, 1].
name: {name}
input_shape: {input_shape}
class_names: {class_names}    # the class folders; labels follow these names

layers:
  - type: Conv2D
    filters: 32
    kernel_size: 3
    activation: relu
{pool}  - type: Dropout
    rate: 0.5
  - type: Flatten
  - type: Dense
    units: {units}
    activation: softmax

train:
  optimizer: adam
  loss: categorical_crossentropy
  epochs: 10
  batch_size: 32
  validation_split: 0.2
  seed: 0

data:
  source: folder
  path: {path}
"""


def bundled_specs() -> dict[str, str]:
    """The example specs that ship with specnet (the repository's ``specs/``, packaged as
    ``specnet/specs``): name (``seed_cnn``, ``keras/mnist_convnet``) → text."""
    from importlib import resources

    root = resources.files("specnet") / "specs"
    found: dict[str, str] = {}

    def walk(folder: Any, prefix: str) -> None:
        for entry in sorted(folder.iterdir(), key=lambda e: e.name):
            if entry.is_dir():
                walk(entry, f"{prefix}{entry.name}/")
            elif entry.name.endswith(".yaml"):
                found[prefix + entry.name.removesuffix(".yaml")] = entry.read_text("utf-8")

    if root.is_dir():
        walk(root, "")
    return found


def example_spec(name: str, target: Path) -> str:
    """A bundled example spec, to be written at ``target``: its ``# Run:`` line names the new
    file and its schema line the ``specnet.schema.json`` that ``init`` writes beside it."""
    specs = bundled_specs()
    if name not in specs:
        close = [n for n in specs if n.split("/")[-1] == name]
        if len(close) == 1:
            name = close[0]
        else:
            raise UsageError(f"--example {name!r}: no such example; choose from {', '.join(specs)}")
    lines = specs[name].splitlines(keepends=True)
    out = []
    for line in lines:
        if line.startswith("# Run: "):
            command = line.removeprefix("# Run: ").split()
            verb = command[1] if len(command) > 1 else "summary"
            line = f"# Run: specnet {verb} {_run_line(str(target))}\n"
        elif line.startswith("# yaml-language-server: $schema="):
            line = "# yaml-language-server: $schema=specnet.schema.json\n"
        out.append(line)
    return "".join(out)
