"""Adam without torch.optim, for fitting and concealment.

Why not torch.optim.Adam: its first step in a process imports torch._dynamo, which takes about
4.5 s on the shared 2-core machine: a fifth of the fit's time budget, paid by every CLI fit, the
app's first fit and every concealment in a fresh process. This is the same update (Kingma & Ba
2015, bias-corrected, no weight decay) on plain tensors, with torch._foreach_* ops over the
parameter list.
"""

from __future__ import annotations

import math

import torch


class _Optimiser:
    """The parameter list, zero_grad and the parameters that have a gradient this step."""

    def __init__(self, params, lr: float):
        self.params = [p for p in params]
        self.lr = lr                                  # the caller may change it between steps

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def _live(self) -> list[int]:
        return [i for i, p in enumerate(self.params) if p.grad is not None]


class Adam(_Optimiser):
    def __init__(self, params, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        super().__init__(params, lr)
        self.beta1, self.beta2 = betas
        self.eps = eps
        self.steps = 0
        self.mean = [torch.zeros_like(p) for p in self.params]
        self.square = [torch.zeros_like(p) for p in self.params]

    @torch.no_grad()
    def step(self) -> None:
        live = self._live()
        if not live:
            return
        self.steps += 1
        params = [self.params[i] for i in live]
        grads = [self.params[i].grad for i in live]
        mean = [self.mean[i] for i in live]
        square = [self.square[i] for i in live]
        torch._foreach_lerp_(mean, grads, 1 - self.beta1)                     # m = b1 m + (1 - b1) g
        torch._foreach_mul_(square, self.beta2)
        torch._foreach_addcmul_(square, grads, grads, value=1 - self.beta2)   # v = b2 v + (1 - b2) g^2
        correction1 = 1 - self.beta1 ** self.steps
        correction2 = 1 - self.beta2 ** self.steps
        denom = torch._foreach_sqrt(square)
        torch._foreach_div_(denom, math.sqrt(correction2))
        torch._foreach_add_(denom, self.eps)
        torch._foreach_addcdiv_(params, mean, denom, value=-self.lr / correction1)


class NormalisedGradient(_Optimiser):
    """Descent along the gradient scaled so that its root mean square over all the parameters is 1,
    averaged over steps (momentum): each step moves the parameters by about `lr` (root mean square)
    and, unlike Adam, keeps the gradient's own proportions between coordinates: the ones the loss
    depends on most move most (what a budget projection that keeps the largest changes needs)."""

    def __init__(self, params, lr: float, momentum: float = 0.8, eps: float = 1e-12):
        super().__init__(params, lr)
        self.momentum = momentum
        self.eps = eps
        self.average = [torch.zeros_like(p) for p in self.params]

    @torch.no_grad()
    def step(self) -> None:
        live = self._live()
        if not live:
            return
        grads = [self.params[i].grad for i in live]
        count = sum(g.numel() for g in grads)
        rms = math.sqrt(sum(float((g * g).sum()) for g in grads) / max(count, 1))
        for i, g in zip(live, grads):
            self.average[i].mul_(self.momentum).add_(g, alpha=(1 - self.momentum) / (rms + self.eps))
            self.params[i].sub_(self.average[i], alpha=self.lr)
