"""Picks the engine build for this CPU: rnncore._core_avx512, _core_avx2 or the portable _core.

The wheel carries the bindings compiled three times (see CMakeLists.txt); the best one the CPU
can run is imported and registered as ``rnncore._core``, so the rest of the package never needs
to know. ``RNNCORE_ISA=baseline|avx2|avx512`` in the environment forces a variant (one the CPU
cannot run is refused with a warning: the portable build is used).
"""

from __future__ import annotations

import importlib
import os
import sys
import warnings
from types import ModuleType

# Variant -> CPU flags (as /proc/cpuinfo spells them) that its compiler flags assume.
_VARIANTS: list[tuple[str, frozenset[str]]] = [
    (
        "avx512",
        frozenset(
            {"avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl", "avx2", "fma", "f16c"}
        ),
    ),
    ("avx2", frozenset({"avx2", "fma", "f16c"})),
]

variant = "baseline"


def cpu_flags() -> frozenset[str]:
    """The CPU's instruction-set flags that the OS enables (Linux /proc/cpuinfo, else numpy's)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    try:  # numpy knows the runtime CPU features on every platform
        from numpy._core._multiarray_umath import __cpu_features__ as feats
    except ImportError:
        return frozenset()
    names = {
        "AVX512F": "avx512f",
        "AVX512CD": "avx512cd",
        "AVX512_SKX": "avx512bw",
        "AVX2": "avx2",
        "FMA3": "fma",
        "F16C": "f16c",
    }
    flags = {flag for key, flag in names.items() if feats.get(key)}
    if feats.get("AVX512_SKX"):
        flags |= {"avx512dq", "avx512vl"}
    return frozenset(flags)


# The engine's threads meet at a barrier every time step. libgomp's default is to spin for about
# 300,000 iterations before sleeping: on a machine with more runnable threads than cores, a
# spinning thread keeps its partner off the CPU and a step can take milliseconds (measured: an
# LSTM call 3x slower than on one thread under load). A spin of 20,000 iterations is as fast on
# an idle machine and yields the core on a busy one. Applied only while the engine's OpenMP
# runtime starts (it reads the variable once) and only when the user set neither variable.
_SPIN = {"GOMP_SPINCOUNT": "20000"}


def _import_with_spin_policy(name: str) -> ModuleType:
    if "OMP_WAIT_POLICY" in os.environ or "GOMP_SPINCOUNT" in os.environ:
        return importlib.import_module(name)
    os.environ.update(_SPIN)
    try:
        return importlib.import_module(name)
    finally:
        for key in _SPIN:
            os.environ.pop(key, None)


def load_core() -> ModuleType:
    """Import the best engine variant and register it as ``rnncore._core``."""
    global variant
    forced = os.environ.get("RNNCORE_ISA", "").strip().lower() or None
    flags = cpu_flags()
    if forced not in (None, "baseline", *(name for name, _ in _VARIANTS)):
        warnings.warn(
            f"RNNCORE_ISA={forced!r} is not one of baseline, avx2, avx512; using the best "
            "engine this CPU runs",
            RuntimeWarning,
            stacklevel=2,
        )
        forced = None
    for name, needs in _VARIANTS:
        if forced == name and not needs <= flags:  # it would die of an illegal instruction
            warnings.warn(
                f"RNNCORE_ISA={name}: this CPU lacks {', '.join(sorted(needs - flags))}; "
                "using the portable engine",
                RuntimeWarning,
                stacklevel=2,
            )
            forced = "baseline"
        if forced not in (None, name) or (forced is None and not needs <= flags):
            continue
        try:
            module = _import_with_spin_policy(f"rnncore._core_{name}")
        except ImportError:  # not built (another platform, or RNNCORE_ISA_VARIANTS=OFF)
            continue
        sys.modules["rnncore._core"] = module
        variant = name
        return module
    variant = "baseline"
    return _import_with_spin_policy("rnncore._core")
