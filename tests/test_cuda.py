"""The CUDA backend (issue 20). Its algorithm (cpp/src/gpu/sequence_gpu.h) runs on every machine
as device "cuda-sim" (host memory, loops, a reference GEMM with cuBLAS's conventions) and is
checked here against the CPU engine: outputs, final states and every gradient, for each cell
(both GRU forms, the LSTM with proj_size, the gated cells), stacked and bidirectional, ragged,
with initial states, dropout, zoneout, recurrent dropout and layer norm. The same checks run on a
real GPU (device "cuda") where one is visible, and skip with the reason otherwise; a build with
the backend (-DRNNCORE_CUDA=ON) is compiled by tests/test_cuda_build.py."""

import json

import numpy as np
import pytest
import rnncore
from rnncore import nn

GPU = rnncore.cuda.is_available()
DEVICES = [
    "cuda-sim",
    pytest.param(
        "cuda",
        marks=pytest.mark.skipif(
            not GPU,
            reason="no CUDA device visible"
            + ("" if rnncore.cuda.is_built() else " (and this build has no CUDA backend)"),
        ),
    ),
]

CONFIGS = [
    (nn.LSTM, {}),
    (nn.GRU, {}),
    (nn.RNN, {}),
    (nn.RNN, {"nonlinearity": "relu"}),
    (nn.LSTM, {"dropout": 0.4}),
    (nn.GRU, {"bias": False, "dropout": 0.3}),
    (nn.LSTM, {"zoneout": 0.2, "dropout": 0.3}),
    (nn.GRU, {"zoneout": 0.3}),
    (nn.RNN, {"zoneout": 0.25}),
    (nn.LSTM, {"recurrent_dropout": 0.3, "zoneout": 0.1}),
    (nn.GRU, {"recurrent_dropout": 0.25, "dropout": 0.2}),
    (nn.RNN, {"recurrent_dropout": 0.2}),
    (nn.GRU, {"reset_after": False}),
    (nn.GRU, {"reset_after": False, "recurrent_dropout": 0.3, "zoneout": 0.2, "dropout": 0.2}),
    (nn.GRU, {"reset_after": False, "bias": False, "zoneout": 0.1}),
    (nn.LSTM, {"proj_size": 4}),
    (nn.LSTM, {"proj_size": 3, "dropout": 0.3}),
    (nn.LSTM, {"proj_size": 2, "bias": False}),
    (nn.GatedRNN, {"gates": ()}),
    (nn.GatedRNN, {"gates": ("input",), "zoneout": 0.2, "dropout": 0.3}),
    (nn.GatedRNN, {"gates": ("input", "forget"), "recurrent_dropout": 0.3}),
    (nn.GatedRNN, {"gates": ("input", "forget"), "bias": False, "zoneout": 0.15}),
    (nn.LSTM, {"layer_norm": True}),
    (nn.LSTM, {"layer_norm": True, "zoneout": 0.2, "recurrent_dropout": 0.3, "dropout": 0.2}),
    (nn.LSTM, {"layer_norm": True, "proj_size": 4, "bias": False}),
    (nn.GRU, {"layer_norm": True}),
    (nn.GRU, {"layer_norm": True, "zoneout": 0.2, "recurrent_dropout": 0.25}),
]


def _layer(cls, kw, device, dtype, layers=2, bidirectional=True, **extra):
    return cls(
        5,
        6,
        num_layers=layers,
        bidirectional=bidirectional,
        seed=3,
        dtype=dtype,
        device=device,
        **kw,
        **extra,
    )


def _run(m, x, lens, hx, dy, dstate):
    """A training forward and backward: (y, final state, dx, d initial state, grads, norms)."""
    m.train()
    m._calls = 0  # the same dropout masks on both devices
    m.zero_grad()
    m.record_step_grad_norms = True
    y, hn = m(x, hx, lengths=lens)
    dx, dh0 = m.backward(dy, dstate)
    grads = np.concatenate([p.grad.ravel() for p in m.parameters()])
    return y, hn, dx, dh0, grads, m.step_grad_norms


def _flat(v):
    if isinstance(v, tuple):
        return np.concatenate([_flat(u) for u in v])
    return np.asarray(v, dtype=np.float64).ravel()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype, tol", [("float64", 1e-10), ("float32", 1e-5)])
@pytest.mark.parametrize("cls, kw", CONFIGS)
def test_training_step_equals_the_cpu_engine(device, dtype, tol, cls, kw):
    rng = np.random.default_rng(0)
    T, B, L, D, H = 7, 4, 2, 2, 6
    R = kw.get("proj_size", H)  # the size of h
    x = rng.standard_normal((T, B, 5)).astype(dtype)
    lens = np.array([7, 3, 5, 1])
    h0 = rng.standard_normal((L * D, B, R)).astype(dtype)
    hx = (h0, rng.standard_normal((L * D, B, H)).astype(dtype)) if cls is nn.LSTM else h0
    dy = np.cos(np.arange(T * B * D * R)).reshape(T, B, D * R).astype(dtype)
    dh = np.full((L * D, B, R), 0.3, dtype)
    dstate = (dh, np.full((L * D, B, H), -0.2, dtype)) if cls is nn.LSTM else dh
    cpu = _run(_layer(cls, kw, "cpu", dtype), x, lens, hx, dy, dstate)
    dev = _run(_layer(cls, kw, device, dtype), x, lens, hx, dy, dstate)
    names = ("y", "final state", "dx", "d initial state", "parameter gradients", "step norms")
    for name, a, b in zip(names, cpu, dev, strict=True):
        scale = max(1.0, float(np.abs(_flat(a)).max()))
        np.testing.assert_allclose(_flat(b), _flat(a), rtol=0, atol=tol * scale, err_msg=name)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    "cls, kw",
    [
        (nn.LSTM, {"layer_norm": True, "zoneout": 0.2}),
        (nn.GRU, {"layer_norm": True}),
        (nn.LSTM, {"layer_norm": True, "proj_size": 3}),
    ],
)
def test_layer_norm_with_random_gains_equals_the_cpu_engine(device, cls, kw):
    """The layer's initial gains are 1 and β_c 0, which would hide a gain used in the wrong place:
    here every parameter is random (and of either sign) on both devices."""
    rng = np.random.default_rng(5)
    layers = [
        cls(5, 6, num_layers=2, bidirectional=True, device=d, dtype="float64", seed=1, **kw)
        for d in ("cpu", device)
    ]
    values = [
        rng.uniform(0.5, 1.5, p.data.shape) * rng.choice([-1.0, 1.0], p.data.shape)
        for p in layers[0].parameters()
    ]
    x = rng.standard_normal((6, 3, 5))
    out = []
    for m in layers:
        for p, v in zip(m.parameters(), values, strict=True):
            p.data[...] = v
        m.train()
        m._calls = 0
        m.zero_grad()
        y, _ = m(x, lengths=[6, 2, 4])
        dx, _ = m.backward(np.cos(y))
        out.append((y, dx, np.concatenate([p.grad.ravel() for p in m.parameters()])))
    for name, a, b in zip(("y", "dx", "parameter gradients"), *out, strict=True):
        np.testing.assert_allclose(
            b, a, rtol=0, atol=1e-10 * max(1.0, np.abs(a).max()), err_msg=name
        )


@pytest.mark.parametrize("device", DEVICES)
def test_inference_batch_first_no_state_one_direction_and_zoneout(device):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 9, 5))  # batch first
    for cls, kw in (
        (nn.LSTM, {}),
        (nn.GRU, {}),
        (nn.LSTM, {"zoneout": 0.3}),
        (nn.GRU, {"reset_after": False}),
        (nn.LSTM, {"proj_size": 4}),
        (nn.LSTM, {"layer_norm": True, "zoneout": 0.2}),
        (nn.GRU, {"layer_norm": True}),
    ):
        a = _layer(cls, kw, "cpu", "float64", layers=3, bidirectional=False, batch_first=True)
        b = _layer(cls, kw, device, "float64", layers=3, bidirectional=False, batch_first=True)
        a.eval()
        b.eval()
        ya, ha = a(x, lengths=[9, 2, 5])
        yb, hb = b(x, lengths=[9, 2, 5])
        np.testing.assert_allclose(yb, ya, rtol=0, atol=1e-12)
        np.testing.assert_allclose(_flat(hb), _flat(ha), rtol=0, atol=1e-12)


@pytest.mark.parametrize("device", DEVICES)
def test_two_forwards_then_two_backwards_newest_first(device):
    rng = np.random.default_rng(2)
    xs = [rng.standard_normal((4, 3, 5)) for _ in range(2)]
    dys = [rng.standard_normal((4, 3, 12)) for _ in range(2)]
    out = {}
    for dev in ("cpu", device):
        m = _layer(nn.GRU, {}, dev, "float64")
        m.train()
        for x in xs:
            m(x)
        dxs = [m.backward(dy)[0] for dy in reversed(dys)]
        out[dev] = (dxs, np.concatenate([p.grad.ravel() for p in m.parameters()]))
    for a, b in zip(out["cpu"][0], out[device][0], strict=True):
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-12)
    np.testing.assert_allclose(out[device][1], out["cpu"][1], rtol=0, atol=1e-12)


@pytest.mark.parametrize("device", DEVICES)
def test_a_few_sgd_steps_train_the_same(device):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((6, 4, 5))
    target = rng.standard_normal((6, 4, 12))
    params = {}
    for dev in ("cpu", device):
        m = _layer(nn.LSTM, {"dropout": 0.2}, dev, "float64")
        opt = rnncore.optim.SGD(m.parameters(), lr=0.1)
        m.train()
        for _ in range(3):
            opt.zero_grad()
            y, _ = m(x)
            m.backward(y - target)
            opt.step()
        params[dev] = np.concatenate([p.data.ravel() for p in m.parameters()])
    np.testing.assert_allclose(params[device], params["cpu"], rtol=0, atol=1e-12)


def test_layers_without_a_gpu_version_are_refused_on_the_gpu_by_name():
    with pytest.raises(ValueError, match="this layer runs on the CPU only so far"):
        nn.Conv1d(5, 6, 3, device="cuda-sim")


def test_cuda_device_without_a_gpu_is_a_clear_runtime_error():
    assert rnncore.cuda.is_built() == rnncore._core.has_cuda()
    if GPU:
        pytest.skip("a GPU is visible here")
    with pytest.raises(RuntimeError, match="CUDA") as e:
        nn.LSTM(5, 6, device="cuda")
    assert "no CUDA backend" in str(e.value) or "no CUDA device is visible" in str(e.value)
    assert rnncore.cuda.is_available() is False
    with pytest.raises(ValueError, match="device must be 'cpu', 'cuda' or 'cuda-sim'"):
        nn.LSTM(5, 6, device="tpu")


def test_to_moves_the_recurrent_layers_of_a_model_and_keeps_its_values():
    from rnncore.models import LanguageModel

    ids = np.random.default_rng(4).integers(0, 20, size=(6, 3))
    a = LanguageModel(20, 8, 8, num_layers=2, dtype="float64", seed=5)
    b = LanguageModel(20, 8, 8, num_layers=2, dtype="float64", seed=5).to("cuda-sim")
    # a language model runs wholly on the GPU (test_cuda_resident.py: every model of
    # rnncore.models with recurrent layers)
    assert b.rnn.device == b.decoder.device == b.embedding.device == "cuda-sim"
    for m in (a, b):
        m.eval()
    la, _ = a(ids)
    lb, _ = b(ids)
    np.testing.assert_allclose(lb, la, rtol=0, atol=1e-12)
    cell = nn.LSTMCell(3, 4, seed=1, dtype="float64")
    x = np.ones((2, 3))
    h, c = cell(x)
    cell.to("cuda-sim")
    assert cell.device == "cuda-sim"
    h2, c2 = cell(x)
    np.testing.assert_allclose(h2, h, rtol=0, atol=1e-12)
    dict(cell.named_parameters())["weight_ih"].data[...] = 0.0  # still the engine layer's
    assert not np.allclose(cell(x)[0], h)


def test_train_device_option(tmp_path, capsys):
    from rnncore.cli import main

    opts = (
        "--epochs 1 --hidden 6 --steps 8 --train-size 40 --valid-size 10 --test-size 10 "
        "--batch-size 10 --no-progress --threads 1"
    ).split()
    runs = {}
    for dev in ("cpu", "cuda-sim"):
        out = tmp_path / dev
        assert main(["train", "adding", "--out", str(out), "--device", dev, *opts]) == 0
        runs[dev] = json.loads((out / "metrics.json").read_text())
    assert runs["cuda-sim"]["test"]["loss"] == pytest.approx(runs["cpu"]["test"]["loss"], rel=1e-5)
    if not GPU:
        code = main(["train", "adding", "--out", str(tmp_path / "gpu"), "--device", "cuda", *opts])
        assert code == 2
        assert "--device cuda" in capsys.readouterr().err


def test_checkpoints_are_device_free(tmp_path):
    from rnncore.models import LanguageModel
    from rnncore.train.checkpoint import load_checkpoint, save_checkpoint

    ids = np.random.default_rng(6).integers(0, 20, size=(5, 2))
    model = LanguageModel(20, 8, 8, num_layers=2, dtype="float64", seed=7).to("cuda-sim")
    model.eval()
    want, _ = model(ids)
    ckpt = load_checkpoint(save_checkpoint(tmp_path / "ck", model))
    assert ckpt.model.rnn.device == "cpu"  # a checkpoint loads onto the CPU ...
    got, _ = ckpt.model(ids)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    ckpt.model.to("cuda-sim")  # ... and moves wherever the machine allows
    np.testing.assert_allclose(ckpt.model(ids)[0], want, rtol=0, atol=1e-12)
