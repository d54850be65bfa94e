"""The specnet error hierarchy. The CLI catches :class:`SpecnetError` once and prints it.

    SpecnetError                 base class; ``exit_code`` says how the CLI ends
    ├── UsageError               bad command-line usage or API arguments            (exit 2)
    ├── NothingToDo              the work asked for is already done                 (exit 0)
    ├── SpecError                a spec that cannot be accepted                     (exit 2)
    │   ├── SpecSyntaxError      unreadable file, YAML syntax, tags, bombs, limits
    │   ├── SpecValidationError  the YAML parsed but fields are wrong (all issues)
    │   └── ShapeError           the network is impossible or too large to build
    └── RuntimeFailure           something failed while doing valid work           (exit 1)
        └── MissingFrameworkError  a backend's framework is not installed

A :class:`SpecError` carries a list of :class:`Issue`; each names ``file:line:column``, the
field path (``layers[3].units``), what was received, what was expected and a hint.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "Issue",
    "MissingFrameworkError",
    "NothingToDo",
    "RuntimeFailure",
    "ShapeError",
    "SpecError",
    "SpecSyntaxError",
    "SpecValidationError",
    "SpecnetError",
    "UsageError",
    "brief",
    "clip",
]


@dataclass(frozen=True)
class Issue:
    """One located problem in a spec file. ``line`` and ``column`` are 1-based; 0 = unknown."""

    file: str
    line: int
    column: int
    field: str
    message: str
    hint: str = ""
    #: a second line saying where the value came from (``in block `identity` as …``)
    context: str = ""

    def __str__(self) -> str:
        # each part is clipped: a message quotes the input it rejects, and the input may be huge
        where = self.file
        if self.line:
            where += f":{self.line}:{self.column}"
        field = f" {clip(self.field, 80)}:" if self.field else ""
        text = f"{where}:{field} {clip(self.message, 400)}"
        if self.context:
            text += f"\n    {clip(self.context, 400)}"
        if self.hint:
            text += f"\n    hint: {clip(self.hint, 400)}"
        return text


def clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, marking the cut."""
    return text if len(text) <= limit else f"{text[: limit - 1]}…"


def brief(value: object, limit: int = 40) -> str:
    """``repr(value)`` cut to about ``limit`` characters: how messages quote what a user wrote."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 4]}…{text[-1]}"


class SpecnetError(Exception):
    """Base of every error specnet raises on purpose."""

    exit_code = 1


class UsageError(SpecnetError):
    """Raised for command-line or API arguments that do not make sense."""

    exit_code = 2


class NothingToDo(SpecnetError):
    """Raised when the work asked for is already done (resuming a finished run)."""

    exit_code = 0


class SpecError(SpecnetError):
    """Raised when a spec cannot be accepted; holds one or more located :class:`Issue`."""

    exit_code = 2

    def __init__(self, issues: list[Issue]) -> None:
        self.issues = list(issues)
        super().__init__(self._render())

    #: the most issues one error prints; a spec with thousands of broken layers says how many
    SHOWN = 20

    def _render(self) -> str:
        count = len(self.issues)
        lines = [str(issue) for issue in self.issues[: self.SHOWN]]
        if count > self.SHOWN:
            lines.append(f"… and {count - self.SHOWN} more")
        if count > 1:
            lines.append(f"{count} problems found in {self.issues[0].file}")
        return "\n".join(lines)


class SpecSyntaxError(SpecError):
    """Raised when the file is not readable, not YAML, or refused by the safe loader."""


class SpecValidationError(SpecError):
    """Raised when the YAML parsed but its fields do not describe a valid spec."""


class ShapeError(SpecError):
    """Raised by shape inference: the network is impossible, or larger than the limits."""


class RuntimeFailure(SpecnetError):
    """Raised when valid work fails at run time (parity over tolerance, a write that fails)."""

    exit_code = 1


class MissingFrameworkError(RuntimeFailure):
    """Raised when a backend needs a framework that is not installed; names the extra."""
