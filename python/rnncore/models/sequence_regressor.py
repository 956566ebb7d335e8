"""SequenceRegressor: one recurrent stack + a linear read-out, for the long-range tasks.

The model of the vanishing-gradient lesson: the adding problem (regression from the last step),
the copy / memory task (a class at every step) and sequential pixel-by-pixel digits (a class from
the last step).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import cuda as _cuda
from .. import nn
from ..nn._checks import check_seed
from . import register
from .language_model import CELLS, make_rnn

# Command-line spellings: "irnn" is a ReLU RNN with identity recurrent weights (Le et al. 2015).
CELL_ALIASES = {"irnn": ("rnn_relu", "identity"), "tanh": ("rnn", "uniform")}


def resolve_cell(cell: str, init: str = "uniform") -> tuple[str, str]:
    """(cell, init) for a command-line cell name: "irnn" -> ("rnn_relu", "identity")."""
    if cell in CELL_ALIASES:
        alias_cell, alias_init = CELL_ALIASES[cell]
        return alias_cell, (alias_init if init == "uniform" else init)
    if cell not in CELLS:
        known = ", ".join(CELLS + tuple(CELL_ALIASES))
        raise ValueError(f"cell must be one of {known}; got {cell!r}")
    return cell, init


def hidden_of(state: Any) -> np.ndarray:
    """h [L*D, B, H] of a layer state (the h of an LSTM's (h, c))."""
    return state[0] if isinstance(state, tuple) else state


def top_state_grad(state: Any, dh: Any) -> Any:
    """The gradient of a layer ``state`` whose only use was the top layer's final hidden state
    hidden_of(state)[-1] [B, H], given its gradient ``dh``: zeros elsewhere (c included), numpy or
    device arrays as the state."""
    h = hidden_of(state)
    if isinstance(h, _cuda.DeviceArray):  # the model on a GPU
        dh_n: Any = _cuda.DeviceArray.zeros(h.shape, h.dtype, h.device)
        dh_n[h.shape[0] - 1] = dh
    else:
        dh_n = np.zeros_like(h)
        dh_n[-1] = dh
    return (dh_n, None) if isinstance(state, tuple) else dh_n


def on_device_of(x: np.ndarray, layer: Any) -> Any:
    """Host inputs ``x`` copied to ``layer``'s GPU when it lives on one (a model wholly on the
    GPU: its recurrent layers then return device arrays), else ``x``."""
    device = getattr(layer, "device", "cpu")
    return x if device == "cpu" else _cuda.to_device(x, device)


@register
class SequenceRegressor(nn.Module):
    """Inputs [T, B, I] (or ids [T, B]) -> recurrent stack -> Linear read-out.

    Args:
        input_size: features per step I (with ``vocab_size``: the embedding size).
        hidden_size: H.
        output_size: O, the outputs of the read-out (1 for the adding problem, classes otherwise).
        num_layers: stacked layers.
        cell: "rnn", "rnn_relu", "lstm", "gru" or "gru_v1" (see :func:`make_rnn`).
        readout: "last" -- one output per sequence from the top layer's final hidden state (each
            sequence's own last step when lengths differ) -> [B, O]; "all" -- an output at every
            step -> [T, B, O].
        loss: "mse" (regression; targets [B, O] or [B] when O == 1, or [T, B, O]) or
            "cross_entropy" (classes; integer targets [B] or [T, B], ``ignore_index`` -100).
        vocab_size: when given, inputs are integer ids [T, B] looked up in ``embedding``.
        init: recurrent weight initialisation ("uniform", "orthogonal", "identity" = IRNN).
        forget_bias: LSTM forget-gate bias (e.g. 1.0), or None.
        dtype, seed: as for the layers.

    Submodules (checkpoint names): ``embedding`` (only with vocab_size), ``rnn``, ``head``.
    Batches for the Trainer: ``(x, y)`` or ``(x, y, lengths)``.
    """

    MODEL_TYPE = "sequence_regressor"
    #: ``.to("cuda")`` moves the whole model: inputs are copied over once per batch, the
    #: outputs, loss and gradients stay in the GPU's memory.
    _GPU_RESIDENT = True

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        output_size: int = 1,
        num_layers: int = 1,
        cell: str = "lstm",
        readout: str = "last",
        loss: str = "mse",
        vocab_size: int | None = None,
        init: str = "uniform",
        forget_bias: float | None = None,
        dtype: str = "float32",
        seed: int | None = None,
    ) -> None:
        super().__init__()
        if readout not in ("last", "all"):
            raise ValueError(f"SequenceRegressor: readout must be 'last' or 'all', got {readout!r}")
        if loss not in ("mse", "cross_entropy"):
            raise ValueError(
                f"SequenceRegressor: loss must be 'mse' or 'cross_entropy', got {loss!r}"
            )
        self._config = dict(
            input_size=input_size,
            hidden_size=hidden_size,
            output_size=output_size,
            num_layers=num_layers,
            cell=cell,
            readout=readout,
            loss=loss,
            vocab_size=vocab_size,
            init=init,
            forget_bias=forget_bias,
            dtype=str(np.dtype(dtype)),
            seed=seed,
        )
        self.readout = readout
        self.loss_kind = loss
        self.dtype = np.dtype(dtype)
        rng = np.random.default_rng(check_seed(seed, "SequenceRegressor"))
        seeds = [int(s) for s in rng.integers(0, 2**31 - 1, size=3)]
        if vocab_size is not None:
            self.embedding = nn.Embedding(vocab_size, input_size, dtype=dtype, seed=seeds[0])
        else:
            self.embedding = None
        self.rnn = make_rnn(
            cell,
            input_size,
            hidden_size,
            num_layers,
            dtype=dtype,
            seed=seeds[1],
            init=init,
            forget_bias=forget_bias,
        )
        self.head = nn.Linear(hidden_size, output_size, dtype=dtype, seed=seeds[2])
        self.criterion = nn.MSELoss() if loss == "mse" else nn.CrossEntropyLoss(class_axis=-1)
        self._num_layers = num_layers
        self._hidden_size = hidden_size

    def config(self) -> dict[str, Any]:
        """Constructor keyword arguments (JSON-ready)."""
        return dict(self._config)

    # ---- forward / backward ----------------------------------------------------------------
    def _inputs(self, x: Any) -> np.ndarray:
        if self.embedding is not None:
            return self.embedding(np.asarray(x))
        x = np.asarray(x)
        if x.ndim != 3:
            raise ValueError(f"SequenceRegressor.forward: x must be [T, B, I], got {x.shape}")
        return on_device_of(np.ascontiguousarray(x, dtype=self.dtype), self.head)

    def forward(self, x: Any, lengths: Any = None) -> np.ndarray:
        """Outputs: [B, O] (readout "last") or [T, B, O] (readout "all")."""
        out, state = self.rnn(self._inputs(x), lengths=lengths)
        if self.training:
            self._save_for_backward(state)
        if self.readout == "last":
            return self.head(hidden_of(state)[-1])
        return self.head(out)

    def backward(self, dout: np.ndarray) -> None:
        """Backward of the newest unconsumed training forward: accumulates every parameter
        gradient."""
        state = self._pop_saved("SequenceRegressor.backward")
        if not _cuda._is_device_array(dout):
            dout = np.ascontiguousarray(dout, dtype=self.dtype)
        dh = self.head.backward(dout)
        if self.readout == "last":
            dx, _ = self.rnn.backward(None, dstate=top_state_grad(state, dh))
        else:
            dx, _ = self.rnn.backward(dh)
        if self.embedding is not None:
            self.embedding.backward(dx)

    def _targets(self, y: Any, out: np.ndarray) -> np.ndarray:
        y = np.asarray(y)
        if self.loss_kind == "cross_entropy":
            return y.astype(np.int64, copy=False)
        y = y.astype(self.dtype, copy=False)
        return y.reshape(out.shape) if y.size == out.size else y

    def _unpack(self, batch: Any) -> tuple[Any, Any, Any]:
        if len(batch) == 2:
            return batch[0], batch[1], None
        return batch[0], batch[1], batch[2]

    def _sums(self, out: np.ndarray, y: np.ndarray, loss: float) -> dict[str, float]:
        if self.loss_kind == "cross_entropy":
            count = float(self.criterion.count)
            valid = y != self.criterion.ignore_index
            correct = float(((np.asarray(out).argmax(-1) == y) & valid).sum())
            return {"loss_sum": loss * count, "count": count, "correct": correct}
        return {"loss_sum": loss * y.size, "count": float(y.size)}

    # ---- Trainer protocol ------------------------------------------------------------------
    def training_step(self, batch: Any) -> dict[str, float]:
        """Forward, loss (mean), backward on one ``(x, y[, lengths])`` batch."""
        x, y, lengths = self._unpack(batch)
        self.train()
        out = self.forward(x, lengths)
        y = self._targets(y, out)
        loss = self.criterion(out, y)
        self.backward(self.criterion.backward())
        sums = self._sums(out, y, loss)
        result = {"loss": loss, "count": sums["count"]}
        if "correct" in sums:
            result["correct"] = sums["correct"]
        return result

    def validation_step(self, batch: Any) -> dict[str, float]:
        """Summed loss (and correct predictions for classes) of one batch, forward only."""
        x, y, lengths = self._unpack(batch)
        with nn.inference_mode(self):
            out = self.forward(x, lengths)
            y = self._targets(y, out)
            loss = self.criterion(out, y)
            return self._sums(out, y, loss)

    def epoch_metrics(self, sums: dict[str, float]) -> dict[str, float]:
        """Mean loss; accuracy for classification."""
        count = max(sums.get("count", 0.0), 1.0)
        metrics = {"loss": sums["loss_sum"] / count}
        if "correct" in sums:
            metrics["accuracy"] = sums["correct"] / count
        return metrics

    def predict(self, x: Any, lengths: Any = None) -> np.ndarray:
        """Outputs in eval mode (a numpy float array wherever the model runs; take
        ``argmax(-1)`` for classes)."""
        with nn.inference_mode(self):
            return np.asarray(self.forward(x, lengths))

    @property
    def record_step_grad_norms(self) -> bool:
        """When True, ``rnn.step_grad_norms`` [L, T] holds ||dL/dh_t|| after each backward."""
        return self.rnn.record_step_grad_norms

    @record_step_grad_norms.setter
    def record_step_grad_norms(self, value: bool) -> None:
        self.rnn.record_step_grad_norms = bool(value)
