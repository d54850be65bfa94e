"""TensorBoard event files of a run (``specnet train --tensorboard``), as Keras's TensorBoard
callback lays them out: ``tensorboard/train`` and ``tensorboard/validation``, one scalar per
epoch each (``epoch_loss``, ``epoch_accuracy``; ``epoch_learning_rate`` under ``train``), steps
counted from 0. ``tensorboard --logdir RUN/tensorboard`` shows them, training and validation
overlaid.

Written with tensorboardX, a maintained writer that needs neither framework. After every epoch
the whole history is written again, to a file of a fixed name replaced atomically: a run
killed at any moment leaves complete files, and a resumed one continues them without the
duplicated or half-written records an appending writer would leave behind.
"""

from __future__ import annotations

import contextlib
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from specnet._frameworks import require
from specnet._io import atomic_write_bytes

__all__ = ["FOLDER", "available", "write_events"]

FOLDER = "tensorboard"
FILE = "events.out.tfevents.specnet"
_SPLITS = (
    ("train", "", ("loss", "accuracy", "learning_rate")),
    ("validation", "val_", ("loss", "accuracy")),
)


def _tensorboardx() -> Any:
    """tensorboardX, imported without the ``import torch`` its writer module tries (a second
    or so, and a framework a Keras run does not need) unless PyTorch is loaded already."""
    if "tensorboardX" in sys.modules or "torch" in sys.modules:
        return require("tensorboardX")
    sys.modules["torch"] = None  # type: ignore[assignment]  # `import torch` → ImportError
    try:
        return require("tensorboardX")
    finally:
        with contextlib.suppress(KeyError):
            del sys.modules["torch"]


def available() -> None:
    """Raise the install hint now (before a run starts) if tensorboardX is missing."""
    _tensorboardx()


def write_events(folder: Path, history: dict[str, list[float]]) -> None:
    """Write ``folder/tensorboard/{train,validation}`` from the epochs in ``history``."""
    writer_class = _tensorboardx().SummaryWriter
    now = time.time()
    for split, prefix, keys in _SPLITS:
        with tempfile.TemporaryDirectory(prefix="specnet-events-") as scratch:
            writer = writer_class(scratch, flush_secs=3600)
            for epoch in range(len(history["loss"])):
                for key in keys:
                    value = history.get(prefix + key, [])[epoch : epoch + 1]
                    if value and math.isfinite(value[0]):
                        writer.add_scalar(f"epoch_{key}", value[0], epoch, walltime=now)
            writer.close()
            (written,) = Path(scratch).iterdir()
            data = written.read_bytes()
        atomic_write_bytes(folder / FOLDER / split / FILE, data, overwrite=True)
