"""CRF: a linear-chain conditional random field output layer (the taggers'), on the engine."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import _core
from ._checks import check_seed, float_dtype, positive_int
from .layers import _check_array, _FlatModule, one_call_at_a_time


def bio_constraints(tag_names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """The transitions a BIO (IOB2) tag set allows: (allowed [K, K] bool, allowed_start [K]).

    I-X may follow only B-X or I-X, and never starts a sentence; every other tag goes anywhere.
    Names that are not BIO ("O", "NN", ...) are unconstrained.
    """
    K = len(tag_names)
    allowed = np.ones((K, K), dtype=bool)
    start = np.ones(K, dtype=bool)
    for j, name in enumerate(tag_names):
        if not name.startswith("I-"):
            continue
        kind = name[2:]
        start[j] = False
        for i, prev in enumerate(tag_names):
            allowed[i, j] = prev in (f"B-{kind}", f"I-{kind}")
    return allowed, start


class CRF(_FlatModule):
    """Linear-chain CRF over K tags (Lafferty et al. 2001; Lample et al. 2016's tagger layer).

    score(y | e) = start[y_0] + Σ_t e[t, y_t] + Σ_t transitions[y_{t-1}, y_t] + end[y_{n-1}],
    p(y | e) = exp(score) / Σ_y' exp(score(y')): the forward algorithm, its gradient by
    forward-backward and Viterbi decoding run in the engine, one sequence per thread.

    Args:
        num_tags: K.
        constraints: None, or (allowed [K, K] bool, allowed_start [K] bool): forbidden
            transitions and first tags get probability 0 in training and decoding (see
            :func:`bio_constraints`).
        dtype: 'float32' or 'float64'.
        seed: seed of the U(-0.1, 0.1) initialisation (pytorch-crf's).

    Parameters (pytorch-crf's names): ``transitions`` [K, K] (row: from, column: to),
    ``start_transitions`` [K], ``end_transitions`` [K].
    Shapes: emissions [T, B, K] (time-major, like the taggers' logits), tags int [T, B] (ignored
    past each length), lengths [B] in [1, T].
    """

    def __init__(
        self,
        num_tags: int,
        *,
        constraints: tuple[np.ndarray, np.ndarray] | None = None,
        dtype: Any = "float32",
        seed: int | None = None,
    ) -> None:
        super().__init__()
        owner = "CRF"
        self.num_tags = K = positive_int(num_tags, "num_tags", owner)
        self.dtype = float_dtype(dtype, owner)
        self._allocate(
            self.dtype,
            [("transitions", (K, K)), ("start_transitions", (K,)), ("end_transitions", (K,))],
        )
        self.transitions, self.start_transitions, self.end_transitions = self._parameters
        self.allowed: np.ndarray | None = None
        self.allowed_start: np.ndarray | None = None
        if constraints is not None:
            allowed, start = (np.ascontiguousarray(a, dtype=bool) for a in constraints)
            if allowed.shape != (K, K) or start.shape != (K,):
                raise ValueError(
                    f"{owner}: constraints must be (allowed [K={K}, K], allowed_start [K]), got "
                    f"shapes {allowed.shape} and {start.shape}"
                )
            if not start.any():
                raise ValueError(f"{owner}: constraints allow no first tag")
            self.allowed, self.allowed_start = allowed, start
        self._rng = np.random.default_rng(check_seed(seed, owner))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Every score ~ U(-0.1, 0.1)."""
        self._flat[...] = self._rng.uniform(-0.1, 0.1, size=self._flat.shape)

    def _params(self) -> tuple[Any, ...]:
        return (
            self.transitions.data,
            self.start_transitions.data,
            self.end_transitions.data,
            self.allowed,
            self.allowed_start,
        )

    def _inputs(self, emissions: Any, lengths: Any, where: str) -> tuple[np.ndarray, np.ndarray]:
        e = _check_array(emissions, "emissions", where, self.dtype)
        if e.ndim != 3 or e.shape[2] != self.num_tags:
            raise ValueError(
                f"{where}: emissions must be [T, B, K={self.num_tags}], got shape {e.shape}"
            )
        # -inf marks an impossible tag; NaN and +inf are garbage, which the engine would report
        # as a forbidden path
        if np.isnan(e).any() or np.isposinf(e).any():
            raise ValueError(f"{where}: emissions contain NaN or +inf values")
        T, B, _ = e.shape
        lens = np.full(B, T, np.int64) if lengths is None else np.asarray(lengths)
        if lens.shape != (B,) or lens.dtype.kind not in "iu":
            raise ValueError(f"{where}: lengths must be B={B} integers, got {lengths!r}")
        return e, np.ascontiguousarray(lens, dtype=np.int64)

    @one_call_at_a_time
    def forward(self, emissions: np.ndarray, tags: Any, lengths: Any = None) -> float:
        """Σ over the batch of -log p(tags | emissions) (a float). In training mode the
        gradients are computed alongside and kept for :meth:`backward`."""
        where = "CRF.forward"
        e, lens = self._inputs(emissions, lengths, where)
        y = np.asarray(tags)
        if y.shape != e.shape[:2] or y.dtype.kind not in "iu":
            raise ValueError(f"{where}: tags must be int [T, B]={e.shape[:2]}, got {y.shape}")
        # padding targets (the taggers' -100) are never read, but must be valid ids to pass
        T = e.shape[0]
        y = np.where(np.arange(T)[:, None] < lens[None, :], y, 0).astype(np.int64)
        grads = None
        if self.training:
            K = self.num_tags
            grads = (
                np.zeros((K, K), self.dtype),
                np.zeros(K, self.dtype),
                np.zeros(K, self.dtype),
            )
        nll, d_em = _core.crf_nll(e, lens, y, *self._params(), *(grads or (None, None, None)))
        if self.training:
            self._save_for_backward((d_em, grads))
        return float(nll)

    @one_call_at_a_time
    def backward(self, scale: float = 1.0) -> np.ndarray:
        """Adds scale · the parameter gradients of the newest training forward; returns
        scale · d(NLL)/d(emissions) [T, B, K] (zero past each length). scale is the factor
        the loss applied to the summed NLL (1/B for the batch mean)."""
        if isinstance(scale, bool) or not isinstance(scale, (int, float, np.integer, np.floating)):
            raise TypeError(f"CRF.backward: scale must be a number, got {type(scale).__name__}")
        d_em, (dtr, dst, den) = self._pop_saved("CRF.backward")
        self.transitions.grad[...] += scale * dtr
        self.start_transitions.grad[...] += scale * dst
        self.end_transitions.grad[...] += scale * den
        return d_em * self.dtype.type(scale)

    def decode(self, emissions: np.ndarray, lengths: Any = None) -> np.ndarray:
        """The most probable tags (Viterbi): int64 [T, B], -1 past each length."""
        e, lens = self._inputs(emissions, lengths, "CRF.decode")
        return _core.crf_viterbi(e, lens, *self._params())

    def extra_repr(self) -> str:
        s = f"num_tags={self.num_tags}"
        if self.allowed is not None:
            s += ", constrained"
        if self.dtype != np.float32:
            s += f", dtype='{self.dtype}'"
        return s
