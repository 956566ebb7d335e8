"""Whole training recipes: rnncore against an equivalent plain PyTorch loop (issue 21, part 4).

For each recipe the task's default model (the sizes, dropout, optimizer and clipping of
``rnncore train TASK``) is trained on the same first ``--batches`` training batches by rnncore
(``model.training_step``, the optimizer, gradient clipping: what the Trainer does per batch) and
by the same model written with torch.nn (embedding, LSTM, the output layer, cross-entropy,
``clip_grad_norm_``, the same optimizer), at the same thread count. The two alternate for
``--rounds`` rounds; the best round of each counts (the machine is shared). Ratio = PyTorch's
seconds per batch / rnncore's (> 1: rnncore is faster; the issue's goal is 1.5).

Recipes (data from ../shared/data):
- ptb: word LM, 2 x 200 LSTM, embedding 200, BPTT 20 x batch 20, 10k-way softmax, SGD, clip.
- charlm: tiny Shakespeare, 2 x 512 LSTM, embedding 64, BPTT 100 x batch 32, dropout 0.2, Adam.
- sst2: sentence classifier, 2-layer BiLSTM 128, embedding 128, mean pooling, dropout 0.5, Adam.
- conll: NER tagger, BiLSTM 128 over word embeddings 100 + a character BiLSTM 25, dropout 0.5,
  Adam (the tagger's defaults, without the CRF).

    python bench/bench_recipes.py                      # about 6 minutes on 2 cores
    python bench/bench_recipes.py --recipes ptb,sst2 --batches 10 --rounds 1   # a quick look

Writes bench/results/recipes.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data"
sys.path.insert(0, str(HERE))

import bench_rnn as br  # noqa: E402  (the machine's description)

RECIPES = ("ptb", "charlm", "sst2", "conll")


# ---- data: the first batches of each recipe, as the task makes them -------------------------
def ptb_batches(n: int) -> tuple[list[Any], dict]:
    from rnncore.data import BPTTBatches, batchify, load_ptb

    corpus = load_ptb(DATA / "ptb")
    batches = BPTTBatches(batchify(corpus.train, 20), 20)
    return [b for _, b in zip(range(n), batches, strict=False)], {"V": len(corpus.vocab)}


def charlm_batches(n: int) -> tuple[list[Any], dict]:
    from rnncore.data import BPTTBatches, batchify, load_tiny_shakespeare

    corpus = load_tiny_shakespeare(DATA / "tinyshakespeare")
    batches = BPTTBatches(batchify(corpus.train, 32), 100)
    return [b for _, b in zip(range(n), batches, strict=False)], {"V": len(corpus.vocab)}


def sst2_batches(n: int) -> tuple[list[Any], dict]:
    from rnncore.data import Vocab
    from rnncore.data.sentiment import read_sst
    from rnncore.tasks.sentiment import make_batches

    train = read_sst(DATA / "sst2" / "stsa.binary.train")
    vocab = Vocab.build([t for t, _ in train])
    batches = make_batches(train, vocab, 32, shuffle=True, seed=0)
    return [b for _, b in zip(range(n), batches, strict=False)], {"V": len(vocab), "C": 2}


def conll_batches(n: int) -> tuple[list[Any], dict]:
    from rnncore.data import Vocab, build_label_vocab, read_conll
    from rnncore.tasks.tagger import TaggingData

    train = read_conll(DATA / "conll2003" / "train.txt")
    vocab = Vocab.build([[w.lower() for w in t] for t, _ in train])
    tags = build_label_vocab([g for _, g in train], pad=False)
    chars = Vocab.build([list(w) for t, _ in train for w in t])
    data = TaggingData(train, vocab, tags, chars, lowercase=True)
    batches = data.batches(32, shuffle=True, seed=0)
    sizes = {"V": len(vocab), "C": len(tags), "Vc": len(chars)}
    return [b for _, b in zip(range(n), batches, strict=False)], sizes


# ---- the two implementations --------------------------------------------------------------
def rnncore_step(recipe: str, sizes: dict) -> Callable[[Any], None]:
    import rnncore
    from rnncore import optim
    from rnncore.models import LanguageModel, SequenceClassifier, SequenceTagger

    if recipe == "ptb":
        model = LanguageModel(sizes["V"], 200, 200, num_layers=2, seed=0)
        opt, clip = optim.SGD(model.parameters(), lr=20.0), 0.25
    elif recipe == "charlm":
        model = LanguageModel(sizes["V"], 64, 512, num_layers=2, dropout=0.2, seed=0)
        opt, clip = optim.Adam(model.parameters(), lr=2e-3), 5.0
    elif recipe == "sst2":
        model = SequenceClassifier(
            sizes["V"], 128, 128, sizes["C"], num_layers=2, pooling="mean", dropout=0.5, seed=0
        )
        opt, clip = optim.Adam(model.parameters(), lr=2e-3), 5.0
    else:
        model = SequenceTagger(
            sizes["V"], 100, 128, sizes["C"], dropout=0.5, char_vocab_size=sizes["Vc"], seed=0
        )
        opt, clip = optim.Adam(model.parameters(), lr=2e-3), 5.0
    model.train()

    def step(batch: Any) -> None:
        opt.zero_grad()
        model.training_step(batch)
        rnncore.optim.clip_grad_norm(model.parameters(), clip)
        opt.step()

    return step


def torch_step(recipe: str, sizes: dict) -> Callable[[Any], None]:
    import torch

    nn = torch.nn
    torch.manual_seed(0)
    V = sizes["V"]

    class LM(nn.Module):
        def __init__(self, E: int, H: int, dropout: float) -> None:
            super().__init__()
            self.emb, self.drop = nn.Embedding(V, E), nn.Dropout(dropout)
            self.rnn, self.out = nn.LSTM(E, H, 2, dropout=dropout), nn.Linear(H, V)
            self.state = None

        def loss(self, batch: Any) -> torch.Tensor:
            x, y = (torch.from_numpy(np.ascontiguousarray(a)) for a in batch)
            if self.state is not None:
                self.state = tuple(s.detach() for s in self.state)
            h, self.state = self.rnn(self.drop(self.emb(x)), self.state)
            return nn.functional.cross_entropy(self.out(self.drop(h)).reshape(-1, V), y.reshape(-1))

    class Classifier(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb, self.drop = nn.Embedding(V, 128, padding_idx=0), nn.Dropout(0.5)
            self.rnn = nn.LSTM(128, 128, 2, dropout=0.5, bidirectional=True)
            self.out = nn.Linear(256, sizes["C"])

        def loss(self, batch: Any) -> torch.Tensor:
            ids, lengths = torch.from_numpy(batch.ids), torch.from_numpy(batch.lengths)
            packed = nn.utils.rnn.pack_padded_sequence(
                self.drop(self.emb(ids)), lengths, enforce_sorted=False
            )
            y, _ = nn.utils.rnn.pad_packed_sequence(self.rnn(packed)[0])
            pooled = y.sum(0) / lengths[:, None].to(y.dtype)  # mean over each sequence
            logits = self.out(self.drop(pooled))
            return nn.functional.cross_entropy(logits, torch.from_numpy(batch.labels))

    class Tagger(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb, self.drop = nn.Embedding(V, 100, padding_idx=0), nn.Dropout(0.5)
            self.cemb = nn.Embedding(sizes["Vc"], 25, padding_idx=0)
            self.crnn = nn.LSTM(25, 25, bidirectional=True)
            self.rnn = nn.LSTM(150, 128, bidirectional=True)
            self.out = nn.Linear(256, sizes["C"])

        def loss(self, batch: Any) -> torch.Tensor:
            ids, lengths = torch.from_numpy(batch.ids), torch.from_numpy(batch.lengths)
            cl = torch.from_numpy(batch.char_lengths)
            cp = nn.utils.rnn.pack_padded_sequence(
                self.cemb(torch.from_numpy(batch.chars)), cl, enforce_sorted=False
            )
            _, (hc, _) = self.crnn(cp)
            words = torch.cat([hc[0], hc[1]], dim=-1)  # [N, 50], sentence by sentence
            T, B = ids.shape
            mask = torch.arange(T)[None, :] < lengths[:, None]  # [B, T]
            feat = torch.zeros(B, T, 50)
            feat[mask] = words
            x = torch.cat([self.emb(ids), feat.transpose(0, 1)], dim=-1)
            packed = nn.utils.rnn.pack_padded_sequence(self.drop(x), lengths, enforce_sorted=False)
            y, _ = nn.utils.rnn.pad_packed_sequence(self.rnn(packed)[0], total_length=T)
            logits = self.out(self.drop(y))
            tags = torch.from_numpy(batch.tags)
            return nn.functional.cross_entropy(
                logits.reshape(-1, sizes["C"]), tags.reshape(-1), ignore_index=-100
            )

    if recipe == "ptb":
        model = LM(200, 200, 0.0)
        opt, clip = torch.optim.SGD(model.parameters(), lr=20.0), 0.25
    elif recipe == "charlm":
        model = LM(64, 512, 0.2)
        opt, clip = torch.optim.Adam(model.parameters(), lr=2e-3), 5.0
    elif recipe == "sst2":
        model = Classifier()
        opt, clip = torch.optim.Adam(model.parameters(), lr=2e-3), 5.0
    else:
        model = Tagger()
        opt, clip = torch.optim.Adam(model.parameters(), lr=2e-3), 5.0
    model.train()

    def step(batch: Any) -> None:
        opt.zero_grad()
        model.loss(batch).backward()
        nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()

    return step


def time_steps(step: Callable[[Any], None], batches: list[Any]) -> float:
    """Seconds per batch over ``batches`` (after one warm-up batch)."""
    step(batches[0])
    start = time.perf_counter()
    for b in batches:
        step(b)
    return (time.perf_counter() - start) / len(batches)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipes", default=",".join(RECIPES), help=f"subset of {RECIPES}")
    ap.add_argument("--batches", type=int, default=30, help="training batches per timing")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds (best counts)")
    ap.add_argument("--threads", default="1,2", help="thread counts, for both libraries")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "recipes")
    args = ap.parse_args(argv)
    import rnncore
    import torch

    makers = {"ptb": ptb_batches, "charlm": charlm_batches, "sst2": sst2_batches}
    makers["conll"] = conll_batches
    rows = []
    for recipe in args.recipes.split(","):
        if recipe not in makers:
            ap.error(f"--recipes: unknown recipe {recipe!r} (have {', '.join(RECIPES)})")
        batches, sizes = makers[recipe](args.batches)
        for threads in (int(t) for t in args.threads.split(",")):
            rnncore.set_num_threads(threads)
            torch.set_num_threads(threads)
            ours, theirs = rnncore_step(recipe, sizes), torch_step(recipe, sizes)
            t_ours, t_theirs = [], []
            for _ in range(args.rounds):  # alternating: a busy spell hits both
                t_ours.append(time_steps(ours, batches))
                t_theirs.append(time_steps(theirs, batches))
            row = {
                "recipe": recipe,
                "threads": threads,
                "batches": len(batches),
                "rnncore_s_per_batch": min(t_ours),
                "torch_s_per_batch": min(t_theirs),
                "rounds_rnncore": t_ours,
                "rounds_torch": t_theirs,
            }
            row["ratio"] = row["torch_s_per_batch"] / row["rnncore_s_per_batch"]
            rows.append(row)
            print(
                f"  {recipe} x{threads}: {1e3 * row['rnncore_s_per_batch']:.1f} ms vs "
                f"{1e3 * row['torch_s_per_batch']:.1f} ms per batch: {row['ratio']:.2f}x",
                flush=True,
            )
    lines = [
        "# Whole recipes: rnncore against the same model in plain PyTorch",
        "",
        f"`python bench/bench_recipes.py --batches {args.batches} --rounds {args.rounds} "
        f"--threads {args.threads}` on {platform.node() or 'this machine'}, {br._cpu_model()} "
        f"({os.cpu_count()} cores, shared), torch {torch.__version__}, "
        f"{time.strftime('%Y-%m-%d')}. Seconds per training batch (forward, loss, backward, "
        "clipping, optimizer step), the best of the alternating rounds; ratio = PyTorch / "
        "rnncore (> 1: rnncore is faster; goal 1.5).",
        "",
        "| recipe | threads | batches | rnncore ms/batch | PyTorch ms/batch | ratio |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['recipe']} | {r['threads']} | {r['batches']} | "
            f"{1e3 * r['rnncore_s_per_batch']:.1f} | "
            f"{1e3 * r['torch_s_per_batch']:.1f} | {r['ratio']:.2f}x |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.parent.mkdir(exist_ok=True)
    args.out.with_suffix(".md").write_text(text, encoding="utf-8")
    args.out.with_suffix(".json").write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
