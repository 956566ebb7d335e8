"""`rnncore train seqdigits`: MNIST digits read one pixel (or a few) per step.

Pixel-by-pixel MNIST (Le et al. 2015) is a 784-step classification: the label is read after the
last pixel, so the network has to carry what it saw at the top of the image through hundreds of
steps. ``--pixels-per-step 28`` reads row by row (28 steps) for a quicker run; ``--permute`` uses a
fixed random pixel order (pMNIST), which removes the local structure. The data are MNIST's IDX
files in a folder (``train-images-idx3-ubyte`` etc., optionally .gz); nothing is downloaded.
"""

from __future__ import annotations

import argparse
import math
from typing import Any

import numpy as np

from ..data import load_mnist, pixel_sequences
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

NAME = "seqdigits"
HELP = "sequential (pixel-by-pixel) MNIST from its IDX files"
DEFAULTS: dict[str, Any] = dict(
    cell="lstm", layers=1, hidden=128, epochs=10, batch_size=64, optimizer="adam", lr=1e-3, clip=1.0
)
#: what the defaults were measured on (the end of `rnncore train seqdigits --help`)
MEASURED = (
    "Defaults not measured: MNIST is not on the development machine, so no run of this task is "
    "recorded in bench/results/; the optimizer and clip are the adding task's, with 128 units "
    "and lr 1e-3."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = MEASURED
    p.description = (
        "Classify MNIST digits read as a sequence of pixels (784 steps with the default "
        "--pixels-per-step 1). Needs the IDX files in --data; the last --valid-size training "
        "images are held out for validation, t10k-* is the test set when present."
    )
    add_long_range_arguments(p, DEFAULTS)
    g = p.add_argument_group("sequential digits")
    g.add_argument(
        "--data",
        required=True,
        metavar="DIR",
        help="folder with train-images-idx3-ubyte, train-labels-idx1-ubyte (and t10k-* for the "
        "test set), optionally .gz",
    )
    g.add_argument(
        "--pixels-per-step",
        type=int,
        default=1,
        metavar="P",
        help="pixels read per step (1: pixel by pixel; 28: row by row)",
    )
    g.add_argument(
        "--permute", action="store_true", help="a fixed random pixel order (permuted MNIST)"
    )
    g.add_argument(
        "--valid-size", type=int, default=5000, metavar="N", help="training images held out"
    )
    g.add_argument(
        "--train-limit",
        type=int,
        default=None,
        metavar="N",
        help="use only the first N training images (quick trials; default: all)",
    )


def digit_batches(
    images: np.ndarray,
    labels: np.ndarray,
    batch_size: int,
    pixels_per_step: int,
    permutation: np.ndarray | None,
    *,
    shuffle: bool,
    seed: int,
) -> ArrayBatches:
    """Batches of (x float32 [T, B, P], labels [B]); images converted batch by batch."""

    def collate(idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return pixel_sequences(images[idx], pixels_per_step, permutation), labels[idx]

    return ArrayBatches(len(labels), batch_size, collate, shuffle=shuffle, seed=seed)


def run(args: argparse.Namespace) -> dict[str, Any]:
    check_common(args)
    check_sizes(args, "pixels_per_step", "valid_size")
    if args.train_limit is not None:
        check_sizes(args, "train_limit")
    images, labels = load_mnist(args.data, "train")
    if args.train_limit is not None:
        images, labels = images[: args.train_limit], labels[: args.train_limit]
    if args.valid_size >= len(labels):
        raise TaskError(
            f"--valid-size {args.valid_size} leaves no training images (of {len(labels)})"
        )
    pixels = images.shape[1] * images.shape[2]
    if pixels % args.pixels_per_step:
        raise TaskError(
            f"--pixels-per-step {args.pixels_per_step} must divide the {pixels} pixels of an image"
        )
    try:
        test_images, test_labels = load_mnist(args.data, "test")
    except FileNotFoundError:
        test_images = test_labels = None
    perm = np.random.default_rng(12345).permutation(pixels) if args.permute else None
    num_classes = int(max(labels.max(), 9)) + 1
    model = build_model(
        args,
        input_size=args.pixels_per_step,
        output_size=num_classes,
        readout="last",
        loss="cross_entropy",
    )
    n_train = len(labels) - args.valid_size
    bs, P = args.batch_size, args.pixels_per_step
    train = digit_batches(
        images[:n_train], labels[:n_train], bs, P, perm, shuffle=True, seed=args.seed
    )
    valid = digit_batches(images[n_train:], labels[n_train:], bs, P, perm, shuffle=False, seed=0)
    test = None
    if test_images is not None:
        test = digit_batches(test_images, test_labels, bs, P, perm, shuffle=False, seed=0)
    probe = next(iter(valid))
    norms_init = gradient_norm_profile(model, probe)
    result = train_and_report(
        args,
        model,
        train,
        valid,
        test,
        optimizer=make_optimizer(args, model),
        monitor="accuracy",
        mode="max",
        extra={
            "task": NAME,
            "pixels_per_step": P,
            "permute": bool(args.permute),
            "permutation": None if perm is None else perm.tolist(),
        },
        data_info={
            "steps": pixels // P,
            "train": n_train,
            "valid": args.valid_size,
            "test": 0 if test_labels is None else len(test_labels),
        },
    )
    norms_final = gradient_norm_profile(model, probe)
    split = result.get("test") or result.get("valid") or {}
    acc = split.get("accuracy", math.nan)
    say(
        args,
        f"sequential digits, {pixels // P} steps of {P} pixel(s), {args.cell}: "
        f"{'test' if result.get('test') else 'validation'} accuracy {acc:.4f}",
    )
    return finish_report(
        args,
        result,
        accuracy=acc,
        step_grad_norms_init=norms_init,
        step_grad_norms_final=norms_final,
        grad_norm_summary={
            "init": summarise_norms(norms_init),
            "final": summarise_norms(norms_final),
        },
    )
