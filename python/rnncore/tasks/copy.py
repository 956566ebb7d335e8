"""`rnncore train copy`: the copy / memory task, the long-range lesson with a symbol per step.

The network reads S random symbols, then blanks, then a "go" marker, and must output the S
symbols after the marker (blanks before). Always answering blanks and then guessing scores the
baseline cross-entropy S·log(K) / (2S + delay); only a network that remembers the symbols across
the delay gets below it. Reported: the test loss and baseline, the accuracy on the S recalled
symbols (``copy_accuracy``, chance 1/K) and the per-step gradient norms.
"""

from __future__ import annotations

import argparse
import math
from typing import Any

import numpy as np

from ..data import copy_task
from ._common import TaskError, check_common, make_optimizer, say, train_and_report
from .adding import (
    ArrayBatches,
    add_long_range_arguments,
    build_model,
    check_sizes,
    finish_report,
    gradient_norm_profile,
    summarise_norms,
)

NAME = "copy"
HELP = "the copy / memory task: recall S symbols after a delay"
DEFAULTS: dict[str, Any] = dict(
    cell="lstm", layers=1, hidden=64, epochs=10, batch_size=64, optimizer="adam", lr=5e-3, clip=1.0
)
#: what the defaults were measured on (the end of `rnncore train copy --help`)
MEASURED = (
    "Defaults not measured on this task: no run of it is recorded in bench/results/; the model,"
    " optimizer, lr and clip are the adding task's (measured there, see `rnncore train adding "
    "--help`)."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = MEASURED
    p.description = (
        "Train a recurrent network with an output at every step on the copy task (Hochreiter "
        "& Schmidhuber 1997; Arjovsky et al. 2016): remember S symbols over a delay and write "
        "them out after a marker. Reports the recall accuracy against chance and the per-step "
        "gradient norms."
    )
    add_long_range_arguments(p, DEFAULTS)
    g = p.add_argument_group("copy task")
    g.add_argument("--seq-len", type=int, default=10, metavar="S", help="symbols to remember")
    g.add_argument(
        "--delay",
        type=int,
        default=20,
        metavar="D",
        help="steps between the symbols and the marker",
    )
    g.add_argument("--symbols", type=int, default=8, metavar="K", help="alphabet size")
    g.add_argument("--embed", type=int, default=16, metavar="N", help="symbol embedding size")
    g.add_argument("--train-size", type=int, default=10000, metavar="N", help="training sequences")
    g.add_argument("--valid-size", type=int, default=1000, metavar="N", help="validation sequences")
    g.add_argument("--test-size", type=int, default=2000, metavar="N", help="test sequences")


def copy_batches(
    n: int, args: argparse.Namespace, *, seed: int, shuffle: bool
) -> tuple[ArrayBatches, np.ndarray, np.ndarray]:
    """(batches of (x ids [T, B], y ids [T, B]), x [T, N], y [T, N]) of n fixed sequences."""
    x, y = copy_task(n, args.seq_len, args.delay, num_symbols=args.symbols, seed=seed)

    def collate(idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.ascontiguousarray(x[:, idx]), np.ascontiguousarray(y[:, idx])

    return ArrayBatches(n, args.batch_size, collate, shuffle=shuffle, seed=seed), x, y


def copy_accuracy(
    model: Any, x: np.ndarray, y: np.ndarray, seq_len: int, batch: int = 256
) -> float:
    """Fraction of the S recalled symbols (the last S steps) predicted right."""
    right = total = 0
    for i in range(0, x.shape[1], batch):
        pred = model.predict(x[:, i : i + batch]).argmax(-1)[-seq_len:]
        right += int((pred == y[-seq_len:, i : i + batch]).sum())
        total += pred.size
    return right / max(total, 1)


def run(args: argparse.Namespace) -> dict[str, Any]:
    check_common(args)
    check_sizes(
        args, "seq_len", "delay", "symbols", "embed", "train_size", "valid_size", "test_size"
    )
    if args.symbols < 2:
        raise TaskError(f"--symbols must be >= 2, got {args.symbols}")
    K, S = args.symbols, args.seq_len
    model = build_model(
        args,
        input_size=args.embed,
        output_size=K + 2,
        vocab_size=K + 2,
        readout="all",
        loss="cross_entropy",
    )
    train, _, _ = copy_batches(args.train_size, args, seed=args.seed * 3 + 201, shuffle=True)
    valid, _, _ = copy_batches(args.valid_size, args, seed=args.seed * 3 + 202, shuffle=False)
    test, xt, yt = copy_batches(args.test_size, args, seed=args.seed * 3 + 203, shuffle=False)
    probe = (np.ascontiguousarray(xt[:, :256]), np.ascontiguousarray(yt[:, :256]))
    norms_init = gradient_norm_profile(model, probe)
    T = 2 * S + args.delay
    result = train_and_report(
        args,
        model,
        train,
        valid,
        test,
        optimizer=make_optimizer(args, model),
        extra={"task": NAME, "seq_len": S, "delay": args.delay, "symbols": K},
        data_info={
            "steps": T,
            "train": args.train_size,
            "valid": args.valid_size,
            "test": args.test_size,
        },
    )
    norms_final = gradient_norm_profile(model, probe)
    baseline = S * math.log(K) / T
    acc = copy_accuracy(model, xt, yt, S)
    test_loss = result["test"]["loss"] if result.get("test") else math.nan
    say(
        args,
        f"copy task S={S}, delay={args.delay} (T={T}), {args.cell}: test loss {test_loss:.4f} "
        f"vs baseline {baseline:.4f}; recall accuracy {acc:.3f} (chance {1 / K:.3f})",
    )
    return finish_report(
        args,
        result,
        test_loss=test_loss,
        baseline_loss=baseline,
        copy_accuracy=acc,
        chance_accuracy=1.0 / K,
        step_grad_norms_init=norms_init,
        step_grad_norms_final=norms_final,
        grad_norm_summary={
            "init": summarise_norms(norms_init),
            "final": summarise_norms(norms_final),
        },
    )
