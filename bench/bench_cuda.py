"""rnncore's CUDA backend against torch.nn (cuDNN) on the same GPU (issue 20).

For the medium, large and long shapes of bench_rnn.py and batch 1 (b1_latency), LSTM and GRU:
a training step (forward + backward through a dense dy) and an inference forward, each timed as
the median of ``--reps`` runs after warm-ups, alternating the two libraries. rnncore's layers
take numpy arrays and return numpy arrays (copied to and from the GPU every call, parameters
uploaded every call); torch's tensors stay on the GPU, so the copies are part of rnncore's time
and the ratio shows what they cost. Writes bench/results/cuda.{json,md}.

    python bench/bench_cuda.py                 # needs a GPU and a CUDA build of rnncore
    python bench/bench_cuda.py --smoke         # the script itself, on the CPU (device cuda-sim)

Without a visible GPU it says so and exits 0 without writing results.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_rnn as br  # noqa: E402  (the shapes and the machine description)
import rnncore  # noqa: E402
from rnncore import nn  # noqa: E402

SHAPES = ("medium", "large", "long", "b1_latency")
SMOKE = (br.Config("smoke", 1, False, 3, 5, 4, 6), br.Config("smoke_b1", 1, False, 1, 5, 4, 6))


def _time(fn, reps: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def measure(cfg: br.Config, cell: str, device: str, reps: int) -> dict:
    import torch

    rng = np.random.default_rng(0)
    x = rng.standard_normal((cfg.T, cfg.B, cfg.I)).astype(np.float32)
    dy = rng.standard_normal((cfg.T, cfg.B, cfg.H)).astype(np.float32)
    ours = (nn.LSTM if cell == "lstm" else nn.GRU)(cfg.I, cfg.H, seed=0, device=device)
    tdev = "cuda" if device == "cuda" else "cpu"
    theirs = (torch.nn.LSTM if cell == "lstm" else torch.nn.GRU)(cfg.I, cfg.H).to(tdev)
    tx = torch.from_numpy(x).to(tdev).requires_grad_(True)
    tdy = torch.from_numpy(dy).to(tdev)

    def sync() -> None:
        if tdev == "cuda":
            torch.cuda.synchronize()

    def ours_train() -> None:
        ours.train()
        ours.zero_grad()
        y, _ = ours(x)
        ours.backward(dy)

    def ours_infer() -> None:
        ours.eval()
        ours(x)

    def theirs_train() -> None:
        theirs.zero_grad()
        y, _ = theirs(tx)
        y.backward(tdy)
        sync()

    def theirs_infer() -> None:
        with torch.no_grad():
            theirs(tx)
        sync()

    row = {"config": cfg.name, "cell": cell, "T": cfg.T, "B": cfg.B, "I": cfg.I, "H": cfg.H}
    for mode, a, b in (("train", ours_train, theirs_train), ("infer", ours_infer, theirs_infer)):
        ta, tb = [], []
        for _ in range(3):  # alternating rounds: a busy spell hits both
            ta.append(_time(a, reps))
            tb.append(_time(b, reps))
        row[f"{mode}_rnncore_s"] = min(ta)
        row[f"{mode}_torch_s"] = min(tb)
        row[f"{mode}_ratio"] = min(tb) / min(ta)  # > 1: rnncore is faster
    return row


def report(rows: list[dict], device_name: str, torch_version: str) -> str:
    lines = [
        "# rnncore's CUDA backend against torch.nn (cuDNN)",
        "",
        f"`python bench/bench_cuda.py` on {device_name}, torch {torch_version}, "
        f"{time.strftime('%Y-%m-%d')}. Float32, one layer, one direction; the best of three "
        "alternating rounds of medians. rnncore's time includes copying x, y, dy, dx and the "
        "parameters between host and GPU on every call (numpy in and out); torch's tensors stay "
        "on the GPU. Ratio = torch time / rnncore time (> 1: rnncore is faster).",
        "",
        "| shape | cell | T x B x I -> H | train rnncore ms | train torch ms | train ratio "
        "| infer rnncore ms | infer torch ms | infer ratio |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['config']} | {r['cell']} | {r['T']} x {r['B']} x {r['I']} -> {r['H']} | "
            f"{1e3 * r['train_rnncore_s']:.2f} | {1e3 * r['train_torch_s']:.2f} | "
            f"{r['train_ratio']:.2f}x | {1e3 * r['infer_rnncore_s']:.2f} | "
            f"{1e3 * r['infer_torch_s']:.2f} | {r['infer_ratio']:.2f}x |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=10, help="timed runs per median")
    ap.add_argument("--smoke", action="store_true", help="tiny shapes on device cuda-sim (CPU)")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "cuda")
    args = ap.parse_args(argv)
    import torch

    if args.smoke:
        device, configs, reps = "cuda-sim", SMOKE, 2
        device_name = "the CPU (cuda-sim smoke run, not a measurement)"
    else:
        if not rnncore.cuda.is_available():
            why = "no CUDA device is visible" if rnncore.cuda.is_built() else "no CUDA backend"
            print(f"bench_cuda: {why} (rnncore.cuda.is_available() is False): nothing measured")
            return 0
        if not torch.cuda.is_available():
            print("bench_cuda: this torch has no CUDA: install a CUDA build of torch to compare")
            return 0
        device, reps = "cuda", args.reps
        configs = [c for c in br.CONFIGS if c.name in SHAPES]
        device_name = torch.cuda.get_device_name(0)
    rows = []
    for cfg in configs:
        for cell in ("lstm", "gru"):
            rows.append(measure(cfg, cell, device, reps))
            r = rows[-1]
            ratios = f"train {r['train_ratio']:.2f}x, infer {r['infer_ratio']:.2f}x"
            print(f"  {cfg.name} {cell}: {ratios}", flush=True)
    text = report(rows, device_name, torch.__version__)
    print(text)
    if not args.smoke:
        args.out.parent.mkdir(exist_ok=True)
        args.out.with_suffix(".md").write_text(text, encoding="utf-8")
        blob = {"rows": rows, "device": device_name, "torch": torch.__version__}
        args.out.with_suffix(".json").write_text(json.dumps(blob, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
