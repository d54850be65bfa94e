"""When two runtimes agree: the one tolerance that parity, export and every check use.

A leaf module (it imports nothing of specnet), so that export and parity can both depend on it
without depending on each other.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ATOL", "RTOL", "close"]

#: float32 outputs of one network on two runtimes: |a - b| <= ATOL + RTOL * |b|, elementwise
ATOL, RTOL = 1e-5, 1e-4


def close(got: Any, reference: Any) -> bool:
    """Whether ``got`` has ``reference``'s shape and is within the tolerance of it."""
    import numpy as np

    return got.shape == reference.shape and bool(np.allclose(got, reference, atol=ATOL, rtol=RTOL))
