"""Adagrad with learning-rate decay and an initial accumulator value (torch.optim.Adagrad)."""

from __future__ import annotations

from typing import Any

from .optimizer import Optimizer, _Run, check_nonneg


class Adagrad(Optimizer):
    """torch.optim.Adagrad (dense gradients), one engine call per flat run of parameters.

    With g = grad + weight_decay·p: clr = lr / (1 + (t-1)·lr_decay), s += g²,
    p -= clr · g / (sqrt(s) + eps).

    Args:
        params: Parameters or param-group dicts.
        lr: learning rate > 0.
        lr_decay: >= 0.
        weight_decay: L2 penalty >= 0.
        initial_accumulator_value: >= 0, the starting value of s.
        eps: >= 0.
        skip_nonfinite: skip (and count in ``skipped_steps``) steps with NaN/inf gradients.

    State per parameter: ``step``, ``sum``.
    """

    def __init__(
        self,
        params: Any,
        lr: float = 1e-2,
        lr_decay: float = 0.0,
        weight_decay: float = 0.0,
        initial_accumulator_value: float = 0.0,
        eps: float = 1e-10,
        *,
        skip_nonfinite: bool = False,
    ) -> None:
        defaults = dict(
            lr=lr,
            lr_decay=lr_decay,
            weight_decay=weight_decay,
            initial_accumulator_value=initial_accumulator_value,
            eps=eps,
        )
        super().__init__(params, defaults, skip_nonfinite)

    def _check_group(self, group: dict[str, Any]) -> None:
        owner = "Adagrad"
        group["lr"] = check_nonneg(group["lr"], "lr", owner)
        group["lr_decay"] = check_nonneg(group["lr_decay"], "lr_decay", owner)
        group["weight_decay"] = check_nonneg(group["weight_decay"], "weight_decay", owner)
        group["initial_accumulator_value"] = check_nonneg(
            group["initial_accumulator_value"], "initial_accumulator_value", owner
        )
        group["eps"] = check_nonneg(group["eps"], "eps", owner)

    def _update(self, run: _Run, group: dict[str, Any]) -> None:
        run.ops.adagrad_step(
            run.data,
            run.grad,
            self._buffer(run, "sum", float(group["initial_accumulator_value"])),
            step=run.step,
            lr=float(group["lr"]),
            lr_decay=float(group["lr_decay"]),
            weight_decay=float(group["weight_decay"]),
            eps=float(group["eps"]),
        )
