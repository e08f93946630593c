"""A lean step (issue 23, item 2): few operators per step, and the non-finite skip intact.

On a GPU at small batches a step costs its kernel launches; the operators a step dispatches
are the CPU proxy (``benchmarks/bench_ops.py``, ``make bench-ops``).
"""

from __future__ import annotations

import copy
import math
import sys
from pathlib import Path

import pytest
import torch

from pfn_transformers import PFN, RegressionConfig
from pfn_transformers.training.distributed import DistributedContext
from pfn_transformers.training.muon import BatchedMuon, orthogonalise
from pfn_transformers.training.state import build_state
from pfn_transformers.training.step import TrainStep

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "benchmarks"))
import bench_ops  # noqa: E402

from tests.unit.training.test_training import TINY, assert_same_tensors, linear_gen, moving  # noqa: E402

# Operators per default step against nn.TransformerEncoder's (same size, tokens and autocast,
# foreach AdamW, clipping). Before issue 23's lean step: 919 against 433 (2.12x).
MAX_OPS_VS_ENCODER = 1.2


def test_the_default_step_dispatches_at_most_1_2x_the_operators_of_a_plain_encoder_step():
    """Example-1 size, batch 4, through the public train(); bf16 autocast on both sides so the
    count is the same on every CPU (precision="auto" picks bf16 where it is native)."""
    encoder = sum(bench_ops.encoder_counts(bf16=True).values())
    ours = {opt: bench_ops.library_counts(opt, precision="bf16") for opt in ("muon", "adamw")}
    for opt, counts in ours.items():
        total = sum(counts.values())
        worst = counts.most_common(8)
        assert total <= MAX_OPS_VS_ENCODER * encoder, (opt, total, encoder, worst)
    # the optimizer part is small: Muon adds few operators over AdamW, not a few per matrix
    assert sum(ours["muon"].values()) - sum(ours["adamw"].values()) <= 70


def _state(optimizer: str):
    state = build_state(
        TINY, moving(optimizer=optimizer), DistributedContext.from_env(torch.device("cpu"))
    )
    return state, TrainStep(state)


def _optimizer_state(optimizer) -> dict:
    sd = optimizer.state_dict()
    return {k: v["state"] for k, v in sd.items()} if "muon" in sd else sd["state"]


@pytest.mark.parametrize(
    ("optimizer", "poisoned"),
    [("muon", "x"), ("muon", "y"), ("adamw", "x"), ("adamw", "y")],
    ids=["muon-x", "muon-y", "adamw-x", "adamw-y"],
)
def test_a_nan_batch_changes_no_weight_and_no_optimizer_state_and_is_counted(optimizer, poisoned):
    state, step = _state(optimizer)
    x, y = linear_gen().generate_batch(8, 12)
    step(x, y)  # optimizer state exists
    weights = copy.deepcopy(state.model.state_dict())
    moments = copy.deepcopy(_optimizer_state(state.optimizer))
    bad_x, bad_y = x.clone(), y.clone()
    (bad_x if poisoned == "x" else bad_y)[2, 5] = math.nan
    loss = step(bad_x, bad_y)
    assert not torch.isfinite(loss)
    assert_same_tensors(state.model.state_dict(), weights, "weights")
    assert_same_tensors(_optimizer_state(state.optimizer), moments, f"{optimizer} state")
    counts = step.stats.read()
    assert counts["skipped"] == 1 and counts["skipped_in_a_row"] == 1
    assert int(step.stats.bad_batches) == 1  # the error message will blame the data
    # the counters are plain data: no autograd history carried from step to step
    assert not step.stats.counts.requires_grad and step.stats.counts.grad_fn is None
    step(x, y)
    assert step.stats.read()["skipped_in_a_row"] == 0 and step.stats.read()["skipped"] == 1
    assert int(step.stats.bad_batches) == 1
    moved = state.model.state_dict()
    assert not torch.equal(moved["blocks.0.attn.W_Q"], weights["blocks.0.attn.W_Q"])
    assert not torch.equal(moved["blocks.0.mlp.W_in"], weights["blocks.0.mlp.W_in"])


def test_batched_muon_skips_a_flagged_step_and_steps_an_unflagged_one_as_without_a_flag():
    torch.manual_seed(0)
    shapes = [(16, 48), (48, 16), (8, 8)]
    ours = [torch.nn.Parameter(torch.randn(s)) for s in shapes]
    plain = [torch.nn.Parameter(p.detach().clone()) for p in ours]
    a, b = (
        BatchedMuon(ours, lr=0.02, weight_decay=0.1),
        BatchedMuon(plain, lr=0.02, weight_decay=0.1),
    )
    for p, q in zip(ours, plain, strict=True):
        p.grad = torch.randn_like(p)
        q.grad = p.grad.clone()
    a.found_inf = torch.zeros(())
    a.step()
    b.step()
    for p, q in zip(ours, plain, strict=True):
        assert torch.equal(p, q)
        assert torch.equal(a.state[p]["momentum_buffer"], b.state[q]["momentum_buffer"])
    before = [p.detach().clone() for p in ours]
    buffers = [a.state[p]["momentum_buffer"].clone() for p in ours]
    for p in ours:
        p.grad = torch.full_like(p, math.nan)
    a.found_inf = torch.ones(())
    a.step()
    for p, old, buf in zip(ours, before, buffers, strict=True):
        assert torch.equal(p, old)
        assert torch.equal(a.state[p]["momentum_buffer"], buf)


def test_shapes_padded_into_one_newton_schulz_iteration_match_the_per_shape_ones():
    """The CUDA default: a zero-padded matrix iterates as the matrix (rounding aside)."""
    from pfn_transformers.training.muon import orthogonalise_all

    torch.manual_seed(1)
    stacks = [(torch.randn(3, 16, 48), 5, 1e-7), (torch.randn(2, 8, 8), 5, 1e-7)]
    stacks.append((torch.randn(4, 16, 16), 5, 1e-7))
    padded = orthogonalise_all(stacks, pad=True)
    for (s, steps, eps), o in zip(stacks, padded, strict=True):
        assert o.shape == s.shape
        torch.testing.assert_close(
            o.float(), orthogonalise(s, steps, eps).float(), atol=0.05, rtol=0
        )
    torch.manual_seed(2)
    ours = [torch.nn.Parameter(torch.randn(s)) for s in [(16, 48), (8, 8), (48, 16)]]
    theirs = [torch.nn.Parameter(p.detach().clone()) for p in ours]
    a, b = BatchedMuon(ours, lr=0.02), BatchedMuon(theirs, lr=0.02)
    a.pad_shapes, b.pad_shapes = True, False
    for p, q in zip(ours, theirs, strict=True):
        p.grad = torch.randn_like(p)
        q.grad = p.grad.clone()
    a.step()
    b.step()
    for p, q in zip(ours, theirs, strict=True):
        torch.testing.assert_close(p, q, atol=2e-3, rtol=0)


def test_cached_bar_constants_follow_new_borders_and_survive_inference_mode():
    config = RegressionConfig(d_model=16, n_layers=1, n_heads=2, input_dim=1, d_vocab=10)
    model = PFN(config)
    other = PFN(RegressionConfig(d_model=16, n_layers=1, n_heads=2, input_dim=1, d_vocab=10,
                                 y_min=-9.0, y_max=3.0))  # fmt: skip
    model.set_attention_path("explicit")  # the dense path and its cached inverted mask
    x, y = torch.randn(2, 6, 1), torch.randn(2, 6) * 3
    with torch.inference_mode():  # derived constants and masks made here stay here
        model(x, y, return_type="loss")
    loss = model(x, y, return_type="loss")
    loss.backward()  # would fail on an inference tensor saved for backward
    targets = y.clone().requires_grad_()  # the density's gradient in y saves the tail scales
    model.bucketizer.log_prob(torch.randn(2, 6, 10), targets).sum().backward()
    assert targets.grad is not None and torch.isfinite(targets.grad).all()
    model.load_state_dict(other.state_dict())  # new borders, copied into the same buffer
    with torch.no_grad():
        assert torch.equal(model(x, y, return_type="loss"), other(x, y, return_type="loss"))
        logits = torch.randn(2, 6, 10)
        assert torch.equal(
            model.bucketizer.log_prob(logits, y), other.bucketizer.log_prob(logits, y)
        )
