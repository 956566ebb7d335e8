"""The devices the GPU tests run on: "cuda-sim" everywhere, "cuda" where a GPU is visible."""

from __future__ import annotations

import pytest
from rnncore import cuda

#: pytest parameters: cuda-sim (the CUDA backend's algorithm on the CPU) and, skipped with the
#: reason where no GPU is visible, the GPU itself
DEVICES = [
    "cuda-sim",
    pytest.param(
        "cuda",
        marks=pytest.mark.skipif(
            not cuda.is_available(), reason="no CUDA GPU visible (or built without CUDA)"
        ),
    ),
]
