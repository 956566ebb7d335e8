"""RMSprop with optional momentum and centering (torch.optim.RMSprop)."""

from __future__ import annotations

from typing import Any

from .optimizer import Optimizer, _Run, check_nonneg


class RMSprop(Optimizer):
    """torch.optim.RMSprop, one engine call per flat run of parameters.

    With g = grad + weight_decay·p: s = α·s + (1-α)·g²; centered: ḡ = α·ḡ + (1-α)·g and
    avg = sqrt(s - ḡ²) + eps, else avg = sqrt(s) + eps; with momentum b = μ·b + g/avg and
    p -= lr·b, else p -= lr·g/avg.

    Args:
        params: Parameters or param-group dicts.
        lr: learning rate > 0.
        alpha: smoothing constant >= 0.
        eps: >= 0.
        weight_decay: L2 penalty >= 0.
        momentum: >= 0.
        centered: normalise by the estimated variance instead of the second moment.
        skip_nonfinite: skip (and count in ``skipped_steps``) steps with NaN/inf gradients.

    State per parameter: ``step``, ``square_avg`` (and ``grad_avg``, ``momentum_buffer``).
    """

    def __init__(
        self,
        params: Any,
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        centered: bool = False,
        *,
        skip_nonfinite: bool = False,
    ) -> None:
        defaults = dict(
            lr=lr,
            alpha=alpha,
            eps=eps,
            weight_decay=weight_decay,
            momentum=momentum,
            centered=centered,
        )
        super().__init__(params, defaults, skip_nonfinite)

    def _check_group(self, group: dict[str, Any]) -> None:
        owner = "RMSprop"
        group["lr"] = check_nonneg(group["lr"], "lr", owner)
        group["alpha"] = check_nonneg(group["alpha"], "alpha", owner)
        group["eps"] = check_nonneg(group["eps"], "eps", owner)
        group["weight_decay"] = check_nonneg(group["weight_decay"], "weight_decay", owner)
        group["momentum"] = check_nonneg(group["momentum"], "momentum", owner)
        group["centered"] = bool(group["centered"])

    def _update(self, run: _Run, group: dict[str, Any]) -> None:
        momentum = float(group["momentum"])
        run.ops.rmsprop_step(
            run.data,
            run.grad,
            self._buffer(run, "square_avg"),
            self._buffer(run, "grad_avg") if group["centered"] else None,
            self._buffer(run, "momentum_buffer") if momentum > 0 else None,
            lr=float(group["lr"]),
            alpha=float(group["alpha"]),
            eps=float(group["eps"]),
            weight_decay=float(group["weight_decay"]),
            momentum=momentum,
            centered=bool(group["centered"]),
        )
