"""Shared set-up of the course notebooks: quick mode, engine threads, data folders, figures.

Each lesson imports it first (``from _course import ...``); it lives beside the lessons, so it
is found both when a lesson runs as a script (``python examples/01_vanishing_gradient.py``) and
when it is opened as a notebook in this folder.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import matplotlib

#: RNNCORE_EXAMPLES_QUICK=1 shrinks every lesson (epochs, sizes, data) to a run of seconds: what
#: CI executes so that no notebook can rot. The numbers it prints are not results.
QUICK = os.environ.get("RNNCORE_EXAMPLES_QUICK", "") not in ("", "0")

_INTERACTIVE = "ipykernel" in sys.modules or hasattr(sys, "ps1")
if not _INTERACTIVE and "MPLBACKEND" not in os.environ:
    matplotlib.use("Agg")  # a script run: draw into files, never open a window

import matplotlib.pyplot as plt  # noqa: E402
import rnncore  # noqa: E402

# The course's networks are small: one engine thread is as fast as several (each step's work is
# too small to share) and never waits on a busy core. RNNCORE_NUM_THREADS overrides it.
if not os.environ.get("RNNCORE_NUM_THREADS"):
    rnncore.set_num_threads(1)


def pick(quick, full):
    """``quick`` in quick mode, else ``full`` (epochs, sizes, number of examples)."""
    return quick if QUICK else full


def data_dir(name: str) -> Path | None:
    """The folder of a real dataset, or None (the lesson then makes synthetic data).

    Looks in ``$RNNCORE_DATA/NAME`` when that variable is set (set it to an empty folder to force
    the synthetic path), else in ``shared/data/NAME`` beside the repository or any folder above
    the working directory (the course's layout: ``../shared/data`` from the repository root).
    """
    if "RNNCORE_DATA" in os.environ:
        roots = [Path(os.environ["RNNCORE_DATA"])]
    else:
        here = Path.cwd().resolve()
        roots = [p.parent / "shared" / "data" for p in (here, *here.parents)]
    for root in roots:
        if (root / name).is_dir():
            return root / name
    return None


def output_dir() -> Path:
    """Where a lesson writes files (figures of a script run, models): $RNNCORE_EXAMPLES_OUT, else
    ./rnncore-examples."""
    out = Path(os.environ.get("RNNCORE_EXAMPLES_OUT", "rnncore-examples"))
    out.mkdir(parents=True, exist_ok=True)
    return out


def show(fig, name: str) -> None:
    """Show a figure inline in a notebook; in a script run save it as OUT/NAME.png instead."""
    if matplotlib.get_backend().lower() == "agg":
        path = output_dir() / f"{name}.png"
        fig.savefig(path, dpi=90, bbox_inches="tight")
        plt.close(fig)
        print(f"(figure saved to {path})")
    else:
        plt.show()
