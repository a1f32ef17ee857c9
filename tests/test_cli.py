"""The counterguard command: every subcommand has help and is documented in the README."""

import subprocess
import sys
from pathlib import Path

import pytest

from counterguard.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent


def subcommands():
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return action.choices


@pytest.mark.parametrize("name", sorted(subcommands()))
def test_every_command_has_help_and_a_readme_entry(name):
    sub = subcommands()[name]
    assert sub.description, f"{name} has no description"
    assert f"`counterguard {name}" in (ROOT / "README.md").read_text(), f"{name} missing from README"


def test_installed_command_prints_help():
    result = subprocess.run([sys.executable, "-m", "counterguard", "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    for name in subcommands():
        assert name in result.stdout


def test_readme_starts_with_the_two_commands():
    lines = (ROOT / "README.md").read_text().splitlines()
    block = lines[lines.index("```sh") + 1: lines.index("```sh") + 3]
    assert "counterguard demo" in block[0]
    assert "pytest" in block[1]
    ci = (ROOT / ".ci" / "run").read_text()
    assert "pytest -q" in ci
