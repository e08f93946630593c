"""BatchedMuon: torch.optim.Muon's arithmetic, batched by shape and extended to attention weights."""

from __future__ import annotations

import copy

import pytest
import torch

from pfn_transformers import PFN, RegressionConfig, TrainingConfig
from pfn_transformers.training import optim
from pfn_transformers.training.muon import BatchedMuon, as_matrix, from_matrix


def _torch_muon(params, **kw):
    return torch.optim.Muon(params, adjust_lr_fn="match_rms_adamw", **kw)


def _clones(params):
    return [torch.nn.Parameter(p.detach().clone()) for p in params]


def _step_both(ours, theirs, our_params, their_params, grads_for):
    """Give both optimizers the same gradients (``grads_for`` maps our gradient to theirs)."""
    for p, q in zip(our_params, their_params, strict=True):
        g = torch.randn_like(p)
        p.grad, q.grad = g.clone(), grads_for(g, p)
    ours.step()
    theirs.step()


def test_matrices_get_torch_muons_update_bit_for_bit_also_when_batched_by_shape() -> None:
    torch.manual_seed(0)
    # two of the same shape (batched together), one tall (transposed), one of another shape
    ours = [torch.nn.Parameter(torch.randn(s)) for s in [(16, 48), (16, 48), (48, 16), (8, 8)]]
    theirs = _clones(ours)
    a = BatchedMuon(ours, lr=0.02, weight_decay=0.1)
    b = _torch_muon(theirs, lr=0.02, weight_decay=0.1)
    start = [p.detach().clone() for p in ours]
    for _ in range(3):
        _step_both(a, b, ours, theirs, lambda g, p: g.clone())
    for p, q, s in zip(ours, theirs, start, strict=True):
        assert not torch.equal(p, s)  # it moved
        assert torch.equal(p, q)
        assert torch.equal(a.state[p]["momentum_buffer"], b.state[q]["momentum_buffer"])


def _fused_q(w: torch.Tensor) -> torch.Tensor:
    """W_Q [h, d, dh] as the d x (h*dh) matrix x @ it gives all heads' queries."""
    h, d, dh = w.shape
    return torch.cat([w[i] for i in range(h)], dim=1)


def _fused_o(w: torch.Tensor) -> torch.Tensor:
    """W_O [h, dh, d] as the (h*dh) x d matrix the concatenated heads go through."""
    return torch.cat([w[i] for i in range(w.shape[0])], dim=0)


@pytest.mark.parametrize(
    ("layout", "shape", "fuse"),
    [("heads_in", (4, 16, 8), _fused_q), ("heads_out", (4, 8, 16), _fused_o)],
)
def test_attention_weights_are_orthogonalised_as_the_fused_projection(layout, shape, fuse) -> None:
    """W_Q [h, d, dh] moves as torch's Muon moves the d x (h*dh) matrix; W_O as (h*dh) x d."""
    torch.manual_seed(1)
    ours = [torch.nn.Parameter(torch.randn(shape))]
    theirs = [torch.nn.Parameter(fuse(ours[0].detach()).clone())]
    a = BatchedMuon([{"params": ours, "layout": layout}], lr=0.02)
    b = _torch_muon(theirs, lr=0.02, weight_decay=0.0)
    start = ours[0].detach().clone()
    for _ in range(2):
        _step_both(a, b, ours, theirs, lambda g, _: fuse(g).clone())
    assert not torch.equal(ours[0], start)
    assert torch.equal(fuse(ours[0].detach()), theirs[0].detach())
    assert torch.equal(as_matrix(ours[0].detach(), layout), fuse(ours[0].detach()))
    m = fuse(start)
    assert torch.equal(from_matrix(m, layout, start.shape), start)


def test_a_state_saved_by_torch_muon_loads_and_steps_on_identically() -> None:
    """Checkpoints of runs trained before BatchedMuon hold torch.optim.Muon's state."""
    torch.manual_seed(2)
    theirs = [torch.nn.Parameter(torch.randn(16, 48)), torch.nn.Parameter(torch.randn(48, 16))]
    b = _torch_muon(theirs, lr=0.02, weight_decay=0.1)
    for p in theirs:
        p.grad = torch.randn_like(p)
    b.step()
    ours = _clones(theirs)
    a = BatchedMuon(ours, lr=0.5, weight_decay=0.0)  # the state's rates must win
    a.load_state_dict(copy.deepcopy(b.state_dict()))  # as from a file: no shared buffers
    assert a.param_groups[0]["layout"] == "matrix" and a.param_groups[0]["lr"] == 0.02
    _step_both(a, b, ours, theirs, lambda g, p: g.clone())
    for p, q in zip(ours, theirs, strict=True):
        assert torch.equal(p, q)


def test_wrong_tensors_and_layouts_are_refused_by_name() -> None:
    with pytest.raises(
        ValueError, match=r"layout 'heads_in' takes 3-D tensors, got one of shape \(4, 4\)"
    ):
        BatchedMuon([{"params": [torch.nn.Parameter(torch.zeros(4, 4))], "layout": "heads_in"}])
    with pytest.raises(
        ValueError, match=r"layout 'rows' is not one of \('matrix', 'heads_in', 'heads_out'\)"
    ):
        BatchedMuon([torch.nn.Parameter(torch.zeros(4, 4))], layout="rows")
    with pytest.raises(
        ValueError,
        match=r"TrainingConfig.muon_scope='all' is not valid; choose one of \['mlp', 'attention'\]",
    ):
        TrainingConfig(muon_scope="all")


@pytest.mark.parametrize("scope", ["mlp", "attention"])
def test_the_scope_decides_which_weights_muon_steps(scope) -> None:
    model = PFN(RegressionConfig(d_model=32, n_layers=2, n_heads=2, input_dim=1, d_vocab=20))
    tc = TrainingConfig(learning_rate=1e-3, muon_scope=scope, muon_lr_ratio=4.0, adamw_lr_ratio=3.0)
    optimizer = optim.make_optimizer(model, tc)
    rate = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
    layout = {id(p): g["layout"] for g in optimizer.muon.param_groups for p in g["params"]}
    for name, p in model.named_parameters():
        leaf = name.rsplit(".", 1)[-1]
        mlp = leaf in ("W_in", "W_out", "W_x2", "W_xy2")
        attention = leaf in ("W_Q", "W_K", "W_V", "W_O")
        muon = mlp or (attention and scope == "attention")
        assert rate[id(p)] == pytest.approx(4e-3 if muon else 3e-3), name
        if muon:
            expected = "matrix" if mlp else ("heads_out" if leaf == "W_O" else "heads_in")
            assert layout[id(p)] == expected, name
    assert TrainingConfig().muon_scope == "attention"
