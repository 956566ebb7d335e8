"""Optimizers (SGD, Adam, AdamW, RMSprop, Adagrad, Adadelta), gradient clipping and learning-rate
schedules.

PyTorch's API without autograd: ``opt = Adam(model.parameters(), lr=1e-3)``, then per batch
``opt.zero_grad()``, forward/backward, ``clip_grad_norm(model.parameters(), 5.0)``,
``opt.step()``. Each step is one C++ call per flat run of adjacent parameters (see
:mod:`rnncore.optim.optimizer`); the updates follow torch.optim's formulas exactly.
"""

from __future__ import annotations

from . import lr_scheduler
from .adadelta import Adadelta
from .adagrad import Adagrad
from .adam import Adam, AdamW
from .clip import (
    all_finite,
    clip_grad_norm,
    clip_grad_norm_,
    clip_grad_value,
    clip_grad_value_,
    grad_norm,
)
from .optimizer import Optimizer
from .rmsprop import RMSprop
from .sgd import SGD

__all__ = [
    "Optimizer",
    "SGD",
    "Adam",
    "AdamW",
    "RMSprop",
    "Adagrad",
    "Adadelta",
    "clip_grad_norm",
    "clip_grad_norm_",
    "clip_grad_value",
    "clip_grad_value_",
    "grad_norm",
    "all_finite",
    "lr_scheduler",
]
