"""rnncore.torch on a GPU: the layers read and write torch tensors where they lie (no host round
trip), checked against the CPU engine on device "cuda-sim" (the CUDA backend's algorithm and the
same device-memory calls on host memory, everywhere) and on a real GPU where one is visible.
"""

import copy

import pytest

torch = pytest.importorskip("torch")
rt = pytest.importorskip("rnncore.torch")
import rnncore  # noqa: E402
from torch.nn.utils.rnn import pack_padded_sequence  # noqa: E402

T, B, I, H = 5, 3, 4, 6
F64 = torch.float64

DEVICES = [
    "cuda-sim",
    pytest.param(
        "cuda",
        marks=pytest.mark.skipif(
            not (rnncore.cuda.is_available() and torch.cuda.is_available()),
            reason="no CUDA device visible to both rnncore and torch (a CUDA build of rnncore, "
            "a GPU and torch with CUDA)",
        ),
    ),
]

CONFIGS = [
    ("LSTM", dict(num_layers=2, bidirectional=True)),
    ("LSTM", dict(proj_size=3, num_layers=2)),
    ("LSTM", dict(layer_norm=True, batch_first=True)),
    ("GRU", dict(num_layers=2, dropout=0.3)),
    ("GRU", dict(reset_after=False, bidirectional=True)),
    ("RNN", dict(nonlinearity="relu", bias=False)),
    ("LSTM", dict(zoneout=0.2, recurrent_dropout=0.25)),
    ("GatedRNN", dict(gates=("input", "forget"), num_layers=2, bidirectional=True)),
]


def pair(name, device, dtype=F64, **kw):
    """(layer on the CPU engine, the same weights on `device` through the device calls)."""
    torch.manual_seed(0)
    cpu = getattr(rt, name)(I, H, dtype=dtype, **kw)
    gpu = copy.deepcopy(cpu)
    if device == "cuda":
        gpu = gpu.cuda()
    else:
        gpu._cpu_engine_device = device
    return cpu, gpu


def on(device, t):
    """t on the device a test's GPU layer uses (cuda-sim reads host memory)."""
    return t.cuda() if device == "cuda" else t


def states(out):
    return list(out[1]) if isinstance(out[1], tuple) else [out[1]]


def run(layer, x, hx, seed):
    """Output, final states and every gradient of a loss that weighs each output differently."""
    torch.manual_seed(seed)  # the same dropout seed on both devices
    out = layer(x, hx)
    y, sts = out[0], states(out)
    loss = (y * torch.linspace(-1, 1, y.numel(), dtype=y.dtype, device=y.device).view_as(y)).sum()
    loss = loss + sum((s * 0.5).sum() for s in sts)
    loss.backward()
    return [y, *sts]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name,kw", CONFIGS, ids=lambda v: str(v))
def test_training_step_equals_the_cpu_engine(device, name, kw):
    cpu, gpu = pair(name, device, **kw)
    lead = (B, T) if kw.get("batch_first") else (T, B)
    x = torch.randn(*lead, I, dtype=F64, requires_grad=True)
    h = torch.randn(
        cpu.num_layers * (2 if cpu.bidirectional else 1),
        B,
        cpu.proj_size or H,
        dtype=F64,
        requires_grad=True,
    )
    c = torch.randn(h.shape[0], B, H, dtype=F64, requires_grad=True)
    hx = (h, c) if name == "LSTM" else h
    x2 = on(device, x.detach()).requires_grad_()
    h2 = on(device, h.detach()).requires_grad_()
    c2 = on(device, c.detach()).requires_grad_()
    hx2 = (h2, c2) if name == "LSTM" else h2
    want = run(cpu, x, hx, seed=7)
    got = run(gpu, x2, hx2, seed=7)
    for a, b in zip(want, got, strict=True):
        assert b.device == x2.device
        torch.testing.assert_close(b.cpu(), a.detach(), rtol=0, atol=1e-10)
    grads = [(x, x2), (h, h2)] + ([(c, c2)] if name == "LSTM" else [])
    grads += list(zip(cpu.parameters(), gpu.parameters(), strict=True))
    for a, b in grads:
        assert b.grad is not None and b.grad.device == b.device
        torch.testing.assert_close(b.grad.cpu(), a.grad, rtol=0, atol=1e-10)


@pytest.mark.parametrize("device", DEVICES)
def test_float32_packed_sequences_and_adam_steps_train_the_same(device):
    cpu, gpu = pair("LSTM", device, dtype=torch.float32, num_layers=2)
    opt_c = torch.optim.Adam(cpu.parameters(), lr=0.01)
    opt_g = torch.optim.Adam(gpu.parameters(), lr=0.01)
    lengths = torch.tensor([5, 2, 4])
    for _ in range(3):
        x = torch.randn(T, B, I)
        for layer, opt, xs in ((cpu, opt_c, x), (gpu, opt_g, on(device, x))):
            opt.zero_grad()
            packed = pack_padded_sequence(xs, lengths, enforce_sorted=False)
            y, (hn, cn) = layer(packed)
            loss = y.data.square().mean() + hn.sum() * 0.1
            loss.backward()
            opt.step()
    for a, b in zip(cpu.parameters(), gpu.parameters(), strict=True):
        torch.testing.assert_close(b.detach().cpu(), a.detach(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("device", DEVICES)
def test_retain_graph_backward_twice_and_inference(device):
    cpu, gpu = pair("GRU", device, num_layers=2)
    x = torch.randn(T, B, I, dtype=F64, requires_grad=True)
    x2 = on(device, x.detach()).requires_grad_()
    for layer, xs in ((cpu, x), (gpu, x2)):
        y, _ = layer(xs)
        y.sum().backward(retain_graph=True)
        y.sum().backward()  # a second backward recomputes the forward first
    torch.testing.assert_close(x2.grad.cpu(), x.grad, rtol=0, atol=1e-10)
    for a, b in zip(cpu.parameters(), gpu.parameters(), strict=True):
        torch.testing.assert_close(b.grad.cpu(), a.grad, rtol=0, atol=1e-10)
    with torch.no_grad():
        want, _ = cpu.eval()(x)
        got, _ = gpu.eval()(x2)
    torch.testing.assert_close(got.cpu(), want, rtol=0, atol=1e-10)


@pytest.mark.parametrize("device", DEVICES)
def test_functional_call_with_other_parameters(device):
    cpu, gpu = pair("LSTM", device)
    others = {n: p.detach() * 0.5 for n, p in cpu.named_parameters()}
    x = torch.randn(T, B, I, dtype=F64)
    want = torch.func.functional_call(cpu, others, (x,))[0]
    got = torch.func.functional_call(
        gpu, {n: on(device, p) for n, p in others.items()}, (on(device, x),)
    )[0]
    torch.testing.assert_close(got.cpu(), want, rtol=0, atol=1e-10)


def test_a_layout_with_gaps_packs_slice_by_slice():
    """flatten's fallback (offsets that do not tile the buffer) packs the same values."""
    cpu, gpu = pair("LSTM", "cuda-sim", num_layers=2)
    x = torch.randn(T, B, I, dtype=F64)
    want = gpu(x)[0]
    engine = next(iter(gpu._device_engines.values()))
    engine.tiled = False
    torch.testing.assert_close(gpu(x)[0], want, rtol=0, atol=0)
    torch.testing.assert_close(cpu(x)[0], want, rtol=0, atol=1e-12)


def test_bad_states_are_refused_by_name():
    _, gpu = pair("LSTM", "cuda-sim", num_layers=2)
    x = torch.randn(T, B, I, dtype=F64)
    h = torch.zeros(2, B, H, dtype=F64)
    with pytest.raises(ValueError, match=r"h_0 must have shape \[2, 3, 6\]"):
        gpu(x, (torch.zeros(1, B, H, dtype=F64), h))
    with pytest.raises(TypeError, match="c_0 must be torch.float64"):
        gpu(x, (h, h.float()))
    with pytest.raises(TypeError, match="input dtype torch.float32"):
        gpu(x.float())


def test_backward_refuses_other_parameters_and_keeps_the_forward():
    """The engine-level guard: a backward given other parameters than its forward read is
    refused before it consumes the forward, which a corrected call can still use."""
    from rnncore import _core

    layer = _core.RecurrentF64("gru", I, H, 1, False, True, 0.0, "cuda-sim")
    params = torch.randn(layer.params.size, dtype=F64)
    x = torch.randn(T, B, I, dtype=F64)
    y, hn = torch.empty(T, B, H, dtype=F64), torch.empty(1, B, H, dtype=F64)
    ptr = torch.Tensor.data_ptr
    saved = layer.forward_device(
        ptr(x), T, B, None, 0, 0, ptr(y), ptr(hn), 0, ptr(params), True, 0, True
    )
    dx, grads = torch.empty_like(x), torch.zeros_like(params)
    with pytest.raises(ValueError, match="params must be the parameters the forward read"):
        layer.backward_device(saved, ptr(y), 0, 0, ptr(dx), 0, 0, 0, ptr(grads))
    assert not saved.consumed
    layer.backward_device(saved, ptr(y), 0, 0, ptr(dx), 0, 0, ptr(params), ptr(grads))
    assert saved.consumed and grads.abs().sum() > 0
    cpu = _core.RecurrentF64("gru", I, H, 1, False, True, 0.0, "cpu")
    with pytest.raises(ValueError, match="the layer is on the CPU"):
        cpu.forward_device(ptr(x), T, B, None, 0, 0, ptr(y), ptr(hn), 0, 0, False, 0, True)


def test_cuda_module_without_a_gpu_is_a_clear_error():
    if rnncore.cuda.is_available() and torch.cuda.is_available():
        pytest.skip("a GPU is visible here")
    if not torch.cuda.is_available():  # torch itself cannot make CUDA tensors: nothing to run
        pytest.skip("this torch has no CUDA; the check below needs CUDA tensors")
    layer = rt.LSTM(I, H).cuda()
    with pytest.raises(RuntimeError, match="LSTM: .*(CUDA|GPU)"):
        layer(torch.randn(T, B, I, device="cuda"))
