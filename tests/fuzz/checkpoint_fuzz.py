"""Mutation fuzzing of checkpoints: damaged checkpoint.json texts and safetensors files must make
the loaders raise CheckpointError (Python) or exit with an error message (C++), never another
exception, a crash, a hang or a huge allocation.

The seed corpus (``corpus/``, committed) holds small real checkpoints written by
``python tests/fuzz/checkpoint_fuzz.py --make-corpus``. ``mutants(seed, n)`` yields mutated copies
deterministically: JSON-aware edits (deleted keys, values of the wrong type, huge or negative
numbers, nesting), and byte edits (flips, truncation, insertions) of either file.

    python tests/fuzz/checkpoint_fuzz.py --runs 5000 --seed 7      # a longer local campaign
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus"

# Values a mutation puts where the file had something else.
ODD_VALUES = [None, True, False, -1, 0, 2**31, 2**63, -(2**70), 1.5, 1e308, "", "x", [], {},
              [1, "a"], {"a": 1}, "lstm", "float64"]  # fmt: skip


def make_corpus() -> None:
    """Writes the seed corpus: a bidirectional GRU classifier with labels, a tied LSTM language
    model with a vocabulary and dropout state, and an untied RNN language model."""
    from rnncore.data import Vocab
    from rnncore.models import LanguageModel, SequenceClassifier
    from rnncore.train import save_checkpoint

    shutil.rmtree(CORPUS, ignore_errors=True)
    clf = SequenceClassifier(30, 6, 5, 3, num_layers=2, cell="gru", bidirectional=True, seed=0)
    save_checkpoint(CORPUS / "classifier", clf, extra={"labels": ["neg", "neutral", "pos"]})
    vocab = Vocab(["<eos>", *"abcdefghijklmnopqr"], eos="<eos>")
    lm = LanguageModel(len(vocab), 6, 6, num_layers=2, dropout=0.1, tie_weights=True, seed=1)
    save_checkpoint(CORPUS / "lm_tied", lm, vocab=vocab, epoch=3, step=40)
    rnn_lm = LanguageModel(12, 4, 5, num_layers=1, cell="rnn", seed=2)
    save_checkpoint(CORPUS / "lm_rnn", rnn_lm)


def _mutate_json(text: str, rng: random.Random) -> str:
    obj = json.loads(text)

    def walk(o, depth: int) -> None:
        if isinstance(o, dict) and o:
            key = rng.choice(sorted(o))
            r = rng.random()
            if r < 0.35 and depth < 4:
                walk(o[key], depth + 1)
            elif r < 0.5:
                del o[key]
            elif r < 0.55:
                o[key] = json.loads("[" * 200 + "]" * 200)  # deep nesting
            else:
                o[key] = rng.choice(ODD_VALUES)
        elif isinstance(o, list) and o:
            i = rng.randrange(len(o))
            if rng.random() < 0.5 and depth < 4:
                walk(o[i], depth + 1)
            else:
                o[i] = rng.choice(ODD_VALUES)

    for _ in range(rng.randint(1, 3)):
        walk(obj, 0)
    return json.dumps(obj)


def _mutate_bytes(data: bytes, rng: random.Random) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        r = rng.random()
        if r < 0.5 and b:
            b[rng.randrange(len(b))] = rng.randrange(256)
        elif r < 0.7:
            del b[rng.randrange(len(b) + 1) :]
        else:
            at = rng.randrange(len(b) + 1)
            b[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
    return bytes(b)


def mutants(seed: int, n: int, workdir: Path) -> Iterator[tuple[Path, str]]:
    """n mutated checkpoint directories (each reused for the next), with what was mutated."""
    rng = random.Random(seed)
    seeds = sorted(p for p in CORPUS.iterdir() if p.is_dir())
    if not seeds:
        raise RuntimeError(f"empty seed corpus at {CORPUS}; run with --make-corpus")
    for k in range(n):
        src = rng.choice(seeds)
        dst = workdir / f"case{k % 2}"
        shutil.rmtree(dst, ignore_errors=True)
        shutil.copytree(src, dst)
        what = rng.choice(["json", "json-bytes", "tensors"])
        if what == "json":
            text = (src / "checkpoint.json").read_text()
            (dst / "checkpoint.json").write_text(_mutate_json(text, rng))
        elif what == "json-bytes":
            data = (src / "checkpoint.json").read_bytes()
            (dst / "checkpoint.json").write_bytes(_mutate_bytes(data, rng))
        else:
            data = (src / "model.safetensors").read_bytes()
            (dst / "model.safetensors").write_bytes(_mutate_bytes(data, rng))
        yield dst, f"{src.name}/{what} (seed {seed}, case {k})"


def run_python(seed: int, n: int) -> dict[str, int]:
    """Loads n mutants with rnncore.train.load_checkpoint; counts outcomes, raising AssertionError
    on the first exception that is not CheckpointError."""
    from rnncore.train import CheckpointError, load_checkpoint

    counts = {"loaded": 0, "CheckpointError": 0}
    with tempfile.TemporaryDirectory() as tmp:
        for path, what in mutants(seed, n, Path(tmp)):
            try:
                load_checkpoint(path)
                counts["loaded"] += 1
            except CheckpointError:
                counts["CheckpointError"] += 1
            except Exception as e:
                raise AssertionError(f"{what}: {type(e).__name__}: {e}") from e
    return counts


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--make-corpus", action="store_true", help="rewrite the seed corpus")
    p.add_argument("--runs", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.make_corpus:
        make_corpus()
        print(f"corpus written to {CORPUS}")
        return 0
    print(run_python(args.seed, args.runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
