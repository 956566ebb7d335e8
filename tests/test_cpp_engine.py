"""Builds the engine alone with CMake (no Python involved) and runs its C++ tests through ctest:
once as released, once under AddressSanitizer and UndefinedBehaviorSanitizer (any report fails
the run: -fno-sanitize-recover, and LeakSanitizer checks every exit)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _cmake() -> str | None:
    return shutil.which("cmake")


@pytest.mark.skipif(_cmake() is None, reason="cmake is not installed")
@pytest.mark.parametrize("sanitize", ["", "address,undefined"], ids=["release", "asan-ubsan"])
def test_cpp_engine_ctest(tmp_path: Path, sanitize: str) -> None:
    build = tmp_path / "build"
    gen = ["-G", "Ninja"] if shutil.which("ninja") else []
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=1")
    configure = [
        _cmake(),
        "-S",
        str(ROOT),
        "-B",
        str(build),
        *gen,
        "-DRNNCORE_BUILD_TESTS=ON",
        "-DRNNCORE_BUILD_PYTHON=OFF",
        f"-DRNNCORE_SANITIZE={sanitize}",
        f"-DPython_EXECUTABLE={sys.executable}",
    ]
    subprocess.run(configure, check=True, capture_output=True, text=True, env=env)
    subprocess.run(
        [_cmake(), "--build", str(build), "--parallel", "2"],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    )
    ctest = shutil.which("ctest") or str(Path(_cmake()).with_name("ctest"))
    result = subprocess.run(
        [ctest, "--test-dir", str(build), "--output-on-failure"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "100% tests passed" in result.stdout
