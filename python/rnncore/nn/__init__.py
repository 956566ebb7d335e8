"""Neural-network layers with explicit forward and backward: recurrent layers and the Module base."""

from __future__ import annotations

from .module import Module, Parameter
from .recurrent import GRU, LSTM, RNN

__all__ = ["Module", "Parameter", "RNN", "LSTM", "GRU"]
