"""Quality of the lecture's tasks, part 2: translation, captioning, forecasting, the adding problem.

A program, not a test. Each recipe runs the command line's code (`rnncore train TASK ...`, the
options below), compares the score with the issue's target and writes
``bench/results/quality_<recipe>.json`` (checkpoints go to --work-dir, outside the repository).

    python bench/quality_tasks2.py                          # every recipe, full length
    python bench/quality_tasks2.py --only airline,caption   # some recipes
    python bench/quality_tasks2.py --quick                  # smoke run: a few batches each

Recipes (real data from ../shared/data, see its README):

- translation: English -> French on Tatoeba fra_eng (pairs of at most 10 words, a fixed 10% held
  out), 1-layer LSTM encoder-decoder 256 units, embeddings 128, words seen once -> <unk>, Adam
  2e-3, clip 5, 2 epochs, greedy decoding; trained twice, without attention and with Luong
  (general) attention. Target: the attention model's test BLEU at least 5 above the other's.
- caption: synthetic scenes (generated, 6000 for training, 600 held out), LSTM 128, Adam 3e-3,
  5 epochs. Target: >= 95% exactly right captions on the held-out scenes.
- airline: airline passengers, last 33% as test, log + first differences, windows of 12 months,
  LSTM 32, one step ahead. Target: test RMSE below the seasonal-naive forecast's 41.9.
- adding_lstm, adding_gru: the adding problem with T = 200 (20000 training sequences), 64
  units, Adam 5e-3, clip 1, 25 epochs of 313 batches. Target: test MSE < 0.01 (predicting 1.0
  scores ~0.167).

``estimated_epoch_seconds`` extrapolates the first epoch's time per batch to a full epoch: --quick
keeps the full data and model sizes and trains a few batches of one epoch (the airline recipe 5
short epochs), so its estimates plan the full runs.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

from _quality import machine_info, write_result  # noqa: E402 (bench/ is on sys.path)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_DATA = ROOT.parent / "shared" / "data"

S2S = (
    "--max-words 10 --test-fraction 0.1 --valid-fraction 0.05 --cell lstm --layers 1 "
    "--hidden 256 --embed 128 --min-freq 2 --epochs 2 --batch-size 64 --optimizer adam "
    "--lr 2e-3 --clip 5"
)
ADDING = "--steps 200 --train-size 20000 --valid-size 1000 --test-size 2000 --hidden 64 --clip 1"

# name -> task, data path under the data root (None: generated), options, quick options,
# (result key path, "<=" / ">=" / "<", target)
RECIPES: dict[str, dict[str, Any]] = {
    "translation": {
        "task": "seq2seq",
        "data": "fra_eng/fra.txt",
        "runs": {"plain": S2S + " --attention none", "attention": S2S + " --attention general"},
        "quick": "--epochs 1 --max-batches 30 --max-eval-batches 5 --bleu-sentences 300",
        "target": ("attention BLEU - plain BLEU", ">=", 5.0),
    },
    "caption": {
        "task": "caption",
        "data": None,
        "runs": {"": "--scenes 6000 --epochs 5 --hidden 128 --embed 32 --lr 3e-3 --clip 5"},
        "quick": "--epochs 1 --max-batches 20",
        "target": ("test_exact_match", ">=", 0.95),
    },
    "airline": {
        "task": "forecast",
        "data": "timeseries/airline-passengers.csv",
        "runs": {
            "": "--value-column Passengers --date-column Month --log --difference 1 "
            "--input-len 12 --horizon 1 --test-fraction 0.33 --hidden 32 --epochs 100 "
            "--batch-size 16 --lr 5e-3 --clip 1"
        },
        "quick": "--epochs 5",
        "target": ("forecast.rmse", "<", 41.9),
    },
    "adding_lstm": {
        "task": "adding",
        "data": None,
        "runs": {"": ADDING + " --cell lstm --lr 5e-3 --epochs 25"},
        "quick": "--epochs 1 --max-batches 20 --max-eval-batches 4",
        "target": ("test_mse", "<", 0.01),
    },
    "adding_gru": {
        "task": "adding",
        "data": None,
        "runs": {"": ADDING + " --cell gru --lr 5e-3 --epochs 25"},
        "quick": "--epochs 1 --max-batches 20 --max-eval-batches 4",
        "target": ("test_mse", "<", 0.01),
    },
}


def _override(options: str, extra: str) -> str:
    """Options with those of ``extra`` replacing (or adding to) them; flags take one value."""
    parts = options.split()
    new = extra.split()
    i = 0
    while i < len(new):
        flag = new[i]
        has_value = i + 1 < len(new) and not new[i + 1].startswith("--")
        if flag in parts:
            j = parts.index(flag)
            if has_value:
                parts[j + 1] = new[i + 1]
        else:
            parts += [flag] + ([new[i + 1]] if has_value else [])
        i += 2 if has_value else 1
    return " ".join(parts)


def _lookup(metrics: dict, path: str) -> float | None:
    value: Any = metrics
    for key in path.split("."):
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return None if value is None else float(value)


def _epoch_estimate(metrics: dict, batch_size: int) -> dict[str, Any]:
    hist = metrics.get("history") or []
    if not hist or not hist[0].get("steps"):
        return {}
    d = metrics.get("data", {})
    n = d.get("train_pairs") or d.get("train_examples") or d.get("train") or d.get("train_windows")
    per_batch = hist[0]["train_seconds"] / hist[0]["steps"]
    full = math.ceil(n / batch_size) if n else None
    return {
        "seconds_per_batch": per_batch,
        "batches_per_epoch": full,
        "estimated_epoch_seconds": per_batch * full if full else None,
    }


def run_one(name: str, run: str, options: str, args: argparse.Namespace) -> dict[str, Any]:
    """One `rnncore train` run of a recipe; returns its metrics.json content plus timings."""
    from rnncore import cli, tasks

    recipe = RECIPES[name]
    if args.quick:
        options = _override(options, recipe["quick"])
    if args.epochs is not None:
        options = _override(options, f"--epochs {args.epochs}")
    if args.seed is not None:
        options = _override(options, f"--seed {args.seed}")
    work = args.work_dir / (name + (f"_{run}" if run else ""))
    argv = ["train", recipe["task"], "--out", str(work), *options.split()]
    if recipe["data"] is not None:
        argv += ["--data", str(args.data_root / recipe["data"])]
    if args.max_batches is not None:
        argv += ["--max-batches", str(args.max_batches)]
    if args.max_eval_batches is not None:
        argv += ["--max-eval-batches", str(args.max_eval_batches)]
    if not args.progress:
        argv.append("--no-progress")
    print(f"\n=== {name}{' ' + run if run else ''}: rnncore {' '.join(argv)}", flush=True)
    ns = cli.build_parser().parse_args(argv)
    start = time.perf_counter()
    metrics = tasks.load(recipe["task"]).run(ns)
    metrics["command"] = "rnncore " + " ".join(argv)
    metrics["run_seconds"] = time.perf_counter() - start
    metrics.update(_epoch_estimate(metrics, ns.batch_size))
    return metrics


def run_recipe(name: str, args: argparse.Namespace) -> dict[str, Any]:
    recipe = RECIPES[name]
    if recipe["data"] is not None and not (args.data_root / recipe["data"]).exists():
        return {"recipe": name, "skipped": f"data not found: {args.data_root / recipe['data']}"}
    runs = {run: run_one(name, run, opts, args) for run, opts in recipe["runs"].items()}
    key, op, bound = recipe["target"]
    if name == "translation":
        plain, att = runs["plain"]["test_bleu"], runs["attention"]["test_bleu"]
        value = att - plain
        extra = {"bleu_plain": plain, "bleu_attention": att}
    else:
        value = _lookup(runs[""], key)
        extra = {}
    passed = None
    if value is not None:
        passed = {"<": value < bound, "<=": value <= bound, ">=": value >= bound}[op]
    keep = (
        "command", "valid", "test", "epochs", "best_epoch", "seconds_per_epoch", "run_seconds",
        "seconds_per_batch", "batches_per_epoch", "estimated_epoch_seconds", "parameters",
        "data", "test_bleu", "bleu", "test_exact_match", "captions", "forecast", "test_mse",
        "baseline_mse", "grad_norm_summary", "history",
    )  # fmt: skip
    return {
        "recipe": name,
        "target": {"value_of": key, "op": op, "bound": bound},
        "value": value,
        "passed": passed,
        **extra,
        "runs": {run: {k: m[k] for k in keep if k in m} for run, m in runs.items()},
        "full_length": not args.quick and args.max_batches is None and args.epochs is None,
    }


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.4g}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--only", default=",".join(RECIPES), help=f"comma-separated recipes: {', '.join(RECIPES)}"
    )
    p.add_argument("--quick", action="store_true", help="smoke run: a few batches per recipe")
    p.add_argument("--epochs", type=int, default=None, help="override every recipe's epochs")
    p.add_argument("--max-batches", type=int, default=None, help="training batches per epoch")
    p.add_argument("--max-eval-batches", type=int, default=None, help="batches per eval split")
    p.add_argument("--seed", type=int, default=None, help="override the seed (default 0)")
    p.add_argument("--threads", type=int, default=None, help="engine threads (default: all)")
    p.add_argument("--data-root", type=Path, default=DEFAULT_DATA, help="the datasets' folder")
    p.add_argument(
        "--work-dir",
        type=Path,
        default=Path(os.environ.get("TMPDIR", "/tmp")) / "rnncore-quality2",
        help="where the runs' checkpoints go",
    )
    p.add_argument("--results", type=Path, default=HERE / "results", help="result JSON folder")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no bars")
    args = p.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in RECIPES]
    if unknown:
        p.error(f"unknown recipe(s) {unknown}; known: {', '.join(RECIPES)}")

    import rnncore

    if args.threads is not None:
        rnncore.set_num_threads(args.threads)
    args.results.mkdir(parents=True, exist_ok=True)
    machine = machine_info(rnncore)
    summary = []
    for name in names:
        result = run_recipe(name, args)
        result["machine"] = machine
        result["quick"] = args.quick
        path = args.results / f"quality_{name}{'_quick' if args.quick else ''}.json"
        write_result(path, result)
        summary.append(result)
        print(f"wrote {path}", flush=True)

    print(
        "\nrecipe        target                                value    pass   s/epoch (est. full)"
    )
    for r in summary:
        if "skipped" in r:
            print(f"{r['recipe']:<13} skipped: {r['skipped']}")
            continue
        t = r["target"]
        goal = f"{t['value_of']} {t['op']} {t['bound']}"
        for run, m in r["runs"].items():
            est = m.get("estimated_epoch_seconds")
            label = r["recipe"] + (f" {run}" if run else "")
            print(
                f"{label:<21} {goal:<30} {_num(r['value']):>9}  {str(r['passed']):<5} "
                f"{m.get('seconds_per_epoch', math.nan):7.1f} ({_num(est)})"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
