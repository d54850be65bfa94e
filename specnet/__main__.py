"""``python -m specnet`` is the ``specnet`` command."""

from __future__ import annotations

from specnet.cli import entry

entry()
