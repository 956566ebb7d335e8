"""Sphinx configuration of rnncore's documentation (build: sphinx-build -W -b html docs OUT)."""

from __future__ import annotations

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(DOCS / "_ext"))  # rnncore_docs: the CLI reference, benchmarks, notebooks

try:  # the installed package, else the source checkout's (its python/ holds the built engine)
    import rnncore
except ImportError:
    sys.path.insert(0, str(ROOT / "python"))
    import rnncore

try:  # rnncore.torch's reference needs torch's classes; without torch, autodoc mocks it
    import torch  # noqa: F401
except ImportError:
    autodoc_mock_imports = ["torch"]

project = "rnncore"
author = "the rnncore authors"
copyright = "the rnncore authors"  # noqa: A001
release = rnncore.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "myst_parser",
    "rnncore_docs",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "_ext", "Thumbs.db", ".DS_Store"]

# Markdown: $math$ and $$math$$, ::: fences, definition lists, anchors for ## and ### headings
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3

# API reference from the Google-style docstrings
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
autodoc_default_options = {"members": True, "member-order": "bysource"}
autodoc_typehints = "none"  # the docstrings name types and shapes; signatures stay readable
autoclass_content = "class"

html_theme = "alabaster"
html_title = f"rnncore {release}"
html_theme_options = {
    "description": "Fast recurrent neural networks on the CPU, and the course around them",
    "fixed_sidebar": True,
    "page_width": "1100px",
    "sidebar_width": "240px",
}
html_sidebars = {"**": ["about.html", "navigation.html", "searchbox.html"]}
