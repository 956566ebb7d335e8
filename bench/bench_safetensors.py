"""Load speed of rnncore's safetensors reader against the ``safetensors`` package's numpy loader.

A program, not a test: for each file shape it warms up, times ``--reps`` loads of each reader in
turn (ours, theirs, ours, ...), checks that both return the same arrays, and prints the median
time of each and the ratio theirs / ours (> 1: rnncore is faster).

    pip install safetensors
    python bench/bench_safetensors.py
    python bench/bench_safetensors.py --reps 21 --dir /dev/shm
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from rnncore.serialization import load_safetensors, save_safetensors

SHAPES = {
    "50 MB in 10 float32 tensors": (10, (1250, 1000)),
    "500 float32 tensors of 512 bytes": (500, (16, 8)),
    "5000 float32 tensors of 64 bytes": (5000, (16,)),
}


def main(argv: list[str] | None = None) -> int:
    """Runs the comparison; returns the exit status (1 when the package is not installed)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=7, help="timed loads per reader (default 7)")
    parser.add_argument("--dir", default=None, help="where to write the files (default: a tmp)")
    args = parser.parse_args(argv)
    try:
        import safetensors
        from safetensors.numpy import load_file
    except ImportError:
        print("bench_safetensors: the safetensors package is not installed (pip install "
              "safetensors)", file=sys.stderr)  # fmt: skip
        return 1
    rng = np.random.default_rng(0)
    print(f"safetensors {safetensors.__version__}, numpy {np.__version__}, {args.reps} reps")
    print(f"{'file':36s} {'rnncore ms':>11s} {'package ms':>11s} {'package/rnncore':>16s}")
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for label, (count, shape) in SHAPES.items():
            arrays = {
                f"t{i:05d}": rng.standard_normal(shape).astype(np.float32) for i in range(count)
            }
            path = Path(tmp) / "bench.safetensors"
            save_safetensors(path, arrays)
            readers = {
                "rnncore": lambda p=path: load_safetensors(p)[0],
                "package": lambda p=path: load_file(str(p)),
            }
            times: dict[str, list[float]] = {name: [] for name in readers}
            for name, read in readers.items():  # warm up, and check the outputs agree
                out = read()
                assert all(np.array_equal(out[k], arrays[k]) for k in arrays), name
            for _ in range(args.reps):
                for name, read in readers.items():
                    start = time.perf_counter()
                    read()
                    times[name].append(time.perf_counter() - start)
            ours = statistics.median(times["rnncore"]) * 1e3
            theirs = statistics.median(times["package"]) * 1e3
            print(f"{label:36s} {ours:11.2f} {theirs:11.2f} {theirs / ours:16.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
