"""Stochastic gradient descent: momentum, dampening, Nesterov, weight decay (torch.optim.SGD)."""

from __future__ import annotations

from typing import Any

from .optimizer import Optimizer, _Run, check_finite, check_nonneg


class SGD(Optimizer):
    """torch.optim.SGD, one engine call per flat run of parameters.

    With g = grad + weight_decay·p: b = g on the first step, then b = momentum·b +
    (1-dampening)·g; the update direction is g + momentum·b (Nesterov) or b; p -= lr·direction.

    Args:
        params: Parameters (e.g. ``model.parameters()``) or param-group dicts.
        lr: learning rate > 0.
        momentum: >= 0.
        dampening: dampening of the momentum (finite).
        weight_decay: L2 penalty >= 0.
        nesterov: Nesterov momentum (needs momentum > 0 and dampening == 0).
        skip_nonfinite: skip (and count in ``skipped_steps``) steps with NaN/inf gradients.

    State per parameter: ``momentum_buffer`` (shaped like it) when momentum != 0.
    """

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        *,
        skip_nonfinite: bool = False,
    ) -> None:
        defaults = dict(
            lr=lr,
            momentum=momentum,
            dampening=dampening,
            weight_decay=weight_decay,
            nesterov=nesterov,
        )
        super().__init__(params, defaults, skip_nonfinite)

    def _check_group(self, group: dict[str, Any]) -> None:
        owner = "SGD"
        group["lr"] = check_nonneg(group["lr"], "lr", owner)
        group["momentum"] = check_nonneg(group["momentum"], "momentum", owner)
        group["dampening"] = check_finite(group["dampening"], "dampening", owner)
        group["weight_decay"] = check_nonneg(group["weight_decay"], "weight_decay", owner)
        group["nesterov"] = bool(group["nesterov"])
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError(f"{owner}: nesterov needs momentum > 0 and dampening == 0")

    def _update(self, run: _Run, group: dict[str, Any]) -> None:
        momentum = float(group["momentum"])
        buf = None
        first = False
        if momentum != 0.0:
            first = "momentum_buffer" not in run.state
            buf = self._buffer(run, "momentum_buffer")
        run.ops.sgd_step(
            run.data,
            run.grad,
            buf,
            lr=float(group["lr"]),
            momentum=momentum,
            dampening=float(group["dampening"]),
            weight_decay=float(group["weight_decay"]),
            nesterov=bool(group["nesterov"]),
            first_step=first,
        )
