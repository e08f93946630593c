"""The optimizer of a run: Muon on the hidden weight matrices with AdamW on the rest, or AdamW.

``TrainingConfig.optimizer="muon"`` (the default) updates the 2-D hidden matrices (the
blocks' MLPs, the second layers of the x and pair encoders, the decoder MLP) with
``torch.optim.Muon`` (orthogonalised momentum, its rate matched to AdamW's update size) at
``muon_lr_ratio * learning_rate``, and every other parameter (embeddings, attention weights,
LayerNorms, biases, the unembedding) with fused AdamW at ``adamw_lr_ratio * learning_rate``.
At the same nominal learning rate it reaches about half the excess NLL of plain AdamW on the
continuous priors, and AdamW tuned to 3x the rate does not close the gap (README, "What the
defaults are and why"). ``optimizer="adamw"`` is fused AdamW on everything at exactly
``learning_rate``: every run before this field existed.

Both keep the training step free of host synchronisation: a step whose loss or gradient is
not finite (``found_inf``, set by ``TrainStep``) is skipped on the device by fused AdamW, and
undone for the Muon part with ``torch.where`` against a copy taken before the step.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

# parameter names (their last component) that are hidden d x d' matrices: Muon's domain
MUON_MATRICES = ("W_in", "W_out", "W_x2", "W_xy2")


def split_for_muon(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(hidden 2-D matrices for Muon, everything else for AdamW), trainable parameters only."""
    muon, adamw = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        hidden = p.ndim == 2 and name.rsplit(".", 1)[-1] in MUON_MATRICES
        (muon if hidden else adamw).append(p)
    return muon, adamw


class MuonWithAdamW(torch.optim.Optimizer):
    """``torch.optim.Muon`` and fused ``torch.optim.AdamW`` stepping as one optimizer: one list
    of ``param_groups`` for the learning-rate schedule, one state dict for checkpoints."""

    def __init__(
        self,
        muon_params: list[nn.Parameter],
        adamw_params: list[nn.Parameter],
        *,
        lr: float,
        weight_decay: float,
        muon_lr_ratio: float,
        adamw_lr_ratio: float,
    ) -> None:
        self.muon = torch.optim.Muon(
            muon_params,
            lr=lr * muon_lr_ratio,
            weight_decay=weight_decay,
            adjust_lr_fn="match_rms_adamw",
        )
        self.adamw = torch.optim.AdamW(
            adamw_params, lr=lr * adamw_lr_ratio, weight_decay=weight_decay, fused=True
        )
        super().__init__([*muon_params, *adamw_params], {"lr": lr})
        # the schedule scales these groups (shared with the two optimizers) in place
        self.param_groups = [*self.muon.param_groups, *self.adamw.param_groups]
        self.found_inf: torch.Tensor | None = None

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:
        bad = self.found_inf
        self.adamw.found_inf = bad
        saved = None
        if bad is not None:  # what the Muon step changes, to restore it on the device
            saved = [(p, p.clone(), self._momentum(p)) for p in self._muon_params()]
        self.muon.step()
        self.adamw.step()
        if saved is not None:
            skip = bad.bool()
            for p, before, buf in saved:
                p.copy_(torch.where(skip, before, p))
                live = self.muon.state[p]["momentum_buffer"]
                live.copy_(torch.where(skip, torch.zeros_like(live) if buf is None else buf, live))

    def _muon_params(self) -> list[nn.Parameter]:
        return [p for g in self.muon.param_groups for p in g["params"] if p.grad is not None]

    def _momentum(self, p: nn.Parameter) -> torch.Tensor | None:
        """A copy of p's momentum buffer (None before its first step)."""
        buf = self.muon.state.get(p, {}).get("momentum_buffer")
        return None if buf is None else buf.clone()

    def state_dict(self) -> dict[str, Any]:
        return {"muon": self.muon.state_dict(), "adamw": self.adamw.state_dict()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if set(state_dict) != {"muon", "adamw"}:
            raise ValueError(
                "this optimizer state is not a Muon+AdamW one (it has keys "
                f"{sorted(state_dict)}); a run keeps the optimizer it was trained with."
            )
        self.muon.load_state_dict(state_dict["muon"])
        self.adamw.load_state_dict(state_dict["adamw"])
        self.param_groups = [*self.muon.param_groups, *self.adamw.param_groups]


def make_optimizer(model: nn.Module, tc: Any) -> torch.optim.Optimizer:
    """The optimizer ``tc.optimizer`` names over the model's trainable parameters."""
    if tc.optimizer == "adamw":
        params = [p for p in model.parameters() if p.requires_grad]
        return torch.optim.AdamW(
            params, lr=tc.learning_rate, weight_decay=tc.weight_decay, fused=True
        )
    muon, adamw = split_for_muon(model)
    if not muon:  # nothing for Muon (e.g. all hidden matrices frozen): the AdamW part alone
        return torch.optim.AdamW(
            adamw, lr=tc.learning_rate * tc.adamw_lr_ratio, weight_decay=tc.weight_decay, fused=True
        )
    return MuonWithAdamW(
        muon,
        adamw,
        lr=tc.learning_rate,
        weight_decay=tc.weight_decay,
        muon_lr_ratio=tc.muon_lr_ratio,
        adamw_lr_ratio=tc.adamw_lr_ratio,
    )
