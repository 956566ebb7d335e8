"""Adadelta (torch.optim.Adadelta): Kim (2014)'s optimizer for the sentence CNN."""

from __future__ import annotations

from typing import Any

from .optimizer import Optimizer, _Run, check_nonneg


class Adadelta(Optimizer):
    """torch.optim.Adadelta (Zeiler 2012), one engine call per flat run of parameters.

    With g = grad + weight_decay·p: s = ρ·s + (1-ρ)·g², Δ = sqrt(u + eps) / sqrt(s + eps) · g,
    u = ρ·u + (1-ρ)·Δ², p -= lr·Δ.

    Args:
        params: Parameters or param-group dicts.
        lr: scale of the update, >= 0 (1.0: Zeiler's and Kim's).
        rho: decay of both running averages, in [0, 1] (Kim: 0.95).
        eps: >= 0 (Kim: 1e-6).
        weight_decay: L2 penalty >= 0.
        skip_nonfinite: skip (and count in ``skipped_steps``) steps with NaN/inf gradients.

    State per parameter: ``step``, ``square_avg``, ``acc_delta``.
    """

    def __init__(
        self,
        params: Any,
        lr: float = 1.0,
        rho: float = 0.9,
        eps: float = 1e-6,
        weight_decay: float = 0.0,
        *,
        skip_nonfinite: bool = False,
    ) -> None:
        defaults = dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay)
        super().__init__(params, defaults, skip_nonfinite)

    def _check_group(self, group: dict[str, Any]) -> None:
        owner = "Adadelta"
        group["lr"] = check_nonneg(group["lr"], "lr", owner)
        group["rho"] = check_nonneg(group["rho"], "rho", owner)
        if group["rho"] > 1.0:
            raise ValueError(f"{owner}: rho must be in [0, 1], got {group['rho']}")
        group["eps"] = check_nonneg(group["eps"], "eps", owner)
        group["weight_decay"] = check_nonneg(group["weight_decay"], "weight_decay", owner)

    def _update(self, run: _Run, group: dict[str, Any]) -> None:
        run.ops.adadelta_step(
            run.data,
            run.grad,
            self._buffer(run, "square_avg"),
            self._buffer(run, "acc_delta"),
            lr=float(group["lr"]),
            rho=float(group["rho"]),
            eps=float(group["eps"]),
            weight_decay=float(group["weight_decay"]),
        )
