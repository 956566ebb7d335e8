"""Forecaster: a recurrent network that predicts the next ``horizon`` values of a time series.

Layout: time-major, L input steps (the window), B batch, I input features (the target series
first, then any covariates), H hidden, h horizon. Two training set-ups:

- "many_to_one": the final hidden state -> Linear -> the h future values [B, h];
- "many_to_many": a prediction of the next h values at every input step t ([L, B, h]; the
  targets are the series' values t+1 .. t+h), so every step contributes to the loss; the
  forecast is the prediction of the last step.

Values are in the transformed (scaled, optionally log/differenced) space of
:func:`rnncore.data.make_forecast_data`; the task maps them back.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import cuda as _cuda
from .. import nn
from ..nn._checks import check_seed
from . import register
from .language_model import make_rnn
from .sequence_regressor import hidden_of, on_device_of, top_state_grad

MODES = ("many_to_one", "many_to_many")


def step_targets(x_target: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Targets of every step for "many_to_many" training.

    Args:
        x_target: the target series' window values [B, L]; y: its next h values [B, h].
    Returns:
        [L, B, h]: row t holds the values t+1 .. t+h of the concatenated window.
    """
    seg = np.concatenate([x_target, y], axis=1)  # [B, L + h]
    L, h = x_target.shape[1], y.shape[1]
    win = np.lib.stride_tricks.sliding_window_view(seg[:, 1:], h, axis=1)[:, :L]  # [B, L, h]
    return np.ascontiguousarray(win.transpose(1, 0, 2))


@register
class Forecaster(nn.Module):
    """Window [L, B, I] -> the next ``horizon`` values of the target series.

    Args:
        input_size: I, features per step (1 for a univariate series).
        hidden_size, num_layers, cell: the recurrent stack (see
            :func:`rnncore.models.language_model.make_rnn`).
        horizon: h >= 1 steps predicted at once.
        mode: "many_to_one" or "many_to_many" (see the module docstring).
        dropout: between stacked layers.
        dtype, seed: as for the layers.

    Submodules (checkpoint names): ``rnn``, ``head`` (Linear H -> h).
    Batches for the Trainer: ``(x [L, B, I], y)`` with y [B, h] ("many_to_one") or [L, B, h]
    ("many_to_many", see :func:`step_targets`).
    """

    MODEL_TYPE = "forecaster"
    #: ``.to("cuda")`` moves the whole model: inputs are copied over once per batch, the
    #: outputs, loss and gradients stay in the GPU's memory.
    _GPU_RESIDENT = True

    def __init__(
        self,
        input_size: int = 1,
        hidden_size: int = 32,
        horizon: int = 1,
        num_layers: int = 1,
        cell: str = "lstm",
        mode: str = "many_to_one",
        dropout: float = 0.0,
        dtype: str = "float32",
        seed: int | None = None,
    ) -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"Forecaster: mode must be one of {MODES}, got {mode!r}")
        if isinstance(horizon, bool) or not isinstance(horizon, (int, np.integer)) or horizon < 1:
            raise ValueError(f"Forecaster: horizon must be an integer >= 1, got {horizon!r}")
        self._config = dict(
            input_size=input_size,
            hidden_size=hidden_size,
            horizon=int(horizon),
            num_layers=num_layers,
            cell=cell,
            mode=mode,
            dropout=float(dropout),
            dtype=str(np.dtype(dtype)),
            seed=seed,
        )
        self.mode = mode
        self.horizon = int(horizon)
        self.input_size = input_size
        self.dtype = np.dtype(dtype)
        seed = check_seed(seed, "Forecaster")
        seeds = [int(s) for s in np.random.default_rng(seed).integers(0, 2**31 - 1, 2)]
        self.rnn = make_rnn(
            cell, input_size, hidden_size, num_layers, dropout=dropout, dtype=dtype, seed=seeds[0]
        )
        self.head = nn.Linear(hidden_size, self.horizon, dtype=dtype, seed=seeds[1])
        self.criterion = nn.MSELoss()

    def config(self) -> dict[str, Any]:
        """Constructor keyword arguments (JSON-ready)."""
        return dict(self._config)

    def _inputs(self, x: Any) -> np.ndarray:
        x = np.asarray(x)
        if x.ndim == 2 and self.input_size == 1:
            x = x[:, :, None]
        if x.ndim != 3 or x.shape[2] != self.input_size:
            raise ValueError(
                f"Forecaster: x must be [L, B, I={self.input_size}], got shape {x.shape}"
            )
        return on_device_of(np.ascontiguousarray(x, dtype=self.dtype), self.head)

    def forward(self, x: Any) -> np.ndarray:
        """[B, h] ("many_to_one") or [L, B, h] ("many_to_many") predictions."""
        out, state = self.rnn(self._inputs(x))
        if self.training:
            self._save_for_backward(state)
        if self.mode == "many_to_one":
            return self.head(hidden_of(state)[-1])
        return self.head(out)

    def backward(self, dpred: np.ndarray) -> None:
        """Backward of the newest unconsumed training forward (gradients accumulate)."""
        state = self._pop_saved("Forecaster.backward")
        if not _cuda._is_device_array(dpred):
            dpred = np.ascontiguousarray(dpred, dtype=self.dtype)
        dh = self.head.backward(dpred)
        if self.mode == "many_to_one":
            self.rnn.backward(None, dstate=top_state_grad(state, dh))
        else:
            self.rnn.backward(dh)

    # ---- Trainer protocol ------------------------------------------------------------------
    def _loss(self, batch: Any) -> tuple[float, int]:
        x, y = batch
        pred = self.forward(x)
        y = np.ascontiguousarray(y, dtype=self.dtype)
        if y.shape != pred.shape:
            raise ValueError(
                f"Forecaster ({self.mode}): targets must have shape {pred.shape}, got {y.shape}"
            )
        return self.criterion(pred, y), y.size

    def training_step(self, batch: Any) -> dict[str, float]:
        """MSE over every predicted value of the batch, and backward."""
        self.train()
        loss, n = self._loss(batch)
        self.backward(self.criterion.backward())
        return {"loss": loss, "count": float(n)}

    def validation_step(self, batch: Any) -> dict[str, float]:
        """Summed squared error and the number of values (transformed space)."""
        with nn.inference_mode(self):
            loss, n = self._loss(batch)
        return {"loss_sum": loss * n, "count": float(n)}

    def predict(self, x: Any) -> np.ndarray:
        """Forecasts [B, h] of windows x [L, B, I] (eval mode; the last step's prediction in
        "many_to_many")."""
        with nn.inference_mode(self):
            out = self.forward(x)
        return np.asarray(out if self.mode == "many_to_one" else out[-1])
