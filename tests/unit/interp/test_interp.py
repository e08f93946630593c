"""pfn_transformers.interp: attention, logit lens, ablation, probes and export on tiny models.

Learning matters for a few tests (a used head, a lens that improves with depth, probes on a
real residual stream): those train a tiny coin or linear-regression PFN for ~100 steps
(about a second each, module-scoped).
"""

from __future__ import annotations

import math

import pytest
import torch

from pfn_transformers import (
    PFN,
    ClassificationConfig,
    RegressionConfig,
    TrainingConfig,
    UnsupervisedConfig,
    interp,
    sample_batch,
    train,
)
from pfn_transformers.priors import (
    CategoricalPrior,
    CoinFlipPrior,
    LinearRegressionPrior,
    LogisticClassificationPrior,
    MarkovChainPrior,
    MLPPrior,
    NormalInverseGammaPrior,
    PolynomialPrior,
)
from tests.cli_helpers import one_thread  # noqa: F401 (fixture)

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = {"d_model": 16, "n_layers": 2, "n_heads": 2}

# (config, prior) for every model kind and token layout
KINDS = {
    "bar-arpfn": (
        lambda: RegressionConfig(**SMALL, input_dim=1, d_vocab=32, y_min=-4, y_max=4),
        LinearRegressionPrior,
    ),
    "bar-gpt2": (
        lambda: RegressionConfig(
            **SMALL, input_dim=1, d_vocab=32, y_min=-4, y_max=4, mask_type="gpt2"
        ),
        LinearRegressionPrior,
    ),
    "point": (
        lambda: RegressionConfig(**SMALL, input_dim=1, prediction_type="point", bucket_type=None),
        LinearRegressionPrior,
    ),
    "classification": (
        lambda: ClassificationConfig(**SMALL, input_dim=2, num_classes=3),
        lambda: LogisticClassificationPrior(num_mc_samples=64),
    ),
    "unsup-discrete": (
        lambda: UnsupervisedConfig(**SMALL, input_type="discrete", d_vocab=4),
        lambda: MarkovChainPrior(num_states=4),
    ),
    "unsup-continuous": (
        lambda: UnsupervisedConfig(**SMALL, input_type="continuous", d_vocab=32, y_min=-6, y_max=6),
        NormalInverseGammaPrior,
    ),
}


def _model_and_data(kind: str, batch: int = 4, seq: int = 6):
    make_cfg, make_prior = KINDS[kind]
    torch.manual_seed(0)
    model = PFN(make_cfg()).eval()
    prior = make_prior()
    x, y = sample_batch(prior, batch, seq)
    return model, prior, ((y,) if x is None else (x, y))


def _tiny_training(steps: int, seq_len: int = 16) -> TrainingConfig:
    return TrainingConfig(
        batch_size=32,
        seq_len=seq_len,
        num_steps=steps,
        learning_rate=3e-3,
        warmup_steps=5,
        save_checkpoint=False,
        progress_bar=False,
        log_every=1000,
        device="cpu",
        precision="fp32",
        compile=False,
    )


@pytest.fixture(scope="module")
def coin_model():
    torch.manual_seed(0)
    cfg = UnsupervisedConfig(d_model=32, n_layers=2, n_heads=2, input_type="discrete", d_vocab=2)
    return train(CoinFlipPrior(), cfg, _tiny_training(100)).eval()


@pytest.fixture(scope="module")
def linear_model():
    torch.manual_seed(0)
    cfg = RegressionConfig(
        d_model=32, n_layers=2, n_heads=2, input_dim=1, d_vocab=64, y_min=-4, y_max=4
    )
    return train(LinearRegressionPrior(), cfg, _tiny_training(60)).eval()


# ---------------------------------------------------------------------------- logit lens
@pytest.mark.parametrize("kind", list(KINDS))
def test_lens_of_the_last_layer_is_the_output(kind):
    model, _, inputs = _model_and_data(kind)
    lens = interp.logit_lens(model, *inputs)
    assert list(lens) == ["embed", "L0", "L1"]
    out = model.predictive_logits(*inputs)
    for logits in lens.values():
        assert logits.shape == out.shape
    torch.testing.assert_close(lens["L1"], out, rtol=0, atol=1e-6)
    assert not torch.allclose(lens["L0"], out)


def test_lens_scores_improve_with_depth_on_a_trained_coin(coin_model):
    held = interp.draw_heldout(coin_model, CoinFlipPrior(), num_datasets=256, seq_len=16)
    res = interp.lens_scores(coin_model, held)
    assert res["metric"] == "excess_nll" and res["layers"] == ["embed", "L0", "L1"]
    means = [res["per_layer"][lab]["mean"] for lab in res["layers"]]
    assert means[0] > means[1] > means[2] >= -0.01
    assert means[2] < 0.02  # the output is close to Bayes-optimal after 100 steps
    assert len(res["per_layer"]["L1"]["per_n"]) == 16
    assert res["matches_output_from"] == "L1"
    # paired with evaluate(): the same number for the output layer
    from pfn_transformers.evaluation import evaluate

    ev = evaluate(coin_model, CoinFlipPrior(), num_datasets=256, seq_len=16, seed=0)
    assert ev["excess_nll"]["mean"] == pytest.approx(means[2], abs=1e-6)


@pytest.mark.parametrize(
    "kind, prior, metric",
    [
        ("bar-arpfn", LinearRegressionPrior, "excess_nll"),
        ("bar-arpfn", MLPPrior, "nll"),
        ("point", LinearRegressionPrior, "excess_mse"),
        ("point", MLPPrior, "mse"),
        ("unsup-discrete", lambda: MarkovChainPrior(num_states=4), "excess_nll"),
    ],
)
def test_heldout_metric_falls_back_when_there_is_no_exact_posterior(kind, prior, metric):
    model, _, _ = _model_and_data(kind)
    held = interp.draw_heldout(model, prior(), num_datasets=8, seq_len=5)
    assert held.metric == metric and held.description == interp.METRICS[metric]
    assert (held.reference is None) == (metric in ("nll", "mse"))
    res = interp.lens_scores(model, held, batch_size=3)  # chunks of 3, 3, 2 datasets
    assert all(math.isfinite(res["per_layer"][lab]["mean"]) for lab in res["layers"])


def test_bounded_bar_head_scores_in_range_targets_only():
    cfg = RegressionConfig(
        **SMALL, input_dim=1, d_vocab=16, y_min=-0.5, y_max=0.5, bucket_support="bounded"
    )
    model = PFN(cfg).eval()
    held = interp.draw_heldout(model, LinearRegressionPrior(), num_datasets=16, seq_len=8)
    outside = model.out_of_range(held.y)
    assert outside.any() and not outside.all()
    scores = interp.score(model, held, model.predictive_logits(*held.inputs()))
    assert torch.equal(torch.isnan(scores), outside.cpu())


# ---------------------------------------------------------------------------- attention
@pytest.mark.parametrize("kind", ["bar-arpfn", "bar-gpt2", "unsup-discrete"])
def test_attention_rows_sum_to_one_and_respect_the_masks(kind):
    model, _, inputs = _model_and_data(kind, batch=3, seq=5)
    s = inputs[-1].shape[1]
    pat = interp.attention_patterns(model, *inputs)
    t = interp.num_tokens(model, s)
    assert pat.shape == (2, 3, 2, t, t)
    torch.testing.assert_close(pat.sum(-1), torch.ones(2, 3, 2, t))
    roles = interp.token_roles(model, s)
    assert len(roles) == t and roles[0] == "start"
    # what each token may see, written out from the layouts in model/masks.py
    allowed = torch.zeros(t, t, dtype=torch.bool)
    for qi, q in enumerate(roles):
        for ki, k in enumerate(roles):
            if kind == "bar-arpfn":
                ok = (
                    k == "start"
                    or (q[0] == "p" and k[0] == "p" and int(k[1:]) <= int(q[1:]))
                    or (q[0] == "q" and ((k[0] == "p" and int(k[1:]) < int(q[1:])) or k == q))
                )
            else:  # interleaved / sequence layouts are plainly causal
                ok = ki <= qi
            allowed[qi, ki] = ok
    assert torch.equal(interp.layout_mask(model, s), allowed)
    assert pat[..., ~allowed].abs().max() == 0.0
    # no query ever sees its own target: query i puts no weight on pair i or later
    if kind != "unsup-discrete":
        for i in range(s):
            q, later = roles.index(f"q{i}"), [roles.index(f"p{j}") for j in range(i, s)]
            assert pat[:, :, :, q, later].abs().max() == 0.0


@pytest.mark.parametrize("kind", ["bar-arpfn", "bar-gpt2", "unsup-discrete"])
def test_head_summary_partitions_the_attention(kind):
    model, _, inputs = _model_and_data(kind, batch=3, seq=6)
    pat = interp.attention_patterns(model, *inputs)
    summary = interp.head_attention_summary(model, pat, 6)
    assert [h["name"] for h in summary] == ["L0.H0", "L0.H1", "L1.H0", "L1.H1"]
    for h in summary:
        total = sum(h[r] for r in interp.ATTENTION_ROLES)
        assert total == pytest.approx(1.0, abs=1e-6)
        assert 0 < h["start"] < 1 and 0 < h["self"] < 1
    masks = interp.prediction_role_masks(model, 6)
    stacked = torch.stack([masks[r] for r in interp.ATTENTION_ROLES]).sum(0)
    assert torch.equal(stacked, torch.ones_like(stacked))  # every token has exactly one role
    if kind != "bar-gpt2":  # only the interleaved layout has earlier queries ("other")
        assert all(h["other"] == pytest.approx(0.0, abs=1e-7) for h in summary)


# ---------------------------------------------------------------------------- ablation
def test_ablating_a_head_with_zero_output_weights_changes_nothing(linear_model):
    model = linear_model
    held = interp.draw_heldout(model, LinearRegressionPrior(), num_datasets=128, seq_len=16)
    dead, used = interp.Component(0, 1), interp.Component(0, 0)
    saved = model.blocks[0].attn.W_O.detach().clone()
    try:
        with torch.no_grad():
            model.blocks[0].attn.W_O[1].zero_()
        res = interp.ablation_scan(model, held, only=[dead, used])
    finally:
        with torch.no_grad():
            model.blocks[0].attn.W_O.copy_(saved)
    by = {(r["component"], r["mode"]): r for r in res["results"]}
    assert set(by) == {(c, m) for c in ("L0.H1", "L0.H0") for m in ("zero", "mean")}
    for mode in ("zero", "mean"):
        assert by[("L0.H1", mode)]["increase"] == pytest.approx(0.0, abs=1e-9)
        used_r = by[("L0.H0", mode)]
        assert abs(used_r["increase"]) > 3 * used_r["stderr"] > 0
    assert res["results"][0]["component"] == "L0.H0"  # sorted: largest increase first
    assert res["metric"] == "excess_nll" and "per token position" in res["mean_ablation"]


def test_ablation_scan_covers_every_head_and_mlp(coin_model):
    held = interp.draw_heldout(coin_model, CoinFlipPrior(), num_datasets=64, seq_len=12)
    res = interp.ablation_scan(coin_model, held, modes=["zero"], batch_size=40)
    names = sorted(r["component"] for r in res["results"])
    assert names == sorted(["L0.H0", "L0.H1", "L0.MLP", "L1.H0", "L1.H1", "L1.MLP"])
    incs = [r["increase"] for r in res["results"]]
    assert incs == sorted(incs, reverse=True) and incs[0] > 0.005
    assert res["baseline"]["mean"] == pytest.approx(
        interp.lens_scores(coin_model, held)["per_layer"]["L1"]["mean"], abs=1e-9
    )
    with pytest.raises(ValueError, match="mode='half'"):
        interp.ablation_scan(coin_model, held, modes=["half"])


def test_mean_ablation_uses_the_per_position_mean(coin_model):
    held = interp.draw_heldout(coin_model, CoinFlipPrior(), num_datasets=10, seq_len=5)
    name = "blocks.0.attn.hook_z"
    means = interp.mean_activations(coin_model, held, [name], batch_size=4)
    _, cache = coin_model.run_with_cache(*held.inputs(), names_filter=[name])
    torch.testing.assert_close(means[name], cache[name].mean(0))
    assert means[name].shape == (6, 2, 16)  # [token position, head, d_head]


# ---------------------------------------------------------------------------- probes
def test_ridge_probe_recovers_a_planted_linear_signal_and_not_noise():
    gen = torch.Generator().manual_seed(0)
    feats = torch.randn(300, 8, 12, generator=gen)
    w = torch.randn(12, 2, generator=gen)
    signal = feats @ w + 0.05 * torch.randn(300, 8, 2, generator=gen)
    res = interp.ridge_probe(feats, signal)
    assert res["r2"] > 0.99 and all(r > 0.99 for r in res["r2_per_component"])
    assert res["num_fit_rows"] == 150 * 8 and res["num_test_rows"] == 150 * 8
    noise = torch.randn(300, 8, 2, generator=gen)
    res = interp.ridge_probe(feats, noise)
    assert abs(res["r2"]) < 0.05
    # a constant target has no R²; a rescaled feature changes nothing (standardised)
    const = torch.ones(300, 8, 1)
    assert interp.ridge_probe(feats, const)["r2"] is None
    scaled = feats * torch.logspace(-3, 3, 12)
    assert interp.ridge_probe(scaled, signal)["r2"] > 0.99


def test_posterior_probes_on_a_trained_coin(coin_model):
    held = interp.draw_heldout(coin_model, CoinFlipPrior(), num_datasets=256, seq_len=16)
    res = interp.posterior_probes(coin_model, CoinFlipPrior(), held)
    assert res["statistics"] == {"bias_mean": 1} and res["layers"] == ["embed", "L0", "L1"]
    r2 = res["r2"]["bias_mean"]
    assert r2["L1"] > 0.95 and r2["embed"] < r2["L1"]


def test_probes_need_a_prior_that_declares_statistics(coin_model):
    class Plain:  # a user's prior without posterior_statistics
        target_type, num_classes, input_dim = "discrete", 2, None

        def generate_batch(self, batch_size, seq_len):
            return None, torch.randint(0, 2, (batch_size, seq_len))

    assert not interp.has_posterior_statistics(Plain())
    held = interp.draw_heldout(coin_model, Plain(), num_datasets=8, seq_len=4)
    assert held.metric == "nll"
    with pytest.raises(TypeError, match="declares no posterior statistics"):
        interp.posterior_probes(coin_model, Plain(), held)

    class BadShape(Plain):
        def posterior_statistics(self, x, y):
            return {"count": y[:, :2].double()}

    with pytest.raises(ValueError, match=r"\['count'\] has shape \(8, 2, 1\)"):
        interp.posterior_probes(coin_model, BadShape(), held)


@pytest.mark.parametrize(
    "prior",
    [LinearRegressionPrior(input_dim=2), PolynomialPrior(degree=2), NormalInverseGammaPrior()],
    ids=["linear", "polynomial", "nig"],
)
def test_posterior_statistics_give_the_exact_predictive_mean(prior):
    x, y = sample_batch(prior, 5, 9)
    stats = prior.posterior_statistics(x, y)
    if "weight_mean" in stats:
        assert stats["weight_mean"].shape == (5, 9, prior.num_features)
        mean = (stats["weight_mean"] * prior.featurize(x.double())).sum(-1)
        assert torch.equal(stats["weight_mean"][:, 0], torch.zeros(5, prior.num_features))
    else:
        assert set(stats) == {"mean", "log_scale"}
        mean = stats["mean"][..., 0]
        _, _, scale = prior.exact_predictive_params(y)
        torch.testing.assert_close(stats["log_scale"][..., 0], scale.log())
    torch.testing.assert_close(mean.float(), prior.exact_predictive_mean(x, y), atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "prior", [CoinFlipPrior(2.0, 3.0), CategoricalPrior(4, 0.7), MarkovChainPrior(3, 0.5)]
)
def test_discrete_posterior_statistics_give_the_exact_predictive(prior):
    x, y = sample_batch(prior, 6, 10)
    ((name, stat),) = prior.posterior_statistics(x, y).items()
    probs = prior.exact_predictive_probs(x, y)
    if name == "bias_mean":
        torch.testing.assert_close(stat[..., 0], probs[..., 1])
    elif name == "probs_mean":
        torch.testing.assert_close(stat, probs)
    else:  # Markov: (alpha + row counts) / (K alpha + n_i) for n >= 1
        a, k = prior.concentration, prior.num_states
        assert torch.equal(stat[:, 0], torch.zeros(6, k))
        torch.testing.assert_close(
            (a + stat[:, 1:]) / (k * a + stat[:, 1:].sum(-1, True)), probs[:, 1:]
        )
        assert torch.equal(stat[:, -1].sum(-1), (y[:, :-2] == y[:, -2:-1]).sum(-1).double())


# ---------------------------------------------------------------------------- export
@pytest.mark.parametrize("kind", ["bar-arpfn", "unsup-discrete"])
def test_export_round_trips_through_weights_only_load(kind, tmp_path):
    model, _, inputs = _model_and_data(kind, batch=1, seq=5)
    path = interp.export_activations(model, tmp_path / "sub" / "cache.pt", *inputs)
    data = torch.load(path, weights_only=True)
    assert data["format"] == "pfn-interp-cache/1"
    _, cache = model.run_with_cache(*inputs)
    assert set(data["cache"]) == set(cache)
    for name, t in cache.items():
        assert torch.equal(data["cache"][name], t.detach())
        assert data["cache"][name].device.type == "cpu" and not data["cache"][name].requires_grad
    assert torch.equal(data["y"], inputs[-1])
    assert (data["x"] is None) == (len(inputs) == 1)
    if data["x"] is not None:
        assert torch.equal(data["x"], inputs[0])
    assert data["token_roles"] == interp.token_roles(model, 5)
    assert torch.equal(data["predictive_logits"], model.predictive_logits(*inputs).detach())
    pos = data["predictive_positions"]
    assert data["cache"]["blocks.1.hook_resid_post"][:, pos].shape == (1, 5, 16)
    assert data["model_config"]["d_model"] == 16
    assert not list(path.parent.glob(".*.tmp"))
