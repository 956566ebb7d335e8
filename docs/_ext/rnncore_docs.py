"""Sphinx extension of rnncore's docs: pages generated from the code and the repository.

Three placeholders, each an HTML comment alone on a line of a Markdown page, are replaced when
Sphinx reads the page (the ``source-read`` event), so nothing is written into the source tree:

- ``<!-- rnncore:cli -->`` -- the command-line reference: every subcommand's and every training
  task's ``--help``, rendered from :func:`rnncore.cli.build_parser` (no third-party argparse
  extension);
- ``<!-- rnncore:bench-results -->`` -- every ``bench/results/*.md`` table, included (MyST's
  include, headings moved one level down);
- ``<!-- rnncore:notebooks -->`` -- the course's notebooks (``examples/NN_*.py``, jupytext percent
  format) as Markdown: text cells as text, code cells as code blocks.

It also reads the docstrings as what they are (``autodoc-process-docstring``), without editing
the library: the docstrings of :mod:`rnncore.reference` are equations in plain text, shown
verbatim; elsewhere a plain-text idiom that reST would misread (a trailing underscore, as in
"the val_ prefix", or ``*=``) is escaped outside literals.
"""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
BENCH_RESULTS = ROOT / "bench" / "results"
EXAMPLES = ROOT / "examples"
#: bench/results tables shown first (the rest follow in name order)
BENCH_FIRST = ("quality.md", "latest.md", "ptb_table.md")
HELP_COLUMNS = "100"  # argparse wraps --help to $COLUMNS: fixed, so the page does not depend on it


# ---- command-line reference ---------------------------------------------------------------
def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """{name: parser} of a parser's subcommands, in the order they were added."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _help(parser: argparse.ArgumentParser) -> str:
    before = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = HELP_COLUMNS
    try:
        return parser.format_help().rstrip()
    finally:
        if before is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = before


def _block(parser: argparse.ArgumentParser, level: int) -> list[str]:
    text = _help(parser).replace("```", "'''")
    return [f"{'#' * level} `{parser.prog}`", "", "```text", text, "```", ""]


def cli_markdown() -> str:
    """The ``--help`` of ``rnncore``, of each subcommand and of each ``train`` task."""
    from rnncore.cli import build_parser

    parser = build_parser()
    lines = _block(parser, 2)
    for name, sub in _subparsers(parser).items():
        lines += _block(sub, 2)
        for task in _subparsers(sub).values():  # rnncore train TASK
            lines += _block(task, 3)
        if name == "train":
            lines.append("")
    return "\n".join(lines)


# ---- benchmark tables ---------------------------------------------------------------------
def bench_files() -> list[Path]:
    files = sorted(BENCH_RESULTS.glob("*.md"))
    return sorted(files, key=lambda p: BENCH_FIRST.index(p.name) if p.name in BENCH_FIRST else 99)


def bench_markdown(docs_dir: Path) -> str:
    """One MyST include per bench/results/*.md (its title becomes a section of the page)."""
    lines = []
    for path in bench_files():
        rel = os.path.relpath(path, docs_dir).replace(os.sep, "/")
        lines += [f"```{{include}} {rel}", ":heading-offset: 1", "```", ""]
    return "\n".join(lines)


# ---- notebooks ----------------------------------------------------------------------------
_CELL = re.compile(r"^# %%(?P<markdown>\s*\[markdown\])?")


def notebook_files() -> list[Path]:
    return sorted(p for p in EXAMPLES.glob("[0-9][0-9]_*.py"))


def notebook_markdown(path: Path, heading_offset: int = 1) -> str:
    """A percent-format script as Markdown: its markdown cells (comment marks removed,
    headings moved ``heading_offset`` levels down) and its code cells as Python blocks."""
    lines = path.read_text(encoding="utf-8").splitlines()
    if lines and lines[0].strip() == "# ---":  # jupytext's YAML header
        end = next(i for i in range(1, len(lines)) if lines[i].strip() == "# ---")
        lines = lines[end + 1 :]
    cells: list[tuple[str, list[str]]] = []
    for line in lines:
        m = _CELL.match(line)
        if m:
            cells.append(("markdown" if m.group("markdown") else "code", []))
        elif cells:
            cells[-1][1].append(line)
    out: list[str] = []
    for kind, body in cells:
        while body and not body[0].strip():
            body = body[1:]
        while body and not body[-1].strip():
            body = body[:-1]
        if not body:
            continue
        if kind == "code":
            out += ["```python", *body, "```", ""]
            continue
        fenced = False
        for line in body:
            text = line[2:] if line.startswith("# ") else line.lstrip("#")
            if text.startswith("```"):
                fenced = not fenced
            if not fenced and re.match(r"#+ ", text):
                text = "#" * heading_offset + text
            out.append(text)
        out.append("")
    rel = path.relative_to(ROOT).as_posix()
    out.insert(1, f"\n*The notebook `{rel}`; run it with `python {path.name}` in `examples/`.*\n")
    return "\n".join(out)


def notebooks_markdown() -> str:
    return "\n".join(notebook_markdown(p) for p in notebook_files())


# ---- docstrings ---------------------------------------------------------------------------
VERBATIM_MODULES = ("rnncore.reference",)  # plain-text equations: shown as written
_LITERAL_SPAN = re.compile(r"(``.+?``|`[^`]+`)")  # inline literals and roles: left alone
_TRAILING_UNDERSCORE = re.compile(r"(?<=\w)_(?!\w)")  # "val_" would be a reST reference
_STAR_EQUALS = re.compile(r"(?<=\S) \*=")  # "p *= x" would open an emphasis


def _escape_plain(line: str) -> str:
    parts = _LITERAL_SPAN.split(line)
    for i in range(0, len(parts), 2):  # the even parts are outside literals
        parts[i] = _STAR_EQUALS.sub(r" \\*=", _TRAILING_UNDERSCORE.sub(r"\\_", parts[i]))
    return "".join(parts)


def _escape_docstring(lines: list[str]) -> list[str]:
    """:func:`_escape_plain` on every line outside literal blocks (after ``::`` or a directive),
    doctest lines and inline literals, which show what they hold as it is."""
    out: list[str] = []
    block_indent: int | None = None  # inside a literal block opened at this indentation
    opener: int | None = None  # the indentation of a line that opens one
    for line in lines:
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        if block_indent is not None and stripped and indent <= block_indent:
            block_indent = None
        if block_indent is None and opener is not None and stripped:
            if indent > opener:
                block_indent = opener
            opener = None
        if block_indent is not None or stripped.startswith(">>>"):
            out.append(line)
            continue
        if stripped.endswith("::") or re.match(r"\.\. [\w:-]+::", stripped):
            opener = indent
        out.append(_escape_plain(line))
    return out


def _process_docstring(
    app: Any, what: str, name: str, obj: Any, options: Any, lines: list[str]
) -> None:
    if what != "module" and name.startswith(VERBATIM_MODULES):
        if lines:
            lines[:] = ["::", ""] + [f"    {line}" if line else "" for line in lines]
        return
    lines[:] = _escape_docstring(lines)


# ---- the hook -----------------------------------------------------------------------------
PLACEHOLDERS = {
    "<!-- rnncore:cli -->": lambda app, docs: (cli_markdown(), []),
    "<!-- rnncore:bench-results -->": lambda app, docs: (bench_markdown(docs), bench_files()),
    "<!-- rnncore:notebooks -->": lambda app, docs: (notebooks_markdown(), notebook_files()),
}


def _source_read(app: Any, docname: str, source: list[str]) -> None:
    text = source[0]
    if "<!-- rnncore:" not in text:
        return
    docs_dir = Path(app.env.doc2path(docname)).parent
    for marker, make in PLACEHOLDERS.items():
        if marker in text:
            generated, deps = make(app, docs_dir)
            text = text.replace(marker, generated)
            for dep in deps:
                app.env.note_dependency(str(dep))
    source[0] = text


def setup(app: Any) -> dict[str, Any]:
    app.connect("source-read", _source_read)
    app.connect("autodoc-process-docstring", _process_docstring, priority=600)  # after napoleon
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
