"""Backends: one module per framework (keras, torch, onnx), each mapping layer kinds by table.

Backend modules import their framework lazily through :func:`specnet._frameworks.require`.
"""

from __future__ import annotations
