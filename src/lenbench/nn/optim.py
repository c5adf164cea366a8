"""Adam and AdamW over one flat buffer: the same update as ``torch.optim.Adam``/``AdamW``, bit for bit, in a few
operations per step for all parameters instead of about eight per parameter tensor.

A module that trains several small networks has dozens of parameter tensors of a few hundred numbers each; torch's
default (single-tensor) Adam spends most of its time dispatching eight small operations per tensor (about 55 % of a
psi network's operations per epoch). :class:`FlatAdam` makes every parameter a view into one contiguous buffer and
keeps the moments in two more, so that one step is one concatenation of the gradients and the same elementwise
operations as torch's, each over the whole buffer. Every element goes through the same arithmetic as in torch's
update (same operations, same order, same scalars), so the weights are those of ``torch.optim.Adam``/``AdamW`` bit
for bit (``tests/test_optim.py``, in every ATen CPU capability of the machine).

``state_dict`` is torch Adam's format (``step``, ``exp_avg``, ``exp_avg_sq`` per parameter), so a checkpoint loads
into either optimiser; ``param_groups[0]["lr"]`` is read at every step, so schedulers and ``LearningRateMonitor`` work.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn


class FlatAdam(torch.optim.Optimizer):
    """``torch.optim.Adam`` (``decoupled_weight_decay=False``) or ``AdamW`` (``True``) over one flat buffer.

    One parameter group; no ``amsgrad``, ``maximize`` or tensor learning rate. Every parameter must have a gradient
    at every step (the networks lenbench trains always do); torch's Adam would skip one without and this raises.
    """

    def __init__(
        self,
        params: Iterable[nn.Parameter],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        decoupled_weight_decay: bool = False,
    ) -> None:
        params = [p for p in params if p.requires_grad]
        if not params:
            raise ValueError("FlatAdam: no parameter requires a gradient")
        defaults = {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay}
        super().__init__(params, defaults)
        self.decoupled_weight_decay = decoupled_weight_decay
        self._flat = _flatten(params)
        self._grad = torch.empty_like(self._flat)
        self._exp_avg = torch.zeros_like(self._flat)
        self._exp_avg_sq = torch.zeros_like(self._flat)
        self._steps = 0

    @property
    def _params(self) -> list[nn.Parameter]:
        return self.param_groups[0]["params"]

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:  # noqa: ANN401 - torch's signature
        """One Adam(W) step for every parameter: torch's single-tensor update, each operation on the whole buffer."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        group = self.param_groups[0]
        lr, (beta1, beta2), eps, weight_decay = (group[k] for k in ("lr", "betas", "eps", "weight_decay"))
        params = self._params
        if params[0].data_ptr() != self._flat.data_ptr():
            raise RuntimeError("FlatAdam: the parameters' storage was replaced after the optimiser was built")
        grads = [p.grad for p in params]
        if any(g is None for g in grads):
            raise RuntimeError("FlatAdam: a parameter has no gradient (torch's Adam would skip it)")
        grad = torch.cat([g.reshape(-1) for g in grads], out=self._grad)
        self._steps += 1
        step = float(self._steps)
        if weight_decay != 0:
            if self.decoupled_weight_decay:
                self._flat.mul_(1 - lr * weight_decay)
            else:
                grad = grad.add(self._flat, alpha=weight_decay)
        self._exp_avg.lerp_(grad, 1 - beta1)
        self._exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        bias_correction1 = 1 - beta1**step
        bias_correction2 = 1 - beta2**step
        step_size = lr / bias_correction1
        bias_correction2_sqrt = bias_correction2**0.5
        denom = (self._exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)
        self._flat.addcdiv_(self._exp_avg, denom, value=-step_size)
        return loss

    def state_dict(self) -> dict[str, Any]:
        """torch Adam's state dict: per parameter its step and views of the two moments."""
        self._publish_state()
        return super().state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a state saved by this class or by ``torch.optim.Adam``/``AdamW`` over the same parameters."""
        super().load_state_dict(state_dict)
        steps = set()
        for param, exp_avg, exp_avg_sq in self._moments():
            state = self.state.get(param)
            if not state:
                raise ValueError("FlatAdam.load_state_dict: every parameter needs its Adam state")
            exp_avg.copy_(state["exp_avg"])
            exp_avg_sq.copy_(state["exp_avg_sq"])
            steps.add(int(float(state["step"])))
        if len(steps) != 1:
            raise ValueError(
                f"FlatAdam.load_state_dict: the parameters were at different steps {sorted(steps)}"
            )
        self._steps = steps.pop()
        self._publish_state()

    def _moments(self) -> list[tuple[nn.Parameter, torch.Tensor, torch.Tensor]]:
        """Per parameter: itself and its slices of the two moment buffers, shaped like it."""
        out, offset = [], 0
        for param in self._params:
            size = param.numel()
            moments = (b[offset : offset + size].view_as(param) for b in (self._exp_avg, self._exp_avg_sq))
            out.append((param, *moments))
            offset += size
        return out

    def _publish_state(self) -> None:
        step = torch.tensor(float(self._steps))
        for param, exp_avg, exp_avg_sq in self._moments():
            self.state[param] = {"step": step.clone(), "exp_avg": exp_avg, "exp_avg_sq": exp_avg_sq}


def make_optimizer(name: str, params: Iterable[nn.Parameter], lr: float, weight_decay: float) -> FlatAdam:
    """The optimiser a config names (``adam`` or ``adamw``), with torch's defaults for betas and eps."""
    if name not in ("adam", "adamw"):
        raise ValueError(f"unknown optimizer {name!r}: adam or adamw")
    return FlatAdam(params, lr=lr, weight_decay=weight_decay, decoupled_weight_decay=name == "adamw")


def _flatten(params: list[nn.Parameter]) -> torch.Tensor:
    """Copy ``params`` into one buffer (on their device) and make each parameter a view of its slice."""
    devices = {p.device for p in params}
    dtypes = {p.dtype for p in params}
    if len(devices) != 1 or len(dtypes) != 1:
        raise ValueError(f"FlatAdam: parameters on one device and of one dtype, got {devices} {dtypes}")
    flat = torch.cat([p.detach().reshape(-1) for p in params])
    offset = 0
    for param in params:
        size = param.numel()
        param.data = flat[offset : offset + size].view_as(param)
        offset += size
    return flat
