"""Sentences per second of a tagger and a translator in C++ against the same models in Python.

Trains both models briefly with the CLI (CoNLL-2003 NER and Tatoeba English-French from
../shared/data; the sizes are the tasks' defaults, the quality does not matter here), then times,
at batch 1 and 32 and one thread each:

- Python: the models' own inference (tagger: vocabulary look-up, characters, predict, tag names;
  translator: normalise, tokenize, greedy translate, detokenize, as `rnncore translate`);
- C++: rnncore_bench_models (bench/cpp/bench_models.cpp: SequenceTagger::tag, Seq2Seq::translate)
  on the same sentences, built with -DRNNCORE_BUILD_BENCH=ON.

    cmake -S . -B build/bench -DRNNCORE_BUILD_BENCH=ON -DRNNCORE_BUILD_PYTHON=OFF \\
        -DRNNCORE_BUILD_TESTS=OFF && cmake --build build/bench --target rnncore_bench_models
    python bench/bench_cpp_models.py --binary build/bench/bench/cpp/rnncore_bench_models

Writes bench/results/cpp_models.{json,md}: sentences/s of each, and C++ / Python (> 1: C++ is
faster).
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data"
sys.path.insert(0, str(HERE))

import bench_rnn as br  # noqa: E402  (machine description)
import rnncore  # noqa: E402
from rnncore.cli import main as cli  # noqa: E402
from rnncore.cli import openblas_library  # noqa: E402
from rnncore.data import pad_sequences  # noqa: E402
from rnncore.data.conll import read_conll  # noqa: E402
from rnncore.data.text import tokenize  # noqa: E402
from rnncore.data.translation import normalize_text  # noqa: E402
from rnncore.tasks._common import open_model_dir  # noqa: E402
from rnncore.tasks.seq2seq import detokenize  # noqa: E402


def train(tmp: Path) -> tuple[Path, Path]:
    """Trains the tagger and the translator briefly; returns their run directories."""
    common = ["--threads", "1", "--no-progress", "--epochs", "1"]
    tagger, s2s = tmp / "tagger", tmp / "seq2seq"
    cli(
        ["train", "tagger", "--data", str(DATA / "conll2003"), "--out", str(tagger)]
        + common
        + ["--max-batches", "20", "--char-features"]
    )
    cli(
        ["train", "seq2seq", "--data", str(DATA / "fra_eng" / "fra.txt"), "--out", str(s2s)]
        + common
        + ["--max-pairs", "3000", "--attention", "dot"]
    )
    return tagger, s2s


def python_tag(ckpt, sentences: list[list[str]]) -> list[list[str]]:
    """What SequenceTagger::tag does, in Python: look-up, characters, predict, tag names."""
    model = ckpt.model
    lower = bool((ckpt.extra or {}).get("lowercase", True))
    words = [ckpt.vocab.encode([w.lower() for w in s] if lower else s) for s in sentences]
    ids, lengths = pad_sequences(words, pad_id=0)
    chars = char_lengths = None
    if model.use_chars:
        cv = ckpt.vocabs["chars"]
        chars, char_lengths = pad_sequences(
            [cv.encode(list(w)) for s in sentences for w in s], pad_id=cv.pad_id
        )
    return model.to_tags(model.predict(ids, lengths, chars, char_lengths), lengths)


def python_translate(ckpt, texts: list[str], beam: int) -> list[str]:
    """`rnncore translate` for a batch: normalise, tokenize, greedy/beam, detokenize."""
    extra, vocabs = ckpt.extra or {}, ckpt.vocabs
    srcs = []
    for t in texts:
        norm = normalize_text(
            t, lower=bool(extra.get("lower", True)), strip_accents=bool(extra.get("strip_accents"))
        )
        srcs.append(vocabs["src"].encode(tokenize(norm, lower=False)))
    out = ckpt.model.translate(
        srcs, beam_width=beam, max_len=int(extra.get("max_decode_len", 30)), batch_size=len(srcs)
    )
    return [detokenize(vocabs["tgt"].decode(o)) for o in out]


def best_rate(items: list, batch: int, reps: int, run) -> float:
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        for i in range(0, len(items), batch):
            run(items[i : i + batch])
        best = min(best, time.perf_counter() - t0)
    return len(items) / best


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--binary", type=Path, default=HERE.parent / "build/dev/bench/cpp/rnncore_bench_models"
    )
    p.add_argument("--eigen", action="store_true", help="C++ on Eigen's GEMMs, not OpenBLAS")
    p.add_argument("--sentences", type=int, default=256)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--json", type=Path, default=HERE / "results" / "cpp_models.json")
    p.add_argument("--md", type=Path, default=HERE / "results" / "cpp_models.md")
    args = p.parse_args(argv)
    if not args.binary.is_file():
        raise SystemExit(f"--binary {args.binary}: not found (build it as the docstring says)")
    if not (DATA / "conll2003").is_dir() or not (DATA / "fra_eng").is_dir():
        raise SystemExit(f"needs {DATA}/conll2003 and {DATA}/fra_eng")
    rnncore.set_num_threads(1)
    n = args.sentences
    rows = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        tagger_dir, s2s_dir = train(tmp)
        tagger, _ = open_model_dir(str(tagger_dir))
        s2s, _ = open_model_dir(str(s2s_dir))
        sentences = [toks for toks, _ in read_conll(DATA / "conll2003" / "test.txt")[:n]]
        lines = (DATA / "fra_eng" / "fra.txt").read_text(encoding="utf-8").splitlines()
        texts = [ln.split("\t")[0] for ln in lines[-n:]]
        (tmp / "tokens.txt").write_text("\n".join(" ".join(s) for s in sentences) + "\n")
        (tmp / "text.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
        # The same answers from both, before timing anything.
        cpp_dirs = [tagger_dir / "checkpoint" / "best", s2s_dir / "checkpoint" / "best"]
        cmd = [str(args.binary), "--tagger", str(cpp_dirs[0]), "--tokens", str(tmp / "tokens.txt")]
        cmd += ["--seq2seq", str(cpp_dirs[1]), "--text", str(tmp / "text.txt")]
        cmd += ["--threads", "1", "--reps", str(args.reps), "--beam", "1"]
        blas = openblas_library()
        if blas and not args.eigen:  # the GEMMs Python's engine uses, for both
            cmd += ["--blas", blas]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        cpp = {(r["model"], r["batch"]): r for r in map(json.loads, out.splitlines())}
        for batch in (1, 32):
            py_tag = best_rate(sentences, batch, args.reps, lambda s: python_tag(tagger, s))
            py_tr = best_rate(texts, batch, args.reps, lambda t: python_translate(s2s, t, 1))
            for model, rate in (("tagger", py_tag), ("translator", py_tr)):
                c = cpp[(model, batch)]["sentences_per_s"]
                rows.append(dict(model=model, batch=batch, python=rate, cpp=c, ratio=c / rate))
                print(
                    f"{model:10s} batch {batch:2d}: Python {rate:8.1f}/s  C++ {c:8.1f}/s  "
                    f"C++/Python {c / rate:5.2f}x",
                    flush=True,
                )
    result = dict(
        date=datetime.date.today().isoformat(),
        cpu=br._cpu_model(),
        threads=1,
        sentences=n,
        rows=rows,
    )
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        "# Task models in C++ against Python: sentences per second",
        "",
        f"{result['date']}, {result['cpu']}, 1 thread, {n} sentences (CoNLL-2003 test for the "
        "tagger, Tatoeba English for the translator, greedy), best of "
        f"{args.reps} passes. Tagger: NER with character features (1 epoch); translator: dot "
        "attention (1 epoch on 3,000 pairs).",
        "",
        "| model | batch | Python sentences/s | C++ sentences/s | C++ / Python |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['batch']} | {r['python']:.1f} | {r['cpp']:.1f} | "
            f"{r['ratio']:.2f}x |"
        )
    args.md.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
