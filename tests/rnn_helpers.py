"""Helpers shared by the layer tests: the table of cells, layer construction, inputs, tolerances."""

import numpy as np
import rnncore
from rnncore.reference import CELLS as REFERENCE_CELLS
from rnncore.reference import reference_cell_forward

# Every registered cell (the engine's registry): a cell added there is tested by every suite that
# parametrizes over CELLS. Values: the registry entry (layer, gates, states, ...).
CELLS = dict(rnncore.nn.CELLS)
# Older spellings some tests use.
_ALIASES = {"rnn_tanh": "rnn", "gru_reset_before": "gru_v1"}
# cells that torch.nn implements (GRU reset_after=False has no torch counterpart)
TORCH_CELLS = ["rnn", "rnn_relu", "lstm", "gru"]

# max |got - want| allowed, relative to max(1, max |want|)
TOL = {"float32": 1e-5, "float64": 1e-10}


def cell_name(cell):
    """The registry name of a test's cell id."""
    return _ALIASES.get(cell, cell)


def mode_of(cell):
    """ "RNN", "LSTM" or "GRU": the PyTorch-style mode of the cell's weights."""
    return REFERENCE_CELLS[cell_name(cell)][0]


def is_lstm(cell):
    """True for a cell whose state is (h, c)."""
    return CELLS[cell_name(cell)]["states"] == 2


def make_layer(
    cell, input_size, hidden_size, num_layers=1, bidirectional=False, dtype="float64", seed=0, **kw
):
    """An rnncore.nn layer for the cell id; extra keywords go to the constructor."""
    return rnncore.nn.recurrent_layer(
        cell_name(cell),
        input_size,
        hidden_size,
        num_layers=num_layers,
        bidirectional=bidirectional,
        dtype=dtype,
        seed=seed,
        **kw,
    )


def weights64(layer):
    """The layer's parameters as float64 {PyTorch name: array}."""
    return {k: np.asarray(v, dtype=np.float64) for k, v in layer.state_dict().items()}


def reference(cell, layer, x, lengths=None, state=None, num_layers=1, bidirectional=False):
    """reference_forward with the layer's current weights; x time-major. Returns (y, h, c|None)."""
    h0, c0 = split_state(cell, state)
    return reference_cell_forward(
        cell_name(cell),
        x,
        weights64(layer),
        num_layers=num_layers,
        bidirectional=bidirectional,
        lengths=lengths,
        h0=h0,
        c0=c0,
    )


def split_state(cell, state):
    """state as the layer takes/returns it -> (h, c or None)."""
    if state is None:
        return None, None
    if is_lstm(cell):
        h, c = state
        return h, c
    return state, None


def join_state(cell, h, c=None):
    """(h, c) -> state as the layer takes it: (h, c) for LSTM, h otherwise."""
    return (h, c) if is_lstm(cell) else h


def random_state(rng, cell, num_layers, dirs, batch, hidden, dtype):
    h = rng.standard_normal((num_layers * dirs, batch, hidden)).astype(dtype)
    c = rng.standard_normal(h.shape).astype(dtype) if is_lstm(cell) else None
    return join_state(cell, h, c)


def random_lengths(rng, batch, steps):
    """Distinct-ish lengths in [1, T], always including T and 1 when batch allows."""
    lengths = rng.integers(1, steps + 1, size=batch)
    lengths[0] = steps
    if batch > 1:
        lengths[1] = 1
    rng.shuffle(lengths)
    return lengths.astype(np.int64)


def assert_close(got, want, dtype, what):
    got = np.asarray(got)
    want = np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != expected {want.shape}"
    scale = max(1.0, float(np.abs(want).max(initial=0.0)))
    err = float(np.abs(got.astype(np.float64) - want).max(initial=0.0))
    assert err <= TOL[str(dtype)] * scale, f"{what}: max abs error {err:.3e} (scale {scale:.3g})"


def param_by_name(layer):
    params = layer.parameters()
    out = {p.name: p for p in params}
    assert len(out) == len(params), "parameter names must be unique"
    return out


def state_list(cell, state):
    """state as a list of its arrays: [h] or, for LSTM, [h, c]."""
    h, c = split_state(cell, state)
    return [h, c] if is_lstm(cell) else [h]


def assert_same(got, want, what=""):
    """Equal up to the last bits: for results of two layer instances or two code paths.

    Bit-for-bit equality is only asked of repeated calls on one instance; across instances
    the engine's rounding may differ in the last place (see test_layer_api's determinism test).
    """
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    rtol, atol = (1e-5, 1e-6) if got.dtype == np.float32 else (1e-12, 1e-14)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, err_msg=what)
