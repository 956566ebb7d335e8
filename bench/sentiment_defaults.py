"""Choose `rnncore train sentiment`'s defaults on sentence-level AND document-level data.

A program, not a test. It builds two datasets in a temporary folder (nothing is copied into the
project) from the SST-2 files in ``../shared/data/sst2`` and trains ``rnncore train sentiment``
on each over a small grid of the options that matter (pooling, --max-len, batch size, learning
rate, epochs), one process per run at ``--threads 1``, one run at a time. Results go to
``results/sentiment_defaults.json`` (rewritten after every run, so a long run can be resumed
with ``--resume``) and ``results/sentiment_defaults.md``.

The two kinds of data:

* **sentences**: SST-2 itself (``stsa.binary.{train,dev,test}``: 6,920 / 872 / 1,821 one-sentence
  movie-review snippets, 19 tokens on average), read in place.
* **documents**: SST pseudo-reviews. There is no IMDB or other document-level review corpus on
  the development machine (and no network), so each "review" is made of 10-25 SST sentences
  (107-607 tokens, about 335 on average), drawn with a fixed seed: the review's label is drawn
  50/50, then a share of 65-80% of its sentences (uniform) carries that label and the rest the
  opposite one, in random order; so the label is the majority of its sentences' labels, and
  every review also argues the other way. Training reviews are drawn only from SST's train
  split, validation reviews only from its dev split and test reviews only from its test split
  (never mixing splits); a sentence appears in several reviews of its own split (sampling with
  replacement across reviews, without replacement within one). Default sizes: 2,000 / 250 / 500
  reviews. This is a stand-in for real reviews (IMDB, product reviews): it has their length and
  their mixed sentiment but not their discourse structure (e.g. a verdict at the end).

Every run passes all the varied options explicitly, so the table does not depend on the defaults
of the build that runs it; the other options are the task's defaults (2-layer bidirectional LSTM,
hidden 128, embedding 128, dropout 0.5, Adam, clipping 5). The test accuracy reported is that of
the epoch with the best validation accuracy (what ``rnncore train`` keeps). The per-epoch
history also gives, for every shorter run of the same cell, the best validation accuracy reached
by epoch N and the seconds it took (column "valid by epoch").

Run it from the project root::

    python bench/sentiment_defaults.py                       # the whole grid (~1 hour, 1 core)
    python bench/sentiment_defaults.py --cells s-mean,d-mean # a few cells
    python bench/sentiment_defaults.py --resume --seeds 1    # add seed 1 for the cells given
    python bench/sentiment_defaults.py --md-only             # rewrite the table from the JSON

The JSON's optional "notes" (a list) and "conclusion" (text), written by hand, are copied into
the markdown.

Times are wall seconds on the 2-core development VM, shared with other work: read them as
upper bounds, and compare cells measured in the same session.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_SST = ROOT.parent / "shared" / "data" / "sst2"
RESULTS = HERE / "results"

# name -> (data kind, options). Every cell names pooling, max-len, batch size, lr and epochs.
BASE = {"pooling": "last", "max_len": None, "batch_size": 32, "lr": 1e-3}
EPOCHS = {"sentences": 8, "documents": 5}


def _cell(kind: str, **opts: object) -> tuple[str, dict[str, object]]:
    o = dict(BASE, epochs=EPOCHS[kind])
    o.update(opts)
    return kind, o


GRID: dict[str, tuple[str, dict[str, object]]] = {
    # pooling, at the old defaults otherwise (batch 32, lr 1e-3, no cap)
    "s-last": _cell("sentences", pooling="last"),
    "s-mean": _cell("sentences", pooling="mean"),
    "s-max": _cell("sentences", pooling="max"),
    "d-last": _cell("documents", pooling="last"),
    "d-mean": _cell("documents", pooling="mean"),
    "d-max": _cell("documents", pooling="max"),
    # batch size and learning rate, with mean pooling
    "s-mean-b64-lr2e-3": _cell("sentences", pooling="mean", batch_size=64, lr=2e-3),
    "d-mean-b64-lr2e-3": _cell("documents", pooling="mean", batch_size=64, lr=2e-3),
    "s-mean-b32-lr2e-3": _cell("sentences", pooling="mean", lr=2e-3),
    "d-mean-b32-lr2e-3": _cell("documents", pooling="mean", lr=2e-3),
    # a length cap on documents
    "d-mean-len200": _cell("documents", pooling="mean", max_len=200),
    "d-mean-len400": _cell("documents", pooling="mean", max_len=400),
}


# ---- data ---------------------------------------------------------------------------------------
def read_sst(path: Path) -> list[tuple[int, list[str]]]:
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            head, _, text = line.strip().partition(" ")
            out.append((int(head), text.split()))
    return out


def pseudo_reviews(
    sentences: list[tuple[int, list[str]]],
    n: int,
    rng: np.random.Generator,
    *,
    min_sents: int = 10,
    max_sents: int = 25,
    share: tuple[float, float] = (0.65, 0.80),
) -> list[tuple[int, list[str]]]:
    """``n`` documents of ``min_sents``-``max_sents`` sentences whose label is the majority one."""
    pools = [[s for y, s in sentences if y == c] for c in (0, 1)]
    docs = []
    for _ in range(n):
        label = int(rng.integers(2))
        k = int(rng.integers(min_sents, max_sents + 1))
        major = max(k // 2 + 1, int(round(k * rng.uniform(*share))))
        parts = [pools[label][i] for i in rng.choice(len(pools[label]), major, replace=False)]
        other = pools[1 - label]
        parts += [other[i] for i in rng.choice(len(other), k - major, replace=False)]
        order = rng.permutation(k)
        docs.append((label, [t for i in order for t in parts[i]]))
    return docs


def build_documents(sst: Path, out: Path, sizes: tuple[int, int, int], seed: int) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    stats = {}
    for split, n, offset in zip(("train", "dev", "test"), sizes, (0, 1, 2), strict=True):
        rng = np.random.default_rng([seed, offset])
        docs = pseudo_reviews(read_sst(sst / f"stsa.binary.{split}"), n, rng)
        with open(out / f"stsa.binary.{split}", "w", encoding="utf-8") as f:
            for y, toks in docs:
                f.write(f"{y} {' '.join(toks)}\n")
        lens = np.array([len(t) for _, t in docs])
        stats[split] = dict(
            documents=n,
            tokens_mean=round(float(lens.mean()), 1),
            tokens_min=int(lens.min()),
            tokens_max=int(lens.max()),
            positive=round(float(np.mean([y for y, _ in docs])), 3),
        )
    return stats


def sentence_stats(sst: Path) -> dict:
    stats = {}
    for split in ("train", "dev", "test"):
        ex = read_sst(sst / f"stsa.binary.{split}")
        lens = np.array([len(t) for _, t in ex])
        stats[split] = dict(
            sentences=len(ex),
            tokens_mean=round(float(lens.mean()), 1),
            tokens_min=int(lens.min()),
            tokens_max=int(lens.max()),
            positive=round(float(np.mean([y for y, _ in ex])), 3),
        )
    return stats


# ---- runs ---------------------------------------------------------------------------------------
def command(data: Path, out: Path, opts: dict, seed: int, threads: int) -> list[str]:
    cmd = [sys.executable, "-m", "rnncore", "train", "sentiment", "--data", str(data)]
    cmd += ["--out", str(out), "--overwrite", "--no-progress", "--log-interval", "0"]
    cmd += ["--threads", str(threads), "--seed", str(seed)]
    cmd += ["--pooling", str(opts["pooling"]), "--epochs", str(opts["epochs"])]
    cmd += ["--batch-size", str(opts["batch_size"]), "--lr", str(opts["lr"])]
    if opts["max_len"]:
        cmd += ["--max-len", str(opts["max_len"])]
    return cmd


def snapshot_package(tmp: Path) -> dict[str, str]:
    """Copies the installed rnncore package (engine included) into ``tmp`` and returns the
    environment that runs it: every cell then uses the same build, and a rebuild of the
    package's extension during the benchmark cannot crash a run."""
    spec = importlib.util.find_spec("rnncore")
    assert spec is not None and spec.submodule_search_locations
    src = Path(next(iter(spec.submodule_search_locations))).resolve()
    shutil.copytree(src, tmp / "pkg" / "rnncore", ignore=shutil.ignore_patterns("__pycache__"))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(tmp / "pkg")] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    )
    return env


def run_cell(
    name: str, data: Path, opts: dict, seed: int, threads: int, tmp: Path, env: dict[str, str]
) -> dict:
    out = tmp / f"run-{name}-{seed}"
    cmd = command(data, out, opts, seed, threads)
    print(f"[{time.strftime('%H:%M:%S')}] {name} seed {seed}: {' '.join(cmd[1:])}", flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{name} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    m = json.loads((out / "metrics.json").read_text())
    shutil.rmtree(out, ignore_errors=True)
    hist = m["history"]
    by_epoch, best, secs = [], 0.0, 0.0
    for h in hist:
        best = max(best, h["val_accuracy"])
        secs += h["seconds"]
        by_epoch.append({"epoch": h["epoch"], "best_valid": best, "seconds": round(secs, 1)})
    res = dict(
        cell=name,
        seed=seed,
        valid_accuracy=m["valid"]["accuracy"],
        test_accuracy=m["test"]["accuracy"],
        best_epoch=m["best_epoch"],
        epochs=m["epochs"],
        wall_seconds=round(m["wall_seconds"], 1),
        process_seconds=round(elapsed, 1),
        seconds_per_epoch=round(m["seconds_per_epoch"], 1),
        valid_by_epoch=by_epoch,
        command="rnncore " + " ".join(cmd[3:]),
    )
    print(
        f"    valid {res['valid_accuracy']:.4f}  test {res['test_accuracy']:.4f}  best epoch "
        f"{res['best_epoch']}  {res['wall_seconds']} s ({res['seconds_per_epoch']} s/epoch)",
        flush=True,
    )
    return res


# ---- report -------------------------------------------------------------------------------------
def _fmt_opts(o: dict) -> str:
    cap = o["max_len"] or "none"
    return f"{o['pooling']} | {cap} | {o['batch_size']} | {o['lr']:g} | {o['epochs']}"


def write_md(report: dict, path: Path) -> None:
    runs = report["runs"]
    lines = [
        "# `rnncore train sentiment`: defaults measured on sentences and on documents",
        "",
        "Written by `python bench/sentiment_defaults.py` (its docstring describes the data and",
        "the method). One process per run at `--threads 1`, one run at a time, on "
        f"{report['machine']}; the machine was shared with other work, so seconds are upper",
        "bounds. test = test accuracy of the epoch with the best validation accuracy; seconds =",
        "training, per-epoch validation and the final evaluation (`wall_seconds` of",
        "metrics.json). Other options: the task's defaults (2-layer bidirectional LSTM, hidden",
        "128, embedding 128, dropout 0.5, Adam, clip 5).",
        "",
        "## Data",
        "",
        "| data | split | examples | tokens mean (min-max) | positive |",
        "|---|---|---|---|---|",
    ]
    for kind, stats in report["data"].items():
        for split, s in stats["splits"].items():
            n = s.get("sentences", s.get("documents"))
            lines.append(
                f"| {kind} | {split} | {n} | {s['tokens_mean']} ({s['tokens_min']}-"
                f"{s['tokens_max']}) | {s['positive']} |"
            )
    lines += [
        "",
        "## Runs",
        "",
        "valid by epoch: the best validation accuracy reached by epochs 2, 4, ... (and the",
        "seconds to get there) -- what a shorter run of the same cell would have kept.",
        "",
        "| data | cell | pooling | max-len | batch | lr | epochs | seed | valid | test | best "
        "epoch | seconds | s/epoch | valid by epoch |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(runs, key=lambda r: (GRID[r["cell"]][0], r["cell"], r["seed"])):
        kind, opts = GRID[r["cell"]]
        curve = ", ".join(
            f"{e['epoch']}: {e['best_valid']:.3f} ({e['seconds']:.0f} s)"
            for e in r["valid_by_epoch"]
            if e["epoch"] % 2 == 0 or e["epoch"] == 1
        )
        lines.append(
            f"| {kind} | {r['cell']} | {_fmt_opts(opts)} | {r['seed']} | "
            f"{r['valid_accuracy']:.4f} | {r['test_accuracy']:.4f} | {r['best_epoch']} | "
            f"{r['wall_seconds']:.0f} | {r['seconds_per_epoch']:.1f} | {curve} |"
        )
    # mean over seeds per cell
    cells: dict[str, list[dict]] = {}
    for r in runs:
        cells.setdefault(r["cell"], []).append(r)
    lines += [
        "",
        "## Per cell (mean over the seeds run)",
        "",
        "| data | cell | seeds | valid | test | seconds |",
        "|---|---|---|---|---|---|",
    ]
    for name in sorted(cells, key=lambda c: (GRID[c][0], c)):
        rs = cells[name]
        lines.append(
            f"| {GRID[name][0]} | {name} | {len(rs)} | "
            f"{np.mean([r['valid_accuracy'] for r in rs]):.4f} | "
            f"{np.mean([r['test_accuracy'] for r in rs]):.4f} | "
            f"{np.mean([r['wall_seconds'] for r in rs]):.0f} |"
        )
    if report.get("notes"):
        lines += ["", "## Notes", ""] + [f"- {n}" for n in report["notes"]]
    if report.get("conclusion"):
        lines += ["", "## Conclusion", "", report["conclusion"]]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sst", type=Path, default=DEFAULT_SST, help="folder with stsa.binary.*")
    ap.add_argument("--cells", default=",".join(GRID), help="comma-separated cells of GRID")
    ap.add_argument("--seeds", default="0", help="comma-separated seeds")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--docs", default="2000,250,500", help="train,dev,test pseudo-reviews")
    ap.add_argument("--data-seed", type=int, default=1234)
    ap.add_argument("--json", type=Path, default=RESULTS / "sentiment_defaults.json")
    ap.add_argument("--md", type=Path, default=RESULTS / "sentiment_defaults.md")
    ap.add_argument("--resume", action="store_true", help="keep the JSON's runs, skip done ones")
    ap.add_argument("--md-only", action="store_true", help="only rewrite the markdown")
    args = ap.parse_args()

    if args.md_only:
        write_md(json.loads(args.json.read_text()), args.md)
        return 0
    cells = [c for c in args.cells.split(",") if c]
    unknown = [c for c in cells if c not in GRID]
    if unknown:
        ap.error(f"unknown cells {unknown}; known: {', '.join(GRID)}")
    if not (args.sst / "stsa.binary.train").is_file():
        ap.error(f"no stsa.binary.train in {args.sst}")
    sizes = tuple(int(x) for x in args.docs.split(","))
    report: dict = dict(
        machine=f"{platform.node() or 'unknown'} ({os.cpu_count()} CPUs)",
        threads=args.threads,
        data={},
        runs=[],
    )
    if args.resume and args.json.is_file():
        report = json.loads(args.json.read_text())
    done = {(r["cell"], r["seed"]) for r in report["runs"]}
    with tempfile.TemporaryDirectory(prefix="rnncore-sentdef-") as tmp:
        tmp_p = Path(tmp)
        docs = tmp_p / "documents"
        report["data"]["sentences"] = dict(
            source=f"SST-2 sentence level ({args.sst.name}/stsa.binary.*)",
            splits=sentence_stats(args.sst),
        )
        report["data"]["documents"] = dict(
            source=f"SST pseudo-reviews: 10-25 sentences, 65-80% of them with the label, seed "
            f"{args.data_seed}, each split from the same SST split",
            splits=build_documents(args.sst, docs, sizes, args.data_seed),  # type: ignore[arg-type]
        )
        paths = {"sentences": args.sst, "documents": docs}
        env = snapshot_package(tmp_p)
        for seed in (int(s) for s in args.seeds.split(",")):
            for name in cells:
                if (name, seed) in done:
                    continue
                kind, opts = GRID[name]
                report["runs"].append(
                    run_cell(name, paths[kind], opts, seed, args.threads, tmp_p, env)
                )
                args.json.parent.mkdir(parents=True, exist_ok=True)
                args.json.write_text(json.dumps(report, indent=1) + "\n")
                write_md(report, args.md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
