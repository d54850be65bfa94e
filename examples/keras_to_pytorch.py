"""Move a model trained in Keras to PyTorch, and prove both compute the same function.

    .venv/bin/python examples/keras_to_pytorch.py [WORK]

The hand-written way is where bugs live (HWIO → OIHW kernels, the Dense after a Flatten whose
rows run (h, w, c) in Keras and (c, h, w) in PyTorch, Keras's asymmetric `same` padding).
specnet does each conversion in one tested place: train in Keras, build the PyTorch model from
the run's canonical weights, check parity, and take away a standalone PyTorch file that needs
nothing but torch and numpy. EPOCHS=1 runs it quickly.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import numpy as np

import specnet

WORK = Path(sys.argv[1] if len(sys.argv) > 1 else "examples-out/keras2torch")
SPEC = Path(__file__).resolve().parent.parent / "specs" / "strides_same.yaml"  # padding traps

# 1. train in Keras
run = specnet.train_model(
    SPEC, "keras", epochs=int(os.environ.get("EPOCHS", "3")), out=WORK / "run", force=True
)

# 2. the same weights in PyTorch, plus a standalone source file
torch_build = specnet.build_model(
    SPEC,
    "torch",
    weights=run.out,
    out=WORK / "torch",
    emit_source=WORK / "model_torch.py",
    force=True,
)

# 3. parity: Keras, PyTorch, ONNX Runtime on the trained weights, one batch, every pair
report = specnet.check_parity(run.out, ["keras", "torch", "onnx"])
print(report.text())
if not report.ok:
    sys.exit(1)

# 4. the standalone file on its own: plain PyTorch, NCHW input, canonical weights
import torch  # noqa: E402 - only this step needs it

module_spec = importlib.util.spec_from_file_location("model_torch", WORK / "model_torch.py")
assert module_spec is not None
assert module_spec.loader is not None
standalone = importlib.util.module_from_spec(module_spec)
module_spec.loader.exec_module(standalone)
net = next(
    v
    for v in vars(standalone).values()
    if isinstance(v, type) and issubclass(v, torch.nn.Module) and v is not torch.nn.Module
)()
standalone.load_canonical_weights(net, torch_build.out / "weights.safetensors")
net.eval()

x = np.random.default_rng(0).random((4, *torch_build.plan.input_shape), dtype=np.float32)
with torch.no_grad():
    mine = net(torch.from_numpy(x).permute(0, 3, 1, 2)).numpy()  # NHWC → NCHW
keras_model = specnet.open_run(run.out, "keras")
from specnet.backends import get_backend  # noqa: E402

keras = get_backend("keras")
model = keras.build(keras_model.plan)
keras.set_weights(model, keras_model.plan, keras_model.weights)
theirs = keras.predict(model, x)
print(f"standalone PyTorch file vs Keras: max |difference| {np.abs(mine - theirs).max():.2e}")
sys.exit(0 if np.allclose(mine, theirs, atol=1e-5, rtol=1e-4) else 1)
