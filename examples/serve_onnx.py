"""Serve a specnet ONNX file with onnxruntime, Pillow and NumPy alone — no specnet, no
TensorFlow, no PyTorch. Everything needed to feed the model is in the file's metadata.

    python examples/serve_onnx.py model.onnx image.png [image.png …]

The contract every specnet export meets: one float32 input named ``input`` (NHWC by default,
``metadata["layout"]``), one output named ``output`` (probabilities if the network ends in
softmax), ``class_names`` and ``preprocessing`` (channel order, resize, scaling) as JSON.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import onnxruntime as ort
from PIL import Image


def load(path: str) -> tuple[ort.InferenceSession, dict[str, str]]:
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return session, session.get_modelmeta().custom_metadata_map


def preprocess(path: str, session: ort.InferenceSession, meta: dict[str, str]) -> np.ndarray:
    """Exactly what specnet does before training: convert, bilinear resize, ÷ 255."""
    layout = meta.get("layout", "nhwc")
    shape = session.get_inputs()[0].shape  # ["batch", H, W, C] or ["batch", C, H, W]
    h, w, c = (shape[1], shape[2], shape[3]) if layout == "nhwc" else (shape[2], shape[3], shape[1])
    mode = {1: "L", 3: "RGB", 4: "RGBA"}[c]
    with Image.open(path) as image:
        pixels = image.convert(mode).resize((w, h), Image.Resampling.BILINEAR)
    x = np.asarray(pixels, dtype=np.float32).reshape(h, w, c) / 255.0
    return x.transpose(2, 0, 1) if layout == "nchw" else x


def main(model: str, images: list[str]) -> None:
    session, meta = load(model)
    names = json.loads(meta["class_names"])
    print("preprocessing:", json.loads(meta["preprocessing"]))
    batch = np.stack([preprocess(path, session, meta) for path in images])
    (probabilities,) = session.run(["output"], {"input": batch})
    for path, row in zip(images, probabilities, strict=True):
        print(f"{path}: {names[int(row.argmax())]} ({row.max():.3f})")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
