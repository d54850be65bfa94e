"""The corpus of bad specs: each gives exit 2, exactly its located messages, and no traceback.

Each file in ``tests/bad_specs/`` ends with ``# error: LINE:COL: FIELD: MESSAGE`` lines: the
problems ``specnet validate`` must report, in order. More cases (binary, bombs, huge files) are
generated below because they cannot live as readable text.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import BAD_SPECS, ROOT


def _expected(path: Path) -> list[tuple[str, str | None]]:
    """The ``# error:`` lines, each with the ``# hint:`` line that follows it (or None)."""
    expected: list[tuple[str, str | None]] = []
    for line in path.read_text().splitlines():
        if line.startswith("# error: "):
            expected.append((line.removeprefix("# error: "), None))
        elif line.startswith("# hint: ") and expected:
            expected[-1] = (expected[-1][0], line.removeprefix("# hint: "))
    return expected


def _reported(path: Path, err: str) -> list[tuple[str, str | None]]:
    """The located problems printed, each with its hint line (or None)."""
    lines = err.splitlines()
    return [
        (line, lines[i + 1].removeprefix("    hint: ") if i + 1 < len(lines)
         and lines[i + 1].startswith("    hint: ") else None)
        for i, line in enumerate(lines)
        if line.startswith(f"{path}:")
    ]  # fmt: skip


def test_corpus_is_large_and_distinct() -> None:
    assert len(BAD_SPECS) >= 30
    bodies = {path.read_bytes() for path in BAD_SPECS}
    assert len(bodies) == len(BAD_SPECS)


@pytest.mark.parametrize("path", BAD_SPECS, ids=lambda p: p.stem)
def test_bad_spec(path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    expected = _expected(path)
    assert expected, f"{path.name} lists no '# error:' line"
    result = cli("validate", path)
    assert result.code == 2
    assert result.out == ""
    assert "Traceback" not in result.err
    reported = _reported(path, result.err)
    assert len(reported) == len(expected), result.err
    for (line, hint), (want, want_hint) in zip(reported, expected, strict=True):
        assert line.startswith(f"{path}:{want}"), result.err
        assert hint == want_hint, f"{line}: hint {hint!r}, expected {want_hint!r}"


def _generated() -> dict[str, tuple[bytes, str]]:
    """name → (file content, text the message must contain)."""
    bomb = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 10):
        bomb.append(f"{chr(97 + i)}: &{chr(97 + i)} [" + ", ".join([f"*{chr(96 + i)}"] * 10) + "]")
    return {
        "empty": (b"", ":1:1: the file is empty"),
        "whitespace": (b"   \n\n  \n", ":1:1: the file is empty"),
        "comments_only": (b"# nothing here\n", ":1:1: the file holds no YAML document"),
        "binary": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", ":3:1: this is a binary file"),
        "not_utf8": (b"name: caf\xe9\n", ":1:10: the file is not UTF-8 text"),
        "control_char": (
            b"name: bad\ninput_shape: [1, 1, 1]\x07\n",
            ":2:23: control character 0x07",
        ),
        "alias_bomb": (("\n".join(bomb) + "\n").encode(), "expands to more than 100,000 values"),
        "deep_nesting": (b"name: " + b"[" * 10_000 + b"]" * 10_000, "nesting is deeper than 32"),
        "huge_file": (b"# " + b"x" * (2 << 20) + b"\n", ":1:1: the file is 2,097,155 bytes"),
    }


@pytest.mark.parametrize("name", list(_generated()))
def test_generated_bad_input(name: str, tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    content, message = _generated()[name]
    path = tmp_path / f"{name}.yaml"
    path.write_bytes(content)
    # (how quickly is for benchmarks; that the alias bomb is refused without being expanded is
    # its message: the reader counts values against MAX_VALUES and stops at the budget)
    result = cli("validate", path)
    assert result.code == 2
    assert f"{path}{message}" in result.err if message.startswith(":") else message in result.err
    assert "Traceback" not in result.err
    assert len([line for line in result.err.splitlines() if line.startswith(str(path))]) == 1


def _huge_inputs() -> dict[str, str]:
    big = "x" * 400_000
    head = "name: t\ninput_shape: [8, 8, 1]\n"
    return {
        "long_name": f"name: '{big}'\ninput_shape: [8, 8, 1]\nlayers: [{{type: Flatten}}]\n",
        "long_type": f"{head}layers: [{{type: {big}}}]\n",
        "long_activation": f"{head}layers: [{{type: Activation, activation: {big}}}]\n",
        "long_key": f"{head}layers: [{{type: Flatten}}]\n? {big}\n: 1\n",
        "long_tag": f"{head}layers: !{big} [{{type: Flatten}}]\n",
        "huge_number": f"{head}layers: [{{type: Flatten}}, {{type: Dense, units: {'9' * 5000}}}]\n",
        "thousands_of_errors": head + "layers:\n" + "  - {type: Nope}\n" * 5000,
        "long_class_names": head + f"class_names: [{', '.join([big[:100]] * 3000)}]\n"
        "layers: [{type: Flatten}, {type: Dense, units: 3}]\n",
    }


@pytest.mark.parametrize("name", list(_huge_inputs()))
def test_errors_never_print_the_whole_input(name: str, tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    """A message quotes what it rejects, cut short: never the 400 KB a user pasted."""
    path = tmp_path / f"{name}.yaml"
    path.write_text(_huge_inputs()[name])
    result = cli("validate", path)
    assert result.code == 2
    assert "Traceback" not in result.err
    assert 0 < len(result.err) < 12_000, f"{len(result.err)} characters of error"


def test_missing_file_and_directory(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    missing = cli("validate", tmp_path / "nope.yaml")
    assert missing.code == 2
    assert "nope.yaml: no such file" in missing.err
    folder = cli("summary", tmp_path)
    assert folder.code == 2
    assert "is a directory" in folder.err


def test_real_process_prints_no_traceback() -> None:
    bad = ROOT / "tests" / "bad_specs" / "python_tag.yaml"
    proc = subprocess.run(
        [sys.executable, "-m", "specnet", "validate", str(bad)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    assert "python/object/apply:os.system' is not allowed" in proc.stderr


def test_debug_flag_shows_traceback(cli) -> None:  # type: ignore[no-untyped-def]
    bad = ROOT / "tests" / "bad_specs" / "zero_filters.yaml"
    result = cli("--debug", "validate", bad)
    assert result.code == 2
    # validate reports spec errors per file without raising; summary raises and shows the trace
    result = cli("--debug", "summary", bad)
    assert result.code == 2
    assert "Traceback" in result.err
