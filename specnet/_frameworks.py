"""Lazy, explained imports of the heavy frameworks. Nothing here imports one at module level.

``import tensorflow`` costs ~2.5 s and ``import torch`` ~1 s, so only the backend that needs a
framework asks for it, through :func:`require`, which turns an ImportError into one line that
names the pip extra to install.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from specnet.errors import MissingFrameworkError

__all__ = ["EXTRAS", "require"]

# module → (what a person calls it, the extra that installs it)
EXTRAS: dict[str, tuple[str, str]] = {
    "tensorflow": ("TensorFlow", "keras"),
    "keras": ("Keras", "keras"),
    "torch": ("PyTorch", "torch"),
    "onnx": ("ONNX", "onnx"),
    "onnxruntime": ("ONNX Runtime", "onnx"),
    "tf2onnx": ("tf2onnx", "onnx"),
    "numpy": ("NumPy", "numpy"),
    "safetensors": ("safetensors", "numpy"),
    "matplotlib": ("matplotlib", "plots"),
    "PIL": ("Pillow", "data"),
    "sklearn": ("scikit-learn", "data"),
}


def require(module: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingFrameworkError` naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        label, extra = EXTRAS.get(module.split(".")[0], (module, "all"))
        raise MissingFrameworkError(
            f"{label} is not installed ({exc.msg}); install it with: "
            f"pip install 'specnet[{extra}]' -c constraints.txt"
        ) from None
