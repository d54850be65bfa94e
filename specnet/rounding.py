"""How far float32 rounding alone moves a network's values: the part of a disagreement between
two runtimes that is the network's arithmetic, not a difference in the function.

Monte Carlo arithmetic (Parker, Pierce & Eggert, 2000): the network runs in float64 (PyTorch's
model of it, the weights and the batch in double) once as it is and :data:`DRAWS` times with
every module's output multiplied by ``1 + UNIT_ROUNDOFF * r``, ``r`` uniform in [-1, 1] — a
float32 rounding at each layer. The largest deviation from the unperturbed values, times
:data:`FACTOR`, is the room a float32 runtime may need beyond the fixed tolerance.

Most networks get a small part of the fixed tolerance from it (150 random ones: median 3%, 9 in
10 under 8%). One that amplifies rounding gets what its own arithmetic needs: a
LayerNormalization or a BatchNormalization of an almost constant channel divides a difference
of nearly equal numbers by a small deviation, and a trained MobileNetV2 has such channels
(``tests/test_applications.py``: two ONNX Runtime sessions of one graph 2.1e-5 apart on
logits of 0.1, where atol 1e-5 + rtol 1e-4 allow 2e-5).

:data:`FACTOR` because a layer is several roundings, not the one the estimate applies at its
output, and a framework's formula can round where the float64 model does not: Keras's
LayerNormalization computes ``x * inv - mean * inv`` where PyTorch computes
``(x - mean) * inv``, rounding at the size of ``x * inv``
(``tests/regressions/layer_norm_of_a_near_constant_vector.json``: Keras 1.6× the estimate,
PyTorch and ONNX Runtime 0.6×).
"""

from __future__ import annotations

from typing import Any

from specnet._frameworks import require
from specnet.backends import get_backend
from specnet.shapes import Plan
from specnet.weights import Weights

__all__ = ["DRAWS", "FACTOR", "UNIT_ROUNDOFF", "rounding"]

#: float32's unit roundoff: the relative error of one rounding
UNIT_ROUNDOFF = 2.0**-24
#: perturbed float64 passes
DRAWS = 6
#: how many times the largest measured deviation a runtime may add
FACTOR = 4.0


def rounding(
    plan: Plan, weights: Weights, x: Any, every_layer: bool = False
) -> tuple[Any, dict[str, float]]:
    """The network's output in float64, and layer name → :data:`FACTOR` × the largest deviation
    float32 rounding at every layer moved that layer's output by (only the last layer's unless
    ``every_layer``). ``x``: an NHWC (or vector) float32 batch. Needs PyTorch."""
    torch = require("torch")
    np = require("numpy")
    from specnet.backends.torch import apply_steps, conversions

    model = get_backend("torch").build(plan).double()
    state = {
        key: torch.from_numpy(apply_steps(np.asarray(weights[canonical], np.float64), steps))
        for canonical, key, steps, _ in conversions(plan)
    }
    state |= {k: v for k, v in model.state_dict().items() if k.endswith("num_batches_tracked")}
    model.load_state_dict(state)
    batch = torch.from_numpy(np.asarray(x, np.float64))
    inputs = batch.permute(0, 3, 1, 2) if batch.ndim == 4 else batch
    last = plan.layers[-1].name

    def values() -> dict[str, Any]:
        with torch.no_grad():
            return model.trace(inputs) if every_layer else {last: model(inputs)}

    exact = values()
    generator = torch.Generator().manual_seed(0)

    def round_off(module: Any, args: Any, output: Any) -> Any:
        if not isinstance(output, torch.Tensor) or not output.is_floating_point():
            return None
        r = torch.rand(output.shape, generator=generator, dtype=output.dtype) * 2 - 1
        return output * (1 + UNIT_ROUNDOFF * r)

    hooks = [module.register_forward_hook(round_off) for module in model.modules()]
    worst = dict.fromkeys(exact, 0.0)
    try:
        for _ in range(DRAWS):
            for name, value in values().items():
                if value.numel():
                    deviation = float((value - exact[name]).abs().max())
                    worst[name] = max(worst[name], deviation)
    finally:
        for hook in hooks:
            hook.remove()
    out = exact[last]
    logits = (out.permute(0, 2, 3, 1) if out.ndim == 4 else out).numpy()
    worst.pop("input", None)
    return logits, {name: FACTOR * value for name, value in worst.items()}
