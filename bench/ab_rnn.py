"""A/B of two rnncore builds in one process: this environment's rnncore against a baseline build.

The baseline is any installed rnncore package folder (for example the wheel of the commit before
a change, unpacked with ``pip install --no-deps --target DIR WHEEL``). It is copied under the name
``rnncore_baseline`` and imported next to ``rnncore``, so both engines time the same shapes, the
same input and the same weights in turn (new, baseline, new, ...): drift in clock speed or
background load hits both. The configurations, cells and timing plan are bench_rnn.py's.

    python bench/ab_rnn.py --baseline /tmp/base/rnncore
    python bench/ab_rnn.py --baseline /tmp/base/rnncore --threads 2 --configs small,medium

Writes bench/results/ab_latest.{json,md}: per row each build's median time, the ratio
baseline / new (> 1: the new build is faster) and the CPU steal while the row ran. Both builds
must give the same outputs (checked to 1e-4 per row).
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import math
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_rnn as br  # noqa: E402  (the shared configurations and timing)


def load_baseline(folder: Path, workdir: Path):
    """Imports the rnncore package in ``folder`` as ``rnncore_baseline`` (a renamed copy)."""
    if not (folder / "__init__.py").exists() or not (folder / "_native.py").exists():
        raise SystemExit(f"--baseline {folder}: not an installed rnncore package folder")
    copy = workdir / "rnncore_baseline"
    shutil.copytree(folder, copy, ignore=shutil.ignore_patterns("__pycache__", "include", "lib"))
    native = copy / "_native.py"
    # The engine loader names its extension modules absolutely; point it at the copy.
    native.write_text(native.read_text().replace('"rnncore._core', '"rnncore_baseline._core'))
    sys.path.insert(0, str(workdir))
    module = importlib.import_module("rnncore_baseline")
    importlib.import_module("rnncore_baseline.nn")
    return module


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--baseline", required=True, type=Path, help="installed rnncore folder")
    p.add_argument("--threads", default="1,2", help="comma-separated thread counts (default 1,2)")
    names = tuple(c.name for c in br.CONFIGS)
    p.add_argument("--configs", default=",".join(names), help=f"subset of {','.join(names)}")
    p.add_argument("--cells", default=",".join(br.ALL_CELLS), help="subset of rnn,lstm,gru")
    p.add_argument("--target-s", type=float, default=1.0, help="seconds per row and build")
    p.add_argument("--quick", action="store_true", help="smoke test: small shapes, few reps")
    p.add_argument("--out", default=str(HERE / "results" / "ab_latest"), help="output stem")
    args = p.parse_args(argv)
    args.threads = [int(t) for t in br.parse_list(args.threads, ("1", "2", "4", "8"), "threads")]
    args.configs = br.parse_list(args.configs, names, "configs")
    args.cells = br.parse_list(args.cells, br.ALL_CELLS, "cells")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import rnncore
    import rnncore.nn  # noqa: F401

    with tempfile.TemporaryDirectory() as tmp:
        base = load_baseline(args.baseline.resolve(), Path(tmp))
        libs = {"new": rnncore, "baseline": base}
        plan = br.Plan(
            target_s=0.05 if args.quick else args.target_s,
            min_reps=2 if args.quick else 5,
            max_reps=20 if args.quick else 2000,
            warmup_s=0.02 if args.quick else 0.25,
        )
        configs = [c for c in br.CONFIGS if c.name in args.configs]
        if args.quick:
            configs = [br.quick_config(c) for c in configs]
        rows: list[dict] = []
        cpu_start = br._cpu_times()
        print(f"{'thr':>3} {'config':<14} {'cell':<5} {'mode':<5} {'new ms':>9} "
              f"{'base ms':>9} {'base/new':>8} {'steal%':>6}")  # fmt: skip
        for n in args.threads:
            for lib in libs.values():
                lib.set_num_threads(n)
            for cfg in configs:
                for cell in (c for c in cfg.cells if c in args.cells):
                    rows += bench_row(cfg, cell, n, libs, plan)
        steal = br._steal_pct(cpu_start, br._cpu_times())
        report = {
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "cpu": br._cpu_model(),
            "new": {"version": rnncore.__version__, "isa": rnncore.engine_variant()},
            "baseline": {"folder": str(args.baseline), "isa": base.engine_variant()},
            "steal_pct": steal,
            "plan": vars(plan),
            "ratio": "baseline median time / new median time (>1: the new build is faster)",
            "rows": rows,
        }
    ratios = [r["ratio"] for r in rows]
    report["geomean_ratio"] = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
    report["min_ratio"] = min(ratios)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=1, default=br._json_default))
    out.with_suffix(".md").write_text(render(report))
    print(f"geomean base/new {report['geomean_ratio']:.3f}, slowest row {report['min_ratio']:.3f}, "
          f"CPU steal {_pct(steal)}%")  # fmt: skip
    return 0


def bench_row(cfg: br.Config, cell: str, threads: int, libs: dict, plan: br.Plan) -> list[dict]:
    """Rows (infer, and train unless inference-only) timing both builds in turn."""
    x = br.make_input(cfg)
    lengths = br.ragged_lengths(cfg)
    subjects = {name: br.RnncoreSubject(lib, cfg, cell, x, lengths) for name, lib in libs.items()}
    subjects["baseline"].layer.load_state_dict(subjects["new"].state_dict())
    outs = [s.output() for s in subjects.values()]
    diff = float(np.max(np.abs(outs[0] - outs[1])))
    if diff > 1e-4:
        raise SystemExit(f"{cfg.name}/{cell}: the builds' outputs differ by {diff}")
    rows = []
    for mode in ("infer", "train") if cfg.train else ("infer",):
        before = br._cpu_times()
        times = br.measure({k: getattr(s, mode)() for k, s in subjects.items()}, plan)
        steal = br._steal_pct(before, br._cpu_times())
        med = {k: br.summarize_times(ts)["median_s"] for k, ts in times.items()}
        row = {
            "threads": threads,
            "config": cfg.name,
            "cell": cell,
            "mode": mode,
            "new_ms": med["new"] * 1e3,
            "baseline_ms": med["baseline"] * 1e3,
            "ratio": med["baseline"] / med["new"],
            "steal_pct": steal,
            "max_abs_diff": diff,
        }
        print(f"{threads:>3} {cfg.name:<14} {cell:<5} {mode:<5} {row['new_ms']:9.3f} "
              f"{row['baseline_ms']:9.3f} {row['ratio']:8.3f} "
              f"{'' if steal is None else round(steal, 1):>6}", flush=True)  # fmt: skip
        rows.append(row)
    return rows


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def render(report: dict) -> str:
    lines = [
        f"# A/B: this build against {report['baseline']['folder']}",
        "",
        f"{report['date']}, {report['cpu']}, engines {report['new']['isa']} / "
        f"{report['baseline']['isa']}, CPU steal over the run {_pct(report['steal_pct'])}%.",
        f"Ratio = baseline / new median time (> 1: the new build is faster). Geomean "
        f"{report['geomean_ratio']:.3f}, slowest row {report['min_ratio']:.3f}.",
        "",
        "| threads | config | cell | mode | new ms | baseline ms | ratio | steal % |",
        "|---:|---|---|---|---:|---:|---:|---:|",
    ]
    for r in report["rows"]:
        steal = _pct(r["steal_pct"])
        lines.append(
            f"| {r['threads']} | {r['config']} | {r['cell']} | {r['mode']} | {r['new_ms']:.3f} "
            f"| {r['baseline_ms']:.3f} | {r['ratio']:.3f} | {steal} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
