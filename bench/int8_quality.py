"""What int8 inference (int8_inference, `--int8`) costs in task quality, on real data.

A program, not a test. It trains three task models briefly with `rnncore train` (a PTB word LM,
an SST-2 sentence classifier, a CoNLL-2003 tagger; data from ../shared/data, read in place),
then evaluates each checkpoint with `rnncore eval` in float32 and with `--int8`, and writes
results/int8_quality.{json,md}: perplexity, accuracy and F1 side by side. The models are not
trained to the end (minutes, not hours): the point is the float32 / int8 difference on the same
weights, which the table shows.

    python bench/int8_quality.py            # about 10 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data"

RUNS = {
    "ptb": (
        "lm",
        DATA / "ptb",
        "--epochs 1 --max-batches 600 --layers 2 --hidden 200 --embed 200",
        ("test", "ppl"),
    ),
    "sst2": ("sentiment", DATA / "sst2", "--epochs 2", ("test", "accuracy")),
    "conll": ("tagger", DATA / "conll2003", "--epochs 1 --max-batches 200", ("test", "f1")),
}


def cli(argv: list[str]) -> str:
    """`rnncore ARGV`'s standard output (its exit status must be 0)."""
    from rnncore.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(argv)
    if code != 0:
        raise SystemExit(f"rnncore {' '.join(argv)} exited with {code}")
    return out.getvalue()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", default=",".join(RUNS), help=f"subset of {','.join(RUNS)}")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "int8_quality")
    args = ap.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.runs.split(","):
            task, data, opts, (split, metric) = RUNS[name]
            if not data.exists():
                print(f"{name}: no data at {data}, skipped")
                continue
            run = Path(tmp) / name
            t0 = time.perf_counter()
            cli(
                ["train", task, "--data", str(data), "--out", str(run), "--no-progress"]
                + opts.split()
            )
            train_s = time.perf_counter() - t0
            scores = {}
            for label, extra in (("float32", []), ("int8", ["--int8"])):
                t0 = time.perf_counter()
                result = json.loads(cli(["eval", str(run), "--data", str(data), *extra]))
                scores[label] = (result[split][metric], time.perf_counter() - t0)
            rows.append(
                {
                    "run": name,
                    "task": task,
                    "options": opts,
                    "metric": f"{split} {metric}",
                    "train_s": train_s,
                    "float32": scores["float32"][0],
                    "int8": scores["int8"][0],
                    "eval_s_float32": scores["float32"][1],
                    "eval_s_int8": scores["int8"][1],
                }
            )
            r = rows[-1]
            print(f"{name}: {r['metric']} float32 {r['float32']:.4f}, int8 {r['int8']:.4f}")
    lines = [
        "# Int8 inference against float32 on the same weights",
        "",
        f"`python bench/int8_quality.py`, {time.strftime('%Y-%m-%d')}: each model trained briefly "
        "with `rnncore train` (options below), then `rnncore eval` without and with `--int8` "
        "(the recurrent layers' W_ih and W_hh products in int8; everything else float32). Eval "
        "seconds include reading the data.",
        "",
        "| run | task | training options | metric | float32 | int8 | difference "
        "| eval s f32 / int8 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['run']} | {r['task']} | `{r['options']}` | {r['metric']} | {r['float32']:.4f} "
            f"| {r['int8']:.4f} | {r['int8'] - r['float32']:+.4f} | "
            f"{r['eval_s_float32']:.1f} / {r['eval_s_int8']:.1f} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.parent.mkdir(exist_ok=True)
    args.out.with_suffix(".md").write_text(text, encoding="utf-8")
    args.out.with_suffix(".json").write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
