"""`rnncore train adding`: the adding problem, the first half of the long-range lesson.

Each step carries a value in [0, 1) and a marker; the target, read after the last step, is the sum
of the two marked values (one in each half of the sequence). Predicting 1.0 scores MSE ~ 0.167, so
a test MSE well below that means the network carried the marked values across up to T steps.
A tanh RNN stays at the baseline for T >= 50 or so; LSTM, GRU and the IRNN (ReLU, identity
recurrent weights: ``--cell irnn``) get far below it. Why: the per-step gradient norms
||dL/dh_t||, written to metrics.json, vanish geometrically back in time for the tanh RNN.

This module also holds what the three long-range tasks (adding, copy, seqdigits) share: their
options, batches of fixed arrays and the report with the gradient norms.
"""

from __future__ import annotations

import argparse
import math
from typing import Any

import numpy as np

from ..data import adding_problem
from ..models import SequenceRegressor
from ..models.sequence_regressor import CELLS, resolve_cell
from ._common import (
    ExplicitStore,
    HelpFormatter,
    SampledBatches,
    TaskError,
    add_training_arguments,
    check_common,
    make_optimizer,
    say,
    train_and_report,
    write_json,
)

NAME = "adding"
HELP = "the adding problem (long-range memory): RNN vs LSTM, GRU and IRNN"
DEFAULTS: dict[str, Any] = dict(
    cell="lstm",
    layers=1,
    hidden=64,
    epochs=10,
    batch_size=64,
    optimizer="adam",
    lr=5e-3,
    clip=1.0,
)
#: what the defaults were measured on (the end of `rnncore train adding --help`)
MEASURED = (
    "Defaults (model, optimizer, lr, clip) measured on the adding problem with --steps 200 "
    "--train-size 20000 and 25 epochs: test MSE 4.7e-5 (LSTM, 30 s per epoch at 2 threads on a "
    "2-core VM) and 2.7e-5 (--cell gru, 8 s per epoch) against 0.167 for always predicting 1 "
    "(bench/quality_tasks2.py, bench/results/quality.md). The default size (T 100, 10,000 "
    "sequences, 10 epochs) is a shorter run that has not been recorded."
)
LONG_RANGE_CELLS = CELLS + ("irnn",)


# ---- shared by adding, copy and seqdigits ------------------------------------------------------
def add_long_range_arguments(
    p: argparse.ArgumentParser, defaults: dict[str, Any], *, long_range: bool = True
) -> None:
    """Options of the tasks on generated data: output, recurrent cell, training (no --data).

    The names are those of the other tasks (``rnncore.tasks._common``), so the same training
    driver reads them. With ``long_range``: ``--cell irnn`` (a ReLU RNN with identity recurrent
    weights), ``--init`` and ``--forget-bias``; without: ``--embed`` and ``--dropout`` from
    ``defaults``.
    """
    p.formatter_class = HelpFormatter
    io = p.add_argument_group("output")
    io.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        help="output directory: metrics.json, history.json/.csv and checkpoint/{best,last}",
    )
    m = p.add_argument_group("model")
    m.add_argument(
        "--cell",
        choices=LONG_RANGE_CELLS if long_range else CELLS,
        default=defaults["cell"],
        help="recurrent cell: rnn (tanh), rnn_relu, "
        + ("irnn (rnn_relu with identity init, Le et al. 2015), " if long_range else "")
        + "lstm, gru or gru_v1",
    )
    m.add_argument("--layers", type=int, default=defaults["layers"], metavar="N", help="layers")
    m.add_argument(
        "--hidden", type=int, default=defaults["hidden"], metavar="N", help="hidden units"
    )
    if long_range:
        m.add_argument(
            "--init",
            choices=("uniform", "orthogonal", "identity"),
            default="uniform",
            help="recurrent weight initialisation (identity: RNN cells only)",
        )
        m.add_argument(
            "--forget-bias",
            type=float,
            default=1.0,
            metavar="X",
            help="LSTM forget-gate bias (Jozefowicz et al. 2015; ignored by other cells)",
        )
    else:
        m.add_argument(
            "--embed",
            type=int,
            action=ExplicitStore,
            default=defaults["embed"],
            metavar="N",
            help="embedding size",
        )
        m.add_argument(
            "--dropout",
            type=float,
            default=defaults["dropout"],
            metavar="P",
            help="dropout probability on the non-recurrent connections (0 = none)",
        )
    add_training_arguments(p, defaults)
    if long_range:
        p.set_defaults(dropout=0.0)


def check_sizes(args: argparse.Namespace, *names: str) -> None:
    """Integer options that must be >= 1, named as on the command line."""
    for name in names:
        v = getattr(args, name)
        if v is None or v < 1:
            raise TaskError(f"--{name.replace('_', '-')} must be >= 1, got {v}")


def build_model(args: argparse.Namespace, **kw: Any) -> SequenceRegressor:
    """The SequenceRegressor of the options (``--cell irnn`` resolved)."""
    try:
        cell, init = resolve_cell(args.cell, args.init)
    except ValueError as e:
        raise TaskError(f"--cell: {e}") from None
    if init == "identity" and cell not in ("rnn", "rnn_relu"):
        raise TaskError(f"--init identity is for the rnn cells only, not --cell {args.cell}")
    return SequenceRegressor(
        hidden_size=args.hidden,
        num_layers=args.layers,
        cell=cell,
        init=init,
        forget_bias=args.forget_bias if cell == "lstm" else None,
        seed=args.seed,
        **kw,
    )


class ArrayBatches(SampledBatches):
    """Batches of fixed arrays: ``collate(indices)`` for index batches, shuffled per epoch when
    training (a re-iterable with ``set_epoch`` and ``len``)."""

    def __init__(self, n: int, batch_size: int, collate: Any, *, shuffle: bool, seed: int = 0):
        super().__init__([1] * n, batch_size, collate, shuffle=shuffle, seed=seed)


def gradient_norm_profile(model: SequenceRegressor, batch: Any) -> list[float]:
    """||dL/dh_t|| of the top layer for every step t, on one batch (model left unchanged)."""
    from ..train import step_gradient_norms

    norms = step_gradient_norms(model, batch)["rnn"]
    return [float(v) for v in norms[-1]]


def summarise_norms(norms: list[float]) -> dict[str, float]:
    """The gradient reaching the first step relative to the last step's (log10)."""
    first, last = norms[0], norms[-1]
    ratio = first / last if last > 0 else math.nan
    return {
        "first_step": first,
        "last_step": last,
        "log10_first_over_last": math.log10(ratio) if ratio > 0 else -math.inf,
    }


def power_of_ten(norms: list[float]) -> str:
    """||dL/dh_0|| / ||dL/dh_T-1|| as "10^x", or "0 (underflow)"."""
    x = summarise_norms(norms)["log10_first_over_last"]
    if math.isnan(x):
        return "-"
    return "0 (underflow)" if math.isinf(x) else f"10^{x:.1f}"


def finish_report(args: argparse.Namespace, result: dict[str, Any], **extra: Any) -> dict:
    """Add task numbers to metrics.json (rewritten) and print them."""
    from pathlib import Path

    result.update(extra)
    write_json(Path(args.out) / "metrics.json", result)
    return result


# ---- the adding problem ------------------------------------------------------------------------
def add_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = MEASURED
    p.description = (
        "Train one recurrent layer + linear read-out on the adding problem (Hochreiter & "
        "Schmidhuber 1997; Le et al. 2015) and compare its test MSE with the baseline of "
        "always predicting 1 (~0.167). Writes the per-step gradient norms ||dL/dh_t|| before "
        "and after training to metrics.json."
    )
    add_long_range_arguments(p, DEFAULTS)
    g = p.add_argument_group("adding problem")
    g.add_argument("--steps", type=int, default=100, metavar="T", help="sequence length T")
    g.add_argument("--train-size", type=int, default=10000, metavar="N", help="training sequences")
    g.add_argument("--valid-size", type=int, default=1000, metavar="N", help="validation sequences")
    g.add_argument("--test-size", type=int, default=2000, metavar="N", help="test sequences")


def adding_batches(
    n: int, steps: int, batch_size: int, *, seed: int, shuffle: bool
) -> tuple[ArrayBatches, np.ndarray, np.ndarray]:
    """(batches of (x [T, B, 2], y [B]), x [T, N, 2], y [N]) of n fixed adding sequences."""
    x, y = adding_problem(n, steps, seed=seed)

    def collate(idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.ascontiguousarray(x[:, idx]), y[idx]

    return ArrayBatches(n, batch_size, collate, shuffle=shuffle, seed=seed), x, y


def run(args: argparse.Namespace) -> dict[str, Any]:
    check_common(args)
    check_sizes(args, "train_size", "valid_size", "test_size")
    if args.steps < 2:
        raise TaskError(f"--steps must be >= 2, got {args.steps}")
    model = build_model(args, input_size=2, output_size=1, readout="last", loss="mse")
    bs, T = args.batch_size, args.steps
    # distinct seeds per split; the data depend on --seed only through these
    train, _, _ = adding_batches(args.train_size, T, bs, seed=args.seed * 3 + 101, shuffle=True)
    valid, _, _ = adding_batches(args.valid_size, T, bs, seed=args.seed * 3 + 102, shuffle=False)
    test, xt, yt = adding_batches(args.test_size, T, bs, seed=args.seed * 3 + 103, shuffle=False)
    probe = (np.ascontiguousarray(xt[:, :256]), yt[:256])
    norms_init = gradient_norm_profile(model, probe)
    result = train_and_report(
        args,
        model,
        train,
        valid,
        test,
        optimizer=make_optimizer(args, model),
        extra={"task": NAME, "steps": T, "cell": args.cell},
        data_info={
            "steps": T,
            "train": args.train_size,
            "valid": args.valid_size,
            "test": args.test_size,
        },
    )
    norms_final = gradient_norm_profile(model, probe)
    baseline = float(np.mean((1.0 - yt.astype(np.float64)) ** 2))
    test_mse = result["test"]["loss"] if result.get("test") else math.nan
    say(
        args,
        f"adding problem T={T}, {args.cell}: test MSE {test_mse:.4f} vs baseline {baseline:.4f} "
        f"(predicting 1.0); ||dL/dh_0|| / ||dL/dh_T-1|| = {power_of_ten(norms_init)} at init, "
        f"{power_of_ten(norms_final)} after training",
    )
    return finish_report(
        args,
        result,
        test_mse=test_mse,
        baseline_mse=baseline,
        step_grad_norms_init=norms_init,
        step_grad_norms_final=norms_final,
        grad_norm_summary={
            "init": summarise_norms(norms_init),
            "final": summarise_norms(norms_final),
        },
    )
