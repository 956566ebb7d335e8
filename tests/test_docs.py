"""The documentation (docs/): it builds with Sphinx with warnings as errors, its generated CLI
reference covers every command, the user's guide's code runs as printed, and `python -m rnncore
--docs` says how to build it."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
BUILD_TIMEOUT_S = 300  # about 10-20 s on 2 cores
#: pages whose ```python blocks form one program that must run as printed (cwd: a temp folder)
CODE_PAGES = sorted(
    p.relative_to(DOCS).as_posix()
    for p in [*DOCS.glob("*.md"), *DOCS.glob("guide/*.md")]
    if "```python" in p.read_text(encoding="utf-8")
)
#: what a page's code needs beyond rnncore
PAGE_NEEDS = {"pytorch.md": ("torch",), "onnx.md": ("onnx", "onnxruntime")}
_PYTHON_BLOCK = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)


def _env() -> dict[str, str]:
    return dict(
        os.environ,
        RNNCORE_NUM_THREADS="1",
        OMP_NUM_THREADS="1",
        MPLBACKEND="Agg",
        PYTHONDONTWRITEBYTECODE="1",
    )


def _source_files() -> list[Path]:
    return sorted(p for p in DOCS.rglob("*") if not {"_build", "__pycache__"} & set(p.parts))


def _extension():
    """docs/_ext/rnncore_docs.py, imported by path."""
    spec = importlib.util.spec_from_file_location("rnncore_docs", DOCS / "_ext" / "rnncore_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sphinx_build_has_no_warnings(tmp_path):
    pytest.importorskip("sphinx")
    pytest.importorskip("myst_parser")
    out = tmp_path / "html"
    before = _source_files()
    cmd = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html"]
    try:
        proc = subprocess.run(
            [*cmd, str(DOCS), str(out)],
            cwd=ROOT,
            env=_env(),
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"sphinx-build ran past {BUILD_TIMEOUT_S} s")
    assert proc.returncode == 0, (
        f"sphinx-build -W failed:\n{proc.stdout[-3000:]}{proc.stderr[-6000:]}"
    )
    for page in ("index", "getting_started", "design", "cpp", "cli", "benchmarks", "notebooks"):
        assert (out / f"{page}.html").is_file(), page
    api = (out / "api" / "nn.html").read_text(encoding="utf-8")
    assert "rnncore.nn.LSTM" in api and "record_step_grad_norms" in api
    cli = (out / "cli.html").read_text(encoding="utf-8")
    assert "rnncore train lm" in cli and "--bidirectional" in cli
    notebooks = (out / "notebooks.html").read_text(encoding="utf-8")
    assert "Vanishing and exploding gradients" in notebooks and "step_gradient_norms" in notebooks
    assert _source_files() == before  # the generated pages are made in memory, not in docs/


def test_cli_reference_covers_every_command(monkeypatch):
    from rnncore import tasks
    from rnncore.cli import build_parser

    text = _extension().cli_markdown()
    for name in ("demo", "train", "eval", "sample", "predict", "translate", "export"):
        assert f"## `rnncore {name}`" in text, name
    for task in tasks.TASK_MODULES:
        assert f"### `rnncore train {task}`" in text, task
    monkeypatch.setenv("COLUMNS", "100")  # the width the page is rendered at
    assert build_parser().format_help().strip() in text  # the top-level --help, as printed


def test_notebooks_render_as_markdown():
    ext = _extension()
    paths = ext.notebook_files()
    assert len(paths) == 8
    text = ext.notebook_markdown(paths[0])
    assert text.startswith("## Lesson 1")
    assert "```python\nimport numpy as np" in text
    assert "# %%" not in text


@pytest.mark.parametrize("page", CODE_PAGES)
def test_guide_code_runs_as_printed(page, tmp_path):
    for module in PAGE_NEEDS.get(Path(page).name, ()):
        pytest.importorskip(module)
    source = (DOCS / page).read_text(encoding="utf-8")
    program = "\n\n".join(m.group(1) for m in _PYTHON_BLOCK.finditer(source))
    script = tmp_path / "docs_page_code.py"  # not named after a module it imports
    script.write_text(program, encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, script.name],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, (
        f"{page}'s code failed:\n{proc.stdout[-2000:]}{proc.stderr[-4000:]}"
    )


def test_python_m_rnncore_docs_says_how_to_build():
    proc = subprocess.run(
        [sys.executable, "-m", "rnncore", "--docs"],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "sphinx-build -W --keep-going -b html docs docs/_build/html" in proc.stdout
    assert 'pip install ".[docs]"' in proc.stdout and "jupytext --to notebook" in proc.stdout
