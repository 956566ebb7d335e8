"""The cell registry and the device seam: one list of cells read by every layer of the package."""

import numpy as np
import pytest
import rnncore
from rnn_helpers import CELLS, make_layer, reference
from rnncore import _core
from rnncore.models.language_model import CELLS as MODEL_CELLS
from rnncore.models.language_model import make_rnn
from rnncore.reference import CELLS as REFERENCE_CELLS


def test_registry_lists_the_builtin_cells_once():
    names = [c["name"] for c in _core.cells()]
    assert len(set(names)) == len(names)
    by_name = {c["name"]: c for c in _core.cells()}
    builtin = {"rnn": (1, 1), "rnn_relu": (1, 1), "lstm": (4, 2), "gru": (3, 1), "gru_v1": (3, 1)}
    for name, (gates, states) in builtin.items():
        assert (by_name[name]["gates"], by_name[name]["states"]) == (gates, states), name
    assert by_name["rnn_relu"]["layer_option"] == "nonlinearity=relu"
    assert by_name["gru_v1"]["torch_mode"] == "GRU"


def test_every_registered_cell_has_a_reference_a_layer_and_a_model_name():
    """The recipe for a new cell: a registry entry is not enough without these."""
    for name, info in rnncore.nn.CELLS.items():
        assert name in REFERENCE_CELLS, f"{name}: no NumPy reference in rnncore.reference.CELLS"
        assert name in MODEL_CELLS, f"{name}: model configs cannot name it"
        layer = rnncore.nn.recurrent_layer(name, 3, 4)
        assert type(layer).__name__ == info["layer"]
        assert layer.cell == name


@pytest.mark.parametrize("cell", list(CELLS))
def test_every_registered_cell_matches_its_reference(cell):
    """Two layers, both directions, ragged lengths, initial states; float64 engine vs NumPy."""
    rng = np.random.default_rng(5)
    T, B, I, H = 6, 4, 3, 5
    layer = make_layer(cell, I, H, num_layers=2, bidirectional=True, seed=1)
    x = rng.standard_normal((T, B, I))
    lengths = np.array([6, 2, 5, 1])
    h0 = rng.standard_normal((4, B, H))
    state = (h0, rng.standard_normal((4, B, H))) if CELLS[cell]["states"] == 2 else h0
    y, out_state = layer(x, lengths=lengths, state=state)
    want_y, want_h, want_c = reference(cell, layer, x, lengths, state, 2, True)
    np.testing.assert_allclose(y, want_y, rtol=0, atol=1e-12)
    got_h = out_state[0] if want_c is not None else out_state
    np.testing.assert_allclose(got_h, want_h, rtol=0, atol=1e-12)
    if want_c is not None:
        np.testing.assert_allclose(out_state[1], want_c, rtol=0, atol=1e-12)


def test_recurrent_layer_maps_names_to_pytorch_options():
    assert rnncore.nn.recurrent_layer("rnn_relu", 2, 3).nonlinearity == "relu"
    assert rnncore.nn.recurrent_layer("rnn", 2, 3).nonlinearity == "tanh"
    assert rnncore.nn.recurrent_layer("gru_v1", 2, 3).reset_after is False
    assert rnncore.nn.GRU(2, 3, reset_after=False).cell == "gru_v1"
    with pytest.raises(ValueError, match="cell must be one of"):
        rnncore.nn.recurrent_layer("transformer", 2, 3)
    with pytest.raises(ValueError, match="model: cell must be one of"):
        make_rnn("transformer", 2, 3)


@pytest.mark.parametrize(
    "build",
    [
        lambda **kw: rnncore.nn.LSTM(3, 4, **kw),
        lambda **kw: rnncore.nn.GRU(3, 4, **kw),
        lambda **kw: rnncore.nn.RNN(3, 4, **kw),
        lambda **kw: rnncore.nn.Linear(3, 4, **kw),
        lambda **kw: rnncore.nn.Embedding(10, 4, **kw),
    ],
    ids=["LSTM", "GRU", "RNN", "Linear", "Embedding"],
)
def test_device_argument(build):
    assert build().device == "cpu"
    assert build(device="cpu").device == "cpu"
    if not _core.has_cuda():
        with pytest.raises(RuntimeError, match="CUDA"):
            build(device="cuda")
    with pytest.raises(ValueError, match="device must be 'cpu', 'cuda' or 'cuda-sim', got 'tpu'"):
        build(device="tpu")
    with pytest.raises(TypeError, match="device must be a string"):
        build(device=0)


def test_cuda_error_names_the_layer():
    if _core.has_cuda():
        pytest.skip("this build has CUDA")
    with pytest.raises(RuntimeError, match=r"^LSTM: device 'cuda'.*without CUDA"):
        rnncore.nn.LSTM(3, 4, device="cuda")
