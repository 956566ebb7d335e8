"""Neural-network layers with explicit forward and backward: recurrent layers and cells,
feed-forward layers, containers, losses, and the Module base."""

from __future__ import annotations

from .cells import GRUCell, LSTMCell, RNNCell
from .containers import ModuleList, Sequential
from .conv import Conv1d
from .crf import CRF, bio_constraints
from .keyed import batch_offset, offset_scope, set_batch_offset
from .layers import Dropout, Embedding, Linear
from .loss import CrossEntropyLoss, MSELoss
from .module import Module, Parameter, ParameterBudgetError, inference_mode, parameter_budget
from .recurrent import CELLS, GRU, LSTM, RNN, GatedRNN, recurrent_layer

__all__ = [
    "Module",
    "Parameter",
    "ParameterBudgetError",
    "parameter_budget",
    "RNN",
    "LSTM",
    "GRU",
    "GatedRNN",
    "CELLS",
    "recurrent_layer",
    "RNNCell",
    "LSTMCell",
    "GRUCell",
    "Sequential",
    "ModuleList",
    "inference_mode",
    "Embedding",
    "Linear",
    "Conv1d",
    "CRF",
    "bio_constraints",
    "Dropout",
    "batch_offset",
    "set_batch_offset",
    "offset_scope",
    "CrossEntropyLoss",
    "MSELoss",
]
