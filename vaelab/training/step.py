"""One training step: the model's phases in order, one optimiser each.

A phase computes its loss on the step's batch, backpropagates, clips and updates its own
parameters. One-phase models have the phase "model" (all parameters, ``loss``); an
adversarial autoencoder declares reconstruction, discriminator and generator phases. A
non-finite loss or gradient stops the run or, with ``nonfinite="skip"``, skips the step.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..errors import VaelabError
from ..models.base import Batch, Phase
from ..words import count


def make_adam(params, config, phase: Phase | None = None) -> torch.optim.Adam:
    """Adam with the fused kernel where this torch has one for the device (same maths,
    one pass over the parameters), else the multi-tensor implementation. A phase's own
    learning rate and betas take the place of the run's."""
    params = list(params)
    lr = config.lr if phase is None or phase.lr is None else phase.lr
    betas = config.adam_betas if phase is None or phase.betas is None else phase.betas
    kwargs = dict(lr=lr, betas=betas, eps=config.adam_eps, weight_decay=config.weight_decay)
    try:
        return torch.optim.Adam(params, fused=True, **kwargs)
    except (RuntimeError, TypeError):
        return torch.optim.Adam(params, **kwargs)


def model_phases(model) -> dict[str, Phase]:
    """The model's phases, checked: names usable as checkpoint keys, at least one."""
    phases = model.phases()
    if not phases:
        raise VaelabError(f"{model.name} declares no training phases; a model trains at least one")
    bad = [name for name in phases if not name or "/" in name or not name.isprintable()]
    if bad:
        raise VaelabError(f"{model.name} declares phase names {bad}; use names without '/'")
    return phases


def grad_norm(params) -> torch.Tensor:
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(())
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))


@dataclass
class StepResult:
    """Per-phase loss terms (detached) of a step, or the reason it was skipped."""

    terms: dict[str, torch.Tensor] | None
    bad: str | None = None  # "loss" or "gradient" where a value was non-finite
    loss: object = None     # the offending Loss, to name its terms


class Stepper:
    """Runs the phases of one step; owns the optimisers (one per phase)."""

    def __init__(self, model, config, module=None, agree=None):
        self.model, self.config = model, config
        self.agree = agree  # in a multi-process job: whether any rank saw a non-finite loss
        self.module = module if module is not None else model  # the DDP wrapper where there is one
        self.phases = model_phases(model)
        self.params = {name: list(phase.parameters()) for name, phase in self.phases.items()}
        self.optimizers = {name: make_adam(self.params[name], config, phase) for name, phase in self.phases.items()}

    def set_lr(self, base_lr: float, scale: float) -> None:
        """The schedule's rate times the non-finite back-off ``scale``; a phase with its own
        ``lr`` follows the same schedule relative to the run's ``lr``."""
        for name, phase in self.phases.items():
            lr = base_lr if phase.lr is None else base_lr * phase.lr / self.config.lr
            for group in self.optimizers[name].param_groups:
                group["lr"] = lr * phase.lr_scale * scale

    def _loss(self, name: str, phase: Phase, batch: Batch):
        """Through the DDP wrapper where there is one, so its hooks run for every phase."""
        if self.module is self.model:
            return phase.loss(batch)
        return self.module(batch, phase=None if len(self.phases) == 1 else name)

    def __call__(self, batch: Batch, share: float = 1.0, skip: bool = False) -> StepResult:
        """All phases on ``batch``. ``share`` weights this rank's mean loss so that averaged
        gradients are the global batch's. ``skip``: report non-finite values instead of
        raising, leaving every optimiser untouched from then on."""
        terms: dict[str, torch.Tensor] = {}
        single = len(self.phases) == 1
        for name, phase in self.phases.items():
            loss = self._loss(name, phase, batch)
            bad = not math.isfinite(loss.total.item())
            if self.agree(bad) if self.agree is not None else bad:  # every rank skips together
                return StepResult(None, "loss", loss)
            opt = self.optimizers[name]
            opt.zero_grad(set_to_none=True)
            (loss.total * share if share != 1.0 else loss.total).backward()
            norm = None
            if self.config.grad_clip > 0:
                norm = torch.nn.utils.clip_grad_norm_(self.params[name], self.config.grad_clip)
            if skip and not torch.isfinite(norm if norm is not None else grad_norm(self.params[name])):
                opt.zero_grad(set_to_none=True)
                return StepResult(None, "gradient", loss)
            opt.step()
            for k, v in loss.terms.items():
                terms[k if single else f"{name}/{k}"] = v.detach()
        return StepResult(terms)

    def zero_grad(self) -> None:
        for opt in self.optimizers.values():
            opt.zero_grad(set_to_none=True)


def nonfinite_error(result: StepResult, epoch: int, step: int, last, skipped: int = 0) -> VaelabError:
    """One line naming what became non-finite, where, the term values and the fix."""
    loss = result.loss
    bad = [k for k, v in loss.terms.items() if not torch.isfinite(v).all()] or ["total"]
    values = ", ".join(f"{k} = {float(v.detach()):.4g}" for k, v in loss.terms.items())
    kept = f"the last good checkpoint is {last}" if last.exists() else "no checkpoint was written yet"
    grad = result.bad == "gradient"
    what = "the gradient became non-finite" if grad else "loss became non-finite"
    where = f"at epoch {epoch + 1}, step {step}: " + ("" if grad else f"term '{bad[0]}' ")
    after = f" after {count(skipped, 'skipped step')} (--nonfinite-max-skips)" if skipped else ""
    return VaelabError(f"{what} {where}({values}){after}; {kept}; lower --lr or set --grad-clip"
                       + ("" if skipped else " or --nonfinite skip"))
