"""The optimizer of a run: Muon on the hidden weight matrices with AdamW on the rest, or AdamW.

``TrainingConfig.optimizer="muon"`` (the default) updates the hidden matrices with Muon
(orthogonalised momentum, its rate matched to AdamW's update size; ``BatchedMuon``) at
``muon_lr_ratio * learning_rate``, and every other parameter (embeddings, LayerNorms,
biases, the unembedding) with fused AdamW at ``adamw_lr_ratio * learning_rate``.
``muon_scope`` says which matrices are hidden: ``"attention"`` (the default) the 2-D ones
(the blocks' MLPs, the second layers of the x and pair encoders, the decoder MLP) and the
attention weights, each of ``W_Q``, ``W_K``, ``W_V``, ``W_O`` as its fused projection;
``"mlp"`` the 2-D ones alone (runs saved before the field existed). At the same nominal
learning rate Muon with the MLP scope reaches about half the excess NLL of plain AdamW on the
continuous priors, and the attention scope cuts it again by 25-65% (README, "What the
defaults are and why"). ``optimizer="adamw"`` is fused AdamW on everything at exactly
``learning_rate``: every run before the optimizer field existed.

Both keep the training step free of host synchronisation: a step whose loss or gradient is
not finite (``found_inf``, set by ``TrainStep``) is skipped on the device: by fused AdamW, and
by ``BatchedMuon``, which selects the old stacks over the new ones once per shape batch.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .config import MUON_SCOPES
from .muon import BatchedMuon

# parameter names (their last component) that are hidden d x d' matrices: Muon's domain
MUON_MATRICES = ("W_in", "W_out", "W_x2", "W_xy2")
# attention weights (TransformerLens layout) and how BatchedMuon reads them as matrices
MUON_ATTENTION = {"W_Q": "heads_in", "W_K": "heads_in", "W_V": "heads_in", "W_O": "heads_out"}


def split_for_muon(
    model: nn.Module, scope: str = "mlp"
) -> tuple[dict[str, list[nn.Parameter]], list[nn.Parameter]]:
    """({layout: parameters} for Muon, everything else for AdamW), trainable parameters only.

    ``scope="mlp"``: the hidden 2-D matrices; ``"attention"``: those and the attention
    weights (``W_Q``, ``W_K``, ``W_V`` as ``d x (h*dh)`` matrices, ``W_O`` as ``(h*dh) x d``).
    """
    if scope not in MUON_SCOPES:
        raise ValueError(f"muon_scope={scope!r} is not valid; choose one of {list(MUON_SCOPES)}.")
    muon: dict[str, list[nn.Parameter]] = {"matrix": [], "heads_in": [], "heads_out": []}
    adamw = []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        leaf = name.rsplit(".", 1)[-1]
        if p.ndim == 2 and leaf in MUON_MATRICES:
            muon["matrix"].append(p)
        elif scope == "attention" and p.ndim == 3 and leaf in MUON_ATTENTION:
            muon[MUON_ATTENTION[leaf]].append(p)
        else:
            adamw.append(p)
    return {layout: ps for layout, ps in muon.items() if ps}, adamw


class MuonWithAdamW(torch.optim.Optimizer):
    """``BatchedMuon`` and fused ``torch.optim.AdamW`` stepping as one optimizer: one list
    of ``param_groups`` for the learning-rate schedule, one state dict for checkpoints."""

    def __init__(
        self,
        muon_params: dict[str, list[nn.Parameter]],
        adamw_params: list[nn.Parameter],
        *,
        lr: float,
        weight_decay: float,
        muon_lr_ratio: float,
        adamw_lr_ratio: float,
    ) -> None:
        self.muon = BatchedMuon(
            [{"params": ps, "layout": layout} for layout, ps in muon_params.items()],
            lr=lr * muon_lr_ratio,
            weight_decay=weight_decay,
        )
        self.adamw = torch.optim.AdamW(
            adamw_params, lr=lr * adamw_lr_ratio, weight_decay=weight_decay, fused=True
        )
        everything = [p for ps in muon_params.values() for p in ps] + adamw_params
        super().__init__(everything, {"lr": lr})
        # the schedule scales these groups (shared with the two optimizers) in place
        self.param_groups = [*self.muon.param_groups, *self.adamw.param_groups]
        self.found_inf: torch.Tensor | None = None

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:
        # one device flag skips both: fused AdamW and BatchedMuon leave a flagged step's
        # parameters and state exactly as they were
        self.adamw.found_inf = self.muon.found_inf = self.found_inf
        self.muon.step()
        self.adamw.step()

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
    muon, adamw = split_for_muon(model, tc.muon_scope)
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
