"""rnncore.optim.lr_scheduler: learning-rate sequences equal torch's, state_dict round trips, and
bad inputs."""

import warnings

import numpy as np
import pytest
from rnncore import optim
from rnncore.nn import Parameter
from rnncore.optim import lr_scheduler as sched

EPOCHS = 30
LRS = (0.1, 0.02)  # two param groups with their own base lr


def _optimizer():
    groups = []
    for i, lr in enumerate(LRS):
        data = np.zeros(3)
        groups.append({"params": [Parameter(f"p{i}", data, np.zeros_like(data))], "lr": lr})
    return optim.SGD(groups, lr=LRS[0], momentum=0.9)


def _torch_optimizer(torch):
    groups = [{"params": [torch.nn.Parameter(torch.zeros(3))], "lr": lr} for lr in LRS]
    return torch.optim.SGD(groups, lr=LRS[0], momentum=0.9)


def _ours(make, epochs=EPOCHS, metrics=None):
    opt = _optimizer()
    s = make(opt)
    out = [[g["lr"] for g in opt.param_groups]]
    for e in range(epochs):
        opt.step()
        if metrics is None:
            s.step()
        else:
            s.step(metrics[e])
        out.append([g["lr"] for g in opt.param_groups])
        assert s.get_last_lr() == out[-1]
    return np.array(out)


def _theirs(torch, make, epochs=EPOCHS, metrics=None):
    opt = _torch_optimizer(torch)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's deprecation notes (e.g. SequentialLR's step(0))
        s = make(opt)
        out = [[g["lr"] for g in opt.param_groups]]
        for e in range(epochs):
            opt.step()
            if metrics is None:
                s.step()
            else:
                s.step(metrics[e])
            out.append([float(g["lr"]) for g in opt.param_groups])
    return np.array(out)


CASES = {
    "step": (
        lambda o: sched.StepLR(o, step_size=4, gamma=0.5),
        "StepLR",
        {"step_size": 4, "gamma": 0.5},
    ),
    "exponential": (lambda o: sched.ExponentialLR(o, gamma=0.9), "ExponentialLR", {"gamma": 0.9}),
    "cosine": (
        lambda o: sched.CosineAnnealingLR(o, T_max=10, eta_min=1e-3),
        "CosineAnnealingLR",
        {"T_max": 10, "eta_min": 1e-3},
    ),
    "cosine-to-zero": (
        lambda o: sched.CosineAnnealingLR(o, T_max=7),
        "CosineAnnealingLR",
        {"T_max": 7},
    ),
    "warmup": (
        lambda o: sched.LinearWarmup(o, warmup_steps=6, start_factor=0.25),
        "LinearLR",
        {"start_factor": 0.25, "end_factor": 1.0, "total_iters": 6},
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_lr_sequence_equals_torch(case):
    torch = pytest.importorskip("torch")
    make, tname, kwargs = CASES[case]
    ours = _ours(make)
    theirs = _theirs(torch, lambda o: getattr(torch.optim.lr_scheduler, tname)(o, **kwargs))
    np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-15)
    assert len(np.unique(ours[:, 0])) > 3  # the schedule really changes the lr


def test_warmup_then_cosine_equals_torch_sequential():
    torch = pytest.importorskip("torch")
    ours = _ours(
        lambda o: sched.LinearWarmup(
            o, 5, start_factor=0.1, after=sched.CosineAnnealingLR(o, T_max=15, eta_min=1e-4)
        )
    )

    def make_torch(o):
        warm = torch.optim.lr_scheduler.LinearLR(o, start_factor=0.1, total_iters=5)
        cos = torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=15, eta_min=1e-4)
        return torch.optim.lr_scheduler.SequentialLR(o, [warm, cos], milestones=[5])

    theirs = _theirs(torch, make_torch)
    np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-15)


def test_warmup_from_zero_then_constant():
    ours = _ours(lambda o: sched.LinearWarmup(o, 4), epochs=8)
    expected = np.array([[f * lr for lr in LRS] for f in (0, 0.25, 0.5, 0.75, 1, 1, 1, 1, 1)])
    np.testing.assert_allclose(ours, expected, rtol=1e-15)


PLATEAU = {
    "min-rel": ({"mode": "min", "factor": 0.5, "patience": 2}, None),
    "min-abs-cooldown-minlr": (
        {
            "mode": "min",
            "factor": 0.3,
            "patience": 1,
            "threshold": 0.05,
            "threshold_mode": "abs",
            "cooldown": 2,
            "min_lr": [0.01, 0.005],
        },
        None,
    ),
    "max-rel": ({"mode": "max", "factor": 0.5, "patience": 0, "threshold": 0.01}, None),
}


@pytest.mark.parametrize("case", list(PLATEAU))
def test_reduce_on_plateau_equals_torch(case):
    torch = pytest.importorskip("torch")
    kwargs, _ = PLATEAU[case]
    rng = np.random.default_rng(0)
    # improves for a while, then plateaus with noise
    metrics = [
        float(v)
        for v in np.concatenate([np.linspace(1.0, 0.5, 8), 0.5 + 0.03 * rng.standard_normal(22)])
    ]
    ours = _ours(lambda o: sched.ReduceLROnPlateau(o, **kwargs), metrics=metrics)
    theirs = _theirs(
        torch, lambda o: torch.optim.lr_scheduler.ReduceLROnPlateau(o, **kwargs), metrics=metrics
    )
    np.testing.assert_allclose(ours, theirs, rtol=1e-12)
    assert ours[-1, 0] < ours[0, 0]  # it did reduce


@pytest.mark.parametrize(
    "make",
    [
        lambda o: sched.StepLR(o, 3, 0.5),
        lambda o: sched.CosineAnnealingLR(o, 8),
        lambda o: sched.LinearWarmup(o, 3, after=sched.ExponentialLR(o, 0.8)),
        lambda o: sched.ReduceLROnPlateau(o, patience=1, factor=0.5),
    ],
)
def test_state_dict_round_trip(make):
    metrics = [1.0, 0.9, 0.95, 0.97, 0.99, 1.2, 1.3, 1.4, 1.5, 1.6, 1.7, 1.8]
    plateau = isinstance(make(_optimizer()), sched.ReduceLROnPlateau)

    def advance(s, opt, epochs):
        out = []
        for e in epochs:
            s.step(metrics[e]) if plateau else s.step()
            out.append([g["lr"] for g in opt.param_groups])
        return out

    opt = _optimizer()
    s = make(opt)
    advance(s, opt, range(5))
    saved_sched, saved_opt = s.state_dict(), opt.state_dict()
    continued = advance(s, opt, range(5, 12))
    opt2 = _optimizer()
    s2 = make(opt2)
    opt2.load_state_dict(saved_opt)
    s2.load_state_dict(saved_sched)
    assert advance(s2, opt2, range(5, 12)) == continued


def test_bad_inputs():
    opt = _optimizer()
    with pytest.raises(ValueError, match="step_size"):
        sched.StepLR(opt, 0)
    with pytest.raises(TypeError, match="step_size"):
        sched.StepLR(opt, 2.5)
    with pytest.raises(ValueError, match="gamma"):
        sched.ExponentialLR(opt, -0.5)
    with pytest.raises(ValueError, match="T_max"):
        sched.CosineAnnealingLR(opt, 0)
    with pytest.raises(ValueError, match="eta_min"):
        sched.CosineAnnealingLR(opt, 5, eta_min=-1.0)
    with pytest.raises(ValueError, match="warmup_steps"):
        sched.LinearWarmup(opt, 0)
    with pytest.raises(ValueError, match="start_factor"):
        sched.LinearWarmup(opt, 3, start_factor=2.0)
    with pytest.raises(ValueError, match="same optimizer"):
        sched.LinearWarmup(opt, 3, after=sched.StepLR(_optimizer(), 2))
    with pytest.raises(TypeError, match="optimizer"):
        sched.StepLR("sgd", 2)
    with pytest.raises(ValueError, match="factor"):
        sched.ReduceLROnPlateau(opt, factor=1.0)
    with pytest.raises(ValueError, match="mode"):
        sched.ReduceLROnPlateau(opt, mode="up")
    with pytest.raises(ValueError, match="min_lr"):
        sched.ReduceLROnPlateau(opt, min_lr=[0.1])
    with pytest.raises(TypeError, match="metrics"):
        sched.ReduceLROnPlateau(opt).step("low")
