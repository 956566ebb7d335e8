"""Kim's CNN against the BiLSTM on SST-2: test accuracy and seconds per epoch, several seeds.

Each run is ``rnncore train sentiment`` on ../shared/data/sst2 (sentence-level stsa.binary.*:
6,920 training sentences; Kim 2014 also trained on the treebank's phrases), once with
``--model cnn`` (Kim's CNN-rand with the task's CNN defaults) and once with the task's BiLSTM
defaults, one engine thread each, one run at a time. The model of the best validation epoch is
tested.

    python bench/kim_cnn_sst2.py                 # 3 seeds each, ~10 min on a 2-core VM
    python bench/kim_cnn_sst2.py --seeds 0 --threads 2

Writes bench/results/kim_cnn_sst2.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parent.parent / "shared" / "data" / "sst2"
MODELS = {"cnn": ["--model", "cnn"], "bilstm": []}


def run_one(model: str, seed: int, data: Path, out: Path, threads: int) -> dict:
    argv = [sys.executable, "-m", "rnncore", "train", "sentiment", "--data", str(data)]
    argv += ["--out", str(out), "--threads", str(threads), "--no-progress", "--log-interval", "0"]
    argv += ["--seed", str(seed), *MODELS[model]]
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{model} seed {seed} failed:\n{proc.stderr[-2000:]}")
    m = json.loads((out / "metrics.json").read_text())
    epoch_s = [h["train_seconds"] for h in m["history"] if "train_seconds" in h]
    return {
        "model": model,
        "seed": seed,
        "valid_accuracy": m["valid"]["accuracy"],
        "test_accuracy": m["test"]["accuracy"],
        "best_epoch": m["best_epoch"],
        "epochs": len(m["history"]),
        "seconds_per_epoch": statistics.median(epoch_s) if epoch_s else None,
        "seconds": seconds,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="SST folder (stsa.binary.*)")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=str(HERE / "results" / "kim_cnn_sst2"))
    args = p.parse_args(argv)
    if not (args.data / "stsa.binary.train").is_file():
        print(f"no SST at {args.data}: pass --data", file=sys.stderr)
        return 2
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    rows = []
    with tempfile.TemporaryDirectory(prefix="rnncore-kim-") as tmp:
        for model in MODELS:
            for seed in seeds:
                rows.append(
                    run_one(model, seed, args.data, Path(tmp) / f"{model}{seed}", args.threads)
                )
                r = rows[-1]
                print(
                    f"{model:7s} seed {seed}: valid {r['valid_accuracy']:.4f}  test "
                    f"{r['test_accuracy']:.4f}  best epoch {r['best_epoch']}/{r['epochs']}  "
                    f"{r['seconds_per_epoch']:.1f} s/epoch",
                    flush=True,
                )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(
        json.dumps({"threads": args.threads, "rows": rows}, indent=1) + "\n"
    )
    lines = [
        "# Kim's CNN and the BiLSTM on SST-2 (sentence level)",
        "",
        f"`python bench/kim_cnn_sst2.py`: `rnncore train sentiment` with each model's defaults, "
        f"{args.threads} engine thread(s), seeds {seeds}; the best validation epoch's model is "
        "tested on stsa.binary.test (1,821 sentences). Kim (2014) reports 82.7% for CNN-rand, "
        "trained on the treebank's phrases as well as its 6,920 sentences (these runs see the "
        "sentences only).",
        "",
        "| model | seed | valid acc | test acc | best epoch | s/epoch |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['seed']} | {r['valid_accuracy']:.4f} | {r['test_accuracy']:.4f} "
            f"| {r['best_epoch']}/{r['epochs']} | {r['seconds_per_epoch']:.1f} |"
        )
    for model in MODELS:
        accs = [r["test_accuracy"] for r in rows if r["model"] == model]
        per = [r["seconds_per_epoch"] for r in rows if r["model"] == model]
        lines.append(
            f"| **{model} mean** | | | **{statistics.mean(accs):.4f}** | | "
            f"{statistics.mean(per):.1f} |"
        )
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
