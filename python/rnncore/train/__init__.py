"""Training toolkit: the Trainer, checkpoints, truncated BPTT and gradient diagnostics.

- :class:`Trainer` — epochs, validation, clipping, LR schedules, early stopping, metrics history
  (JSON/CSV/plots), best/last checkpoints and exact resumes; :class:`TrainingDiverged`. Under
  mpiexec, data parallel over the ranks (see :mod:`rnncore.distributed`).
- :func:`save_checkpoint` / :func:`load_checkpoint` — checkpoint directories (model.safetensors,
  checkpoint.json, optimizer.safetensors), written atomically.
- :class:`StateCarrier` and friends — carry recurrent state across truncated-BPTT windows.
- :func:`step_gradient_norms` / :func:`plot_step_gradient_norms` — vanishing/exploding gradients.
- :func:`get_rng_state` / :func:`set_rng_state` — the random state of models and data pipelines.
"""

from __future__ import annotations

from .checkpoint import (
    Checkpoint,
    CheckpointError,
    load_checkpoint,
    resolve_checkpoint,
    save_checkpoint,
    tied_parameters,
)
from .diagnostics import plot_step_gradient_norms, recurrent_layers, step_gradient_norms
from .rng import get_rng_state, named_modules, set_rng_state
from .tbptt import StateCarrier, detach_state, reset_state_columns, state_batch_size, zero_state
from .trainer import Trainer, TrainingDiverged, plot_history, write_history

__all__ = [
    "Trainer",
    "TrainingDiverged",
    "plot_history",
    "write_history",
    "Checkpoint",
    "CheckpointError",
    "save_checkpoint",
    "load_checkpoint",
    "resolve_checkpoint",
    "tied_parameters",
    "StateCarrier",
    "detach_state",
    "zero_state",
    "reset_state_columns",
    "state_batch_size",
    "step_gradient_norms",
    "plot_step_gradient_norms",
    "recurrent_layers",
    "get_rng_state",
    "set_rng_state",
    "named_modules",
]
