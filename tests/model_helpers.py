"""Helpers of the task-model tests: a whole-model finite-difference check, a minimal train loop."""

import numpy as np
from rnncore import optim

EPS = 1e-6
# |numeric - analytic| <= ATOL + RTOL * |analytic| in float64 (central differences: truncation
# ~EPS^2, rounding ~1e-16 |loss| / EPS).
ATOL, RTOL = 1e-7, 1e-5


def check_model_gradients(model, loss_fn, analytic_fn, max_per_param=None, seed=0):
    """Compare every parameter gradient of ``model`` with central differences.

    Args:
        model: a float64 model (no dropout).
        loss_fn: () -> float, the loss at the current parameters (forward only).
        analytic_fn: () -> None, forward + backward accumulating into the zeroed gradients.
        max_per_param: check at most this many random entries of each parameter (None: all).
    """
    model.zero_grad()
    analytic_fn()
    rng = np.random.default_rng(seed)
    checked = 0
    for name, p in model.named_parameters():
        grad = p.grad.copy()
        flat = p.data.reshape(-1)
        idx = np.arange(flat.size)
        if max_per_param is not None and flat.size > max_per_param:
            idx = rng.choice(flat.size, size=max_per_param, replace=False)
        numeric = np.empty(idx.size)
        for k, i in enumerate(idx):
            old = flat[i]
            flat[i] = old + EPS
            up = loss_fn()
            flat[i] = old - EPS
            down = loss_fn()
            flat[i] = old
            numeric[k] = (up - down) / (2 * EPS)
        want = grad.reshape(-1)[idx]
        err = np.abs(numeric - want) - (ATOL + RTOL * np.abs(want))
        assert np.all(err <= 0), (
            f"{name}: worst entry {idx[err.argmax()]}: numeric {numeric[err.argmax()]}, "
            f"analytic {want[err.argmax()]}"
        )
        checked += idx.size
    return checked


def train(model, batches, *, epochs, lr, clip=None, optimizer="adam"):
    """Minimal training loop following the Trainer protocol; returns the last epoch's mean loss.

    ``batches`` is a list (or a zero-argument callable giving a fresh iterable per epoch).
    """
    params = model.parameters()
    opt = optim.Adam(params, lr=lr) if optimizer == "adam" else optim.SGD(params, lr=lr)
    model.train()
    mean = None
    for _ in range(epochs):
        if hasattr(model, "on_epoch_start"):
            model.on_epoch_start(True)
        total = count = 0.0
        for batch in batches() if callable(batches) else batches:
            opt.zero_grad()
            out = model.training_step(batch)
            if clip is not None:
                optim.clip_grad_norm(params, clip)
            opt.step()
            total += out["loss"] * out["count"]
            count += out["count"]
        mean = total / count
    return mean


def evaluate(model, batches):
    """Summed validation stats turned into metrics, as the Trainer's evaluate does."""
    model.eval()
    if hasattr(model, "on_epoch_start"):
        model.on_epoch_start(False)
    sums = {}
    for batch in batches:
        for k, v in model.validation_step(batch).items():
            sums[k] = sums.get(k, 0.0) + v
    model.train()
    return model.epoch_metrics(sums)
