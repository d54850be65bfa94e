"""AveragePooling2D's trap: with ``padding: same`` Keras averages each window over its *valid*
elements only; PyTorch's ``AvgPool2d`` counts the padding by default (``count_include_pad``) and
pads only symmetrically, ONNX's ``AveragePool`` counts it when asked to. Every runtime is checked
against NumPy's window-by-window average, on sizes whose ``same`` padding is asymmetric (odd
sizes, stride 2, even windows) and symmetric."""

from __future__ import annotations

import math

import numpy as np
import onnxruntime as ort
import pytest

from specnet.backends import get_backend
from specnet.backends.onnx import build_graph
from specnet.shapes import infer, same_padding
from specnet.spec import spec_from_dict
from tests.helpers import assert_agree


def numpy_average_pool(
    x: np.ndarray, pool: tuple[int, int], strides: tuple[int, int], same: bool, count_pad: bool
) -> np.ndarray:
    """NHWC average pooling written out window by window (float64)."""
    n, h, w, c = x.shape
    (ph, pw), (sh, sw) = pool, strides
    if same:
        (top, _), (left, _) = same_padding(h, ph, sh), same_padding(w, pw, sw)
        oh, ow = math.ceil(h / sh), math.ceil(w / sw)
    else:
        top = left = 0
        oh, ow = (h - ph) // sh + 1, (w - pw) // sw + 1
    out = np.zeros((n, oh, ow, c))
    for i in range(oh):
        for j in range(ow):
            r0, c0 = i * sh - top, j * sw - left
            rows = slice(max(r0, 0), min(r0 + ph, h))
            cols = slice(max(c0, 0), min(c0 + pw, w))
            window = x[:, rows, cols, :].astype(np.float64)
            count = ph * pw if count_pad else window.shape[1] * window.shape[2]
            out[:, i, j, :] = window.sum(axis=(1, 2)) / count
    return out


CASES = [  # (input h, w), pool, strides, padding
    ((7, 6), (2, 2), (2, 2), "same"),  # odd height: the bottom pad only
    ((5, 5), (3, 3), (1, 1), "same"),  # symmetric: 1 each side
    ((9, 8), (2, 3), (1, 2), "same"),  # even window: pads after only
    ((6, 7), (4, 4), (3, 3), "same"),
    ((7, 7), (3, 2), (2, 1), "valid"),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0][0]}x{c[0][1]}-{c[1]}-{c[2]}-{c[3]}")
def test_average_pooling_averages_the_valid_elements_on_every_runtime(case: tuple) -> None:  # type: ignore[type-arg]
    (h, w), pool, strides, padding = case
    layer = {"type": "AveragePooling2D", "pool_size": list(pool), "strides": list(strides),
             "padding": padding}  # fmt: skip
    plan = infer(spec_from_dict({"name": "p", "input_shape": [h, w, 3], "layers": [layer]}))
    x = np.random.default_rng(1).random((2, h, w, 3), dtype=np.float32) + 0.5
    want = numpy_average_pool(x, pool, strides, padding == "same", count_pad=False)
    assert plan.output_shape == want.shape[1:]
    if padding == "same":  # the trap is real here: counting the padding gives other numbers
        wrong = numpy_average_pool(x, pool, strides, True, count_pad=True)
        assert np.abs(wrong - want).max() > 0.05
    for name in ("keras", "torch"):
        backend = get_backend(name)
        assert_agree(backend.predict(backend.build(plan), x), want, f"{name} {case}")
    for layout in ("nhwc", "nchw"):
        model = build_graph(plan, {}, layout)
        session = ort.InferenceSession(
            model.SerializeToString(), providers=["CPUExecutionProvider"]
        )
        fed = x if layout == "nhwc" else x.transpose(0, 3, 1, 2)
        got = session.run(["output"], {"input": fed})[0]
        got = got if layout == "nhwc" else got.transpose(0, 2, 3, 1)
        assert_agree(got, want, f"onnx/{layout} {case}")


def test_strides_default_to_the_pool_size_as_in_keras() -> None:
    layers = [{"type": "AvgPool2D", "pool_size": [4, 3]}]
    plan = infer(spec_from_dict({"name": "p", "input_shape": [8, 6, 1], "layers": layers}))
    assert plan.output_shape == (2, 2, 1)
    model = get_backend("keras").build(plan)
    assert model.layers[-1].get_config()["strides"] == (4, 3)
