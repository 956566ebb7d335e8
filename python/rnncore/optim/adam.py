"""Adam (optionally AMSGrad) and AdamW with decoupled weight decay (torch.optim.Adam, AdamW)."""

from __future__ import annotations

from typing import Any

from .optimizer import Optimizer, _Run, check_nonneg, check_unit


def _betas(value: Any, owner: str) -> tuple[float, float]:
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise TypeError(f"{owner}: betas must be a pair (beta1, beta2), got {value!r}")
    return (check_unit(value[0], "betas[0]", owner), check_unit(value[1], "betas[1]", owner))


class Adam(Optimizer):
    """torch.optim.Adam, one engine call per flat run of parameters.

    With g = grad + weight_decay·p: m = β1·m + (1-β1)·g, v = β2·v + (1-β2)·g², v̂ = max(v̂, v)
    under AMSGrad; p -= lr/(1-β1^t) · m / (sqrt(v or v̂)/sqrt(1-β2^t) + eps).

    Args:
        params: Parameters or param-group dicts.
        lr: learning rate > 0.
        betas: (β1, β2), each in [0, 1).
        eps: >= 0, added to the denominator.
        weight_decay: L2 penalty >= 0 (added to the gradient; AdamW decouples it).
        amsgrad: keep the running maximum of v (Reddi et al. 2018).
        skip_nonfinite: skip (and count in ``skipped_steps``) steps with NaN/inf gradients.

    State per parameter: ``step``, ``exp_avg``, ``exp_avg_sq`` (and ``max_exp_avg_sq``).
    """

    _decoupled = False

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
        *,
        skip_nonfinite: bool = False,
    ) -> None:
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad)
        super().__init__(params, defaults, skip_nonfinite)

    def _check_group(self, group: dict[str, Any]) -> None:
        owner = type(self).__name__
        group["lr"] = check_nonneg(group["lr"], "lr", owner)
        group["betas"] = _betas(group["betas"], owner)
        group["eps"] = check_nonneg(group["eps"], "eps", owner)
        group["weight_decay"] = check_nonneg(group["weight_decay"], "weight_decay", owner)
        group["amsgrad"] = bool(group["amsgrad"])

    def _update(self, run: _Run, group: dict[str, Any]) -> None:
        beta1, beta2 = group["betas"]
        run.ops.adam_step(
            run.data,
            run.grad,
            self._buffer(run, "exp_avg"),
            self._buffer(run, "exp_avg_sq"),
            self._buffer(run, "max_exp_avg_sq") if group["amsgrad"] else None,
            step=run.step,
            lr=float(group["lr"]),
            beta1=float(beta1),
            beta2=float(beta2),
            eps=float(group["eps"]),
            weight_decay=float(group["weight_decay"]),
            decoupled_weight_decay=self._decoupled,
        )


class AdamW(Adam):
    """torch.optim.AdamW: Adam with decoupled weight decay (Loshchilov & Hutter 2019).

    p *= 1 - lr·weight_decay, then the Adam update without the decay in the gradient. Same
    arguments as :class:`Adam`; ``weight_decay`` defaults to 1e-2 as in PyTorch.
    """

    _decoupled = True

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        *,
        skip_nonfinite: bool = False,
    ) -> None:
        super().__init__(
            params, lr, betas, eps, weight_decay, amsgrad, skip_nonfinite=skip_nonfinite
        )
