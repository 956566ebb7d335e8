"""Kneser-Ney n-gram baselines on Penn Treebank: perplexity and seconds per order.

A program, not a test. For each order (default 3, 4, 5) it fits :class:`rnncore.ngram.KneserNeyLM`
(interpolated modified Kneser-Ney, Chen & Goodman 1998) on ``ptb.train.txt`` and scores
``ptb.valid.txt`` and ``ptb.test.txt``, per token with ``<eos>`` included (as `rnncore train lm`
reports perplexity). Each order runs ``--repeat`` times (after one warm-up fit of order 2);
the table gives the median seconds of fitting and of scoring both splits, and checks that the
repeats give the same perplexity. Reference: Mikolov et al. (2011, "Empirical evaluation and
combination of advanced language modeling techniques") report test perplexity 141.2 for a
modified Kneser-Ney 5-gram on this split.

Run it from the project root::

    python bench/ngram_ptb.py                      # ../shared/data/ptb, orders 3 4 5
    python bench/ngram_ptb.py --orders 2 3 --repeat 3

Prints the table and writes it to ``results/ngram_ptb.md``. Seconds are wall time on one core of
the machine that runs it (the 2-core development VM is shared with other work: upper bounds).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
from rnncore.data import load_ptb
from rnncore.ngram import KneserNeyLM, split_sentences

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
MIKOLOV_KN5_TEST = 141.2


def main(argv: list[str] | None = None) -> int:
    """Fits and scores each order; returns the exit status (1 when the data is missing)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "ptb")
    ap.add_argument("--orders", type=int, nargs="+", default=[3, 4, 5])
    ap.add_argument("--repeat", type=int, default=1, help="runs per order (median seconds)")
    ap.add_argument("--md", type=Path, default=RESULTS / "ngram_ptb.md")
    args = ap.parse_args(argv)
    if not (args.data / "ptb.train.txt").is_file():
        print(f"ngram_ptb: no PTB files in {args.data} (pass --data)")
        return 1
    start = time.perf_counter()
    corpus = load_ptb(args.data)
    load_s = time.perf_counter() - start
    eos = corpus.vocab.eos_id
    train, valid, test = (
        split_sentences(x, eos) for x in (corpus.train, corpus.valid, corpus.test)
    )
    KneserNeyLM(2).fit(train, corpus.vocab)  # warm-up
    header = (
        f"PTB {os.path.relpath(args.data, ROOT)}: {corpus.train.size} / {corpus.valid.size} / "
        f"{corpus.test.size} tokens "
        f"(train / valid / test, <eos> included), vocabulary {len(corpus.vocab)}; reading the "
        f"files {load_s:.1f} s; numpy {np.__version__}, {platform.node() or 'unknown'} "
        f"({os.cpu_count()} CPUs)"
    )
    print(header)
    rows = []
    for order in args.orders:
        fit_s, eval_s, results = [], [], set()
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            model = KneserNeyLM(order).fit(train, corpus.vocab)
            t1 = time.perf_counter()
            v, t = model.perplexity(valid), model.perplexity(test)
            t2 = time.perf_counter()
            fit_s.append(t1 - t0)
            eval_s.append(t2 - t1)
            results.add((v, t))
        assert len(results) == 1, f"order {order}: repeats disagree {results}"
        row = dict(
            order=order,
            valid=v,
            test=t,
            fit=statistics.median(fit_s),
            eval=statistics.median(eval_s),
            ngrams=model.ngrams,
        )
        rows.append(row)
        print(
            f"order {order}: valid {v:.2f}  test {t:.2f}  fit {row['fit']:.2f} s  "
            f"valid+test {row['eval']:.2f} s  n-grams {model.ngrams}"
        )
    write_md(args.md, header, rows, args.repeat)
    print(f"wrote {args.md}")
    return 0


def write_md(path: Path, header: str, rows: list[dict], repeat: int) -> None:
    lines = [
        "# Kneser-Ney n-gram baselines on Penn Treebank",
        "",
        "Written by `python bench/ngram_ptb.py`: `rnncore.ngram.KneserNeyLM` (interpolated "
        "modified Kneser-Ney, three discounts per order from count-of-counts, continuation "
        "counts for the lower orders, interpolated down to the uniform distribution; `<eos>` "
        "starts each sentence's context), perplexity per token with `<eos>` included, as "
        "`rnncore train lm` reports it.",
        "",
        header + ".",
        f"Seconds: median of {repeat} run(s), one core, pure Python/NumPy; "
        "valid+test = scoring both splits.",
        "",
        "| order | valid ppl | test ppl | fit s | valid+test s | distinct n-grams per order |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['order']} | {r['valid']:.2f} | {r['test']:.2f} | {r['fit']:.2f} | "
            f"{r['eval']:.2f} | {' / '.join(map(str, r['ngrams']))} |"
        )
    lines += [
        "",
        f"Reference: Mikolov et al. (2011) report test perplexity {MIKOLOV_KN5_TEST} for a "
        "modified Kneser-Ney 5-gram on this split.",
        "",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines), encoding="utf-8")


if __name__ == "__main__":
    raise SystemExit(main())
