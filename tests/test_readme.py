"""The README cannot rot: its commands run, its shown output is real, its tables are complete."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from specnet.spec import LAYER_KINDS, Train
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text()


def _console_examples() -> list[tuple[str, list[str]]]:
    """Every ``$ specnet …`` line in ```console blocks, with the output shown under it."""
    examples: list[tuple[str, list[str]]] = []
    for block in re.findall(r"```console\n(.*?)```", README, flags=re.S):
        for line in block.splitlines():
            if line.startswith("$ "):
                examples.append((line[2:], []))
            elif examples:
                examples[-1][1].append(line)
    return examples


EXAMPLES = _console_examples()


def test_readme_has_examples() -> None:
    assert len(EXAMPLES) >= 5


def test_readme_commands(cli, monkeypatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Every command, in order, in one scratch folder that sees the repository's specs and tests
    (later examples use what earlier ones built); shown output must match exactly."""
    for name in ("specs", "tests"):
        (tmp_path / name).symlink_to(ROOT / name)
    monkeypatch.chdir(tmp_path)
    for command, shown in EXAMPLES:
        argv = shlex.split(command)
        assert argv[0] == "specnet"
        if argv[1:] == ["--version"]:  # argparse's version action exits by itself
            with pytest.raises(SystemExit) as info:
                cli(*argv[1:])
            assert info.value.code == 0
            continue
        result = cli(*argv[1:])
        if shown:
            assert (result.out + result.err).splitlines() == shown, command
        else:
            assert result.code == 0, f"{command}: {result.err}"
    # the round trip (keras build, then torch from its weights) leaves both native models
    built = tmp_path / "build" / "seed_cnn"
    assert (built / "model.keras").exists()
    assert (built / "model.torch.safetensors").exists()


def test_python_examples_run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README, flags=re.S)
    assert blocks
    (tmp_path / "specs").symlink_to(ROOT / "specs")
    monkeypatch.chdir(tmp_path)
    for block in blocks:
        code = compile(block, "README.md", "exec")
        exec(code, {"__name__": "readme"})  # noqa: S102 - the README's own examples, by design
    assert (tmp_path / "build" / "seed" / "weights.safetensors").exists()


def test_two_commands_and_ci() -> None:
    quickstart, tests = re.findall(r"^(scripts/\S+\.sh)", README, flags=re.M)[:2]
    assert (quickstart, tests) == ("scripts/quickstart.sh", "scripts/test.sh")
    ci = (ROOT / ".ci" / "run").read_text()
    assert "scripts/test.sh" in ci


def test_every_layer_and_field_is_documented() -> None:
    for kind in LAYER_KINDS:
        for alias in kind.model_fields["type"].annotation.__args__:  # type: ignore[union-attr]
            assert f"`{alias}`" in README, alias
        for field in kind.model_fields:
            assert f"`{field}`" in README, f"{kind.KIND}.{field}"
    for field in Train.model_fields:
        assert f"`{field}`" in README, f"train.{field}"
