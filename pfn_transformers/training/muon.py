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

A step dispatches a few operators per shape rather than per parameter (on a GPU at small
batches a step costs its kernel launches): the gradients, momentum buffers and values of
each shape batch are stacked once, updated with whole-stack operators, and written back
with one ``_foreach_copy_``; on CUDA the shapes are also zero-padded into one Newton–Schulz
iteration (``orthogonalise_all``). A step flagged by ``found_inf`` (the device flag fused
AdamW takes) selects the old stacks over the new ones, so it changes nothing, without a
host synchronisation.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)  # torch.optim.Muon's (Keller Jordan's) quintic
LAYOUTS = ("matrix", "heads_in", "heads_out")


def as_matrix_shape(shape: torch.Size, layout: str) -> tuple[int, int]:
    """The ``(rows, cols)`` of the matrix a tensor of ``shape`` is read as."""
    if layout == "matrix":
        return shape[0], shape[1]
    if layout == "heads_in":  # [h, d, dh] -> [d, h*dh]
        return shape[1], shape[0] * shape[2]
    return shape[0] * shape[1], shape[2]  # heads_out: [h, dh, d] -> [h*dh, d]


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
        gram = torch.bmm(x, x.mT)
        update = torch.baddbmm(gram, gram, gram, beta=b, alpha=c)
        x = torch.baddbmm(x, update, x, beta=a)
    return x


def orthogonalise_all(stacks: list[tuple[Tensor, int, float]], pad: bool = False) -> list[Tensor]:
    """``orthogonalise`` of each ``(stack, steps, eps)``. With ``pad``, stacks of different
    shapes (same steps, eps and device) are zero-padded to their largest ``A`` and ``B`` and
    iterate as one: a zero-padded matrix's iterates are the padded iterates of the matrix
    (its Gram matrix and norm are unchanged), so only the rounding differs. That trades
    flops for kernel launches: the default on CUDA, where a small step costs its launches.
    """
    if not pad:
        return [orthogonalise(s, steps, eps) for s, steps, eps in stacks]
    joint: dict[tuple, list[int]] = defaultdict(list)
    for i, (s, steps, eps) in enumerate(stacks):
        joint[(steps, eps, s.device)].append(i)
    out: list[Tensor | None] = [None] * len(stacks)
    for (steps, eps, _), members in joint.items():
        if len(members) == 1:
            out[members[0]] = orthogonalise(stacks[members[0]][0], steps, eps)
            continue
        a = max(stacks[i][0].shape[1] for i in members)
        b = max(stacks[i][0].shape[2] for i in members)
        padded = [
            F.pad(stacks[i][0], (0, b - stacks[i][0].shape[2], 0, a - stacks[i][0].shape[1]))
            for i in members
        ]
        ortho = orthogonalise(torch.cat(padded), steps, eps)
        start = 0
        for i in members:
            n, ai, bi = stacks[i][0].shape
            out[i] = ortho[start : start + n, :ai, :bi]
            start += n
    return [o for o in out if o is not None]


def _rounds_to_one(factor: float, dtype: torch.dtype) -> bool:
    """Whether multiplying a ``dtype`` tensor by ``factor`` is the identity: the factor, in
    the type the kernel computes in (float32 for half types), rounds to exactly 1."""
    eps = torch.finfo(dtype if dtype in (torch.float32, torch.float64) else torch.float32).eps
    return abs(1 - factor) < eps / 4


def _matrix_view(t: Tensor, layout: str, tall: bool) -> Tensor:
    """A view of ``t`` whose stack reshapes (without a copy) to the ``[n, A, B]`` stack of
    its matrices (transposed when tall): 2-D, or 3-D with one side split as the heads are."""
    if layout == "matrix":
        return t.mT if tall else t
    if layout == "heads_in":  # [h, d, dh]: [d, h*dh], or [h*dh, d] when tall
        return t.permute(0, 2, 1) if tall else t.permute(1, 0, 2)
    h, dh, d = t.shape  # heads_out: [h*dh, d], or [d, h*dh] when tall
    return t.permute(2, 0, 1) if tall else t.reshape(h * dh, d)


def _param_view(m: Tensor, layout: str, tall: bool, shape: torch.Size) -> Tensor:
    """The inverse of ``_matrix_view``: a row ``[A, B]`` of a stack as a view of ``shape``."""
    if layout == "matrix":
        return m.mT if tall else m
    if layout == "heads_in":
        h, d, dh = shape
        return m.view(h, dh, d).permute(0, 2, 1) if tall else m.view(d, h, dh).permute(1, 0, 2)
    h, dh, d = shape
    return m.view(d, h, dh).permute(1, 2, 0) if tall else m.view(h, dh, d)


def _stack(views: list[Tensor], a: int, b: int) -> Tensor:
    """``[n, A, B]`` (contiguous) from ``_matrix_view``s, in their order: one ``stack`` when
    the 3-D views share one shape (2-D ones are split alike, a view), else a copy each."""
    split = {v.shape for v in views if v.ndim == 3}
    if len(split) > 1:
        views = [v.reshape(a, b) for v in views]
    elif split:
        (shape,) = split
        views = [v if v.ndim == 3 else v.view(shape) for v in views]
    return torch.stack(views).view(len(views), a, b)


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
        # a device flag (float, 1 = skip this step), set before step() as for fused AdamW
        self.found_inf: Tensor | None = None
        # batch different shapes into one Newton-Schulz iteration by zero-padding them
        # (None: on CUDA only, where launches cost more than the padded flops)
        self.pad_shapes: bool | None = None
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
        self.__dict__.setdefault("found_inf", None)
        self.__dict__.setdefault("pad_shapes", None)
        for group in self.param_groups:
            group.setdefault("layout", "matrix")

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        """One update of every parameter with a gradient.

        The matrices of one shape (and the same hyperparameters) move as one stack: their
        gradients, momentum buffers and values are stacked once, updated with whole-stack
        operators, and every parameter and buffer is written back in one ``_foreach_copy_``.
        With ``found_inf`` set (a device flag, 1 = skip, as fused AdamW takes it), a flagged
        step leaves parameters and buffers exactly as they were, without a host sync.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        # (A, B, steps, eps, device, lr, weight_decay, momentum, nesterov) -> [(p, layout, tall)]
        batches: dict[tuple, list[tuple[Tensor, str, bool]]] = defaultdict(list)
        for group in self.param_groups:
            layout = group["layout"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p.grad)
                rows, cols = as_matrix_shape(p.shape, layout)
                tall = rows > cols
                a, b = (cols, rows) if tall else (rows, cols)
                key = (a, b, group["ns_steps"], group["eps"], p.device, group["lr"],
                       group["weight_decay"], group["momentum"], group["nesterov"])  # fmt: skip
                batches[key].append((p, layout, tall))
        if not batches:
            return loss
        updates, moved = [], []
        for (a, b, *_, momentum, nesterov), items in batches.items():
            grads = _stack([_matrix_view(p.grad, lay, tall) for p, lay, tall in items], a, b)
            bufs = [self.state[p]["momentum_buffer"] for p, _, _ in items]
            buf = _stack(
                [_matrix_view(m, lay, tall) for m, (_, lay, tall) in zip(bufs, items)], a, b
            )
            new_buf = buf.lerp(grads, 1 - momentum)
            updates.append(grads.lerp(new_buf, momentum) if nesterov else new_buf)
            moved.append((buf, new_buf))
        pad = self.pad_shapes if self.pad_shapes is not None else self._on_cuda()
        steps_eps = [(key[2], key[3]) for key in batches]
        ortho = orthogonalise_all(
            [(u, s, e) for u, (s, e) in zip(updates, steps_eps, strict=True)], pad=pad
        )
        skip = None if self.found_inf is None else self.found_inf.to(torch.bool)
        targets: list[Tensor] = []
        sources: list[Tensor] = []
        for (key, items), o, (buf, new_buf) in zip(batches.items(), ortho, moved, strict=True):
            a, b, _, _, _, lr, weight_decay = key[:7]
            params = _stack([_matrix_view(p, lay, tall) for p, lay, tall in items], a, b)
            scale = 0.2 * math.sqrt(b)  # b = max(A, B)
            if _rounds_to_one(1 - lr * weight_decay, params.dtype):  # decay is a no-op
                new = params.add(o, alpha=-lr * scale)
            else:
                new = params.mul(1 - lr * weight_decay).add_(o, alpha=-lr * scale)
            if skip is not None:
                new = torch.where(skip, params, new)
                new_buf = torch.where(skip, buf, new_buf)
            for (p, lay, tall), p_new, m_new in zip(items, new, new_buf, strict=True):
                targets += [p, self.state[p]["momentum_buffer"]]
                sources += [_param_view(p_new, lay, tall, p.shape)]
                sources += [_param_view(m_new, lay, tall, p.shape)]
        torch._foreach_copy_(targets, sources)
        return loss

    def _on_cuda(self) -> bool:
        return any(p.is_cuda for g in self.param_groups for p in g["params"])
