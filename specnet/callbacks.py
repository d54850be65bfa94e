"""``train.callbacks``: EarlyStopping and ReduceLROnPlateau as Keras 3.15 defines them
(``keras/src/callbacks/early_stopping.py``, ``reduce_lr_on_plateau.py``,
``monitor_callback.py``), run by specnet's own epoch loop — the same code for both backends, so
both stop and reduce at the same epoch by construction.

Keras's details kept: ``mode: auto`` minimises ``loss``/``val_loss`` and maximises the
accuracies; ``min_delta`` counts against the candidate (``current − min_delta < best`` when
minimising, ``current − min_delta > best`` when maximising); ``best`` starts unset (a
``baseline`` only decides whether an improvement restarts EarlyStopping's wait); EarlyStopping
never stops after the first epoch (``epoch > 0``); ReduceLROnPlateau reads the rate as float32,
reduces it only while above ``min_lr``, and its cooldown clears the wait. Each callback's state
goes into the checkpoint, so a resumed run acts on the same epochs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from specnet._frameworks import require
from specnet.spec import EarlyStopping, ReduceLROnPlateau

__all__ = ["Callbacks"]


def _minimise(monitor: str, mode: str) -> bool:
    if mode != "auto":
        return mode == "min"
    return monitor.removeprefix("val_") == "loss"


def _better(current: float, reference: float | None, minimise: bool, min_delta: float) -> bool:
    if reference is None:
        return True
    if minimise:
        return current + min_delta < reference  # Keras: current − (−min_delta) < best
    return current - min_delta > reference


@dataclass
class _Stopper:
    config: EarlyStopping
    wait: int = 0
    best: float | None = None
    best_epoch: int = 0
    stopped_epoch: int = 0
    has_best_weights: bool = False


@dataclass
class _Reducer:
    config: ReduceLROnPlateau
    wait: int = 0
    best: float | None = None
    cooldown_counter: int = 0


@dataclass
class Callbacks:
    """The run's callbacks and what they decided. ``on_epoch_end`` returns what to do:
    ``stop`` (bool), ``save_best`` (the weights to keep now, for ``restore_best_weights``),
    and ``learning_rate`` (a new rate, or None)."""

    stoppers: list[_Stopper] = field(default_factory=list)
    reducers: list[_Reducer] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def of(cls, configs: list[Any]) -> Callbacks:
        made = cls()
        for config in configs:
            if isinstance(config, EarlyStopping):
                made.stoppers.append(_Stopper(config))
            else:
                made.reducers.append(_Reducer(config))
        return made

    @property
    def restores(self) -> bool:
        return any(s.config.restore_best_weights for s in self.stoppers)

    def on_epoch_end(
        self, epoch: int, logs: dict[str, float], rate: float | Callable[[], float]
    ) -> dict[str, Any]:
        """``rate``: the learning rate now, or a function giving it (asked only by a
        ReduceLROnPlateau)."""
        decision: dict[str, Any] = {"stop": False, "save_best": False, "learning_rate": None}
        for stopper in self.stoppers:
            self._stopper(stopper, epoch, logs, decision)
        if self.reducers and callable(rate):
            rate = rate()
        for reducer in self.reducers:
            new = self._reducer(reducer, epoch, logs, float(rate))  # type: ignore[arg-type]
            if new is not None:
                decision["learning_rate"] = rate = new
        return decision

    def _stopper(
        self, s: _Stopper, epoch: int, logs: dict[str, float], out: dict[str, Any]
    ) -> None:
        c = s.config
        current = logs.get(c.monitor)
        if current is None or current != current or epoch < c.start_from_epoch:
            return  # (NaN: an empty validation split)
        minimise = _minimise(c.monitor, c.mode)
        if c.restore_best_weights and not s.has_best_weights:
            s.has_best_weights, s.best_epoch = True, epoch
            out["save_best"] = True
        s.wait += 1
        if _better(current, s.best, minimise, c.min_delta):
            s.best, s.best_epoch = current, epoch
            if c.restore_best_weights:
                out["save_best"] = True
            if c.baseline is None or _better(current, c.baseline, minimise, c.min_delta):
                s.wait = 0
            return
        if s.wait >= c.patience and epoch > 0:
            s.stopped_epoch = epoch
            out["stop"] = True
            self.events.append(
                {
                    "callback": "EarlyStopping",
                    "epoch": epoch + 1,
                    "monitor": c.monitor,
                    "best": s.best,
                    "best_epoch": s.best_epoch + 1,
                    "restored_best_weights": c.restore_best_weights,
                }
            )

    def _reducer(
        self, r: _Reducer, epoch: int, logs: dict[str, float], rate: float
    ) -> float | None:
        c = r.config
        current = logs.get(c.monitor)
        if current is None or current != current:
            return None
        if r.cooldown_counter > 0:
            r.cooldown_counter -= 1
            r.wait = 0
        if _better(current, r.best, _minimise(c.monitor, c.mode), c.min_delta):
            r.best, r.wait = current, 0
            return None
        if r.cooldown_counter > 0:
            return None
        r.wait += 1
        if r.wait < c.patience:
            return None
        np = require("numpy")
        old = float(np.float32(rate))  # Keras reads its float32 variable
        if not old > np.float32(c.min_lr):
            return None
        new = float(np.float32(max(old * c.factor, c.min_lr)))  # and assigns into one
        r.cooldown_counter, r.wait = c.cooldown, 0
        self.events.append(
            {"callback": "ReduceLROnPlateau", "epoch": epoch + 1, "learning_rate": new}
        )
        return new

    def state(self) -> dict[str, Any]:
        """What a resume needs (JSON)."""
        return {
            "stoppers": [
                {
                    k: getattr(s, k)
                    for k in ("wait", "best", "best_epoch", "stopped_epoch", "has_best_weights")
                }
                for s in self.stoppers
            ],
            "reducers": [
                {k: getattr(r, k) for k in ("wait", "best", "cooldown_counter")}
                for r in self.reducers
            ],
            "events": self.events,
        }

    def load(self, state: dict[str, Any]) -> None:
        for stopper, saved in zip(self.stoppers, state.get("stoppers", []), strict=False):
            for key, value in saved.items():
                setattr(stopper, key, value)
        for reducer, saved in zip(self.reducers, state.get("reducers", []), strict=False):
            for key, value in saved.items():
                setattr(reducer, key, value)
        self.events = list(state.get("events", []))
