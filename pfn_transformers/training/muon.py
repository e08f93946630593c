"""Muon with one Newton–Schulz iteration per matrix shape, over 2-D and attention weights.

``torch.optim.Muon`` orthogonalises one 2-D matrix at a time and refuses anything else. At
PFN sizes that loop of small matmuls costs (batching it took bench-ablation's 1,500 default
steps from 41 s to 38 s on 2 CPU cores), and the attention weights, stored by
TransformerLens as ``[n_heads, d_model, d_head]`` (``W_Q``, ``W_K``, ``W_V``) and
``[n_heads, d_head, d_model]`` (``W_O``), would stay with AdamW. Here every matrix of the
same shape is orthogonalised in one batched iteration, and a parameter group's ``layout``
says how a tensor is read as matrices:

- ``"matrix"``: a 2-D weight, one matrix (what ``torch.optim.Muon`` does);
- ``"heads_in"``: ``[h, d, dh]`` as one ``d x (h*dh)`` matrix (the fused Q, K or V projection);
- ``"heads_out"``: ``[h, dh, d]`` as one ``(h*dh) x d`` matrix (the fused output projection).

The arithmetic per matrix is ``torch.optim.Muon``'s (momentum 0.95 with Nesterov, the same
quintic coefficients and 5 steps in bfloat16, decoupled weight decay, and the step scaled by
``0.2 * sqrt(max(A, B))`` to match AdamW's update size, its ``adjust_lr_fn="match_rms_adamw"``),
and its state is the same ``momentum_buffer`` per parameter.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import torch
from torch import Tensor

NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)  # torch.optim.Muon's (Keller Jordan's) quintic
LAYOUTS = ("matrix", "heads_in", "heads_out")


def as_matrix(t: Tensor, layout: str) -> Tensor:
    """``t`` as the 2-D matrix its layout names."""
    if layout == "matrix":
        return t
    if layout == "heads_in":  # [h, d, dh] -> [d, h*dh]
        h, d, dh = t.shape
        return t.permute(1, 0, 2).reshape(d, h * dh)
    if layout == "heads_out":  # [h, dh, d] -> [h*dh, d]
        h, dh, d = t.shape
        return t.reshape(h * dh, d)
    raise ValueError(f"Muon layout {layout!r} is not one of {LAYOUTS}")


def from_matrix(m: Tensor, layout: str, shape: torch.Size) -> Tensor:
    """The inverse of ``as_matrix`` for a tensor of ``shape``."""
    if layout == "heads_in":
        h, d, dh = shape
        return m.reshape(d, h, dh).permute(1, 0, 2)
    return m.reshape(shape)


def orthogonalise(stack: Tensor, steps: int = 5, eps: float = 1e-7) -> Tensor:
    """Approximately ``U V^T`` for each matrix of a ``[n, A, B]`` stack (A <= B), in bfloat16."""
    a, b, c = NS_COEFFICIENTS
    x = stack.bfloat16()
    x = x / x.flatten(1).norm(dim=1).clamp(min=eps)[:, None, None]
    for _ in range(steps):
        gram = x @ x.mT
        update = torch.baddbmm(gram, gram, gram, beta=b, alpha=c)
        x = torch.baddbmm(x, update, x, beta=a)
    return x


class BatchedMuon(torch.optim.Optimizer):
    """Muon over parameter groups with a ``layout`` (see the module docstring)."""

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        momentum: float = 0.95,
        nesterov: bool = True,
        ns_steps: int = 5,
        eps: float = 1e-7,
        layout: str = "matrix",
    ) -> None:
        defaults = {
            "lr": lr,
            "weight_decay": weight_decay,
            "momentum": momentum,
            "nesterov": nesterov,
            "ns_steps": ns_steps,
            "eps": eps,
            "layout": layout,
        }
        super().__init__(params, defaults)
        for group in self.param_groups:
            if group["layout"] not in LAYOUTS:
                raise ValueError(f"Muon layout {group['layout']!r} is not one of {LAYOUTS}")
            need = 2 if group["layout"] == "matrix" else 3
            for p in group["params"]:
                if p.ndim != need:
                    raise ValueError(
                        f"Muon layout {group['layout']!r} takes {need}-D tensors, "
                        f"got one of shape {tuple(p.shape)}"
                    )

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Loading a state saved by ``torch.optim.Muon`` (runs before this class): its groups
        lack ``layout`` and hold 2-D matrices, the ``"matrix"`` layout."""
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("layout", "matrix")

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        # (A, B, steps, eps, device) -> [(param, group, wide matrix update, transposed)]
        batches: dict[tuple, list[tuple[Tensor, dict, Tensor, bool]]] = defaultdict(list)
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p.grad)
                buf = state["momentum_buffer"]
                buf.lerp_(p.grad, 1 - group["momentum"])
                update = p.grad.lerp(buf, group["momentum"]) if group["nesterov"] else buf
                m = as_matrix(update, group["layout"])
                tall = m.shape[0] > m.shape[1]
                m = m.mT if tall else m
                key = (*m.shape, group["ns_steps"], group["eps"], m.device)
                batches[key].append((p, group, m, tall))
        for (_, _, steps, eps, _), items in batches.items():
            ortho = orthogonalise(torch.stack([m for _, _, m, _ in items]), steps, eps)
            for (p, group, m, tall), o in zip(items, ortho, strict=True):
                o = o.mT if tall else o
                lr = group["lr"]
                scale = 0.2 * math.sqrt(max(m.shape))
                p.mul_(1 - lr * group["weight_decay"])
                p.add_(from_matrix(o, group["layout"], p.shape), alpha=-lr * scale)
        return loss
