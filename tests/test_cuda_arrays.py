"""Device arrays in and out of the recurrent layers on a GPU (issue 20's zero-copy item):
rnncore.cuda.DeviceArray, arrays exposing __cuda_array_interface__ or __dlpack__ read where they
lie, against the CPU engine on numpy arrays. Device "cuda-sim" (the CUDA backend's algorithm on
host memory) runs everything everywhere; the real-GPU tests skip without one.
"""

from __future__ import annotations

import gc

import numpy as np
import pytest
from rnncore import _core, cuda, nn

T, B, I, H = 5, 3, 4, 6
SIM = "cuda-sim"
GPU = pytest.mark.skipif(not cuda.is_available(), reason="no CUDA device visible to rnncore")


def rand(*shape, dtype=np.float64, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def layer_pair(cls, device=SIM, dtype=np.float64, **kw):
    """The same layer (same seed, same weights) on the CPU engine and on ``device``."""
    return cls(I, H, dtype=dtype, seed=3, **kw), cls(I, H, dtype=dtype, seed=3, device=device, **kw)


def assert_same_states(device, host):
    """A state (h, or (h, c)) of DeviceArrays equal to the host one to 1e-10."""
    device = device if isinstance(device, tuple) else (device,)
    host = host if isinstance(host, tuple) else (host,)
    for d, h in zip(device, host, strict=True):
        assert isinstance(d, cuda.DeviceArray)
        np.testing.assert_allclose(d.numpy(), h, atol=1e-10)


class CudaArrayInterface:
    """A foreign array (as CuPy's) exposing host memory through __cuda_array_interface__: on
    cuda-sim the device's memory is the host's, so the layer reads it in place."""

    def __init__(self, a: np.ndarray, strides=None, stream=None):
        self.a = a
        self.__cuda_array_interface__ = {
            "shape": a.shape,
            "typestr": a.dtype.str,
            "data": (a.ctypes.data, False),
            "strides": strides,
            "version": 3,
            "stream": stream,
        }


class DLPackOnCuda:
    """A foreign DLPack producer saying (CUDA, device_id) over host memory (cuda-sim's)."""

    def __init__(self, a: np.ndarray, device_id: int = 0, versioned_only: bool = False):
        self.a, self.device_id, self.versioned_only = a, device_id, versioned_only
        self.calls = []

    def __dlpack_device__(self):
        return (2, self.device_id)

    def __dlpack__(self, *, stream=None, max_version=None):
        self.calls.append((stream, max_version))
        bits = self.a.dtype.itemsize * 8
        return _core.dlpack_capsule(
            self,
            self.a.ctypes.data,
            list(self.a.shape),
            bits,
            2,
            self.device_id,
            max_version is not None,
        )


class RefusingProducer:
    """As a PyTorch CUDA tensor that requires grad: both protocols refuse."""

    @property
    def __cuda_array_interface__(self):
        raise RuntimeError("Can't get __cuda_array_interface__ on Variable that requires grad")

    def __dlpack_device__(self):
        return (2, 0)

    def __dlpack__(self, **kw):
        raise RuntimeError("requires grad: use detach()")


# ---- DeviceArray -----------------------------------------------------------------------------
def test_device_array_round_trip_and_attributes():
    a = rand(2, 3, 4, dtype=np.float32)
    d = cuda.to_device(a, SIM)
    assert (d.shape, d.dtype, d.device, d.ndim, d.size, d.nbytes, len(d)) == (
        (2, 3, 4),
        np.float32,
        SIM,
        3,
        24,
        96,
        2,
    )
    assert repr(d) == "DeviceArray(shape=(2, 3, 4), dtype=float32, device='cuda-sim')"
    np.testing.assert_array_equal(d.numpy(), a)
    np.testing.assert_array_equal(np.asarray(d), a)
    assert np.asarray(d, dtype=np.float64).dtype == np.float64
    with pytest.raises(ValueError, match="needs a copy"):
        d.__array__(copy=False)
    assert cuda.to_device([1, 2], SIM).dtype == np.float32  # integers become float32
    assert cuda.to_device(rand(3), SIM).dtype == np.float64
    empty = cuda.DeviceArray((0, 4), device=SIM)
    assert empty.ptr == 0 and empty.numpy().shape == (0, 4)


def test_device_array_refuses_bad_arguments():
    with pytest.raises(TypeError, match="dtype must be float32, float64 or int64"):
        cuda.DeviceArray((2,), np.int32, SIM)
    with pytest.raises(ValueError, match="shape must be >= 0"):
        cuda.DeviceArray((2, -1), device=SIM)
    with pytest.raises(TypeError, match="shape must be integers"):
        cuda.DeviceArray(("a",), device=SIM)
    with pytest.raises(ValueError, match="'cuda' or 'cuda-sim'"):
        cuda.DeviceArray((2,), device="cpu")
    with pytest.raises(ValueError, match="device must be"):
        cuda.DeviceArray((2,), device="tpu")
    with pytest.raises(TypeError, match="0-d"):
        len(cuda.DeviceArray((), device=SIM))


@pytest.mark.skipif(cuda.is_available(), reason="a GPU is visible")
def test_device_array_on_cuda_without_gpu_says_why():
    with pytest.raises(RuntimeError, match="device 'cuda'"):
        cuda.DeviceArray((2,), device="cuda")


def test_dlpack_export_is_zero_copy_and_keeps_the_memory_alive():
    a = rand(4, 5)
    d = cuda.to_device(a, SIM)
    assert d.__dlpack_device__() == (1, 0)  # cuda-sim's memory is the host's
    with pytest.raises(AttributeError, match="cuda-sim"):
        d.__cuda_array_interface__  # noqa: B018
    view = np.from_dlpack(d)
    assert view.ctypes.data == d.ptr and view.shape == (4, 5)
    del d
    gc.collect()
    junk = [cuda.to_device(rand(4, 5, seed=9), SIM) for _ in range(8)]  # reuse, if it were freed
    np.testing.assert_array_equal(view, a)
    del junk
    # Both capsule versions describe the same memory; an unconsumed capsule frees itself.
    d = cuda.to_device(a, SIM)
    for version in (None, (1, 0)):
        cap = d.__dlpack__(max_version=version)
        ptr, shape, strides, kind, bits, lanes, dev, dev_id, ro = _core.dlpack_view(cap)
        assert (ptr, shape, strides, kind, bits, lanes, dev, dev_id, ro) == (
            d.ptr,
            (4, 5),
            None,
            "f",
            64,
            1,
            1,
            0,
            False,
        )
        del cap
    with pytest.raises(BufferError, match="copy=True"):
        d.__dlpack__(copy=True)
    with pytest.raises(BufferError, match="cannot export"):
        d.__dlpack__(dl_device=(2, 0))
    with pytest.raises(ValueError, match="DLPack capsule"):
        _core.dlpack_view(object())


# ---- layers on device arrays -----------------------------------------------------------------
CONFIGS = [
    (nn.LSTM, dict(num_layers=2, bidirectional=True)),
    (nn.LSTM, dict(proj_size=3, batch_first=True)),
    (nn.GRU, dict(num_layers=2, dropout=0.4)),
    (nn.RNN, dict(nonlinearity="relu", bidirectional=True, batch_first=True)),
    (nn.LSTM, dict(layer_norm=True, zoneout=0.2, recurrent_dropout=0.25)),
]


@pytest.mark.parametrize("cls, kw", CONFIGS, ids=lambda v: getattr(v, "__name__", str(v)))
def test_layer_on_device_arrays_equals_the_cpu_engine(cls, kw):
    cpu, sim = layer_pair(cls, **kw)
    x = rand(B, T, I) if kw.get("batch_first") else rand(T, B, I)
    lengths = [5, 2, 4]
    lead = cpu.num_layers * cpu.num_directions
    h0 = rand(lead, B, cpu.state_size, seed=1)
    hx = (h0, rand(lead, B, H, seed=2)) if cls is nn.LSTM else h0
    y, st = cpu(x, hx, lengths=lengths)
    dev_hx = (
        tuple(cuda.to_device(s, SIM) for s in hx) if cls is nn.LSTM else cuda.to_device(hx, SIM)
    )
    yd, std = sim(cuda.to_device(x, SIM), dev_hx, lengths=lengths)
    assert isinstance(yd, cuda.DeviceArray) and yd.shape == y.shape
    np.testing.assert_allclose(yd.numpy(), y, atol=1e-10)
    assert_same_states(std, st)
    dy = rand(*y.shape, seed=4)
    dh = rand(*(st[0] if isinstance(st, tuple) else st).shape, seed=5)
    dst = (dh, None) if cls is nn.LSTM else dh
    dx, dhx = cpu.backward(dy, dst)
    dst_d = (cuda.to_device(dh, SIM), None) if cls is nn.LSTM else cuda.to_device(dh, SIM)
    dxd, dhxd = sim.backward(cuda.to_device(dy, SIM), dst_d)
    assert isinstance(dxd, cuda.DeviceArray) and dxd.shape == dx.shape
    np.testing.assert_allclose(dxd.numpy(), dx, atol=1e-10)
    assert_same_states(dhxd, dhx)
    for (name, p), (_, q) in zip(cpu.named_parameters(), sim.named_parameters(), strict=True):
        np.testing.assert_allclose(q.grad, p.grad, atol=1e-10, err_msg=name)
    assert sim.saved_forwards == 0


def test_float32_device_forward_and_inference_mode():
    cpu, sim = layer_pair(nn.GRU, dtype=np.float32, num_layers=2)
    x = rand(T, B, I, dtype=np.float32)
    cpu.eval()
    sim.eval()
    y, h = cpu(x)
    yd, hd = sim(cuda.to_device(x, SIM))
    np.testing.assert_allclose(yd.numpy(), y, atol=1e-5)
    np.testing.assert_allclose(hd.numpy(), h, atol=1e-5)
    assert sim.saved_forwards == 0


def test_device_and_host_calls_mix_on_one_layer():
    """Forwards stack last in, first out whichever side their arrays are on; a device forward
    takes a host backward (numpy out) and the other way round; host states go with device x."""
    cpu, sim = layer_pair(nn.LSTM)
    x1, x2 = rand(T, B, I, seed=1), rand(T, B, I, seed=2)
    h0 = rand(1, B, H, seed=3), rand(1, B, H, seed=4)
    y1, _ = cpu(x1, h0)
    y2, _ = cpu(x2)
    y1d, _ = sim(cuda.to_device(x1, SIM), h0)  # device x, host (h0, c0): uploaded
    y2d, _ = sim(x2)  # host forward
    np.testing.assert_allclose(y1d.numpy(), y1, atol=1e-10)
    np.testing.assert_allclose(y2d, y2, atol=1e-10)
    dy1, dy2 = rand(*y1.shape, seed=5), rand(*y2.shape, seed=6)
    dx2, _ = cpu.backward(dy2)
    dx1, (dh1, dc1) = cpu.backward(dy1)
    dx2d, _ = sim.backward(cuda.to_device(dy2, SIM))  # device backward of the host forward
    dx1d, (dh1d, dc1d) = sim.backward(dy1)  # host backward of the device forward
    assert isinstance(dx2d, cuda.DeviceArray) and isinstance(dx1d, np.ndarray)
    np.testing.assert_allclose(dx2d.numpy(), dx2, atol=1e-10)
    np.testing.assert_allclose(dx1d, dx1, atol=1e-10)
    np.testing.assert_allclose(dc1d, dc1, atol=1e-10)
    for (name, p), (_, q) in zip(cpu.named_parameters(), sim.named_parameters(), strict=True):
        np.testing.assert_allclose(q.grad, p.grad, atol=1e-10, err_msg=name)


def test_foreign_device_arrays_are_read_in_place():
    cpu, sim = layer_pair(nn.LSTM, batch_first=True)
    x = rand(B, T, I)
    y, _ = cpu(x)
    yd, _ = sim(CudaArrayInterface(x))
    np.testing.assert_allclose(yd.numpy(), y, atol=1e-10)
    producer = DLPackOnCuda(x)
    yd2, _ = sim(producer)
    np.testing.assert_allclose(yd2.numpy(), y, atol=1e-10)
    assert producer.calls == [(1, (1, 0))]  # the legacy default stream, DLPack 1.0
    dy = rand(*y.shape, seed=1)
    dx, _ = cpu.backward(dy)
    cpu(x)
    dxd, _ = sim.backward(DLPackOnCuda(dy))
    np.testing.assert_allclose(dxd.numpy(), dx, atol=1e-10)
    dxd2, _ = sim.backward(CudaArrayInterface(dy))
    np.testing.assert_allclose(dxd2.numpy(), cpu.backward(dy)[0], atol=1e-10)


def test_device_arrays_bad_input_is_named():
    _, sim = layer_pair(nn.LSTM)
    x = rand(T, B, I)
    with pytest.raises(
        TypeError, match="LSTM.forward: x must be float64 like the layer, got float32"
    ):
        sim(cuda.to_device(x.astype(np.float32), SIM))
    with pytest.raises(ValueError, match=r"x must be \[T, B, I=4\]"):
        sim(cuda.to_device(rand(T, B, 5), SIM))
    with pytest.raises(ValueError, match="x must have shape 3-d"):
        sim(cuda.to_device(rand(T, B), SIM))
    with pytest.raises(ValueError, match=r"hx must have shape \(1, 3, 6\)"):
        sim(cuda.to_device(x, SIM), (rand(1, 2, H), rand(1, B, H)))
    with pytest.raises(ValueError, match=r"lengths must be \[B=3\]"):
        sim(cuda.to_device(x, SIM), lengths=[1, 2])
    with pytest.raises(ValueError, match="C-contiguous"):
        sim(CudaArrayInterface(x, strides=(8, 8 * T, 8 * T * B)))
    with pytest.raises(ValueError, match=r"DLPack device \(2, 1\)"):
        sim(DLPackOnCuda(x, device_id=1))
    with pytest.raises(RuntimeError, match="training-mode forward first"):
        sim.backward(cuda.to_device(rand(T, B, H), SIM))
    sim(cuda.to_device(x, SIM))
    with pytest.raises(ValueError, match=r"dy must have shape \(5, 3, 6\)"):
        sim.backward(cuda.to_device(rand(T, 2, H), SIM))
    sim.record_step_grad_norms = True  # measured on device arrays as on host arrays
    dy = rand(T, B, H)
    dx, _ = sim.backward(cuda.to_device(dy, SIM))  # the forward was kept
    assert dx.shape == (T, B, I)
    on_device = sim.step_grad_norms
    sim(x)
    sim.backward(dy)
    assert on_device.shape == (1, T)
    np.testing.assert_allclose(on_device, sim.step_grad_norms, rtol=1e-12)
    sim.record_step_grad_norms = False
    with pytest.raises(TypeError, match="x cannot be read as DLPack: requires grad"):
        sim(RefusingProducer())
    cpu_layer = nn.LSTM(I, H, dtype=np.float64)
    with pytest.raises(TypeError, match="in GPU memory .* on 'cpu'"):
        cpu_layer(CudaArrayInterface(x))
    other = nn.LSTM(I, H, dtype=np.float64)
    with pytest.raises(TypeError, match="numpy array"):
        other(cuda.to_device(x, SIM))  # a cuda-sim array on a CPU layer: not readable there


# ---- a real GPU ------------------------------------------------------------------------------
@GPU
def test_gpu_torch_tensors_in_and_out_without_copies():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA here")
    cpu, gpu = layer_pair(nn.LSTM, device="cuda", dtype=np.float32, num_layers=2)
    x = rand(T, B, I, dtype=np.float32)
    y, _ = cpu(x)
    xt = torch.from_numpy(x).cuda()
    yd, (hd, cd) = gpu(xt)
    assert yd.__dlpack_device__() == (2, 0)
    yt = torch.from_dlpack(yd)
    assert yt.is_cuda and yt.data_ptr() == yd.ptr
    np.testing.assert_allclose(yt.cpu().numpy(), y, atol=1e-5)
    assert yd.__cuda_array_interface__["data"][0] == yd.ptr
    dy = rand(*y.shape, dtype=np.float32, seed=1)
    dx, _ = cpu.backward(dy)
    dxd, _ = gpu.backward(torch.from_numpy(dy).cuda())
    np.testing.assert_allclose(torch.from_dlpack(dxd).cpu().numpy(), dx, atol=1e-5)
    for (name, p), (_, q) in zip(cpu.named_parameters(), gpu.named_parameters(), strict=True):
        np.testing.assert_allclose(q.grad, p.grad, atol=1e-5, err_msg=name)


@GPU
def test_gpu_cupy_arrays_in_and_out_without_copies():
    cupy = pytest.importorskip("cupy")
    cpu, gpu = layer_pair(nn.GRU, device="cuda", dtype=np.float32, batch_first=True)
    x = rand(B, T, I, dtype=np.float32)
    y, _ = cpu(x)
    yd, _ = gpu(cupy.asarray(x))
    yc = cupy.asarray(yd)
    assert yc.data.ptr == yd.ptr
    np.testing.assert_allclose(cupy.asnumpy(yc), y, atol=1e-5)


def test_device_array_views_assignment_and_copies():
    a = cuda.to_device(np.arange(12.0).reshape(4, 3), SIM)
    np.testing.assert_array_equal(a[1].numpy(), [3.0, 4.0, 5.0])
    np.testing.assert_array_equal(a[-1].numpy(), [9.0, 10.0, 11.0])
    np.testing.assert_array_equal(a[1:3].numpy(), [[3, 4, 5], [6, 7, 8]])
    assert a[1:3].ptr == a.ptr + 3 * 8 and a[5:9].shape == (0, 3)
    np.testing.assert_array_equal(a.reshape(-1)[4:6].numpy(), [4.0, 5.0])
    a[1:3] = 0  # views write through: a device memset
    a[0] = [7.0, 8.0, 9.0]  # a host array copied in
    a[3] = 1.5  # a number, broadcast
    np.testing.assert_array_equal(a.numpy(), [[7, 8, 9], [0, 0, 0], [0, 0, 0], [1.5, 1.5, 1.5]])
    b = a.copy()
    a.fill(2.0)
    assert b.numpy()[0, 0] == 7.0 and (a.numpy() == 2.0).all()  # the copy has its own memory
    a[...] = b
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    z = cuda.DeviceArray.zeros((2, 2), np.float32, SIM)
    assert z.dtype == np.float32 and not z.numpy().any()
    with pytest.raises(IndexError, match="index 4 out of range"):
        a[4]
    with pytest.raises(ValueError, match="step 1"):
        a[::2]
    with pytest.raises(TypeError, match="only a"):
        a[0, 1]
    with pytest.raises(ValueError, match=r"cannot assign shape \(2,\)"):
        a[0] = [1.0, 2.0]
    with pytest.raises(TypeError, match="cannot assign a float32 array"):
        a[...] = z
    with pytest.raises(ValueError, match="cannot reshape"):
        a.reshape(5, -1)
