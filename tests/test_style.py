"""Style: ruff (lint + format) and clang-format hold for every file, as the pre-commit hooks run
them; the tools come with the test extras (pinned, so a new release cannot fail a commit)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CPP_DIRS = ("cpp", "tests/cpp", "bench/cpp")
CPP_SUFFIXES = {".h", ".cpp", ".cc", ".cu", ".cuh"}


def _tool(name: str) -> str:
    """The tool next to this interpreter (a virtual environment's bin/) or on PATH."""
    here = Path(sys.executable).parent / name
    found = str(here) if here.exists() else shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed (pip install '.[test]')")
    return found


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)


def test_python_passes_ruff_check():
    r = _run([_tool("ruff"), "check", "--no-cache", "."])
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]


def test_python_is_ruff_formatted():
    r = _run([_tool("ruff"), "format", "--check", "--no-cache", "."])
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]


def test_cpp_is_clang_formatted():
    files = sorted(
        str(p.relative_to(ROOT))
        for d in CPP_DIRS
        for p in (ROOT / d).rglob("*")
        if p.suffix in CPP_SUFFIXES
    )
    assert len(files) > 20, files
    r = _run([_tool("clang-format"), "--dry-run", "--Werror", *files])
    assert r.returncode == 0, r.stderr[-4000:]
