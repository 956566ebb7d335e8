"""Neural-network layers with explicit forward and backward: recurrent and feed-forward layers,
losses, and the Module base."""

from __future__ import annotations

from .layers import Dropout, Embedding, Linear
from .loss import CrossEntropyLoss, MSELoss
from .module import Module, Parameter, ParameterBudgetError, parameter_budget
from .recurrent import CELLS, GRU, LSTM, RNN, recurrent_layer

__all__ = [
    "Module",
    "Parameter",
    "ParameterBudgetError",
    "parameter_budget",
    "RNN",
    "LSTM",
    "GRU",
    "CELLS",
    "recurrent_layer",
    "Embedding",
    "Linear",
    "Dropout",
    "CrossEntropyLoss",
    "MSELoss",
]
