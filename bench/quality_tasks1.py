"""Quality of the lecture's tasks on real data: the `rnncore train` recipes, their scores and times.

A program, not a test. Each recipe runs the same code path as the command line (`rnncore train
TASK ...`, options below), evaluates the best epoch on validation and test, compares with the
issue's target, and writes ``bench/results/quality_<name>.json`` (checkpoints go to --work-dir,
outside the repository).

    python bench/quality_tasks1.py                       # every recipe, full length (hours)
    python bench/quality_tasks1.py --only ptb            # one recipe
    python bench/quality_tasks1.py --only ptb,sst2 --epochs 1 --max-batches 100 \
        --max-eval-batches 50                            # smoke run: checks that it all works

Recipes (data from ../shared/data, see its README):

- ptb: Zaremba et al. (2014) "small": 2 x 200 LSTM, BPTT 20, batch 20, SGD lr 1 halved every
  epoch after the 4th, gradient norm clipped at 5, 13 epochs, init U(-0.1, 0.1), no dropout
  (their lr and clip act on a loss summed over the 20 steps; on rnncore's per-token mean they are
  lr 20 and clip 0.25, the same updates);
  validation and test read as one stream each (batch 1, as their code does for test). Target:
  test perplexity <= 118 (paper 114.5). Also times the same recipe in PyTorch for one epoch (or
  --max-batches batches) and then rnncore on the same batches, in the same process and threads,
  and reports the time ratio.
- shakespeare: tiny Shakespeare char LM, 2 x 512 LSTM, embedding 64, BPTT 50 (state carried
  across windows), batch 32, Adam 2e-3, clip 5, dropout 0.2, 8 epochs (~5-8 min each at 1
  thread). Target: validation loss <= 1.55 nats/char; records a 300-character sample.
- sst2: SST-2 sentences (stsa.binary.*), 2-layer bidirectional LSTM 150, embedding 300, max
  pooling over time, dropout 0.5, Adam 1e-3, clip 5, batch 32, 8 epochs (the final states alone,
  10 epochs: 78.9 %). Target: test accuracy >= 80 %.
- ner: CoNLL-2003 NER, word embedding 100 + character BiLSTM 25, 1-layer BiLSTM 200, dropout
  0.5, Adam 2e-3, clip 5. Target: test entity F1 >= 80 (conlleval).
- pos: the same tagger on the POS column (2). Target: test token accuracy >= 92 %.

With --max-batches the reported ``estimated_epoch_seconds`` extrapolates the measured time per
batch to a full epoch, to plan full runs.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

from _quality import machine_info, write_result  # noqa: E402 (bench/ is on sys.path)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_DATA = ROOT.parent / "shared" / "data"

# name -> (task, data path under the data root, options, (split, metric, "<=" or ">=", target))
RECIPES: dict[str, tuple[str, str, str, tuple[str, str, str, float]]] = {
    "ptb": (
        "lm",
        "ptb",
        "--cell lstm --layers 2 --hidden 200 --embed 200 --epochs 13 --batch-size 20 --bptt 20 "
        "--optimizer sgd --lr 20 --lr-decay 0.5 --decay-after 4 --clip 0.25 --init-range 0.1 "
        "--dropout 0 --eval-batch-size 1",
        ("test", "ppl", "<=", 118.0),
    ),
    "shakespeare": (
        "charlm",
        "tinyshakespeare/input.txt",
        "--cell lstm --layers 2 --hidden 512 --embed 64 --epochs 8 --batch-size 32 --bptt 50 "
        "--optimizer adam --lr 2e-3 --clip 5 --dropout 0.2 --eval-batch-size 32",
        ("valid", "loss", "<=", 1.55),
    ),
    "sst2": (
        "sentiment",
        "sst2",
        "--cell lstm --layers 2 --bidirectional --hidden 150 --embed 300 --pooling max "
        "--epochs 8 --batch-size 32 --optimizer adam --lr 1e-3 --clip 5 --dropout 0.5",
        ("test", "accuracy", ">=", 0.80),
    ),
    "ner": (
        "tagger",
        "conll2003",
        "--label-column ner --cell lstm --layers 1 --bidirectional --hidden 200 --embed 100 "
        "--char-embed 25 --char-hidden 25 --epochs 15 --batch-size 32 --optimizer adam --lr 2e-3 "
        "--clip 5 --dropout 0.5",
        ("test", "f1", ">=", 0.80),
    ),
    "pos": (
        "tagger",
        "conll2003",
        "--label-column pos --cell lstm --layers 1 --bidirectional --hidden 200 --embed 100 "
        "--char-embed 25 --char-hidden 25 --epochs 10 --batch-size 32 --optimizer adam --lr 2e-3 "
        "--clip 5 --dropout 0.5",
        ("test", "accuracy", ">=", 0.92),
    ),
}


def _override(options: str, flag: str, value: object) -> str:
    """Replace (or add) ``flag value`` in an option string."""
    parts = options.split()
    if flag in parts:
        i = parts.index(flag)
        parts[i + 1] = str(value)
    else:
        parts += [flag, str(value)]
    return " ".join(parts)


def run_recipe(name: str, args: argparse.Namespace) -> dict:
    """Train and evaluate one recipe through the command line's code; returns its result."""
    from rnncore import cli, tasks

    task, data_rel, options, target = RECIPES[name]
    if args.epochs is not None:
        options = _override(options, "--epochs", args.epochs)
    if args.seed is not None:
        options = _override(options, "--seed", args.seed)
    data = args.data_root / data_rel
    if not data.exists():
        return {"recipe": name, "skipped": f"data not found: {data}"}
    work = args.work_dir / name
    argv = ["train", task, "--data", str(data), "--out", str(work), *options.split()]
    if args.max_batches is not None:
        argv += ["--max-batches", str(args.max_batches)]
    if args.max_eval_batches is not None:
        argv += ["--max-eval-batches", str(args.max_eval_batches)]
    if not args.progress:
        argv.append("--no-progress")
    print(f"\n=== {name}: rnncore {' '.join(argv)}", flush=True)
    ns = cli.build_parser().parse_args(argv)
    metrics = tasks.load(task).run(ns)

    split, metric, op, bound = target
    value = (metrics.get(split) or {}).get(metric)
    passed = None if value is None else (value <= bound if op == "<=" else value >= bound)
    hist = metrics["history"]
    first = hist[0] if hist else {}
    result = {
        "recipe": name,
        "command": "rnncore " + " ".join(argv),
        "target": {"split": split, "metric": metric, "op": op, "value": bound},
        "value": value,
        "passed": passed,
        "valid": metrics["valid"],
        "test": metrics["test"],
        "epochs": metrics["epochs"],
        "best_epoch": metrics["best_epoch"],
        "seconds_per_epoch": metrics["seconds_per_epoch"],
        "wall_seconds": metrics["wall_seconds"],
        "parameters": metrics["parameters"],
        "history": hist,
        "full_length": args.max_batches is None and args.epochs is None,
    }
    steps = first.get("steps")
    full = _full_batches(name, metrics, args)
    if steps:
        per_batch = first["train_seconds"] / steps
        result["seconds_per_batch"] = per_batch
        result["batches_per_epoch"] = full
        result["estimated_epoch_seconds"] = per_batch * full if full else None
    if name == "shakespeare":
        result["sample"] = _shakespeare_sample(work)
    if name == "ptb" and not args.no_torch:
        result["torch"] = _torch_ptb(data, args, result.get("seconds_per_batch"))
    return result


def _full_batches(name: str, metrics: dict, args: argparse.Namespace) -> int | None:
    """Training batches of one full epoch of the recipe."""
    opts = metrics["options"]
    d = metrics["data"]
    if name in ("ptb", "shakespeare"):
        cols = d["train_tokens"] // opts["batch_size"]
        return math.ceil((cols - 1) / opts["bptt"])
    n = d.get("train_examples") or d.get("train_sentences")
    return math.ceil(n / opts["batch_size"]) if n else None


def _shakespeare_sample(work: Path) -> dict:
    from rnncore.tasks import _common, charlm

    ckpt, _ = _common.open_model_dir(str(work))
    ns = argparse.Namespace(prompt="\n", length=300, temperature=0.8, top_k=None, seed=0)
    return {"prompt": "\\n", "temperature": 0.8, "seed": 0, "text": charlm.sample(ckpt, ns)}


def _torch_ptb(data: Path, args: argparse.Namespace, rnncore_per_batch: float | None) -> dict:
    """The ptb recipe in PyTorch for one epoch (or --max-batches batches): time and train ppl,
    and rnncore's time for the same batches measured right after (the ratio's numerator)."""
    try:
        import torch
    except ImportError:
        return {"skipped": "torch is not installed"}
    import numpy as np
    import rnncore
    from rnncore.data import BPTTBatches, batchify, load_ptb

    torch.set_num_threads(rnncore.get_num_threads())
    torch.manual_seed(0)
    corpus = load_ptb(data)
    V, H, B, T = len(corpus.vocab), 200, 20, 20

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = torch.nn.Embedding(V, H)
            self.rnn = torch.nn.LSTM(H, H, 2)
            self.decoder = torch.nn.Linear(H, V)
            for p in self.parameters():
                torch.nn.init.uniform_(p, -0.1, 0.1)

        def forward(self, x, state):
            y, state = self.rnn(self.embedding(x), state)
            return self.decoder(y), state

    model = Model()
    opt = torch.optim.SGD(model.parameters(), lr=20.0)
    crit = torch.nn.CrossEntropyLoss()
    batches = BPTTBatches(batchify(corpus.train, B), T)
    limit = args.max_batches if args.max_batches is not None else len(batches)
    state = None
    total = count = 0.0
    steps = 0
    print(f"=== ptb: PyTorch {torch.__version__}, {limit} batches", flush=True)
    start = time.perf_counter()
    for x, y in batches:
        if steps >= limit:
            break
        xt = torch.from_numpy(np.ascontiguousarray(x))
        yt = torch.from_numpy(np.ascontiguousarray(y))
        if state is not None:
            state = tuple(s.detach() for s in state)
        opt.zero_grad()
        logits, state = model(xt, state)
        loss = crit(logits.reshape(-1, V), yt.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.25)
        opt.step()
        total += loss.item() * y.size
        count += y.size
        steps += 1
    seconds = time.perf_counter() - start
    out = {
        "version": torch.__version__,
        "threads": torch.get_num_threads(),
        "batches": steps,
        "seconds": seconds,
        "seconds_per_batch": seconds / steps,
        "train_ppl": math.exp(total / count),
    }
    # rnncore on the same batches right after, so both are timed under the same machine load
    # (the recipe's own first epoch may have shared the machine with other runs).
    same = _rnncore_ptb_seconds(corpus, batches, steps) / steps
    out["rnncore_seconds_per_batch_same_conditions"] = same
    out["rnncore_over_torch_time"] = same / out["seconds_per_batch"]
    if rnncore_per_batch:
        out["rnncore_first_epoch_over_torch_time"] = rnncore_per_batch / out["seconds_per_batch"]
    return out


def _rnncore_ptb_seconds(corpus, batches, limit: int) -> float:
    """Seconds for the ptb recipe's first ``limit`` training batches in rnncore, timed like the
    PyTorch loop above (zero grads, forward, backward, clip 0.25, SGD lr 20)."""
    import rnncore
    from rnncore.models import LanguageModel

    model = LanguageModel(len(corpus.vocab), 200, 200, num_layers=2, seed=0)
    model.init_uniform(0.1, seed=0)
    opt = rnncore.optim.SGD(model.parameters(), lr=20.0)
    start = time.perf_counter()
    for steps, batch in enumerate(batches):
        if steps >= limit:
            break
        opt.zero_grad()
        model.training_step(batch)
        rnncore.optim.clip_grad_norm(model.parameters(), 0.25)
        opt.step()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--only", default=",".join(RECIPES), help=f"comma-separated recipes: {', '.join(RECIPES)}"
    )
    p.add_argument("--epochs", type=int, default=None, help="override every recipe's epochs")
    p.add_argument("--max-batches", type=int, default=None, help="training batches per epoch")
    p.add_argument("--max-eval-batches", type=int, default=None, help="batches per eval split")
    p.add_argument("--seed", type=int, default=None, help="override the seed (default 0)")
    p.add_argument("--threads", type=int, default=None, help="engine threads (default: all)")
    p.add_argument("--data-root", type=Path, default=DEFAULT_DATA, help="the datasets' folder")
    p.add_argument(
        "--work-dir",
        type=Path,
        default=Path(os.environ.get("TMPDIR", "/tmp")) / "rnncore-quality",
        help="where the runs' checkpoints go",
    )
    p.add_argument("--results", type=Path, default=HERE / "results", help="result JSON folder")
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch timing of ptb")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no bars")
    args = p.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in RECIPES]
    if unknown:
        p.error(f"unknown recipe(s) {unknown}; known: {', '.join(RECIPES)}")

    import rnncore

    if args.threads is not None:
        rnncore.set_num_threads(args.threads)
    args.results.mkdir(parents=True, exist_ok=True)
    machine = machine_info(rnncore)
    summary = []
    for name in names:
        result = run_recipe(name, args)
        result["machine"] = machine
        path = args.results / f"quality_{name}.json"
        write_result(path, result)
        summary.append(result)
        print(f"wrote {path}", flush=True)

    print("\nrecipe       target                 value     pass  s/epoch (est. full)  torch ratio")
    for r in summary:
        if "skipped" in r:
            print(f"{r['recipe']:<12} skipped: {r['skipped']}")
            continue
        t = r["target"]
        goal = f"{t['split']} {t['metric']} {t['op']} {t['value']}"
        est = r.get("estimated_epoch_seconds")
        ratio = (r.get("torch") or {}).get("rnncore_over_torch_time")
        print(
            f"{r['recipe']:<12} {goal:<22} {_num(r['value']):>9}  {str(r['passed']):<5} "
            f"{r['seconds_per_epoch']:7.1f} ({_num(est)})      {_num(ratio)}"
        )
    return 0


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.4g}"


if __name__ == "__main__":
    sys.exit(main())
