"""Data-parallel training on MPI (issue 16): what 2 ranks buy on this machine, what N would cost.

A program, not a test. Three parts, written to bench/results/distributed.{md,json}:

1. Measured on this (2-core) machine: the PTB language-model recipe (Zaremba et al.'s small 2 x 200
   LSTM, the lm task's defaults, global batch 20, BPTT 20) for ``--batches`` training batches
   (one epoch; the first batch's warm-up is in it), as 1 process x 2 engine threads, as 2 MPI
   ranks x 1 thread (data parallel, the same global batch) and as 1 process x 1 thread (the
   scaling baseline); ``--repeats`` runs of each, interleaved, median. Throughput is the
   Trainer's items/s (tokens); the allreduce share is rank 0's time in the gradient allreduce
   over its training time.
2. Also measured: one allreduce of that model's gradient between the 2 ranks alone (after a
   barrier, so no waiting for a slower rank): MPI's time and rnncore's staging copies around it;
   and whether overlapping it with backward would pay: a rank's training step on its slice with
   a nonblocking allreduce running across it, against the two in sequence.
3. A cost model for N machines: for each task model of bench/results/quality_*.json (parameters
   and items/s measured there on this machine), the ring allreduce time
   ``2 (N-1)/N * bytes / bandwidth + 2 (N-1) * latency`` at 10, 25 and 100 Gb/s, and the per-rank
   batch at which that time equals the compute time of the rank's batch (items x measured seconds
   per item): where an allreduce overlapped with backward would hide completely; without the
   overlap (rnncore's today) the communication is then half of each step, and a tenth of it
   at nine times that batch.

    python bench/bench_distributed.py                   # about 3 minutes
    python bench/bench_distributed.py --batches 40 --repeats 1   # a quick look
    python bench/bench_distributed.py --probe-only      # part 2 again (half a minute)

Needs ``pip install ".[mpi]"`` and the PTB files (``--data``, default ../shared/data/ptb).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
DEFAULT_DATA = HERE.parent.parent / "shared" / "data" / "ptb"
BANDWIDTHS_GBPS = (10, 25, 100)
RANKS = (2, 8, 32)
#: per message hop of a ring step over TCP on Ethernet (a few tens of microseconds); RDMA is ~2
LATENCY_S = 25e-6
#: what each recipe's "count" (its items) is
UNITS = {
    "ptb": "tokens",
    "shakespeare": "characters",
    "sst2": "sentences",
    "ner": "tokens",
    "pos": "tokens",
    "translation": "target tokens",
    "caption": "caption tokens",
    "adding_lstm": "sequences",
    "adding_gru": "sequences",
    "airline": "forecast values",
}


# ---- part 2: the allreduce alone, run under mpiexec ----------------------------------------------
def probe(n_params: int, repeats: int) -> None:
    """Under mpiexec: time GradientReducer.allreduce and a bare MPI allreduce of ``n_params``
    float32 gradients; rank 0 prints one JSON line."""
    import numpy as np
    from rnncore import distributed as dist
    from rnncore.nn import Parameter

    world = dist.init(True)
    grad = np.ones(n_params, dtype=np.float32)
    param = Parameter("g", np.zeros(n_params, dtype=np.float32), grad)
    reducer = dist.GradientReducer([param], world)
    bare = np.ones(n_params + 2, dtype=np.float32)
    rnncore_s, mpi_s = [], []
    for i in range(repeats + 3):  # 3 warm-ups
        world.barrier()
        t = time.perf_counter()
        reducer.allreduce(10.0, 1.0)
        t1 = time.perf_counter()
        world.barrier()
        t2 = time.perf_counter()
        world.allreduce_array(bare)
        t3 = time.perf_counter()
        if i >= 3:
            rnncore_s.append(t1 - t)
            mpi_s.append(t3 - t2)
    overlap = _overlap_probe(world, bare, repeats)
    if world.rank == 0:
        out = {
            "parameters": n_params,
            "bytes": n_params * 4,
            "ranks": world.size,
            "library": world.library,
            "rnncore_allreduce_s": statistics.median(rnncore_s),
            "mpi_allreduce_s": statistics.median(mpi_s),
            "overlap": overlap,
        }
        print("PROBE " + json.dumps(out), flush=True)
    dist.finish(world)


def _overlap_probe(world: Any, buf: Any, repeats: int) -> dict[str, float]:
    """Would overlapping the allreduce with backward pay here? Medians over ``repeats`` of a
    rank's training step on its slice of the PTB recipe's batch (10 x 20 tokens of the 2 x 200
    LSTM LM, 1 engine thread) alone, the gradient allreduce alone, the two in sequence, and the
    two overlapped: a nonblocking allreduce started before the step and waited for after it (the
    most an overlap with backward could win)."""
    import numpy as np
    import rnncore
    from rnncore.models import LanguageModel

    rnncore.set_num_threads(1)
    MPI = world._MPI
    model = LanguageModel(10000, 200, 200, num_layers=2, seed=0)
    ids = np.random.default_rng(world.rank).integers(0, 10000, size=(21, 10))
    batch = (ids[:-1], ids[1:])

    def step() -> None:
        model.zero_grad()
        model.training_step(batch)

    def allreduce() -> None:
        world.comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)

    def sequential() -> None:
        step()
        allreduce()

    def overlapped() -> None:
        request = world.comm.Iallreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
        step()
        request.Wait()

    times: dict[str, list[float]] = {}
    for i in range(repeats + 2):  # 2 warm-ups; interleaved
        for name, f in (
            ("step", step),
            ("allreduce", allreduce),
            ("sequential", sequential),
            ("overlapped", overlapped),
        ):
            world.barrier()
            t = time.perf_counter()
            f()
            if i >= 2:
                times.setdefault(name, []).append(time.perf_counter() - t)
    return {name + "_s": statistics.median(v) for name, v in times.items()}


# ---- part 1: the recipe ------------------------------------------------------------------------
def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("RNNCORE_NUM_THREADS", None)
    env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    return env


def _mpiexec() -> str:
    path = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
    found = shutil.which("mpiexec", path=path)
    if found is None:
        sys.exit('bench_distributed: no mpiexec: pip install ".[mpi]"')
    return found


def run_recipe(ranks: int, threads: int, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """One training run of one epoch; its numbers."""
    out = work / f"r{ranks}t{threads}-{time.monotonic_ns()}"
    cmd = [sys.executable, "-m", "rnncore", "train", "lm", "--data", str(args.data)]
    cmd += ["--out", str(out), "--threads", str(threads), "--no-progress", "--epochs", "1"]
    cmd += ["--max-batches", str(args.batches), "--max-eval-batches", "2"]
    cmd += ["--batch-size", str(args.batch_size), "--eval-batch-size", "10"]
    if ranks > 1:
        cmd = [_mpiexec(), "-n", str(ranks), *cmd]
    load = os.getloadavg()[0]
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        sys.exit(f"bench_distributed: {' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}")
    metrics = json.loads((out / "metrics.json").read_text())
    shutil.rmtree(out, ignore_errors=True)
    row = metrics["history"][-1]
    return {
        "items_per_s": row["tokens_per_s"],
        "train_seconds": row["train_seconds"],
        "steps": row["steps"],
        "allreduce_seconds": row.get("allreduce_seconds", 0.0),
        "parameters": metrics["parameters"],
        "world_size": metrics["world_size"],
        "load_before": load,  # the 1-minute load average: other work on the machine
    }


def measure(args: argparse.Namespace) -> dict[str, Any]:
    configs = {"1 process x 2 threads": (1, 2), "2 ranks x 1 thread": (2, 1)}
    configs["1 process x 1 thread"] = (1, 1)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in configs}
    with tempfile.TemporaryDirectory(prefix="rnncore-dist-bench-") as tmp:
        for _ in range(args.repeats):  # interleaved, so that a busy spell hits every config
            for name, (ranks, threads) in configs.items():
                runs[name].append(run_recipe(ranks, threads, args, Path(tmp)))
                print(f"  {name}: {runs[name][-1]['items_per_s']:.0f} items/s", flush=True)
    summary = {}
    for name, rs in runs.items():
        share = [r["allreduce_seconds"] / r["train_seconds"] for r in rs]
        summary[name] = {
            "items_per_s": statistics.median(r["items_per_s"] for r in rs),
            "items_per_s_best": max(r["items_per_s"] for r in rs),
            "items_per_s_runs": [r["items_per_s"] for r in rs],
            "load_before_runs": [r["load_before"] for r in rs],
            "step_seconds": statistics.median(r["train_seconds"] / r["steps"] for r in rs),
            "allreduce_share": statistics.median(share),
            "allreduce_seconds_per_step": statistics.median(
                r["allreduce_seconds"] / r["steps"] for r in rs
            ),
        }
    params = runs["2 ranks x 1 thread"][0]["parameters"]
    return {"configs": summary, "parameters": params, "probe": run_probe(params)}


def run_probe(params: int) -> dict[str, Any]:
    """Part 2 under mpiexec -n 2: rank 0's PROBE line."""
    cmd = [_mpiexec(), "-n", "2", sys.executable, __file__, "--probe", str(params)]
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    lines = [x for x in proc.stdout.splitlines() if x.startswith("PROBE ")]
    if proc.returncode != 0 or not lines:
        sys.exit(f"bench_distributed: the allreduce probe failed:\n{proc.stdout}\n{proc.stderr}")
    return json.loads(lines[0][6:])


# ---- part 3: the cost model --------------------------------------------------------------------
def ring_allreduce_seconds(n_bytes: float, ranks: int, gbps: float) -> float:
    """Ring allreduce (reduce-scatter + allgather): each rank sends and receives
    2 (N-1)/N of the buffer, in 2 (N-1) steps of one message latency each."""
    return 2 * (ranks - 1) / ranks * n_bytes * 8 / (gbps * 1e9) + 2 * (ranks - 1) * LATENCY_S


def task_models() -> list[dict[str, Any]]:
    """Each recipe's model size and measured training speed, from quality_*.json."""
    out = []
    for f in sorted(glob.glob(str(RESULTS / "quality_*.json"))):
        d = json.loads(Path(f).read_text())
        recipe = d.get("recipe", Path(f).stem[8:])
        runs = list(d["runs"].values()) if "runs" in d else [d]
        run = max(runs, key=lambda r: r.get("parameters", 0))  # the larger model of a pair
        hist = run.get("history") or []
        speeds = [h["tokens_per_s"] for h in hist if h.get("tokens_per_s")]
        steps = [h["steps"] for h in hist if h.get("steps")]
        if not speeds or not run.get("parameters"):
            continue
        per_s = statistics.median(speeds)
        h0 = hist[0]
        items_per_step = h0["tokens_per_s"] * h0["train_seconds"] / h0["steps"] if steps else None
        threads = (d.get("machine") or {}).get("threads") or run.get("threads")
        out.append(
            {
                "recipe": recipe,
                "parameters": int(run["parameters"]),
                "items_per_s": per_s,
                "seconds_per_item": 1.0 / per_s,
                "items_per_step": items_per_step,
                "unit": UNITS.get(recipe, "items"),
                "threads": threads,
            }
        )
    return out


def cost_model(models: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for m in models:
        nbytes = 4 * m["parameters"]  # float32 gradients
        row = dict(m, bytes=nbytes, allreduce_s={}, hide_batch={})
        for n in RANKS:
            for bw in BANDWIDTHS_GBPS:
                t = ring_allreduce_seconds(nbytes, n, bw)
                row["allreduce_s"][f"{n}x{bw}"] = t
                row["hide_batch"][f"{n}x{bw}"] = t / m["seconds_per_item"]
        rows.append(row)
    return rows


# ---- report ------------------------------------------------------------------------------------
def _ms(s: float) -> str:
    return f"{s * 1e3:.3g}"


def write_report(measured: dict[str, Any], rows: list[dict[str, Any]], args) -> str:
    c = measured["configs"]
    two, one2, one1 = c["2 ranks x 1 thread"], c["1 process x 2 threads"], c["1 process x 1 thread"]
    p = measured["probe"]
    lines = [
        "# Data-parallel training on MPI",
        "",
        f"Written by `python bench/bench_distributed.py --batches {args.batches} --repeats "
        f"{args.repeats}` on {platform.node() or 'this machine'} ({os.cpu_count()} cores, shared "
        f"with other work: read the times as upper bounds), {time.strftime('%Y-%m-%d')}, "
        f"{p['library']}.",
        "",
        "## This machine: 2 ranks x 1 thread against 1 process x 2 threads",
        "",
        f"PTB language model, the lm task's recipe (2 x 200 LSTM, {measured['parameters']:,} "
        f"parameters, global batch {args.batch_size} x BPTT 20), {args.batches} training "
        f"batches, median of {args.repeats} interleaved runs. Items are tokens.",
        "",
        "| configuration | tokens/s, median | tokens/s, best | each run (load avg before) "
        "| s per step | allreduce s per step | allreduce share |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, v in c.items():
        each = ", ".join(
            f"{x:.0f} ({la:.1f})"
            for x, la in zip(v["items_per_s_runs"], v["load_before_runs"], strict=True)
        )
        lines.append(
            f"| {name} | {v['items_per_s']:.0f} | {v['items_per_s_best']:.0f} | {each} | "
            f"{v['step_seconds']:.4f} | {v['allreduce_seconds_per_step']:.4f} | "
            f"{100 * v['allreduce_share']:.1f}% |"
        )
    lines += [
        "",
        f"- 2 ranks x 1 thread / 1 process x 2 threads: "
        f"{two['items_per_s_best'] / one2['items_per_s_best']:.2f}x the throughput best "
        f"against best (the quietest runs), {two['items_per_s'] / one2['items_per_s']:.2f}x "
        "median against median; "
        f"2 ranks / 1 process x 1 thread: {two['items_per_s'] / one1['items_per_s']:.2f}x "
        f"(best {two['items_per_s_best'] / one1['items_per_s_best']:.2f}x); 1 process at 2 "
        f"threads / 1 thread: {one2['items_per_s'] / one1['items_per_s']:.2f}x (best "
        f"{one2['items_per_s_best'] / one1['items_per_s_best']:.2f}x). A load average above 2 "
        "before a run means other work shared the 2 cores with it.",
        f"- Rank 0 spends {100 * two['allreduce_share']:.1f}% of its training time in the "
        "gradient allreduce, waiting for the other rank included.",
        f"- The allreduce alone ({p['bytes'] / 1e6:.1f} MB of float32 gradient, 2 ranks, after a "
        f"barrier): {_ms(p['rnncore_allreduce_s'])} ms through rnncore's GradientReducer, "
        f"{_ms(p['mpi_allreduce_s'])} ms for MPI's allreduce of the same buffer (the rest is "
        "rnncore's staging copies, scaled by the item count).",
        *_overlap_lines(p.get("overlap")),
        "",
        "## N machines: a cost model",
        "",
        "Ring allreduce of every task model's float32 gradient: "
        "t = 2 (N-1)/N x bytes / bandwidth + 2 (N-1) x "
        f"{LATENCY_S * 1e6:.0f} us (one TCP message latency per ring step). Parameters and "
        "measured items/s come from bench/results/quality_*.json (this machine, the recipe's "
        "threads: 2 for adding, 1 otherwise). 'Hides at' is the per-rank batch (in the "
        "recipe's items) whose compute time equals t: with the allreduce overlapped with "
        "backward it would hide there; rnncore does not overlap yet, so there communication is "
        "half of each step and takes a tenth of it only at 9x that batch.",
        "",
        "Allreduce time (ms) with N = 8 ranks, and the batch per rank at which it hides:",
        "",
        "| recipe | parameters | MB | items/s (1 rank) | recipe's items/step | "
        + " | ".join(f"{bw} Gb/s ms" for bw in BANDWIDTHS_GBPS)
        + " | "
        + " | ".join(f"hides at, {bw} Gb/s" for bw in BANDWIDTHS_GBPS)
        + " | unit |",
        "|---|---|---|---|---|" + "---|" * (2 * len(BANDWIDTHS_GBPS)) + "---|",
    ]
    for r in rows:
        step = f"{r['items_per_step']:.0f}" if r["items_per_step"] else "-"
        lines.append(
            f"| {r['recipe']} | {r['parameters']:,} | {r['bytes'] / 1e6:.2f} | "
            f"{r['items_per_s']:.0f} | {step} | "
            + " | ".join(_ms(r["allreduce_s"][f"8x{bw}"]) for bw in BANDWIDTHS_GBPS)
            + " | "
            + " | ".join(f"{r['hide_batch'][f'8x{bw}']:.0f}" for bw in BANDWIDTHS_GBPS)
            + f" | {r['unit']} |"
        )
    big = max(rows, key=lambda r: r["parameters"])
    lines += [
        "",
        "How N changes it: the bandwidth term grows from 1x (N = 2) to 2x (N large) the "
        "buffer's transfer time, the latency term linearly. For the largest model "
        f"({big['recipe']}, {big['bytes'] / 1e6:.1f} MB), in ms at 10 / 25 / 100 Gb/s: "
        + "; ".join(
            f"N = {n}: "
            + " / ".join(_ms(big["allreduce_s"][f"{n}x{bw}"]) for bw in BANDWIDTHS_GBPS)
            for n in RANKS
        )
        + ".",
        "",
        _reading(rows),
        "",
    ]
    return "\n".join(lines)


def _overlap_lines(o: dict[str, float] | None) -> list[str]:
    if not o:
        return []
    gain = o["sequential_s"] / o["overlapped_s"]
    verdict = (
        "overlapping pays here"
        if gain > 1.05
        else "overlapping does not pay here: both ranks keep the 2 cores busy with compute, and "
        "Open MPI moves a nonblocking allreduce's data only inside MPI calls (no progress "
        "thread), so the transfer still happens in the final wait. It pays on machines with a "
        "core or a NIC free to progress the transfer while the engine computes"
    )
    return [
        f"- Overlap with backward, the upper bound (a nonblocking allreduce of the gradient "
        f"started before a rank's training step on its slice, 10 x 20 tokens, and waited for "
        f"after it): {_ms(o['overlapped_s'])} ms against {_ms(o['sequential_s'])} ms in "
        f"sequence (step alone {_ms(o['step_s'])} ms, allreduce alone "
        f"{_ms(o['allreduce_s'])} ms): {gain:.2f}x, so {verdict}.",
    ]


def _reading(rows: list[dict[str, Any]]) -> str:
    """What the table says, from its numbers: which recipes' own batch, split over 8 ranks,
    already covers the hiding batch."""
    parts = []
    for bw in BANDWIDTHS_GBPS:
        ok = [
            r["recipe"]
            for r in rows
            if r["items_per_step"] and r["items_per_step"] / 8 >= r["hide_batch"][f"8x{bw}"]
        ]
        parts.append(f"{bw} Gb/s: {len(ok)} of {len(rows)} ({', '.join(ok) or 'none'})")
    mb = [r["bytes"] / 1e6 for r in rows]
    return (
        f"Reading it: the gradients are {min(mb):.2f} to {max(mb):.1f} MB. With N = 8, the "
        "recipe's own global batch split 8 ways reaches the batch at which an overlapped "
        "allreduce would hide at " + "; ".join(parts) + ". The compute times are those of "
        "this small VM at 1 thread (2 for adding): a faster rank (more threads, a GPU) needs a "
        "proportionally larger batch. Most of the bytes of the text models are the dense "
        "embedding and output-layer gradients; sending only the embedding rows a batch "
        "touched, and overlapping the allreduce with backward, are the two levers left."
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="PTB folder")
    ap.add_argument("--batches", type=int, default=80, help="training batches per run")
    ap.add_argument("--batch-size", type=int, default=20, help="global batch (sequences)")
    ap.add_argument("--repeats", type=int, default=3, help="runs per configuration")
    ap.add_argument(
        "--report-only",
        action="store_true",
        help="rewrite distributed.md from distributed.json (no runs)",
    )
    ap.add_argument(
        "--probe-only",
        action="store_true",
        help="rerun part 2 (the allreduce and overlap probe) into distributed.json, rewrite the md",
    )
    ap.add_argument("--probe", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.probe is not None:
        probe(args.probe, repeats=20)
        return
    if args.probe_only:
        blob = json.loads((RESULTS / "distributed.json").read_text())
        blob["measured"]["probe"] = run_probe(blob["measured"]["parameters"])
        saved = argparse.Namespace(**blob["options"])
        report = write_report(blob["measured"], blob["cost_model"], saved)
        (RESULTS / "distributed.md").write_text(report, encoding="utf-8")
        (RESULTS / "distributed.json").write_text(json.dumps(blob, indent=1) + "\n")
        print(report)
        return
    if args.report_only:
        blob = json.loads((RESULTS / "distributed.json").read_text())
        saved = argparse.Namespace(**blob["options"])
        report = write_report(blob["measured"], blob["cost_model"], saved)
        (RESULTS / "distributed.md").write_text(report, encoding="utf-8")
        print(report)
        return
    if not (args.data / "ptb.train.txt").is_file():
        sys.exit(f"bench_distributed: no PTB at {args.data} (--data)")
    start = time.perf_counter()
    measured = measure(args)
    rows = cost_model(task_models())
    RESULTS.mkdir(exist_ok=True)
    report = write_report(measured, rows, args)
    (RESULTS / "distributed.md").write_text(report, encoding="utf-8")
    blob = {
        "measured": measured,
        "cost_model": rows,
        "latency_s": LATENCY_S,
        "options": vars(args) | {"data": str(args.data)},
        "wall_seconds": time.perf_counter() - start,
    }
    (RESULTS / "distributed.json").write_text(json.dumps(blob, indent=1) + "\n", encoding="utf-8")
    print(report)


if __name__ == "__main__":
    main()
