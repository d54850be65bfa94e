"""Text that ``specnet init`` writes."""

from __future__ import annotations

import re

__all__ = ["starter_spec"]

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


def starter_spec(stem: str) -> str:
    """The starter spec, named after the file (``my-net.yaml`` → ``my-net``)."""
    name = re.sub(r"[^A-Za-z0-9_-]", "_", stem)[:64] or "my_net"
    if not re.match(r"[A-Za-z_]", name):
        name = f"net_{name}"[:64]
    return _STARTER.format(name=name, file=f"{stem}.yaml")
