"""Type stubs for the private native module rnncore._core (the C++ engine)."""

from typing import Any

import numpy as np
import numpy.typing as npt

class _Recurrent:
    def __init__(
        self,
        cell: int,
        input_size: int,
        hidden_size: int,
        num_layers: int,
        bidirectional: bool,
        bias: bool,
        reset_after: bool,
        dropout: float,
    ) -> None: ...
    @property
    def params(self) -> npt.NDArray[Any]: ...
    @property
    def grads(self) -> npt.NDArray[Any]: ...
    @property
    def has_saved_forward(self) -> bool: ...
    def param_info(self) -> list[tuple[str, int, tuple[int, ...]]]: ...
    def zero_grad(self) -> None: ...
    def forward(
        self,
        x: np.ndarray,
        lengths: np.ndarray | None = None,
        h0: np.ndarray | None = None,
        c0: np.ndarray | None = None,
        training: bool = True,
        seed: int = 0,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]: ...
    def backward(
        self,
        dy: np.ndarray | None = None,
        dhn: np.ndarray | None = None,
        dcn: np.ndarray | None = None,
        step_grad_norms: bool = False,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]: ...

class RecurrentF32(_Recurrent): ...
class RecurrentF64(_Recurrent): ...

def set_num_threads(n: int) -> int: ...
def get_num_threads() -> int: ...
def has_openmp() -> bool: ...
def _set_blas(sgemm: int, dgemm: int, name: str) -> None: ...
def gemm_backend() -> str: ...
