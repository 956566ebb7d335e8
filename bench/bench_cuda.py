"""rnncore's CUDA backend against torch.nn (cuDNN) on the same GPU (issue 20).

For the medium, large and long shapes of bench_rnn.py and batch 1 (b1_latency), LSTM and GRU:
a training step (forward + backward through a dense dy) and an inference forward, each timed as
the median of ``--reps`` runs after warm-ups, alternating the subjects: rnncore.torch's layer on
CUDA tensors (nothing leaves the GPU: the like-for-like comparison with torch.nn), and
rnncore.nn's numpy layer (x, y, dy, dx copied to and from the GPU and the parameters uploaded
every call, so its column shows what the copies cost), and the same layer on rnncore.cuda
DeviceArrays (only the parameters cross). Then a whole language model's training step
(LanguageModel moved whole to the GPU, Adam and clipping there) against the same model in
torch.nn. Writes bench/results/cuda.{json,md}.

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
    import rnncore.torch as rt

    ours = (nn.LSTM if cell == "lstm" else nn.GRU)(cfg.I, cfg.H, seed=0, device=device)
    tdev = "cuda" if device == "cuda" else "cpu"
    theirs = (torch.nn.LSTM if cell == "lstm" else torch.nn.GRU)(cfg.I, cfg.H).to(tdev)
    ours_t = (rt.LSTM if cell == "lstm" else rt.GRU)(cfg.I, cfg.H).to(tdev)
    if device != "cuda":  # the smoke run: the same device calls on host memory
        ours_t._cpu_engine_device = device
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

    # The same rnncore.nn layer on device arrays: x, y, dy, dx stay on the GPU; the parameters
    # still go up (and the gradients down) every call.
    xd, dyd = rnncore.cuda.to_device(x, device), rnncore.cuda.to_device(dy, device)

    def ours_dev_train() -> None:
        ours.train()
        ours.zero_grad()
        ours(xd)
        ours.backward(dyd)
        rnncore.cuda.synchronize(device)

    def ours_dev_infer() -> None:
        ours.eval()
        ours(xd)
        rnncore.cuda.synchronize(device)

    def torch_train(layer):
        def step() -> None:
            layer.zero_grad()
            y, _ = layer(tx)
            y.backward(tdy)
            sync()

        return step

    def torch_infer(layer):
        def step() -> None:
            with torch.no_grad():
                layer(tx)
            sync()

        return step

    row = {"config": cfg.name, "cell": cell, "T": cfg.T, "B": cfg.B, "I": cfg.I, "H": cfg.H}
    for mode, subjects in (
        ("train", (ours_train, torch_train(ours_t), torch_train(theirs), ours_dev_train)),
        ("infer", (ours_infer, torch_infer(ours_t), torch_infer(theirs), ours_dev_infer)),
    ):
        times: list[list[float]] = [[], [], [], []]
        for _ in range(3):  # alternating rounds: a busy spell hits every subject
            for fn, ts in zip(subjects, times, strict=True):
                ts.append(_time(fn, reps))
        row[f"{mode}_rnncore_s"] = min(times[0])
        row[f"{mode}_rt_s"] = min(times[1])
        row[f"{mode}_torch_s"] = min(times[2])
        row[f"{mode}_ratio"] = min(times[2]) / min(times[1])  # > 1: rnncore is faster
        row[f"{mode}_numpy_ratio"] = min(times[2]) / min(times[0])
        row[f"{mode}_device_array_ratio"] = min(times[2]) / min(times[3])
    return row


#: Language-model training steps (V, E=H, layers, T, B): Zaremba et al.'s medium PTB model, and
#: a tiny one for the smoke run.
LM_SHAPES = {"ptb_medium": (10000, 650, 2, 35, 20)}
LM_SMOKE = {"smoke_lm": (50, 8, 2, 5, 3)}


def measure_lm(name: str, shape: tuple, device: str, reps: int) -> dict:
    """One training step of a whole language model (embedding, 2-layer LSTM, output layer,
    cross-entropy, global-norm clipping, Adam): rnncore's LanguageModel moved whole to the GPU
    (parameters, gradients and optimizer state in device memory) against the same model in
    torch.nn on the same GPU."""
    import torch
    from rnncore import optim
    from rnncore.models import LanguageModel

    V, E, L, T, B = shape
    tdev = "cuda" if device == "cuda" else "cpu"
    rng = np.random.default_rng(0)
    batch = (rng.integers(0, V, (T, B)), rng.integers(0, V, (T, B)))
    model = LanguageModel(V, E, E, num_layers=L, seed=0).to(device)
    opt = optim.Adam(model.parameters(), lr=1e-3)

    def ours() -> None:
        model.zero_grad()
        model.training_step(batch)
        optim.clip_grad_norm(model.parameters(), 0.25)
        opt.step()
        rnncore.cuda.synchronize(device)

    class TorchLM(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = torch.nn.Embedding(V, E)
            self.rnn = torch.nn.LSTM(E, E, L)
            self.out = torch.nn.Linear(E, V)

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            return self.out(self.rnn(self.emb(ids))[0])

    tm = TorchLM().to(tdev)
    topt = torch.optim.Adam(tm.parameters(), lr=1e-3)
    tx, ty = (torch.from_numpy(a).to(tdev) for a in batch)

    def theirs() -> None:
        topt.zero_grad()
        loss = torch.nn.functional.cross_entropy(tm(tx).reshape(-1, V), ty.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(tm.parameters(), 0.25)
        topt.step()
        if tdev == "cuda":
            torch.cuda.synchronize()

    times: list[list[float]] = [[], []]
    for _ in range(3):
        for fn, ts in zip((ours, theirs), times, strict=True):
            ts.append(_time(fn, reps))
    return {
        "config": name,
        "V": V,
        "E": E,
        "layers": L,
        "T": T,
        "B": B,
        "rnncore_s": min(times[0]),
        "torch_s": min(times[1]),
        "ratio": min(times[1]) / min(times[0]),
    }


def report(rows: list[dict], device_name: str, torch_version: str) -> str:
    lines = [
        "# rnncore's CUDA backend against torch.nn (cuDNN)",
        "",
        f"`python bench/bench_cuda.py` on {device_name}, torch {torch_version}, "
        f"{time.strftime('%Y-%m-%d')}. Float32, one layer, one direction; the best of three "
        "alternating rounds of medians. rnncore.torch: rnncore's layer on torch CUDA tensors "
        "(nothing leaves the GPU, as for torch.nn); numpy: rnncore.nn's layer, whose time "
        "includes copying x, y, dy, dx and the parameters between host and GPU every call; "
        "device arrays: the same layer on rnncore.cuda.DeviceArray x and dy (only the "
        "parameters and their gradients cross). Ratio = torch time / rnncore.torch time "
        "(> 1: rnncore is faster); numpy and device-array ratios = torch time / that layer's.",
        "",
        "| shape | cell | T x B x I -> H | train rnncore.torch ms | train torch ms | train ratio "
        "| train numpy ratio | train device-array ratio | infer rnncore.torch ms | infer torch ms "
        "| infer ratio | infer numpy ratio | infer device-array ratio |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['config']} | {r['cell']} | {r['T']} x {r['B']} x {r['I']} -> {r['H']} | "
            f"{1e3 * r['train_rt_s']:.2f} | {1e3 * r['train_torch_s']:.2f} | "
            f"{r['train_ratio']:.2f}x | {r['train_numpy_ratio']:.2f}x | "
            f"{r['train_device_array_ratio']:.2f}x | "
            f"{1e3 * r['infer_rt_s']:.2f} | {1e3 * r['infer_torch_s']:.2f} | "
            f"{r['infer_ratio']:.2f}x | {r['infer_numpy_ratio']:.2f}x | "
            f"{r['infer_device_array_ratio']:.2f}x |"
        )
    return "\n".join(lines) + "\n"


def report_lm(rows: list[dict]) -> str:
    lines = [
        "",
        "## A whole language model's training step",
        "",
        "Embedding -> LSTM layers -> output layer -> cross-entropy -> clip_grad_norm(0.25) -> "
        "Adam, float32: rnncore's LanguageModel moved whole to the GPU (`model.to('cuda')`: "
        "parameters, gradients and optimizer state in device memory) against the same model in "
        "torch.nn (cuDNN). Ratio = torch time / rnncore time (> 1: rnncore is faster).",
        "",
        "| shape | V | E = H | layers | T x B | rnncore ms | torch ms | ratio |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['config']} | {r['V']} | {r['E']} | {r['layers']} | {r['T']} x {r['B']} | "
            f"{1e3 * r['rnncore_s']:.2f} | {1e3 * r['torch_s']:.2f} | {r['ratio']:.2f}x |"
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
    lm_rows = []
    for name, shape in (LM_SMOKE if args.smoke else LM_SHAPES).items():
        lm_rows.append(measure_lm(name, shape, device, reps))
        print(f"  {name} language model: {lm_rows[-1]['ratio']:.2f}x", flush=True)
    text = report(rows, device_name, torch.__version__) + report_lm(lm_rows)
    print(text)
    if not args.smoke:
        args.out.parent.mkdir(exist_ok=True)
        args.out.with_suffix(".md").write_text(text, encoding="utf-8")
        blob = {"rows": rows, "lm": lm_rows, "device": device_name, "torch": torch.__version__}
        args.out.with_suffix(".json").write_text(json.dumps(blob, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
