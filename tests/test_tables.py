"""Every table keyed by layer kinds covers every kind: a new layer cannot miss a stage quietly.

The test finds the tables itself (every module-level dict of every specnet module whose keys
are layer classes), so a table written tomorrow is guarded from the day it is written.
"""

from __future__ import annotations

import importlib
import pkgutil

import specnet
from specnet.spec import LAYER_KINDS, LayerBase

MERGES = {kind for kind in LAYER_KINDS if kind.MERGE}


def _tables() -> dict[str, dict[type[LayerBase], object]]:
    found = {}
    for info in pkgutil.walk_packages(specnet.__path__, "specnet."):
        if info.name == "specnet.__main__":  # (runs the CLI)
            continue
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            if not isinstance(value, dict) or not value:
                continue
            if all(isinstance(key, type) and issubclass(key, LayerBase) for key in value):
                found[f"{info.name}.{name}"] = value
    return found


def test_every_layer_table_covers_every_kind() -> None:
    tables = _tables()
    # the tables this codebase has today, so that the finder itself is known to work
    assert {
        "specnet.shapes.RULES",
        "specnet.backends.keras.LAYERS",
        "specnet.backends.torch.LAYERS",
        "specnet.backends.torch.MERGE_SOURCE",
        "specnet.backends.onnx.LAYERS",
    } <= set(tables)
    for where, table in tables.items():
        wanted = MERGES if set(table) <= MERGES else set(LAYER_KINDS)
        missing = sorted(kind.KIND for kind in wanted - set(table))
        assert not missing, f"{where} lacks {', '.join(missing)}"


def test_the_live_merges_are_the_generated_ones() -> None:
    """The PyTorch model runs ``_torch_modules.MERGES`` (keyed by kind name); the generated
    source writes ``torch.MERGE_SOURCE``: the same kinds."""
    from specnet.backends._torch_modules import MERGES as LIVE

    assert set(LIVE) == {kind.KIND for kind in MERGES}


def test_every_kind_has_a_distinct_automatic_name_and_arity() -> None:
    prefixes = [kind.PREFIX for kind in LAYER_KINDS]
    assert len(set(prefixes)) == len(prefixes)
    for kind in LAYER_KINDS:
        low, high = kind.ARITY
        assert (low, high) == (1, 1) or (kind.MERGE and low >= 2), kind.KIND
