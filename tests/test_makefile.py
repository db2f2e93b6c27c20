"""The Makefile installs what each target runs: the demo only the runtime packages (a first run on
a fresh machine should not wait for Django, schemathesis or mypy), the tests and the benchmarks
their extras. Read from ``make -n`` (nothing is run or installed) against a venv path that does
not exist, as on a fresh machine."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def installs(target: str, tmp_path: Path) -> list[str]:
    """What ``make TARGET`` gives ``pip install`` on a fresh machine: ``.`` or ``.[extras]``."""
    dry = subprocess.run(
        ["make", "-n", f"VENV={tmp_path / 'venv'}", target],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return [
        match.group(1).strip("'")
        for line in dry.stdout.splitlines()
        if (match := re.search(r"pip install .*--editable (\S+)$", line))
    ]


def test_make_demo_installs_only_the_runtime_packages(tmp_path: Path) -> None:
    assert installs("demo", tmp_path) == ["."]


def test_make_test_and_bench_add_their_extras(tmp_path: Path) -> None:
    assert installs("test", tmp_path) == [".", ".[test]"]
    assert installs("bench", tmp_path) == [".", ".[bench]"]
