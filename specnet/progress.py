"""One progress display for every backend: a bar in a terminal, a line per epoch otherwise,
nothing with ``--quiet``, one JSON object per epoch with ``--json`` (for machines)."""

from __future__ import annotations

import json
import sys
import time
from typing import TextIO

from specnet._io import json_safe

__all__ = ["Progress"]


class Progress:
    """``mode``: ``auto`` (bar if ``stream`` is a terminal, else lines), ``bar``, ``lines``,
    ``quiet`` or ``json``."""

    def __init__(self, mode: str = "auto", stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout
        if mode == "auto":
            mode = "bar" if self.stream.isatty() else "lines"
        self.mode = mode
        self.epoch, self.epochs, self.steps, self.last_draw = 0, 0, 0, 0.0

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()

    def epoch_start(self, epoch: int, epochs: int, steps: int) -> None:
        self.epoch, self.epochs, self.steps = epoch, epochs, steps

    def step(self, step: int, loss: float) -> None:
        now = time.monotonic()
        if self.mode != "bar" or (now - self.last_draw < 0.1 and step < self.steps):
            return
        self.last_draw = now
        width = 30
        done = int(width * step / self.steps)
        bar = "=" * done + (">" if done < width else "") + "." * (width - done - 1)
        self._write(
            f"\rEpoch {self.epoch + 1}/{self.epochs} [{bar[:width]}] {step}/{self.steps} "
            f"loss {loss:.4f}"
        )

    def epoch_end(self, epoch: int, logs: dict[str, float], seconds: float) -> None:
        if self.mode == "quiet":
            return
        if self.mode == "json":
            line = json_safe({"epoch": epoch + 1, **logs, "seconds": seconds})
            self._write(json.dumps(line, allow_nan=False) + "\n")
            return
        metrics = " - ".join(f"{key} {value:.4f}" for key, value in logs.items())
        prefix = "\r" if self.mode == "bar" else ""
        self._write(f"{prefix}Epoch {epoch + 1}/{self.epochs} - {seconds:.1f}s - {metrics}\n")

    def note(self, text: str) -> None:
        """A callback's decision (early stop, a reduced rate), on its own line."""
        if self.mode == "quiet":
            return
        if self.mode == "json":
            self._write(json.dumps({"note": text}) + "\n")
            return
        self._write(f"{text}\n")
