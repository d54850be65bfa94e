"""One training-mode gradient of a spec in Keras and in PyTorch, both in float64 (run by
tests/test_applications.py in a child process: Keras's float type is process-wide).

    python tests/float64_gradients.py SPEC.yaml [SIZE]

Prints JSON: the loss in each framework and, per canonical weight, the largest difference of
the two gradients relative to the largest gradient of that weight, and that largest gradient.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np


def main(path: str, size: int) -> None:
    import keras
    import tensorflow as tf
    import torch

    keras.config.set_floatx("float64")
    torch.set_default_dtype(torch.float64)
    from specnet import infer, loads_spec
    from specnet.backends import get_backend
    from specnet.backends.keras import _attribute
    from specnet.backends.torch import apply_steps, conversions
    from specnet.shapes import logits_plan
    from specnet.weights import init_weights

    text = Path(path).read_text().replace("[224, 224, 3]", f"[{size}, {size}, 3]")
    plan = logits_plan(infer(loads_spec(text.replace("units: 1000", "units: 5"))))
    weights = {k: v.astype(np.float64) for k, v in init_weights(plan, seed=1).items()}
    rng = np.random.default_rng(0)
    x = rng.random((4, size, size, 3))
    y = rng.integers(0, 5, 4)

    model = get_backend("keras").build(plan)
    for step in plan.layers:
        for suffix in step.weights:
            variable = getattr(model.get_layer(step.name), _attribute(step.layer, suffix))
            variable.assign(weights[f"{step.name}.{suffix}"])
    with tf.GradientTape() as tape:
        logits = model(x, training=True)
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits))
    grads = tape.gradient(loss, model.trainable_variables)
    by_path = {v.path: g.numpy() for v, g in zip(model.trainable_variables, grads, strict=True)}

    net = get_backend("torch").build(plan).to(torch.float64)
    state = {k: torch.from_numpy(apply_steps(weights[c], s)) for c, k, s, _ in conversions(plan)}
    state |= {k: v for k, v in net.state_dict().items() if k.endswith("num_batches_tracked")}
    net.load_state_dict(state)
    net.train()
    torch_loss = torch.nn.functional.cross_entropy(
        net(torch.from_numpy(x).permute(0, 3, 1, 2)), torch.from_numpy(y)
    )
    torch_loss.backward()
    parameters = dict(net.named_parameters())
    out = {}
    for canonical, key, _, back in conversions(plan):
        if key not in parameters:  # moving statistics: no gradient
            continue
        mine = apply_steps(parameters[key].grad.numpy(), back)
        name, suffix = canonical.rsplit(".", 1)
        step = next(s for s in plan.layers if s.name == name)
        theirs = by_path[f"{name}/{_attribute(step.layer, suffix)}"]
        largest = float(np.abs(theirs).max())
        out[canonical] = [float(np.abs(mine - theirs).max()) / max(largest, 1e-300), largest]
    print(json.dumps({"loss": [float(loss), float(torch_loss)], "gradients": out}))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 32)
