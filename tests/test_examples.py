"""The course's notebooks (examples/NN_*.py, jupytext percent format) run end to end.

Each lesson runs as a script in its own process, in quick mode (RNNCORE_EXAMPLES_QUICK=1: small
data, sizes and epochs), on one engine thread, with matplotlib drawing into files: an exit
status of 0 and the figures it drew are the assertion. That executes every notebook in CI, so
none can rot, with no Jupyter needed. Lessons that read a real dataset when ../shared/data holds
it run a second time on their synthetic data, so both paths stay alive.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
NOTEBOOKS = sorted(EXAMPLES.glob("[0-9][0-9]_*.py"))
#: lessons reading a real dataset when present (they call _course.data_dir)
WITH_DATA = [p for p in NOTEBOOKS if "data_dir(" in p.read_text(encoding="utf-8")]
TIMEOUT_S = 120  # each lesson: about 2-15 s of CPU in quick mode
LESSONS = (
    "vanishing_gradient",
    "lstm_gate_by_gate",
    "sentiment",
    "language_model",
    "ner",
    "translation",
    "forecasting",
    "pytorch_and_onnx",
)


def _shared_data() -> bool:
    """Whether the course's datasets are beside the repository (../shared/data)."""
    return any((p.parent / "shared" / "data").is_dir() for p in (ROOT, *ROOT.parents))


def run_notebook(path: Path, out: Path, **env_extra: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("RNNCORE_DATA", None)
    env.update(
        RNNCORE_EXAMPLES_QUICK="1",
        RNNCORE_EXAMPLES_OUT=str(out),
        RNNCORE_NUM_THREADS="1",
        OMP_NUM_THREADS="1",
        MPLBACKEND="Agg",
        PYTHONDONTWRITEBYTECODE="1",
        **env_extra,
    )
    try:
        proc = subprocess.run(
            [sys.executable, path.name],
            cwd=EXAMPLES,
            env=env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{path.name} ran past {TIMEOUT_S} s in quick mode")
    output = f"{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    assert proc.returncode == 0, f"{path.name} failed (exit {proc.returncode}):\n{output}"
    return proc


def test_one_notebook_per_lesson():
    names = [p.stem.split("_", 1)[1] for p in NOTEBOOKS]
    assert names == list(LESSONS), names
    for p in NOTEBOOKS:
        text = p.read_text(encoding="utf-8")
        assert "# %% [markdown]" in text and "\n# %%\n" in text, f"{p.name}: not percent format"
        assert "from _course import" in text, f"{p.name}: must use the shared set-up (_course)"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_in_quick_mode(path, tmp_path):
    pytest.importorskip("matplotlib")
    run_notebook(path, tmp_path)
    figures = sorted(f.name for f in tmp_path.glob("*.png"))
    assert figures, f"{path.name} drew no figure"
    assert all(f.startswith(path.stem[:2]) for f in figures), figures


@pytest.mark.parametrize("path", WITH_DATA, ids=lambda p: p.stem)
def test_notebook_runs_on_synthetic_data(path, tmp_path):
    """The fallback when the dataset is absent (already the path above without shared data)."""
    pytest.importorskip("matplotlib")
    if not _shared_data():
        pytest.skip("no ../shared/data: the quick-mode run above already used synthetic data")
    empty = tmp_path / "no-data"
    empty.mkdir()
    proc = run_notebook(path, tmp_path, RNNCORE_DATA=str(empty))
    assert "synthetic" in proc.stdout or "toy" in proc.stdout, proc.stdout[-2000:]
