"""Lazy, explained imports of the heavy frameworks. Nothing here imports one at module level.

``import tensorflow`` costs ~2.5 s and ``import torch`` ~1 s, so only the backend that needs a
framework asks for it, through :func:`require`, which turns an ImportError into one line that
names the pip extra to install.
"""

from __future__ import annotations

import importlib
import os
import sys
import tempfile
from types import ModuleType

from specnet.errors import MissingFrameworkError

__all__ = ["EXTRAS", "import_tensorflow", "keras_module", "require"]

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
    "h5py": ("h5py", "import"),
    "tensorboardX": ("tensorboardX", "tensorboard"),
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


_NOISE = ("WARNING: All log messages before absl::InitializeLog()", "I0000 ")


def import_tensorflow() -> None:
    """Import TensorFlow with its C++ start-up chatter (info lines printed to fd 2 before its
    logging is configured, which TF_CPP_MIN_LOG_LEVEL cannot silence) filtered out; any other
    line it prints is passed on."""
    if "tensorflow" in sys.modules:
        return
    with tempfile.TemporaryFile() as capture:
        saved = os.dup(2)
        os.dup2(capture.fileno(), 2)
        try:
            require("tensorflow")
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            for line in capture.read().decode(errors="replace").splitlines():
                if line and not line.startswith(_NOISE):
                    print(line, file=sys.stderr)


def keras_module() -> ModuleType:
    """``keras``, on TensorFlow, its start-up chatter filtered (both backend modules, keras.py
    and keras_train.py, import it through here: neither imports the other at load time)."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import_tensorflow()
    return require("keras")
