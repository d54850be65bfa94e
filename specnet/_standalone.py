"""Code that generated model files carry verbatim (see ``emit_source``): it must need nothing
but the standard library and NumPy, and it is also what specnet itself uses, so the copy in every
generated file is the tested one."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any


def read_safetensors(path: str | Path) -> dict[str, Any]:
    """Read a safetensors file into NumPy arrays: an 8-byte little-endian header length, a JSON
    header (name → dtype, shape, byte offsets), then the raw little-endian data. No code runs."""
    import numpy as np

    dtypes = {"F32": "<f4", "F64": "<f8", "F16": "<f2", "I64": "<i8", "I32": "<i4"}
    raw = Path(path).read_bytes()
    if len(raw) < 8:
        raise ValueError("file too short")
    (length,) = struct.unpack("<Q", raw[:8])
    if length > len(raw) - 8:
        raise ValueError("header longer than the file")
    header = json.loads(raw[8 : 8 + length])
    body = memoryview(raw)[8 + length :]
    arrays = {}
    for key, info in header.items():
        if key == "__metadata__":
            continue
        start, end = info["data_offsets"]
        array = np.frombuffer(body[start:end], dtype=np.dtype(dtypes[info["dtype"]]))
        arrays[key] = array.reshape(info["shape"]).copy()
    return arrays
