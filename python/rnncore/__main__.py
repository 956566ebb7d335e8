"""`python -m rnncore` runs the command line; `python -m rnncore --cmake-dir` prints the folder of
the C++ CMake package files (for `-Drnncore_DIR=...`); `python -m rnncore --docs` says how to build
and open the documentation and the notebooks."""

import sys

DOCS_HELP = """\
rnncore's documentation is a Sphinx site in docs/ of the source repository, and the course's
notebooks are in examples/ (jupytext percent-format scripts).{where}

Build and open the documentation, from the repository root:

    pip install ".[docs]"
    sphinx-build -W --keep-going -b html docs docs/_build/html
    python -m webbrowser "file://$PWD/docs/_build/html/index.html"

Run a notebook as a script, or open it as a notebook:

    cd examples && python 01_vanishing_gradient.py
    pip install jupytext notebook && jupytext --to notebook 01_vanishing_gradient.py"""


def _docs_help() -> str:
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]  # python/rnncore/ in a source checkout
    found = (root / "docs" / "conf.py").is_file()
    return DOCS_HELP.format(where=f"\nThis checkout: {root}" if found else "")


def _main() -> int:
    if sys.argv[1:] == ["--docs"]:
        print(_docs_help())
        return 0
    if sys.argv[1:] == ["--cmake-dir"]:
        from . import cmake_dir

        try:
            print(cmake_dir())
        except FileNotFoundError as exc:
            print(exc, file=sys.stderr)
            return 1
        return 0
    from .cli import main

    return main()


sys.exit(_main())
