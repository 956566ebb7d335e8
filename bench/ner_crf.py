"""The CRF output layer on CoNLL-2003 NER: test entity F1 with and without it, same settings.

Runs ``rnncore train tagger --data CONLL`` with the task's defaults (20 epochs, character
features, no pretrained embeddings) with ``--crf`` for seeds 0 and 1, and for 10 epochs without
and with ``--crf``; one engine thread each, one run at a time (about 35 minutes on a 2-core
VM). ``--runs DIR`` reads runs already made into DIR/<run name> instead of training.

    python bench/ner_crf.py
    python bench/ner_crf.py --runs /tmp/ner    # format existing runs

Writes bench/results/ner_crf.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parent.parent / "shared" / "data" / "conll2003"
RUNS = {
    "plain10": ["--epochs", "10"],
    "crf10": ["--crf", "--epochs", "10"],
    "crf20": ["--crf"],  # the task's defaults: 20 epochs
    "crf20_seed1": ["--crf", "--seed", "1"],
}


def train(name: str, data: Path, out: Path) -> None:
    argv = [sys.executable, "-m", "rnncore", "train", "tagger", "--data", str(data)]
    argv += ["--out", str(out), "--threads", "1", "--no-progress", "--log-interval", "0"]
    proc = subprocess.run([*argv, *RUNS[name]], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed:\n{proc.stderr[-2000:]}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="CoNLL-2003 folder")
    p.add_argument("--runs", type=Path, default=None, help="existing runs (see above)")
    p.add_argument("--out", default=str(HERE / "results" / "ner_crf"))
    args = p.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="rnncore-ner-") as tmp:
        root = args.runs or Path(tmp)
        for name, extra in RUNS.items():
            if args.runs is None:
                if not (args.data / "train.txt").is_file():
                    print(f"no CoNLL-2003 at {args.data}: pass --data", file=sys.stderr)
                    return 2
                train(name, args.data, root / name)
            m = json.loads((root / name / "metrics.json").read_text())
            rows.append(
                {
                    "run": name,
                    "options": extra,
                    "epochs": len(m["history"]),
                    "best_epoch": m["best_epoch"],
                    "valid_f1": m["valid"]["f1"],
                    "test_f1": m["test"]["f1"],
                    "seconds_per_epoch": m.get("seconds_per_epoch"),
                }
            )
            print(
                f"{name:8s} valid f1 {rows[-1]['valid_f1']:.4f}  test f1 {rows[-1]['test_f1']:.4f}"
            )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(rows, indent=1) + "\n")
    lines = [
        "# The tagger's CRF on CoNLL-2003 NER",
        "",
        "`python bench/ner_crf.py`: `rnncore train tagger` with the task's defaults (character "
        "features, no pretrained embeddings), one thread; the best validation epoch's model is "
        "tested (conlleval entity F1). Lample et al. 2016 report 90.9 with pretrained embeddings. "
        "Seconds per epoch: the runs shared the machine with other jobs (not a speed comparison). "
        "Issue 22's goal: test F1 >= 0.84 with --crf and the task's defaults.",
        "",
        "| run | options | epochs | best epoch | valid F1 | test F1 | s/epoch |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        sec = f"{r['seconds_per_epoch']:.1f}" if r["seconds_per_epoch"] else "-"
        lines.append(
            f"| {r['run']} | {' '.join(r['options']) or '(defaults)'} | {r['epochs']} | "
            f"{r['best_epoch']} | {r['valid_f1']:.4f} | {r['test_f1']:.4f} | {sec} |"
        )
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
