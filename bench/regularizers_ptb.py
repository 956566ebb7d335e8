"""Does zoneout or recurrent dropout beat plain dropout at the same size? PTB word LM runs.

Each run is ``rnncore train lm`` (2-layer LSTM, 200 units, the task's SGD recipe) with one
regulariser, on the first --train-fraction of PTB's training lines (a smaller training set
overfits within a few epochs, which is where regularisers differ) and the full validation and
test sets. Runs go two at a time, one engine thread each; the table reports the best validation
perplexity, the test perplexity of that epoch's model and the seconds per run.

    python bench/regularizers_ptb.py                      # ../shared/data/ptb, ~40 min
    python bench/regularizers_ptb.py --epochs 2 --train-fraction 0.05   # a quick look
    python bench/regularizers_ptb.py --variants "layer norm,dropout 0.3 + layer norm" \
        --out bench/results/regularizers_ptb_layernorm    # the layer-norm rows apart

Writes bench/results/regularizers_ptb.{json,md}. Needs the PTB folder (ptb.{train,valid,test}.txt).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parent.parent / "shared" / "data" / "ptb"

# label -> the options that differ from the plain run
VARIANTS: dict[str, list[str]] = {
    "none": [],
    "dropout 0.3": ["--dropout", "0.3"],
    "zoneout 0.1": ["--zoneout", "0.1"],
    "recurrent dropout 0.25": ["--recurrent-dropout", "0.25"],
    "dropout 0.3 + zoneout 0.1": ["--dropout", "0.3", "--zoneout", "0.1"],
    "dropout 0.3 + rec. dropout 0.25": ["--dropout", "0.3", "--recurrent-dropout", "0.25"],
    "layer norm": ["--layer-norm"],
    "dropout 0.3 + layer norm": ["--dropout", "0.3", "--layer-norm"],
}


def subset(src: Path, dst: Path, fraction: float) -> int:
    """dst gets the first ``fraction`` of src's training lines and its whole valid/test files;
    returns the training tokens (one <eos> per line counted)."""
    dst.mkdir(parents=True, exist_ok=True)
    lines = (src / "ptb.train.txt").read_text().splitlines(keepends=True)
    keep = lines[: max(1, int(len(lines) * fraction))]
    (dst / "ptb.train.txt").write_text("".join(keep))
    for split in ("valid", "test"):
        (dst / f"ptb.{split}.txt").write_text((src / f"ptb.{split}.txt").read_text())
    return sum(len(line.split()) + 1 for line in keep)


def run_one(label: str, extra: list[str], data: Path, out: Path, common: list[str]) -> dict:
    argv = [sys.executable, "-m", "rnncore", "train", "lm", "--data", str(data), "--out", str(out)]
    argv += ["--threads", "1", "--no-progress", "--log-interval", "0", *common, *extra]
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        return {"label": label, "error": proc.stderr.strip().splitlines()[-1:], "seconds": seconds}
    m = json.loads((out / "metrics.json").read_text())
    return {
        "label": label,
        "options": extra,
        "valid_ppl": m["valid"]["ppl"],
        "test_ppl": m["test"]["ppl"],
        "best_epoch": m["best_epoch"],
        "valid_ppl_by_epoch": [round(r["val_ppl"], 2) for r in m["history"] if "val_ppl" in r],
        "seconds": seconds,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="PTB folder")
    p.add_argument("--train-fraction", type=float, default=0.2)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--hidden", type=int, default=200)
    p.add_argument("--jobs", type=int, default=2, help="runs at once (one thread each)")
    p.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated labels")
    p.add_argument("--out", default=str(HERE / "results" / "regularizers_ptb"))
    args = p.parse_args(argv)
    if not (args.data / "ptb.train.txt").is_file():
        print(f"no PTB at {args.data}: pass --data", file=sys.stderr)
        return 2
    labels = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in labels if v not in VARIANTS]
    if unknown:
        p.error(f"--variants: unknown {unknown}; choose among {list(VARIANTS)}")
    common = ["--epochs", str(args.epochs), "--hidden", str(args.hidden)]
    common += ["--embed", str(args.hidden), "--layers", "2", "--seed", "0"]
    with tempfile.TemporaryDirectory(prefix="rnncore-reg-") as tmp:
        data = Path(tmp) / "ptb"
        tokens = subset(args.data, data, args.train_fraction)
        print(f"PTB training subset: {tokens} tokens ({args.train_fraction:.0%} of the lines)")
        with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
            futures = [
                pool.submit(run_one, v, VARIANTS[v], data, Path(tmp) / f"run{i}", common)
                for i, v in enumerate(labels)
            ]
            rows = []
            for f in futures:
                rows.append(f.result())
                r = rows[-1]
                print(
                    f"{r['label']:32s} valid {r.get('valid_ppl', float('nan')):8.2f}  "
                    f"test {r.get('test_ppl', float('nan')):8.2f}  {r['seconds']:6.0f} s",
                    flush=True,
                )
    report = {
        "train_tokens": tokens,
        "train_fraction": args.train_fraction,
        "common_options": common,
        "rows": rows,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    lines = [
        "# Regularisers on PTB: zoneout, recurrent dropout, dropout and layer norm at the same "
        "size",
        "",
        f"`python bench/regularizers_ptb.py`: 2-layer LSTM, {args.hidden} units, the lm task's "
        f"SGD recipe, {args.epochs} epochs, trained on the first {args.train_fraction:.0%} of "
        f"PTB's training lines ({tokens} tokens), validated and tested on the full sets; the "
        "model of the best validation epoch is tested. One engine thread per run, two at a time.",
        "",
        "| regulariser | valid ppl | test ppl | best epoch | valid ppl by epoch | seconds |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['label']} | error: {r['error']} | | | | {r['seconds']:.0f} |")
            continue
        lines.append(
            f"| {r['label']} | {r['valid_ppl']:.2f} | {r['test_ppl']:.2f} | {r['best_epoch']} | "
            f"{', '.join(str(v) for v in r['valid_ppl_by_epoch'])} | {r['seconds']:.0f} |"
        )
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
