"""The optimizer (AdamW, optionally with pure-bf16 states) and the learning-rate schedules."""

from __future__ import annotations

import math
from typing import Any

import torch


class AdamWBF16States(torch.optim.Optimizer):
    """AdamW whose moment estimates are stored in bf16 (half the optimizer memory).

    The update is computed in fp32 from the bf16 moments and applied to the fp32 weights,
    so only the stored state is rounded: the guide's "pure-bf16 optimiser states".
    """

    def __init__(self, params, lr: float, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 1e-2):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    def load_state_dict(self, state_dict) -> None:
        super().load_state_dict(state_dict)
        for state in self.state.values():  # torch casts loaded states to the weights' fp32: back to bf16
            for key in ("exp_avg", "exp_avg_sq"):
                if key in state:
                    state[key] = state[key].to(torch.bfloat16)

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p, dtype=torch.bfloat16)
                    state["exp_avg_sq"] = torch.zeros_like(p, dtype=torch.bfloat16)
                state["step"] += 1
                grad = p.grad.float()
                m = state["exp_avg"].float().mul_(beta1).add_(grad, alpha=1 - beta1)
                v = state["exp_avg_sq"].float().mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                state["exp_avg"].copy_(m)
                state["exp_avg_sq"].copy_(v)
                t = state["step"]
                denom = (v / (1 - beta2 ** t)).sqrt_().add_(group["eps"])
                p.mul_(1 - group["lr"] * group["weight_decay"])
                p.addcdiv_(m, denom, value=-group["lr"] / (1 - beta1 ** t))


def make_optimizer(params: list, training: dict[str, Any]) -> torch.optim.Optimizer:
    """AdamW (fp32 states) or AdamWBF16States, from the preset's adam_* keys."""
    kwargs = dict(lr=training["learning_rate"], betas=(training["adam_beta1"], training["adam_beta2"]),
                  eps=training["adam_epsilon"], weight_decay=training["adam_weight_decay"])
    if training["optimizer"] == "adamw_bf16":
        return AdamWBF16States(params, **kwargs)
    return torch.optim.AdamW(params, foreach=False, **kwargs)


def lr_factor(step: int, *, schedule: str, total: int, warmup: int, lr: float, lr_end: float) -> float:
    """The multiplier of `learning_rate` at an optimizer step (0-based).

    Warm-up rises linearly from ~0 to 1 (every schedule but constant); linear, cosine and
    polynomial (power 1, the guide's) then fall from learning_rate to lr_end at the last step.
    """
    if schedule == "constant":
        return 1.0
    if step < warmup:
        return (step + 1) / (warmup + 1)
    if schedule == "constant_with_warmup":
        return 1.0
    floor = lr_end / lr
    progress = min(1.0, (step - warmup) / max(1, total - warmup - 1))
    if schedule == "cosine":
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
    return floor + (1 - floor) * (1 - progress)  # linear, and polynomial with power 1.0


def make_lr_scheduler(optimizer, training: dict[str, Any], total_steps: int):
    """A LambdaLR following `lr_factor`, stepped once per optimizer step."""
    from functools import partial

    fn = partial(lr_factor, schedule=training["lr_scheduler"], total=total_steps,
                 warmup=training["lr_warmup_steps"], lr=training["learning_rate"], lr_end=training["lr_end"])
    return torch.optim.lr_scheduler.LambdaLR(optimizer, fn)
