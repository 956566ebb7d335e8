"""Benchmark rnncore against PyTorch on the CPU: inference and training-step speed in one run.

Reports the median time, tokens/s, GFLOP/s, the fraction of the sgemm peak and
the speedup over PyTorch.

Both libraries run in one process, on the same shapes, the same input and (via
state_dict) the same weights, one repetition each in turn (rnncore, torch,
rnncore, ...), so that drift in clock speed or background load hits both.
Every cell is warmed up, then repeated until about --target-s seconds have been
spent on it; the median repetition is reported.

    python bench/bench_rnn.py                 # full run, threads 1 and 2
    python bench/bench_rnn.py --quick         # smoke test: small shapes, few reps
    python bench/bench_rnn.py --configs small,medium --cells lstm --threads 1

FLOPs (multiply-add = 2) per layer l and direction, forward:
    2 * tokens * (I_l + H) * G * H,  G = 1 (RNN), 4 (LSTM), 3 (GRU),
    I_l = I for layer 0 and D*H above; tokens = B*T (sum(lengths) for ragged).
A training step (forward + backward with input and weight gradients) counts 3x.
The peak is the float32 GEMM rate (n x n @ n x n, fastest of 10) measured in the
same run with numpy and torch at the same thread count; the better of the two is used.
See bench/README.md for the columns.
"""

from __future__ import annotations

import argparse
import ctypes
import datetime
import gc
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent

# name on the command line -> (class name in rnncore.nn and torch.nn, gates G)
CELLS: dict[str, tuple[str, int]] = {"rnn": ("RNN", 1), "lstm": ("LSTM", 4), "gru": ("GRU", 3)}
ALL_CELLS = ("rnn", "lstm", "gru")
RAGGED_SEED = 1234
INPUT_SEED = 0


@dataclass(frozen=True)
class Config:
    name: str
    layers: int
    bidirectional: bool
    B: int
    T: int
    I: int  # noqa: E741 - the layout legend's name for the input size
    H: int
    cells: tuple[str, ...] = ALL_CELLS
    train: bool = True  # False: inference only
    ragged: bool = False  # lengths uniform in [T // 10, T], seed RAGGED_SEED
    # Training with the loss at the last step only (a many-to-one classifier): the gradient
    # decays back through time, into denormal floats on long sequences.
    last_step_loss: bool = False

    @property
    def D(self) -> int:
        return 2 if self.bidirectional else 1


CONFIGS: tuple[Config, ...] = (
    Config("small", 1, False, 32, 50, 128, 128),
    Config("medium", 1, False, 64, 100, 512, 512),
    Config("large", 1, False, 32, 50, 1024, 1024),
    Config("long", 1, False, 16, 1000, 256, 256),
    Config("charlm", 2, False, 64, 100, 65, 512, cells=("lstm", "gru")),
    Config("bilstm_tagger", 2, True, 32, 40, 100, 256, cells=("lstm",)),
    Config("b1_latency", 1, False, 1, 100, 256, 256, train=False),
    Config("ragged", 1, True, 64, 100, 256, 256, cells=("lstm",), ragged=True),
    Config("m2o", 1, False, 64, 100, 256, 256, cells=("lstm", "gru"), last_step_loss=True),
    # The pixel-by-pixel digit classifier: 784 steps of one input, loss at the end.
    Config("pixel_m2o", 1, False, 64, 784, 1, 128, cells=("lstm",), last_step_loss=True),
)

# Python-overhead probe: one forward + backward call on a tiny LSTM.
TINY = Config("tiny", 1, False, 1, 1, 8, 8, cells=("lstm",))


def quick_config(cfg: Config) -> Config:
    """Same structure (layers, direction, raggedness), much smaller shapes."""
    return replace(cfg, B=min(cfg.B, 8), T=min(cfg.T, 20), I=min(cfg.I, 64), H=min(cfg.H, 64))


def ragged_lengths(cfg: Config) -> np.ndarray | None:
    """[B] int64 sequence lengths for ragged configs, None otherwise."""
    if not cfg.ragged:
        return None
    rng = np.random.default_rng(RAGGED_SEED)
    return rng.integers(max(1, cfg.T // 10), cfg.T + 1, size=cfg.B).astype(np.int64)


def forward_flops(cfg: Config, cell: str, tokens: int) -> float:
    """FLOPs of one forward pass over `tokens` time steps of batch entries."""
    gates = CELLS[cell][1]
    total = 0.0
    for layer in range(cfg.layers):
        in_size = cfg.I if layer == 0 else cfg.D * cfg.H
        total += cfg.D * 2.0 * tokens * (in_size + cfg.H) * gates * cfg.H
    return total


def make_input(cfg: Config) -> np.ndarray:
    """[T, B, I] float32, C-contiguous."""
    rng = np.random.default_rng(INPUT_SEED)
    return rng.standard_normal((cfg.T, cfg.B, cfg.I), dtype=np.float32)


# ---------------------------------------------------------------------------
# Library loading (both optional; at least one must be present)


def try_import_torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


def try_import_rnncore():
    try:
        import rnncore
        import rnncore.nn  # noqa: F401
    except ImportError as exc:
        return None, f"{type(exc).__name__}: {exc}"
    return rnncore, None


# ---------------------------------------------------------------------------
# One benchmark subject = one library on one (config, cell). It builds the
# layer once and hands out the callables that are timed.


@dataclass
class Case:
    """The callables timed for one library: `run` is timed, `prep` is not."""

    run: Callable[[], object]
    prep: Callable[[], None] | None = None


class RnncoreSubject:
    name = "rnncore"

    def __init__(self, rnncore, cfg: Config, cell: str, x: np.ndarray, lengths: np.ndarray | None):
        kwargs: dict = dict(num_layers=cfg.layers, bidirectional=cfg.bidirectional, seed=0)
        if cell == "rnn":
            kwargs["nonlinearity"] = "tanh"
        self.layer = getattr(rnncore.nn, CELLS[cell][0])(cfg.I, cfg.H, **kwargs)
        self.x = x
        self.lengths = lengths
        self.last_step_loss = cfg.last_step_loss

    def state_dict(self) -> dict[str, np.ndarray]:
        return {k: np.asarray(v) for k, v in self.layer.state_dict().items()}

    def output(self) -> np.ndarray:
        """Inference output [T, B, D*H] as numpy (for the cross-check)."""
        self.layer.eval()
        y, _ = self.layer(self.x, lengths=self.lengths)
        return np.asarray(y)

    def infer(self) -> Case:
        layer, x, lengths = self.layer, self.x, self.lengths
        layer.eval()

        def run():
            return layer(x, lengths=lengths)

        return Case(run)

    def train(self) -> Case:
        layer, x, lengths = self.layer, self.x, self.lengths
        layer.train()

        last = self.last_step_loss

        def run():
            y, _st = layer(x, lengths=lengths)
            if last:  # d(sum of y[T-1]) / dy
                dy = np.zeros_like(y)
                dy[-1] = 1.0
                return layer.backward(dy)
            return layer.backward(np.ones_like(y))

        return Case(run, layer.zero_grad)


class RnncoreInt8Subject:
    """rnncore's layer with int8_inference (int8 W_ih / W_hh products, as quantize_dynamic),
    inference only, with the float32 subject's weights."""

    name = "rnncore_int8"

    def __init__(self, rnncore, cfg: Config, cell: str, fp32: RnncoreSubject):
        self.sub = RnncoreSubject(rnncore, cfg, cell, fp32.x, fp32.lengths)
        self.sub.layer.load_state_dict(fp32.state_dict())
        self.sub.layer.int8_inference = True

    def output(self) -> np.ndarray:
        return self.sub.output()

    def infer(self) -> Case:
        return self.sub.infer()


class TorchSubject:
    name = "torch"

    def __init__(self, torch, cfg: Config, cell: str, x: np.ndarray, lengths: np.ndarray | None):
        self.torch = torch
        kwargs: dict = dict(num_layers=cfg.layers, bidirectional=cfg.bidirectional)
        if cell == "rnn":
            kwargs["nonlinearity"] = "tanh"
        self.module = getattr(torch.nn, CELLS[cell][0])(cfg.I, cfg.H, **kwargs)
        self.x = torch.from_numpy(x.copy())
        self.T = cfg.T
        self.lengths = None if lengths is None else torch.as_tensor(lengths, dtype=torch.int64)
        self.last_step_loss = cfg.last_step_loss

    def load(self, state: dict[str, np.ndarray]) -> None:
        tensors = {
            k: self.torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32))
            for k, v in state.items()
        }
        self.module.load_state_dict(tensors, strict=True)

    def _forward(self, x):
        """Padded output [T, B, D*H]; packing and unpacking are part of the work."""
        if self.lengths is None:
            y, _ = self.module(x)
            return y
        rnn_utils = self.torch.nn.utils.rnn
        packed = rnn_utils.pack_padded_sequence(x, self.lengths, enforce_sorted=False)
        out, _ = self.module(packed)
        y, _ = rnn_utils.pad_packed_sequence(out, total_length=self.T)
        return y

    def output(self) -> np.ndarray:
        self.module.eval()
        with self.torch.no_grad():
            return self._forward(self.x).numpy().copy()

    def infer(self) -> Case:
        self.module.eval()
        torch, x = self.torch, self.x

        def run():
            with torch.no_grad():
                return self._forward(x)

        return Case(run)

    def train(self) -> Case:
        self.module.train()
        module = self.module
        x = self.x.detach().clone().requires_grad_(True)  # dx is computed, as in rnncore

        def prep():
            module.zero_grad(set_to_none=True)
            x.grad = None

        last = self.last_step_loss

        def run():
            y = self._forward(x)
            (y[-1] if last else y).sum().backward()

        return Case(run, prep)


class TorchInt8Subject:
    """PyTorch's dynamically quantized int8 LSTM/GRU (torch.ao.quantization.quantize_dynamic:
    int8 weights, activations quantized per call), inference only: the reference issue 21 asks
    batch-1 latency to be compared with."""

    name = "torch_int8"

    def __init__(self, torch, fp32: TorchSubject):
        import warnings

        self.torch = torch
        self.x = fp32.x
        with warnings.catch_warnings():  # the torch.ao deprecation notice
            warnings.simplefilter("ignore")
            self.module = torch.ao.quantization.quantize_dynamic(
                torch.nn.Sequential(fp32.module).eval(),
                {torch.nn.LSTM, torch.nn.GRU},
                dtype=torch.qint8,
            )

    def infer(self) -> Case:
        torch, x, module = self.torch, self.x, self.module

        def run():
            with torch.no_grad():
                return module(x)

        return Case(run)


# ---------------------------------------------------------------------------
# Timing


@dataclass
class Plan:
    target_s: float  # time to spend per measured cell and library
    min_reps: int
    max_reps: int
    warmup_s: float  # warm up for at least one call and about this long
    fixed_reps: int | None = None


def time_call(case: Case) -> float:
    if case.prep is not None:
        case.prep()
    t0 = time.perf_counter()
    case.run()
    return time.perf_counter() - t0


def measure(cases: dict[str, Case], plan: Plan) -> dict[str, list[float]]:
    """Per-library repetition times (s), taken in turn: a, b, a, b, ...

    Warm-up also alternates. The repetition count is chosen per library from
    the last warm-up time, so a much slower library does not drag the faster
    one through hundreds of reps.
    """
    names = list(cases)
    estimate = {n: 0.0 for n in names}
    spent = {n: 0.0 for n in names}
    warm_done = {n: False for n in names}
    warm_calls = 0
    while not all(warm_done.values()):
        for n in names:
            if warm_done[n]:
                continue
            estimate[n] = time_call(cases[n])
            spent[n] += estimate[n]
            warm_done[n] = spent[n] >= plan.warmup_s or warm_calls >= 50
        warm_calls += 1

    if plan.fixed_reps is not None:
        reps = {n: plan.fixed_reps for n in names}
    else:
        reps = {
            n: int(
                min(
                    plan.max_reps,
                    max(plan.min_reps, math.ceil(plan.target_s / max(estimate[n], 1e-7))),
                )
            )
            for n in names
        }
    times: dict[str, list[float]] = {n: [] for n in names}
    while any(len(times[n]) < reps[n] for n in names):
        for n in names:
            if len(times[n]) < reps[n]:
                times[n].append(time_call(cases[n]))
    return times


def summarize_times(ts: list[float]) -> dict:
    qs = statistics.quantiles(ts, n=4) if len(ts) >= 2 else [ts[0]] * 3
    return {
        "median_s": statistics.median(ts),
        "min_s": min(ts),
        "p25_s": qs[0],
        "p75_s": qs[2],
        "reps": len(ts),
    }


# ---------------------------------------------------------------------------
# sgemm peak

_NUMPY_GEMM = """
import sys, time, numpy as np
n, reps = int(sys.argv[1]), int(sys.argv[2])
rng = np.random.default_rng(0)
a = rng.standard_normal((n, n), dtype=np.float32); b = rng.standard_normal((n, n), dtype=np.float32)
c = a @ b; c = a @ b
ts = []
for _ in range(reps):
    t0 = time.perf_counter(); np.matmul(a, b, out=c); ts.append(time.perf_counter() - t0)
print(min(ts))
"""


def numpy_gemm_gflops(threads: int, n: int, reps: int) -> float | None:
    """Best float32 GEMM rate of numpy's BLAS, in a child process so that
    the BLAS thread count can be set through the environment."""
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS"):
        env[var] = str(threads)
    try:
        out = subprocess.run(
            [sys.executable, "-c", _NUMPY_GEMM, str(n), str(reps)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=300,
        ).stdout
        return 2.0 * n**3 / float(out.strip()) / 1e9
    except (subprocess.SubprocessError, ValueError) as exc:
        print(f"  numpy sgemm peak failed: {exc}", file=sys.stderr)
        return None


def torch_gemm_gflops(torch, n: int, reps: int) -> float:
    g = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=g)
    b = torch.randn(n, n, generator=g)
    c = torch.empty(n, n)
    torch.mm(a, b, out=c)
    torch.mm(a, b, out=c)
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        torch.mm(a, b, out=c)
        ts.append(time.perf_counter() - t0)
    return 2.0 * n**3 / min(ts) / 1e9


# ---------------------------------------------------------------------------
# Peak memory of one training step, measured in a child process per library
# so that neither library's allocations (or allocator caches) pollute the other.

_MEM_METHOD = (
    "peak RSS during the first training step minus RSS just before it, in a fresh process at "
    "1 thread (layer, input and a tiny warm-up already resident; includes workspaces, outputs, "
    "dx and gradient buffers allocated on first use). VmHWM reset via /proc/self/clear_refs"
)


def _proc_status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def memory_worker(spec: dict) -> dict:
    """Runs in the child: build, warm up a tiny layer, then one training step."""
    cfg = Config(**{**spec["config"], "cells": tuple(spec["config"]["cells"])})
    cell, lib = spec["cell"], spec["lib"]
    if lib == "torch":
        torch = try_import_torch()
        torch.set_num_threads(1)
        make = lambda c, x, lens: TorchSubject(torch, c, cell, x, lens)  # noqa: E731
    else:
        rnncore, err = try_import_rnncore()
        if rnncore is None:
            raise RuntimeError(err)
        rnncore.set_num_threads(1)
        make = lambda c, x, lens: RnncoreSubject(rnncore, c, cell, x, lens)  # noqa: E731
    # Initialise thread pools, lazy buffers and autograd machinery first.
    tiny = replace(cfg, B=2, T=3, I=8, H=8)
    warm = make(tiny, make_input(tiny), ragged_lengths(tiny))
    case = warm.train()
    time_call(case)
    del warm, case
    subject = make(cfg, make_input(cfg), ragged_lengths(cfg))
    case = subject.train()
    if case.prep is not None:
        case.prep()
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current RSS
    rss0 = _proc_status_kb("VmRSS")
    case.run()
    hwm = _proc_status_kb("VmHWM")
    return {"peak_extra_mb": (hwm - rss0) / 1024.0, "baseline_rss_mb": rss0 / 1024.0}


def measure_memory(cfg: Config, cell: str, lib: str) -> dict | None:
    spec = {"config": asdict(cfg), "cell": cell, "lib": lib}
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = "1"
    try:
        proc = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "--_memory-worker", json.dumps(spec)],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if proc.returncode != 0:
            tail = proc.stderr.strip().splitlines()[-1:] or ["?"]
            print(f"  memory {cfg.name}/{cell}/{lib} failed: {tail[0]}", file=sys.stderr)
            return None
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except (subprocess.SubprocessError, ValueError) as exc:
        print(f"  memory {cfg.name}/{cell}/{lib} failed: {exc}", file=sys.stderr)
        return None


def memory_supported() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        _proc_status_kb("VmHWM")
        return True
    except OSError:
        return False


# ---------------------------------------------------------------------------
# Driver


def parse_list(text: str, allowed: tuple[str, ...], what: str) -> list[str]:
    items = [s.strip() for s in text.split(",") if s.strip()]
    bad = [s for s in items if s not in allowed]
    if bad:
        raise SystemExit(f"--{what}: unknown {bad}; choose from {', '.join(allowed)}")
    return items


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    names = tuple(c.name for c in CONFIGS)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", default="1,2", help="comma-separated thread counts (default 1,2)")
    p.add_argument(
        "--configs", default=",".join(names), help=f"comma-separated subset of {','.join(names)}"
    )
    p.add_argument(
        "--cells", default=",".join(ALL_CELLS), help="comma-separated subset of rnn,lstm,gru"
    )
    p.add_argument(
        "--reps",
        type=int,
        default=None,
        help="fixed timed reps per cell and library (default: adaptive)",
    )
    p.add_argument(
        "--target-s",
        type=float,
        default=None,
        help="seconds per cell and library (default 1.0, quick 0.05)",
    )
    p.add_argument("--quick", action="store_true", help="smoke test: small shapes, few reps")
    p.add_argument("--no-torch", action="store_true", help="time rnncore only")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurement")
    p.add_argument("--no-tiny", action="store_true", help="skip the Python-overhead probe")
    p.add_argument(
        "--options",
        action="store_true",
        help="also time the engine's fused options and the lecture's gated cells against the "
        "plain cell (training step, rnncore only; see OPTION_ROWS)",
    )
    p.add_argument("--json", default=str(HERE / "results" / "latest.json"), help="JSON output path")
    p.add_argument(
        "--md",
        default=str(HERE / "results" / "latest.md"),
        help="markdown output path ('' to skip)",
    )
    p.add_argument("--_memory-worker", dest="memory_worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.memory_worker is None:
        args.threads = [int(t) for t in args.threads.split(",") if t.strip()]
        if not args.threads or min(args.threads) < 1:
            p.error("--threads: need positive integers, e.g. 1,2")
        args.configs = parse_list(args.configs, names, "configs")
        args.cells = parse_list(args.cells, ALL_CELLS, "cells")
        if args.reps is not None and args.reps < 1:
            p.error("--reps: must be >= 1")
    return args


def set_threads(n: int, rnncore, torch) -> None:
    if rnncore is not None:
        rnncore.set_num_threads(n)
    if torch is not None:
        torch.set_num_threads(n)


def cross_check(
    cfg: Config, a: np.ndarray, b: np.ndarray, lengths: np.ndarray | None
) -> float | None:
    """Max |a - b| over the valid (non-padding) outputs; None if shapes differ or not finite."""
    if a.shape != b.shape:
        return None
    diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
    if lengths is not None:
        valid = np.arange(cfg.T)[:, None] < lengths[None, :]  # [T, B]
        diff = diff[valid]
    worst = float(diff.max()) if diff.size else 0.0
    return worst if math.isfinite(worst) else None


def fmt(v: float | None, spec: str) -> str:
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, spec)


def geomean(xs: list[float]) -> float | None:
    xs = [x for x in xs if x is not None and x > 0]
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else None


def measure_peak(threads: int, torch, quick: bool) -> dict:
    """Best sgemm rate (GFLOP/s) of numpy and of torch at `threads`; the higher is 100 %."""
    n, reps = (512, 5) if quick else (2048, 10)
    p_np = numpy_gemm_gflops(threads, n, reps)
    p_t = None
    if torch is not None:
        torch.set_num_threads(threads)
        p_t = torch_gemm_gflops(torch, n, reps)
    rates = [v for v in (p_np, p_t) if v is not None]
    print(
        f"sgemm peak {n}x{n}, {threads} thread(s): numpy {fmt(p_np, '.1f')}, "
        f"torch {fmt(p_t, '.1f')} GFLOP/s"
    )
    return {
        "n": n,
        "reps": reps,
        "numpy_gflops": p_np,
        "torch_gflops": p_t,
        "best_gflops": max(rates, default=None),
    }


def bench_cell(
    cfg: Config, cell: str, threads: int, rnncore, torch, plan: Plan, peak: float | None
) -> list[dict]:
    """Result rows (infer, and train unless inference-only) for one configuration and cell."""
    x = make_input(cfg)
    lengths = ragged_lengths(cfg)
    tokens = int(lengths.sum()) if lengths is not None else cfg.B * cfg.T
    subjects: dict = {}
    if rnncore is not None:
        subjects["rnncore"] = RnncoreSubject(rnncore, cfg, cell, x, lengths)
    if torch is not None:
        subjects["torch"] = TorchSubject(torch, cfg, cell, x, lengths)
    diff = None
    if len(subjects) == 2:
        subjects["torch"].load(subjects["rnncore"].state_dict())
        outs = [subjects[k].output() for k in ("rnncore", "torch")]
        diff = cross_check(cfg, *outs, lengths)
        if diff is None or diff > 1e-3:
            msg = f"outputs differ, max |diff| = {diff}"
            print(f"  WARNING {cfg.name}/{cell}: {msg}", file=sys.stderr)
    int8 = None
    if torch is not None and cfg.name == "b1_latency" and cell in ("lstm", "gru"):
        int8 = TorchInt8Subject(torch, subjects["torch"])
    ours8, int8_diff = None, None
    if rnncore is not None and cfg.name == "b1_latency":
        ours8 = RnncoreInt8Subject(rnncore, cfg, cell, subjects["rnncore"])
        int8_diff = float(np.abs(ours8.output() - subjects["rnncore"].output()).max())

    rows = []
    for mode in ("infer", "train") if cfg.train else ("infer",):
        cpu_before = _cpu_times()
        cases = {name: getattr(s, mode)() for name, s in subjects.items()}
        if int8 is not None and mode == "infer":
            cases[int8.name] = int8.infer()
        if ours8 is not None and mode == "infer":
            cases[ours8.name] = ours8.infer()
        times = measure(cases, plan)
        steal = _steal_pct(cpu_before, _cpu_times())
        flops = forward_flops(cfg, cell, tokens) * (3 if mode == "train" else 1)
        row: dict = {
            "threads": threads,
            "config": cfg.name,
            "cell": cell,
            "mode": mode,
            "shape": {k: getattr(cfg, k) for k in ("layers", "D", "B", "T", "I", "H")},
            "tokens": tokens,
            "gflop": flops / 1e9,
            "max_abs_diff": diff,
            "steal_pct": steal,
        }
        for name, ts in times.items():
            st = summarize_times(ts)
            st["tokens_per_s"] = tokens / st["median_s"]
            st["gflops"] = flops / st["median_s"] / 1e9
            st["frac_peak"] = st["gflops"] / peak if peak else None
            row[name] = st
        if "rnncore" in row and "torch" in row:
            row["speedup"] = row["torch"]["median_s"] / row["rnncore"]["median_s"]
        if "rnncore" in row and "torch_int8" in row:
            row["speedup_vs_torch_int8"] = (
                row["torch_int8"]["median_s"] / row["rnncore"]["median_s"]
            )
        if "rnncore_int8" in row:
            row["int8_max_abs_diff"] = int8_diff  # against rnncore's float32 output
            if "torch" in row:
                row["int8_speedup"] = row["torch"]["median_s"] / row["rnncore_int8"]["median_s"]
            if "torch_int8" in row:
                row["int8_speedup_vs_torch_int8"] = (
                    row["torch_int8"]["median_s"] / row["rnncore_int8"]["median_s"]
                )
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.memory_worker is not None:
        print(json.dumps(memory_worker(json.loads(args.memory_worker))))
        return 0

    t_start = time.perf_counter()
    rnncore, rnncore_err = try_import_rnncore()
    torch = None if args.no_torch else try_import_torch()
    libs = [n for n, m in (("rnncore", rnncore), ("torch", torch)) if m is not None]
    if rnncore is None:
        print(
            f"WARNING: rnncore is not importable ({rnncore_err}); timing torch only.",
            file=sys.stderr,
        )
    if torch is None and not args.no_torch:
        print("NOTE: torch is not installed; rnncore-only columns.", file=sys.stderr)
    if not libs:
        print("error: neither rnncore nor torch can be imported", file=sys.stderr)
        return 1

    quick = args.quick
    plan = Plan(
        target_s=args.target_s if args.target_s is not None else (0.05 if quick else 1.0),
        min_reps=2 if quick else 3,
        max_reps=20 if quick else 2000,
        warmup_s=0.02 if quick else 0.25,
        fixed_reps=args.reps,
    )
    configs = [c for c in CONFIGS if c.name in args.configs]
    if quick:
        configs = [quick_config(c) for c in configs]

    meta = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": getattr(torch, "__version__", None),
        "rnncore": getattr(rnncore, "__version__", None) if rnncore is not None else None,
        "rnncore_gemm": rnncore.gemm_backend() if rnncore is not None else None,
        "rnncore_isa": rnncore.engine_variant() if rnncore is not None else None,
        "libraries": libs,
        "quick": quick,
        "plan": asdict(plan),
        "argv": sys.argv[1:] if argv is None else argv,
        "flops": "forward per layer and direction 2*tokens*(I_l+H)*G*H; training step 3x forward",
        "speedup": "torch median time / rnncore median time (>1: rnncore faster)",
        "loadavg_start": _loadavg(),
    }
    if meta["loadavg_start"] is not None and meta["loadavg_start"] > 0.5:
        msg = f"1-minute load average is {meta['loadavg_start']:.2f}: the machine is busy"
        print(f"WARNING: {msg}; timings will be noisy.", file=sys.stderr)
    print(f"bench_rnn: {', '.join(libs)}; cpu {meta['cpu']} x{meta['cpu_count']}; quick={quick}")

    cpu_start = _cpu_times()
    peaks = {n: measure_peak(n, torch, quick) for n in args.threads}
    print(aligned(list(HEADER)))
    results: list[dict] = []
    for n in args.threads:
        set_threads(n, rnncore, torch)
        for cfg in configs:
            for cell in (c for c in cfg.cells if c in args.cells):
                for row in bench_cell(cfg, cell, n, rnncore, torch, plan, peaks[n]["best_gflops"]):
                    results.append(row)
                    print(aligned(row_cells(row)), flush=True)

    tiny: list[dict] = []
    if not args.no_tiny:
        for n in args.threads:
            set_threads(n, rnncore, torch)
            tiny.append(measure_tiny(n, rnncore, torch, quick))

    options: list[dict] = []
    if args.options and rnncore is not None:
        for n in args.threads:
            set_threads(n, rnncore, torch)
            for cfg in (c for c in configs if c.name in OPTION_CONFIGS):
                for row in bench_options(cfg, n, rnncore, plan):
                    options.append(row)
                    print(
                        f"options {n}t {cfg.name:8s} {row['variant']:28s} "
                        f"{1e3 * row['median_s']:9.3f} ms  x{row['vs_plain']:.3f} of "
                        f"{row['plain']}",
                        flush=True,
                    )

    memory: list[dict] = []
    if not args.no_memory:
        if memory_supported():
            for cfg in (c for c in configs if c.train):
                for cell in (c for c in cfg.cells if c in args.cells):
                    memory.append(
                        {"config": cfg.name, "cell": cell}
                        | {lib: measure_memory(cfg, cell, lib) for lib in libs}
                    )
        else:
            msg = "/proc/self/clear_refs is not writable; skipping the memory measurement."
            print(f"NOTE: {msg}", file=sys.stderr)

    meta["steal_pct_run"] = _steal_pct(cpu_start, _cpu_times())
    summary = summarize(results, args.threads)
    report = {
        "meta": meta,
        "peak": {str(k): v for k, v in peaks.items()},
        "results": results,
        "tiny": tiny,
        "options": options,
        "memory": {"method": _MEM_METHOD, "entries": memory},
        "summary": summary,
        "elapsed_s": time.perf_counter() - t_start,
    }
    text = render(report, markdown=False)
    print()
    print(text)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        text_json = json.dumps(report, indent=1, allow_nan=False, default=_json_default)
        Path(args.json).write_text(text_json + "\n")
        print(f"wrote {args.json}")
    if args.md:
        Path(args.md).parent.mkdir(parents=True, exist_ok=True)
        Path(args.md).write_text(render(report, markdown=True))
        print(f"wrote {args.md}")
    print(f"total {report['elapsed_s']:.0f} s")
    return 0


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    raise TypeError(type(o).__name__)


def _loadavg() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def _cpu_times() -> tuple[int, int] | None:
    """(steal, total) jiffies of all CPUs from /proc/stat, or None where it is not readable.

    On a virtual machine, steal is the time the hypervisor ran someone else on our cores: rows
    measured while it is high are slow for reasons that are not the libraries'.
    """
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    steal = fields[7] if len(fields) > 7 else 0
    return steal, sum(fields[:8])


def _steal_pct(before: tuple[int, int] | None, after: tuple[int, int] | None) -> float | None:
    """Percent of CPU time stolen between two _cpu_times() readings."""
    if before is None or after is None or after[1] <= before[1]:
        return None
    return 100.0 * (after[0] - before[0]) / (after[1] - before[1])


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


# The engine's fused options and the lecture's cells, each against the plain cell it extends:
# (label, cell, constructor options, the plain row it is compared with). The budget:
# every option's training step costs at most 1.3x its plain cell's.
OPTION_ROWS: tuple[tuple[str, str, dict, str], ...] = (
    ("lstm", "lstm", {}, "lstm"),
    ("lstm zoneout=0.1", "lstm", {"zoneout": 0.1}, "lstm"),
    ("lstm recurrent_dropout=0.25", "lstm", {"recurrent_dropout": 0.25}, "lstm"),
    ("lstm zoneout+rec.dropout", "lstm", {"zoneout": 0.1, "recurrent_dropout": 0.25}, "lstm"),
    ("gru", "gru", {}, "gru"),
    ("gru zoneout=0.1", "gru", {"zoneout": 0.1}, "gru"),
    ("gru recurrent_dropout=0.25", "gru", {"recurrent_dropout": 0.25}, "gru"),
    ("lstm layer_norm", "lstm", {"layer_norm": True}, "lstm"),
    ("gru layer_norm", "gru", {"layer_norm": True}, "gru"),
    ("gated-residual", "gated-residual", {}, "lstm"),
    ("gated-input", "gated-input", {}, "lstm"),
    ("gated-forget", "gated-forget", {}, "lstm"),
)
OPTION_CONFIGS = ("small", "medium", "bilstm_tagger")


def bench_options(cfg: Config, threads: int, rnncore, plan: Plan) -> list[dict]:
    """Training-step times of OPTION_ROWS on one config, all timed in turn in one measure() (so
    that drift hits every row alike); each row's ratio to its plain cell's time."""
    x = make_input(cfg)
    lengths = ragged_lengths(cfg)
    cases = {}
    for label, cell, options, _ in OPTION_ROWS:
        layer = rnncore.nn.recurrent_layer(
            cell,
            cfg.I,
            cfg.H,
            num_layers=cfg.layers,
            bidirectional=cfg.bidirectional,
            seed=0,
            **options,
        )
        layer.train()

        def run(layer=layer):
            layer.manual_seed(0)
            y, _ = layer(x, lengths=lengths)
            return layer.backward(np.ones_like(y))

        cases[label] = Case(run, layer.zero_grad)
    times = measure(cases, plan)
    medians = {k: statistics.median(v) for k, v in times.items()}
    return [
        {
            "config": cfg.name,
            "threads": threads,
            "variant": label,
            "cell": cell,
            "options": options,
            "plain": plain,
            "median_s": medians[label],
            "vs_plain": medians[label] / medians[plain],
        }
        for label, cell, options, plain in OPTION_ROWS
    ]


def measure_tiny(threads: int, rnncore, torch, quick: bool) -> dict:
    """Microseconds per forward+backward call of a B=1, T=1, I=H=8 LSTM."""
    cfg = TINY
    x = make_input(cfg)
    cases: dict[str, Case] = {}
    subjects: dict = {}
    if rnncore is not None:
        subjects["rnncore"] = RnncoreSubject(rnncore, cfg, "lstm", x, None)
    if torch is not None:
        subjects["torch"] = TorchSubject(torch, cfg, "lstm", x, None)
        if rnncore is not None:
            subjects["torch"].load(subjects["rnncore"].state_dict())
    # Each timed rep is a block of calls, alternating blocks between the libraries: a single
    # call (~10 us) is far shorter than the time the other library's OpenMP threads keep
    # spinning after its own call, so call-by-call alternation would time that spinning.
    block = 10 if quick else 100

    def blocked(run):
        def go():
            for _ in range(block):
                run()

        return go

    for name, s in subjects.items():
        case = s.train()
        cases[name] = Case(blocked(case.run))  # gradients simply accumulate; nothing untimed
    reps = 10 if quick else 30
    calls = reps * block
    plan = Plan(target_s=0.0, min_reps=reps, max_reps=reps, warmup_s=0.05 if quick else 0.3)
    times = {name: [t / block for t in ts] for name, ts in measure(cases, plan).items()}
    out: dict = {"threads": threads, "calls": calls}
    for name, ts in times.items():
        out[name] = {"median_us": statistics.median(ts) * 1e6, "min_us": min(ts) * 1e6}
    if "rnncore" in out and "torch" in out:
        out["speedup"] = out["torch"]["median_us"] / out["rnncore"]["median_us"]
    line = f"tiny LSTM B=1 T=1 I=H=8 fwd+bwd, {threads} thread(s): " + ", ".join(
        f"{k} {out[k]['median_us']:.1f} us" for k in subjects
    )
    print(line)
    return out


def summarize(results: list[dict], threads: list[int]) -> dict:
    out: dict = {}
    for n in threads:
        rows = [r for r in results if r["threads"] == n and "speedup" in r]
        train = [r for r in rows if r["mode"] == "train"]
        infer = [r for r in rows if r["mode"] == "infer"]
        s: dict = {
            "geomean_train_speedup": geomean([r["speedup"] for r in train]),
            "geomean_infer_speedup": geomean([r["speedup"] for r in infer]),
        }
        if train:
            worst = min(train, key=lambda r: r["speedup"])
            s["min_train_speedup"] = {k: worst[k] for k in ("speedup", "config", "cell")}
        s["b1_infer_speedup"] = {
            r["cell"]: r["speedup"] for r in infer if r["config"] == "b1_latency"
        }
        s["b1_infer_speedup_vs_torch_int8"] = {
            r["cell"]: r["speedup_vs_torch_int8"]
            for r in infer
            if r["config"] == "b1_latency" and "speedup_vs_torch_int8" in r
        }
        for key in ("int8_speedup", "int8_speedup_vs_torch_int8"):
            s[f"b1_{key}"] = {
                r["cell"]: r[key] for r in infer if r["config"] == "b1_latency" and key in r
            }
        frac: dict = {}
        for r in results:
            if r["threads"] == n and r["config"] in ("medium", "large") and "rnncore" in r:
                frac[f"{r['config']}/{r['cell']}/{r['mode']}"] = r["rnncore"]["frac_peak"]
        s["rnncore_frac_peak_medium_large"] = frac
        out[str(n)] = s
    return out


# ---------------------------------------------------------------------------
# Rendering

HEADER = (
    "thr",
    "config",
    "cell",
    "mode",
    "rnncore ms",
    "torch ms",
    "speedup",
    "rnncore tok/s",
    "rnncore GF/s",
    "%peak",
    "torch GF/s",
    "torch %peak",
    "steal %",
)


def row_cells(r: dict) -> list[str]:
    rc, tc = r.get("rnncore"), r.get("torch")
    return [
        str(r["threads"]),
        r["config"],
        r["cell"],
        r["mode"],
        fmt(rc and rc["median_s"] * 1e3, ".3f"),
        fmt(tc and tc["median_s"] * 1e3, ".3f"),
        fmt(r.get("speedup"), ".2f"),
        fmt(rc and rc["tokens_per_s"], ".3g"),
        fmt(rc and rc["gflops"], ".1f"),
        fmt(rc and rc["frac_peak"] and 100 * rc["frac_peak"], ".0f"),
        fmt(tc and tc["gflops"], ".1f"),
        fmt(tc and tc["frac_peak"] and 100 * tc["frac_peak"], ".0f"),
        fmt(r.get("steal_pct"), ".0f"),
    ]


WIDTHS = (3, 13, 4, 5, 10, 10, 7, 13, 12, 5, 10, 11, 7)


def aligned(cells: list[str]) -> str:
    """One row of the progress output: names left-aligned, numbers right-aligned."""
    pairs = enumerate(zip(cells, WIDTHS, strict=True))
    return "  ".join(c.rjust(w) if i >= 4 else c.ljust(w) for i, (c, w) in pairs)


def _table(header: list[str], rows: list[list[str]], markdown: bool, widths=None) -> list[str]:
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        return lines + ["| " + " | ".join(r) + " |" for r in rows]
    widths = widths or [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    fmt_row = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True))  # noqa: E731
    return [fmt_row(header), fmt_row(["-" * w for w in widths])] + [fmt_row(r) for r in rows]


def render(report: dict, markdown: bool) -> str:
    meta = report["meta"]
    h = "## " if markdown else ""
    lines: list[str] = []
    if markdown:
        lines += ["# rnncore benchmark", ""]
    lines.append(
        f"{meta['date']}  cpu: {meta['cpu']} x{meta['cpu_count']}  numpy {meta['numpy']}  "
        f"torch {meta['torch'] or '-'}  rnncore {meta['rnncore'] or '-'} "
        f"({meta.get('rnncore_isa') or '-'}, GEMM {meta.get('rnncore_gemm') or '-'})  "
        f"quick={meta['quick']}  "
        f"load before start {fmt(meta['loadavg_start'], '.2f')}  "
        f"CPU steal during the run {fmt(meta.get('steal_pct_run'), '.1f')}%"
    )
    lines.append("")
    peak_rows = [
        [k, str(v["n"]), str(v["reps"])]
        + [fmt(v[c], ".1f") for c in ("numpy_gflops", "torch_gflops", "best_gflops")]
        for k, v in report["peak"].items()
    ]
    lines += [f"{h}sgemm peak (GFLOP/s, fastest of `reps` float32 n x n matmuls)", ""]
    lines += _table(
        ["threads", "n", "reps", "numpy", "torch", "best (= 100% peak)"], peak_rows, markdown
    )
    lines += ["", f"{h}Median time per call; speedup = torch / rnncore; %peak of best sgemm", ""]
    rows = [row_cells(r) for r in report["results"]]
    lines += _table(list(HEADER), rows, markdown)
    if report["tiny"]:
        lines += ["", f"{h}Python overhead: LSTM B=1 T=1 I=H=8, forward+backward per call", ""]
        trows = [
            [
                str(t["threads"]),
                fmt(t.get("rnncore", {}).get("median_us"), ".1f"),
                fmt(t.get("torch", {}).get("median_us"), ".1f"),
                fmt(t.get("speedup"), ".2f"),
            ]
            for t in report["tiny"]
        ]
        lines += _table(["threads", "rnncore us", "torch us", "speedup"], trows, markdown)
    if report.get("options"):
        lines += ["", f"{h}Fused options and gated cells: training step vs the plain cell", ""]
        orows = [
            [
                o["config"],
                str(o["threads"]),
                o["variant"],
                fmt(1e3 * o["median_s"], ".3f"),
                f"{o['vs_plain']:.3f} x {o['plain']}",
            ]
            for o in report["options"]
        ]
        lines += _table(["config", "threads", "variant", "ms", "vs plain"], orows, markdown)
    mem = report["memory"]
    if mem["entries"]:
        lines += ["", f"{h}Peak extra memory of one training step (MB)", ""]
        lines += ["Measured: " + mem["method"] + ".", ""]
        mrows = [
            [
                e["config"],
                e["cell"],
                fmt((e.get("rnncore") or {}).get("peak_extra_mb"), ".1f"),
                fmt((e.get("torch") or {}).get("peak_extra_mb"), ".1f"),
            ]
            for e in mem["entries"]
        ]
        lines += _table(["config", "cell", "rnncore MB", "torch MB"], mrows, markdown)
    lines += ["", f"{h}Summary", ""]
    for n, s in report["summary"].items():
        bullet = "  - " if markdown else "  "
        lines.append(f"{'- ' if markdown else ''}{n} thread(s):")
        lines.append(f"{bullet}geomean training speedup: {fmt(s['geomean_train_speedup'], '.2f')}")
        lines.append(f"{bullet}geomean inference speedup: {fmt(s['geomean_infer_speedup'], '.2f')}")
        if "min_train_speedup" in s:
            m = s["min_train_speedup"]
            where = f"{m['config']}/{m['cell']}"
            lines.append(f"{bullet}min training speedup: {m['speedup']:.2f} ({where})")
        if s["b1_infer_speedup"]:
            b1 = ", ".join(f"{c} {v:.2f}" for c, v in s["b1_infer_speedup"].items())
            lines.append(f"{bullet}b1_latency inference speedup: {b1}")
        if s.get("b1_infer_speedup_vs_torch_int8"):
            q = ", ".join(f"{c} {v:.2f}" for c, v in s["b1_infer_speedup_vs_torch_int8"].items())
            lines.append(
                f"{bullet}b1_latency inference speedup over torch's dynamic int8 "
                f"(quantize_dynamic): {q}"
            )
        if s.get("b1_int8_speedup"):
            q = ", ".join(f"{c} {v:.2f}" for c, v in s["b1_int8_speedup"].items())
            lines.append(
                f"{bullet}b1_latency rnncore int8_inference speedup over torch float32: {q}"
            )
        if s.get("b1_int8_speedup_vs_torch_int8"):
            q = ", ".join(f"{c} {v:.2f}" for c, v in s["b1_int8_speedup_vs_torch_int8"].items())
            lines.append(f"{bullet}b1_latency rnncore int8 over torch's dynamic int8: {q}")
        if s["rnncore_frac_peak_medium_large"]:
            fracs = s["rnncore_frac_peak_medium_large"].items()
            fr = ", ".join(f"{k} {100 * v:.0f}%" for k, v in fracs if v)
            lines.append(f"{bullet}rnncore fraction of sgemm peak (medium/large): {fr}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
