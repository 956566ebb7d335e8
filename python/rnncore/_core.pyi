"""Type stubs for the private native module rnncore._core (the C++ engine)."""

from typing import Any

import numpy as np
import numpy.typing as npt

class _Recurrent:
    def __init__(
        self,
        cell: str,
        input_size: int,
        hidden_size: int,
        num_layers: int,
        bidirectional: bool,
        bias: bool,
        dropout: float,
        device: str = "cpu",
        proj_size: int = 0,
        zoneout: float = 0.0,
        recurrent_dropout: float = 0.0,
        layer_norm: bool = False,
    ) -> None: ...
    @property
    def params(self) -> npt.NDArray[Any]: ...
    @property
    def grads(self) -> npt.NDArray[Any]: ...
    @property
    def has_saved_forward(self) -> bool: ...
    @property
    def saved_forwards(self) -> int: ...
    @property
    def saved_bytes(self) -> int: ...
    @property
    def saved_shape(self) -> tuple[int, int]: ...
    def discard_saved(self) -> None: ...
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
        batch_offset: int = 0,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]: ...
    def backward(
        self,
        dy: np.ndarray | None = None,
        dhn: np.ndarray | None = None,
        dcn: np.ndarray | None = None,
        step_grad_norms: bool = False,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]: ...
    def forward_saved(
        self,
        x: np.ndarray,
        lengths: np.ndarray | None = None,
        h0: np.ndarray | None = None,
        c0: np.ndarray | None = None,
        seed: int = 0,
        stochastic: bool = True,
        batch_offset: int = 0,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, _SavedForward]: ...
    def backward_saved(
        self,
        saved: _SavedForward,
        dy: np.ndarray | None = None,
        dhn: np.ndarray | None = None,
        dcn: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray]: ...
    # GPU layers only: device addresses (0: none), checked by the caller (rnncore.torch).
    def forward_device(
        self,
        x: int,
        steps: int,
        batch: int,
        lengths: np.ndarray | None,
        h0: int,
        c0: int,
        y: int,
        hn: int,
        cn: int,
        params: int,
        training: bool,
        seed: int,
        stochastic: bool,
        keep: bool = False,
        batch_offset: int = 0,
    ) -> _SavedForward | None: ...
    def backward_device(
        self,
        saved: _SavedForward | None,
        dy: int,
        dhn: int,
        dcn: int,
        dx: int,
        dh0: int,
        dc0: int,
        params: int,
        grads: int,
        step_grad_norms: int = 0,
    ) -> None: ...

class _SavedForward:
    @property
    def consumed(self) -> bool: ...

class SavedForwardF32(_SavedForward): ...
class SavedForwardF64(_SavedForward): ...
class RecurrentF32(_Recurrent): ...
class RecurrentF64(_Recurrent): ...

def set_num_threads(n: int) -> int: ...
def get_num_threads() -> int: ...
def has_openmp() -> bool: ...
def set_flush_denormals(on: bool) -> bool: ...
def flush_denormals() -> bool: ...
def cells() -> list[dict[str, Any]]: ...
def has_cuda() -> bool: ...
def cuda_device_count() -> int: ...
def load_cublas(path: str) -> str: ...
def require_device(device: str) -> str: ...
def checkpoint_format() -> dict[str, Any]: ...

# ---- the engine's softmax and sampler ----
def log_softmax(x: np.ndarray) -> np.ndarray: ...
def softmax(x: np.ndarray) -> np.ndarray: ...

class Sampler:
    def __init__(self, seed: int) -> None: ...
    def draw(self, log_probs: np.ndarray, temperature: float = 1.0, top_k: int = 0) -> int: ...

def _set_blas(sgemm: int, dgemm: int, name: str) -> None: ...
def gemm_backend() -> str: ...

# ---- training operations (cpp/bindings/bind_ops.cpp); arrays are float32 or float64 ----
def embedding_forward(ids: np.ndarray, weight: np.ndarray) -> np.ndarray: ...
def embedding_backward(
    ids: np.ndarray, dout: np.ndarray, dweight: np.ndarray, padding_idx: int | None = None
) -> None: ...
def linear_forward(
    x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None
) -> np.ndarray: ...
def linear_backward(
    dy: np.ndarray,
    x: np.ndarray,
    weight: np.ndarray,
    dweight: np.ndarray,
    dbias: np.ndarray | None = None,
    need_dx: bool = True,
) -> np.ndarray | None: ...
def conv1d_forward(
    x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None, padding: int = 0
) -> np.ndarray: ...
def conv1d_backward(
    dy: np.ndarray,
    x: np.ndarray,
    weight: np.ndarray,
    dweight: np.ndarray,
    dbias: np.ndarray | None = None,
    padding: int = 0,
    need_dx: bool = True,
) -> np.ndarray | None: ...
def crf_nll(
    emissions: np.ndarray,
    lengths: np.ndarray,
    tags: np.ndarray,
    transitions: np.ndarray,
    start_transitions: np.ndarray,
    end_transitions: np.ndarray,
    allowed: np.ndarray | None = None,
    allowed_start: np.ndarray | None = None,
    d_transitions: np.ndarray | None = None,
    d_start: np.ndarray | None = None,
    d_end: np.ndarray | None = None,
) -> tuple[float, np.ndarray | None]: ...
def crf_viterbi(
    emissions: np.ndarray,
    lengths: np.ndarray,
    transitions: np.ndarray,
    start_transitions: np.ndarray,
    end_transitions: np.ndarray,
    allowed: np.ndarray | None = None,
    allowed_start: np.ndarray | None = None,
) -> np.ndarray: ...
def cross_entropy(
    logits: np.ndarray,
    targets: np.ndarray,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    grad: bool = True,
    grad_scale: float = 1.0,
) -> tuple[float, np.ndarray | None, int]: ...
def mse_loss(
    pred: np.ndarray,
    target: np.ndarray,
    reduction: str = "mean",
    grad: bool = True,
    grad_scale: float = 1.0,
) -> tuple[float, np.ndarray | None]: ...
def time_pool(y: np.ndarray, lengths: np.ndarray, max: bool = False) -> Any: ...
def time_pool_backward(
    dpooled: np.ndarray, lengths_or_argmax: np.ndarray, T: int, max: bool = False
) -> np.ndarray: ...
def sgd_step(
    param: np.ndarray, grad: np.ndarray, momentum_buf: np.ndarray | None, **kw: Any
) -> None: ...
def keyed_uniform(
    outer: int, B: int, inner: int, seed: int, *, batch_offset: int = 0
) -> np.ndarray: ...
def keyed_dropout(
    x: np.ndarray, p: float, seed: int, *, batch_offset: int = 0
) -> tuple[np.ndarray, np.ndarray]: ...
def adam_step(
    param: np.ndarray,
    grad: np.ndarray,
    exp_avg: np.ndarray,
    exp_avg_sq: np.ndarray,
    max_exp_avg_sq: np.ndarray | None,
    **kw: Any,
) -> None: ...
def rmsprop_step(
    param: np.ndarray,
    grad: np.ndarray,
    square_avg: np.ndarray,
    grad_avg: np.ndarray | None,
    momentum_buf: np.ndarray | None,
    **kw: Any,
) -> None: ...
def adadelta_step(
    param: np.ndarray, grad: np.ndarray, square_avg: np.ndarray, acc_delta: np.ndarray, **kw: Any
) -> None: ...
def adagrad_step(param: np.ndarray, grad: np.ndarray, state_sum: np.ndarray, **kw: Any) -> None: ...
def grad_norm(buffers: list[np.ndarray]) -> float: ...
def clip_grad_norm(buffers: list[np.ndarray], max_norm: float) -> float: ...
def clip_grad_value(buffers: list[np.ndarray], clip_value: float) -> None: ...
def all_finite(buffers: list[np.ndarray]) -> bool: ...

# GPU device memory and DLPack (bind_device.cpp): addresses as ints, checked by rnncore.cuda.
class DeviceBuffer:
    def __init__(self, device: str, nbytes: int) -> None: ...
    @property
    def ptr(self) -> int: ...
    @property
    def nbytes(self) -> int: ...
    @property
    def device(self) -> str: ...

def device_copy(device: str, dst: int, src: int, nbytes: int, kind: int) -> None: ...
def device_zero(device: str, address: int, nbytes: int) -> None: ...
def device_swap01(
    device: str, dst: int, src: int, n0: int, n1: int, n2: int, elem_bytes: int
) -> None: ...
def device_synchronize(device: str, stream: int = 0) -> None: ...
def dlpack_capsule(
    owner: Any,
    address: int,
    shape: list[int],
    bits: int,
    device_type: int,
    device_id: int,
    versioned: bool,
    readonly: bool = False,
    kind: str = "f",
) -> Any: ...

# training operations on a GPU device (rnncore/device_ops.h); addresses as ints, bits 32 or 64
def device_embedding_forward(
    device: str,
    bits: int,
    N: int,
    V: int,
    E: int,
    ids: int,
    weight: int,
    out: int,
    ids_checked: bool = False,
) -> None: ...
def device_embedding_backward(
    device: str,
    bits: int,
    N: int,
    V: int,
    E: int,
    ids: int,
    dout: int,
    dweight: int,
    padding_idx: int,
    ids_checked: bool = False,
) -> None: ...
def device_linear_forward(
    device: str, bits: int, N: int, I: int, O: int, x: int, weight: int, bias: int, y: int
) -> None: ...
def device_linear_backward(
    device: str,
    bits: int,
    N: int,
    I: int,
    O: int,
    dy: int,
    x: int,
    weight: int,
    dx: int,
    dweight: int,
    dbias: int,
) -> None: ...
def device_cross_entropy(
    device: str,
    bits: int,
    N: int,
    C: int,
    logits: int,
    targets: int,
    ignore_index: int,
    mean: bool,
    label_smoothing: float,
    grad_scale: float,
    dlogits: int,
) -> tuple[float, int]: ...
def device_batched_gemm(
    device: str,
    bits: int,
    batch: int,
    trans_a: bool,
    trans_b: bool,
    M: int,
    N: int,
    K: int,
    A: int,
    B: int,
    C: int,
    accumulate: bool,
) -> None: ...
def device_masked_softmax(
    device: str, bits: int, R: int, S: int, group: int, scores: int, lengths: int, weights: int
) -> None: ...
def device_softmax_backward(
    device: str, bits: int, R: int, S: int, dw: int, w: int, dscores: int
) -> None: ...
def device_axpy(device: str, bits: int, n: int, alpha: float, x: int, y: int) -> None: ...
def device_column_sums(device: str, bits: int, rows: int, cols: int, x: int, out: int) -> None: ...
def device_tanh(
    device: str, bits: int, n: int, x: int, y: int, dy: int, backward: bool
) -> None: ...
def device_strided_copy(
    device: str,
    bits: int,
    rows: int,
    width: int,
    src: int,
    src_stride: int,
    dst: int,
    dst_stride: int,
) -> None: ...
def device_mse_loss(
    device: str,
    bits: int,
    N: int,
    pred: int,
    target: int,
    mean: bool,
    grad_scale: float,
    dpred: int,
) -> float: ...
def device_time_pool_forward(
    device: str,
    bits: int,
    max: bool,
    T: int,
    B: int,
    F: int,
    y: int,
    lengths: int,
    pooled: int,
    argmax: int,
) -> None: ...
def device_time_pool_backward(
    device: str,
    bits: int,
    max: bool,
    T: int,
    B: int,
    F: int,
    dpooled: int,
    lengths: int,
    argmax: int,
    dy: int,
    argmax_checked: bool = False,
) -> None: ...
def device_keyed_dropout(
    device: str,
    bits: int,
    outer: int,
    B: int,
    inner: int,
    x: int,
    p: float,
    seed: int,
    batch_offset: int,
    y: int,
    scale: int,
) -> None: ...
def device_sgd_step(
    device: str,
    bits: int,
    P: int,
    param: int,
    grad: int,
    momentum_buf: int,
    first_step: bool,
    lr: float,
    momentum: float,
    dampening: float,
    weight_decay: float,
    nesterov: bool,
) -> None: ...
def device_adam_step(
    device: str,
    bits: int,
    P: int,
    param: int,
    grad: int,
    exp_avg: int,
    exp_avg_sq: int,
    max_exp_avg_sq: int,
    step: int,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    decoupled_weight_decay: bool,
) -> None: ...
def device_rmsprop_step(
    device: str,
    bits: int,
    P: int,
    param: int,
    grad: int,
    square_avg: int,
    grad_avg: int,
    momentum_buf: int,
    lr: float,
    alpha: float,
    eps: float,
    weight_decay: float,
    momentum: float,
    centered: bool,
) -> None: ...
def device_adadelta_step(
    device: str,
    bits: int,
    P: int,
    param: int,
    grad: int,
    square_avg: int,
    acc_delta: int,
    lr: float,
    rho: float,
    eps: float,
    weight_decay: float,
) -> None: ...
def device_adagrad_step(
    device: str,
    bits: int,
    P: int,
    param: int,
    grad: int,
    state_sum: int,
    step: int,
    lr: float,
    lr_decay: float,
    weight_decay: float,
    eps: float,
) -> None: ...
def device_sum_of_squares(device: str, bits: int, buffers: list[tuple[int, int]]) -> float: ...
def device_scale(device: str, bits: int, buffers: list[tuple[int, int]], factor: float) -> None: ...
def device_clip_grad_value(
    device: str, bits: int, buffers: list[tuple[int, int]], clip_value: float
) -> None: ...
def device_all_finite(device: str, bits: int, buffers: list[tuple[int, int]]) -> bool: ...
def clip_coefficient(total_norm: float, max_norm: float) -> float: ...
def dlpack_view(
    capsule: Any,
) -> tuple[int, tuple[int, ...], tuple[int, ...] | None, str, int, int, int, int, bool]: ...
