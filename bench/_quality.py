"""What the two quality scripts share: the record of where a run happened, and its JSON file."""

from __future__ import annotations

import datetime
import json
import math
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def git_commit() -> str | None:
    """The repository's HEAD commit, or None outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def machine_info(rnncore: Any) -> dict[str, Any]:
    """Python, rnncore, threads, GEMM backend, CPU count, platform, load, commit and date."""
    return {
        "python": sys.version.split()[0],
        "rnncore": rnncore.__version__,
        "threads": rnncore.get_num_threads(),
        "gemm": rnncore.gemm_backend(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "commit": git_commit(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def _finite(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _finite(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_finite(x) for x in v]
    if hasattr(v, "tolist"):  # numpy scalars and arrays
        return _finite(v.tolist())
    if isinstance(v, Path):
        return str(v)
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def write_result(path: Path, result: dict[str, Any]) -> None:
    """Write one recipe's result as strict JSON (non-finite numbers become null)."""
    path.write_text(json.dumps(_finite(result), indent=1, allow_nan=False) + "\n")
