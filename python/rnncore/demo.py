"""The main job, ``rnncore demo``: why LSTM and GRU exist, shown in about two minutes, no downloads.

``rnncore demo gates`` runs the lecture's version of the same question: the LSTM built one gate at
a time (tanh RNN, residual cell, + input gate, + forget gate, + output gate = LSTM; see
:class:`rnncore.nn.GatedRNN`), on the same task, to see which gate makes long-range learning
possible.

It trains a tanh RNN, an LSTM, a GRU and an IRNN (a ReLU RNN whose recurrent weights start as the
identity, Le et al. 2015) on the adding problem (Hochreiter & Schmidhuber 1997): each of T steps
carries a random value and a marker, and the target, read after the last step, is the sum of the
two marked values. Always answering 1.0 scores MSE ~0.167; getting below that means carrying two
numbers across up to T steps. Then it prints a table of the test errors against that baseline and
writes a PNG of the learning curves and of the per-step gradient norms ||dL/dh_t||, which show
why the tanh RNN fails: the error signal from the last step shrinks geometrically on its way back
through time, so the early marked value never gets a gradient.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import optim, set_num_threads
from .data import adding_problem
from .models import SequenceRegressor
from .nn.recurrent import FORGET_GATE_CELLS
from .tasks._common import TaskError, seed_value

DEFAULT_OUT = "rnncore-demo"
DESCRIPTION = (
    "Train a tanh RNN, an LSTM, a GRU and an IRNN on the adding problem (no downloads, about "
    "two minutes on 2 cores), print their test errors against the trivial baseline and draw "
    "their learning curves and per-step gradient norms ||dL/dh_t|| (demo.png)."
)


@dataclass(frozen=True)
class CellPlan:
    """How one network of the demo is built and trained."""

    label: str
    cell: str  # rnncore.models cell name
    init: str
    lr: float
    iterations: int  # Adam steps on fresh batches


# One plan per network. The IRNN learns more slowly per step (a smaller learning rate keeps its
# identity recurrence near the edge of stability) but each of its steps costs a fraction of an
# LSTM's, so it gets more of them; the tanh RNN gets as many as the GRU.
PLANS = {
    "rnn": CellPlan("RNN (tanh)", "rnn", "uniform", 5e-3, 1500),
    "lstm": CellPlan("LSTM", "lstm", "uniform", 5e-3, 2000),
    "gru": CellPlan("GRU", "gru", "uniform", 5e-3, 1500),
    "irnn": CellPlan("IRNN (relu, W=I)", "rnn_relu", "identity", 1e-3, 5000),
}

# `rnncore demo gates`: the lecture's LSTM, one gate at a time, with the same budget each.
GATE_PLANS = {
    "rnn": CellPlan("RNN (tanh)", "rnn", "uniform", 5e-3, 3000),
    "residual": CellPlan("residual s+r", "gated-residual", "uniform", 5e-3, 3000),
    "input": CellPlan("+ input gate", "gated-input", "uniform", 5e-3, 3000),
    "forget": CellPlan("+ forget gate", "gated-forget", "uniform", 5e-3, 3000),
    "lstm": CellPlan("+ output = LSTM", "lstm", "uniform", 5e-3, 3000),
}
EXPERIMENTS = {"cells": PLANS, "gates": GATE_PLANS}

GATES_EXPLANATION = (
    "\nThe gradient column is the part of the error signal at the last step that reaches the "
    "first one.\nThe tanh RNN multiplies it by W_hh' diag(1 - h_t^2) at every step back: it "
    "vanishes, nothing is\nlearned. The residual cell adds an identity path (ds_(t-1) = ds_t + "
    "...): the signal reaches every\nstep, but every step also writes into the state, which "
    "grows without bound, and the predictions\nwith it. The input gate lets the cell write only "
    "where it chooses, yet what it wrote can never\nleave: the state still drifts. The forget "
    "gate is the step that makes the task learnable: the\ncell can now erase, so the state "
    "stays bounded, and a forget gate held open (bias 1) passes\nthe error signal back "
    "undamped (its column is about 1). The output gate (read access: h =\no * tanh(s) is what "
    "the next step and the output see) keeps the gates' inputs bounded too:\nthat is the LSTM."
)


def _batches(rng: np.random.Generator, n: int, batch_size: int, steps: int) -> Callable:
    """A zero-argument callable: each call yields n fresh adding-problem batches."""

    def epoch():
        for _ in range(n):
            yield adding_problem(batch_size, steps, seed=rng)

    return epoch


def _split(x: np.ndarray, y: np.ndarray, size: int) -> list[tuple[np.ndarray, np.ndarray]]:
    return [
        (np.ascontiguousarray(x[:, i : i + size]), y[i : i + size])
        for i in range(0, y.shape[0], size)
    ]


def train_one(
    plan: CellPlan,
    *,
    steps: int,
    iterations: int,
    eval_every: int,
    batch_size: int,
    hidden: int,
    valid: list,
    test: list,
    probe: tuple[np.ndarray, np.ndarray],
    seed: int,
    log: Callable[[str], Any],
) -> dict[str, Any]:
    """Train one network with the Trainer; returns its curves, test MSE and gradient norms."""
    from .train import Trainer, step_gradient_norms

    model = SequenceRegressor(
        2,
        hidden,
        1,
        cell=plan.cell,
        init=plan.init,
        forget_bias=1.0 if plan.cell in FORGET_GATE_CELLS else None,
        seed=seed,
    )
    norms_init = step_gradient_norms(model, probe)["rnn"][-1]
    opt = optim.Adam(model.parameters(), lr=plan.lr)
    epochs = max(1, iterations // eval_every)
    per_epoch = max(1, iterations // epochs)
    trainer = Trainer(
        model,
        opt,
        epochs=epochs,
        clip_grad_norm=1.0,
        progress=False,
        log=None,
        seed=seed,
    )
    rng = np.random.default_rng([seed, 1])
    start = time.perf_counter()
    history = trainer.fit(_batches(rng, per_epoch, batch_size, steps), valid)
    seconds = time.perf_counter() - start
    test_mse = trainer.evaluate(test)["loss"]
    norms_final = step_gradient_norms(model, probe)["rnn"][-1]
    curve = [(r["epoch"] * per_epoch, r["val_loss"]) for r in history]
    log(
        f"  {plan.label:18s} {epochs * per_epoch:5d} steps  test MSE {test_mse:.4f}  "
        f"{seconds:5.1f} s"
    )
    return {
        "label": plan.label,
        "cell": plan.cell,
        "init": plan.init,
        "lr": plan.lr,
        "iterations": epochs * per_epoch,
        "test_mse": test_mse,
        "seconds": seconds,
        "curve": curve,
        "step_grad_norms_init": [float(v) for v in norms_init],
        "step_grad_norms_final": [float(v) for v in norms_final],
    }


def verdict(mse: float, baseline: float) -> str:
    """A word for the table: how far below the trivial baseline a test MSE is."""
    if not math.isfinite(mse):
        return "diverged"
    if mse < 0.1 * baseline:
        return "learned"
    if mse < 0.6 * baseline:
        return "partly"
    return "no better than guessing"


def plot_demo(results: dict[str, dict[str, Any]], baseline: float, steps: int, path: Path) -> Path:
    """Learning curves (validation MSE) and per-step gradient norms at initialisation, one PNG.

    Raises:
        ImportError when matplotlib is missing.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 4.5))
    ax1 = fig.add_subplot(1, 2, 1)
    for r in results.values():
        its, mse = zip(*r["curve"], strict=True)
        ax1.plot(its, mse, marker="o", markersize=2, label=r["label"])
    ax1.axhline(baseline, color="gray", linestyle="--", label=f"predict 1.0 ({baseline:.3f})")
    ax1.set_yscale("log")
    ax1.set_xlabel("training step (batches of fresh sequences)")
    ax1.set_ylabel("validation MSE")
    ax1.set_title(f"Adding problem, T = {steps}: learning curves")
    ax1.grid(True, which="both", alpha=0.3)
    ax1.legend(fontsize=8)
    ax2 = fig.add_subplot(1, 2, 2)
    for i, r in enumerate(results.values()):
        colour = f"C{i}"
        for key, style, suffix in (
            ("step_grad_norms_final", "-", ""),
            ("step_grad_norms_init", ":", " (at init)"),
        ):
            norms = np.asarray(r[key])
            norms = np.where(norms > 0, norms, np.nan)
            ax2.plot(np.arange(norms.size), norms, style, color=colour, label=r["label"] + suffix)
    ax2.set_yscale("log")
    ax2.set_xlabel("time step t (the loss is at the last step)")
    ax2.set_ylabel("||dL/dh_t||")
    ax2.set_title("Why: gradient reaching step t (dotted: at initialisation)")
    ax2.grid(True, which="both", alpha=0.3)
    ax2.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path


def _train_all(
    plans, cells, steps, scale, eval_every, batch_size, hidden, valid, test, probe, seed, log
) -> dict[str, Any]:
    results = {}
    for c in cells:
        plan = plans[c]
        iterations = max(eval_every, int(round(plan.iterations * scale)))
        results[c] = train_one(
            plan,
            steps=steps,
            iterations=iterations,
            eval_every=min(eval_every, iterations),
            batch_size=batch_size,
            hidden=hidden,
            valid=valid,
            test=test,
            probe=probe,
            seed=seed,
            log=log,
        )
    return results


def run_demo(
    out: str | Path | None = None,
    *,
    experiment: str = "cells",
    cells: tuple[str, ...] | None = None,
    steps: int = 100,
    scale: float = 1.0,
    eval_every: int = 100,
    batch_size: int = 64,
    hidden: int = 64,
    valid_size: int = 500,
    test_size: int = 2000,
    seed: int = 0,
    plot: bool = True,
    threads: int | None = 1,
    log: Callable[[str], Any] = print,
) -> dict[str, Any]:
    """Train the demo's networks on the adding problem, print the table, write results and plot.

    Args:
        out: output folder (default ./rnncore-demo): results.json and demo.png.
        experiment: "cells" (tanh RNN, LSTM, GRU, IRNN) or "gates" (the LSTM one gate at a
            time: "rnn", "residual", "input", "forget", "lstm").
        cells: which networks of the experiment to train (None: all).
        steps: sequence length T.
        scale: multiplies every network's number of training steps (0.1 for a quick look).
        eval_every: training steps between two points of the learning curves.
        batch_size, hidden: batch size and hidden units of every network.
        valid_size, test_size: held-out sequences for the curves and for the table.
        seed: seed of the data and the weights.
        plot: write demo.png (skipped, with a note, when matplotlib is missing).
        threads: engine threads while training (restored afterwards); None leaves the setting
            alone. One is the default: a 64-unit network's per-step work is too small to share,
            and a single thread cannot stall on a busy core.
        log: where the lines go.
    Returns:
        {"baseline_mse", "steps", "results": {cell: {...}}, "plot": path or None, "out": path}.
    """
    if experiment not in EXPERIMENTS:
        raise ValueError(
            f"run_demo: experiment must be one of {list(EXPERIMENTS)}, got {experiment!r}"
        )
    plans = EXPERIMENTS[experiment]
    cells = tuple(plans) if cells is None else tuple(cells)
    unknown = [c for c in cells if c not in plans]
    if unknown or not cells:
        raise ValueError(f"run_demo: cells must be among {list(plans)}, got {list(cells)}")
    if not scale > 0:
        raise ValueError(f"run_demo: scale must be > 0, got {scale}")
    out_dir = Path(out if out is not None else DEFAULT_OUT)
    xv, yv = adding_problem(valid_size, steps, seed=seed + 1000)
    xt, yt = adding_problem(test_size, steps, seed=seed + 2000)
    baseline = float(np.mean((1.0 - yt.astype(np.float64)) ** 2))
    valid, test = _split(xv, yv, 500), _split(xt, yt, 500)
    probe = (np.ascontiguousarray(xt[:, :256]), yt[:256])
    log(
        f"rnncore demo: the adding problem with T = {steps} steps. The target is the sum of two "
        f"marked values;\nalways answering 1.0 scores MSE {baseline:.3f}. Training "
        f"{', '.join(plans[c].label for c in cells)} (Adam, gradient clipping 1.0, batch "
        f"{batch_size}, {hidden} hidden units):"
    )
    start = time.perf_counter()
    before = None if threads is None else set_num_threads(threads)
    try:
        results = _train_all(
            plans,
            cells,
            steps,
            scale,
            eval_every,
            batch_size,
            hidden,
            valid,
            test,
            probe,
            seed,
            log,
        )
    finally:
        if before is not None:
            set_num_threads(before)
    total = time.perf_counter() - start
    log("")
    log(
        f"{'network':18s} {'steps':>6s} {'test MSE':>9s} {'baseline':>9s} "
        f"{'|dL/dh_0| / |dL/dh_T|':>22s}  verdict"
    )
    for r in results.values():
        n0, nT = r["step_grad_norms_final"][0], r["step_grad_norms_final"][-1]
        ratio = "-" if nT <= 0 else f"{n0 / nT:.1e}" if n0 > 0 else "0 (underflow)"
        log(
            f"{r['label']:18s} {r['iterations']:6d} {r['test_mse']:9.4f} {baseline:9.4f} "
            f"{ratio:>22s}  {verdict(r['test_mse'], baseline)}"
        )
    if experiment == "gates":
        log(GATES_EXPLANATION)
    else:
        log(
            "\nThe gradient column (after training) is the part of the error signal at the last "
            "step that reaches\nthe first one. In the tanh RNN it vanishes: every step back "
            "multiplies it by W_hh' diag(1 - h_t^2),\nso the weights never learn to use the early "
            "marked value. The LSTM and GRU learn to hold their\nforget / update gates open, an "
            "additive path that carries it; the IRNN starts from W_hh = I,\nwhich passes it on "
            "unchanged. The plot shows ||dL/dh_t|| for every step t."
        )
    summary: dict[str, Any] = {
        "experiment": experiment,
        "steps": steps,
        "baseline_mse": baseline,
        "seconds": total,
        "results": results,
        "plot": None,
        "out": str(out_dir),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    if plot:
        try:
            summary["plot"] = str(plot_demo(results, baseline, steps, out_dir / "demo.png"))
        except ImportError:
            log(
                "\nmatplotlib is not installed, so no plot was drawn "
                "(pip install 'rnncore[plot]' to get one)."
            )
    (out_dir / "results.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    log(
        f"\nwrote {out_dir / 'results.json'}"
        + (f" and {summary['plot']}" if summary["plot"] else "")
        + f"  ({total:.0f} s in all)"
    )
    return summary


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``rnncore demo``."""
    p.add_argument(
        "experiment",
        nargs="?",
        default="cells",
        choices=sorted(EXPERIMENTS),
        help="cells: tanh RNN, LSTM, GRU and IRNN (default); gates: the lecture's LSTM one gate "
        "at a time (tanh RNN, residual, + input gate, + forget gate, + output gate = LSTM)",
    )
    p.add_argument(
        "--out",
        default=DEFAULT_OUT,
        metavar="DIR",
        help=f"folder for results.json and demo.png (default: ./{DEFAULT_OUT})",
    )
    p.add_argument(
        "--cells",
        default=None,
        metavar="LIST",
        help="networks to train (default: all of the experiment's): among rnn, lstm, gru, irnn "
        "for cells; rnn, residual, input, forget, lstm for gates",
    )
    p.add_argument(
        "--steps", type=int, default=100, metavar="T", help="sequence length T (default: 100)"
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="a tenth of the training steps: a quick look, not a result",
    )
    p.add_argument(
        "--seed", type=seed_value, default=0, metavar="N", help="random seed (default: 0)"
    )
    p.add_argument("--no-plot", dest="plot", action="store_false", help="do not draw demo.png")


def main(args: argparse.Namespace) -> dict[str, Any]:
    """``rnncore demo`` with parsed options."""
    experiment = getattr(args, "experiment", "cells")
    cells = None
    plans = EXPERIMENTS.get(experiment, {})
    if args.cells is not None:
        cells = tuple(c.strip() for c in args.cells.split(",") if c.strip())
        if not cells or any(c not in plans for c in cells):
            raise TaskError(
                f"--cells must be a comma-separated list among {', '.join(plans)} for the "
                f"{experiment} demo, got {args.cells!r}"
            )
    if args.steps < 2:
        raise TaskError(f"--steps must be >= 2, got {args.steps}")
    return run_demo(
        args.out,
        experiment=experiment,
        cells=cells,
        steps=args.steps,
        scale=0.1 if args.quick else 1.0,
        seed=args.seed,
        plot=args.plot,
        threads=getattr(args, "threads", None) or 1,  # `rnncore --threads N demo` overrides
    )
