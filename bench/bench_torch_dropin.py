"""A PyTorch program with torch.nn.LSTM/GRU against the same program with rnncore.torch's.

The one-line swap of issue 15, measured two ways in one process (ratios, never absolute times):

1. a training step (embedding -> 2-layer recurrent -> linear, cross-entropy, Adam step) at a few
   shapes, both libraries timed in turn (torch, rnncore, torch, ...) at 1 and 2 threads;
2. a whole small recipe: a word-level PTB language model (Zaremba et al.'s small shape, 200
   units, 2 layers, B 20, T 35, truncated BPTT, SGD lr 1, clip 5) trained for a fixed number of
   batches by each, from the same initial weights, batch by batch in turn: the summed step
   times and the final training loss.
   Reads ../shared/data/ptb (or --ptb DIR); without it, synthetic tokens of the same shape.

    python bench/bench_torch_dropin.py              # both parts (~3 minutes on 2 cores)
    python bench/bench_torch_dropin.py --quick      # smoke run

Writes bench/results/torch_dropin.{json,md}: per row the median step time of each, the ratio
torch / rnncore (> 1: the swap is faster) and the CPU steal while the row ran.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_rnn as br  # noqa: E402  (CPU steal and machine description)

try:
    import torch
except ImportError:  # pragma: no cover - the benchmark needs torch
    raise SystemExit("bench_torch_dropin.py needs PyTorch (pip install torch==2.13.0)") from None

import rnncore  # noqa: E402
import rnncore.torch as rtorch  # noqa: E402

# (name, cell, vocab V, embedding E, hidden H, batch B, steps T)
STEP_SHAPES = [
    ("small", "LSTM", 1000, 128, 128, 32, 35),
    ("medium", "LSTM", 10000, 200, 200, 20, 35),
    ("large", "LSTM", 1000, 512, 512, 32, 50),
    ("medium", "GRU", 10000, 200, 200, 20, 35),
    ("large", "GRU", 1000, 512, 512, 32, 50),
]


class Model(torch.nn.Module):
    """ids [B, T] -> logits [B, T, V]: embedding, a 2-layer recurrent layer, a linear decoder."""

    def __init__(self, rnn_cls: type, V: int, E: int, H: int) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(V, E)
        self.rnn = rnn_cls(E, H, num_layers=2, batch_first=True)
        self.out = torch.nn.Linear(H, V)

    def forward(self, ids: torch.Tensor, state=None):
        y, state = self.rnn(self.embed(ids), state)
        return self.out(y), state


def twin_models(cell: str, V: int, E: int, H: int) -> tuple[Model, Model]:
    """The torch model and its one-line swap, with the same weights."""
    torch.manual_seed(0)
    ref = Model(getattr(torch.nn, cell), V, E, H)
    torch.manual_seed(0)
    swap = Model(getattr(rtorch, cell), V, E, H)
    swap.load_state_dict(ref.state_dict())
    return ref, swap


def train_step(model: Model, opt: torch.optim.Optimizer, ids, targets, state=None):
    """One training step; returns (loss, detached final state)."""
    opt.zero_grad()
    logits, state = model(ids, state)
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.ravel())
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
    opt.step()
    detached = tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()
    return loss.item(), detached


def set_threads(n: int) -> None:
    torch.set_num_threads(n)
    rnncore.set_num_threads(n)


def bench_steps(threads: int, reps: int, quick: bool) -> list[dict]:
    """Part 1: the median training-step time of each library per shape, timed in turn."""
    set_threads(threads)
    rows = []
    for name, cell, V, E, H, B, T in STEP_SHAPES[:2] if quick else STEP_SHAPES:
        if quick:
            B, T = min(B, 8), min(T, 10)
        models = twin_models(cell, V, E, H)
        opts = [torch.optim.Adam(m.parameters(), lr=1e-3) for m in models]
        g = torch.Generator().manual_seed(1)
        ids = torch.randint(0, V, (B, T), generator=g)
        targets = torch.randint(0, V, (B, T), generator=g)
        losses = [train_step(m, o, ids, targets)[0] for m, o in zip(models, opts, strict=True)]
        if abs(losses[0] - losses[1]) > 1e-3 * max(1.0, abs(losses[0])):
            raise SystemExit(f"{name} {cell}: losses differ: torch {losses[0]}, swap {losses[1]}")
        times: list[list[float]] = [[], []]
        steal0 = br._cpu_times()
        for _ in range(reps):
            for k in (0, 1):
                t0 = time.perf_counter()
                train_step(models[k], opts[k], ids, targets)
                times[k].append(time.perf_counter() - t0)
        steal = br._steal_pct(steal0, br._cpu_times())
        t_torch, t_swap = statistics.median(times[0]), statistics.median(times[1])
        rows.append(
            dict(
                shape=name,
                cell=cell,
                threads=threads,
                V=V,
                E=E,
                H=H,
                B=B,
                T=T,
                torch_ms=1e3 * t_torch,
                rnncore_ms=1e3 * t_swap,
                ratio=t_torch / t_swap,
                steal_pct=steal,
            )
        )
        print(
            f"step {name:6s} {cell:4s} threads={threads}: torch {1e3 * t_torch:8.1f} ms  "
            f"rnncore.torch {1e3 * t_swap:8.1f} ms  ratio {t_torch / t_swap:5.2f}x",
            flush=True,
        )
    return rows


def ptb_batches(folder: Path | None, B: int, T: int, limit: int, V: int):
    """Up to ``limit`` (ids, targets) [B, T] training batches of PTB (or synthetic tokens)."""
    if folder is not None and (folder / "ptb.train.txt").exists():
        words = (folder / "ptb.train.txt").read_text().replace("\n", " <eos> ").split()
        vocab = {w: i for i, w in enumerate(sorted(set(words)))}
        data = torch.tensor([vocab[w] for w in words])
        source = f"PTB train ({len(words)} tokens, V={len(vocab)})"
        V = len(vocab)
    else:
        data = torch.randint(0, V, (B * T * (limit + 1) + 1,), generator=torch.Generator())
        source = "synthetic tokens (PTB not found)"
    n = (len(data) - 1) // B
    x, y = data[: n * B].view(B, n), data[1 : n * B + 1].view(B, n)
    batches = [(x[:, i : i + T], y[:, i : i + T]) for i in range(0, n - T + 1, T)][:limit]
    return batches, V, source


def bench_recipe(threads: int, folder: Path | None, batches_n: int, cell: str) -> dict:
    """Part 2: the same PTB recipe trained by each library from the same weights."""
    set_threads(threads)
    batches, V, source = ptb_batches(folder, 20, 35, batches_n, 10000)
    out = dict(cell=cell, threads=threads, batches=len(batches), source=source)
    models = twin_models(cell, V, 200, 200)
    opts = [torch.optim.SGD(m.parameters(), lr=1.0) for m in models]
    states: list = [None, None]
    losses: list[list[float]] = [[], []]
    seconds = [0.0, 0.0]
    steal0 = br._cpu_times()
    for ids, targets in batches:  # batch by batch in turn: drift hits both alike
        for k in (0, 1):
            t0 = time.perf_counter()
            loss, states[k] = train_step(models[k], opts[k], ids, targets, states[k])
            seconds[k] += time.perf_counter() - t0
            losses[k].append(loss)
    out["steal_pct"] = br._steal_pct(steal0, br._cpu_times())
    for k, lib in enumerate(("torch", "rnncore")):
        out[f"{lib}_s"] = seconds[k]
        out[f"{lib}_final_loss"] = float(np.mean(losses[k][-20:]))
    out["ratio"] = out["torch_s"] / out["rnncore_s"]
    print(
        f"recipe {cell} threads={threads}: torch {out['torch_s']:.1f} s (loss "
        f"{out['torch_final_loss']:.3f}), rnncore.torch {out['rnncore_s']:.1f} s (loss "
        f"{out['rnncore_final_loss']:.3f}), ratio {out['ratio']:.2f}x",
        flush=True,
    )
    return out


def write_report(result: dict, json_path: Path, md_path: Path) -> None:
    json_path.write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        "# torch.nn vs rnncore.torch: the one-line swap",
        "",
        f"{result['date']}, {result['cpu']}, torch {result['torch']}, rnncore "
        f"{result['rnncore']} ({result['engine']}). Ratio = torch time / rnncore.torch time "
        "(> 1: the swap is faster); medians of interleaved runs in one process.",
        "",
        "## Training step (embedding, 2-layer recurrent, linear, cross-entropy, Adam)",
        "",
        "| shape | cell | threads | V | E=H | B | T | torch ms | rnncore.torch ms | ratio "
        "| steal |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["steps"]:
        steal = "-" if r["steal_pct"] is None else f"{r['steal_pct']:.0f}%"
        lines.append(
            f"| {r['shape']} | {r['cell']} | {r['threads']} | {r['V']} | {r['H']} | {r['B']} | "
            f"{r['T']} | {r['torch_ms']:.1f} | {r['rnncore_ms']:.1f} | {r['ratio']:.2f}x | "
            f"{steal} |"
        )
    lines += [
        "",
        "## A whole recipe: PTB word LM, 200 units, 2 layers, B 20, T 35, SGD lr 1, clip 5",
        "",
        "| cell | threads | batches | torch s | rnncore.torch s | ratio | final loss torch | "
        "final loss rnncore.torch |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in result["recipes"]:
        lines.append(
            f"| {r['cell']} | {r['threads']} | {r['batches']} | {r['torch_s']:.1f} | "
            f"{r['rnncore_s']:.1f} | {r['ratio']:.2f}x | {r['torch_final_loss']:.3f} | "
            f"{r['rnncore_final_loss']:.3f} |"
        )
    if result["recipes"]:
        lines += ["", f"Data: {result['recipes'][0]['source']}."]
    md_path.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", default="1,2", help="thread counts, e.g. 1,2")
    p.add_argument("--reps", type=int, default=15, help="timed steps per shape and library")
    p.add_argument("--batches", type=int, default=150, help="recipe batches per library")
    p.add_argument("--ptb", type=Path, default=HERE.parent.parent / "shared" / "data" / "ptb")
    p.add_argument("--quick", action="store_true", help="small shapes, few reps: a smoke run")
    p.add_argument("--json", type=Path, default=HERE / "results" / "torch_dropin.json")
    p.add_argument("--md", type=Path, default=HERE / "results" / "torch_dropin.md")
    args = p.parse_args(argv)
    threads = [int(t) for t in args.threads.split(",")]
    reps, batches = (3, 10) if args.quick else (args.reps, args.batches)
    # ATen's own kernels: what torch.nn.LSTM runs by default on this CPU? oneDNN's RNN path is
    # the default when enabled; keep torch's defaults (the user's program), say which.
    result = dict(
        date=datetime.date.today().isoformat(),
        cpu=br._cpu_model(),
        torch=torch.__version__,
        rnncore=rnncore.__version__,
        engine=rnncore.engine_variant(),
        steps=[],
        recipes=[],
    )
    for n in threads:
        result["steps"] += bench_steps(n, reps, args.quick)
    for n in threads:
        for cell in ("LSTM", "GRU"):
            result["recipes"].append(bench_recipe(n, args.ptb, batches, cell))
    if not args.quick:
        write_report(result, args.json, args.md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
