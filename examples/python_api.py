"""The whole loop from Python: load → check → build → train → evaluate → predict → export.

    .venv/bin/python examples/python_api.py [WORK]

Everything the CLI does is a function in ``specnet``; each returns a value you can use (the
plan, the run, the evaluation, the path of the ONNX file) and raises ``specnet.SpecnetError``
(with ``.exit_code``) on a mistake. EPOCHS=1 runs it quickly (the test suite does).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

import specnet

WORK = Path(sys.argv[1] if len(sys.argv) > 1 else "examples-out/api")
SPEC = Path(__file__).resolve().parent.parent / "specs" / "seed_cnn.yaml"

# 1. load and check: fields, shapes and limits, without any framework
spec = specnet.load_spec(SPEC)
plan = specnet.infer(spec)
print(f"{plan.name}: {plan.total_params:,} parameters, output {plan.output_shape}")
print(specnet.summary_text(plan))

# a spec can also be edited as data and validated again (errors are located, as for files)
smaller = specnet.spec_from_dict({**spec.resolved(), "name": "seed_cnn_small"})
assert specnet.infer(smaller).total_params == plan.total_params

# 2. build it in PyTorch: a native model plus canonical weights in a build directory
built = specnet.build_model(SPEC, "torch", out=WORK / "build", force=True)
print("built:", *[path.name for path in built.files])

# 3. train it in Keras on the built-in data (colour classes, drawn in memory)
run = specnet.train_model(
    SPEC, "keras", epochs=int(os.environ.get("EPOCHS", "5")), out=WORK / "run", force=True
)
print("validation accuracy per epoch:", [round(a, 3) for a in run.history["val_accuracy"]])

# 4. evaluate the run — in the other framework, from the same canonical weights
report = specnet.evaluate_run(run.out, backend="torch")
print(report.text())

# 5. predict: images are float32 NHWC in [0, 1]; here one red and one blue square
images = np.zeros((2, 32, 32, 3), np.float32)
images[0, 8:24, 8:24] = (0.9, 0.1, 0.1)
images[1, 8:24, 8:24] = (0.1, 0.2, 0.9)
np.savez(WORK / "two.npz", x=images)
for result in specnet.predict(run.out, [str(WORK / "two.npz")]):
    print(result["input"], "→", result["class"], f"{result['probability']:.2f}")

# 6. export to ONNX (checked against the native model before it is written) and prove parity
onnx_file = specnet.export_onnx(run.out, via="direct", output=WORK / "seed_cnn.onnx", force=True)
parity = specnet.check_parity(run.out, ["keras", "torch", "onnx"])
print(f"wrote {onnx_file}; parity {'holds' if parity.ok else 'FAILED'}")
sys.exit(0 if parity.ok else 1)
