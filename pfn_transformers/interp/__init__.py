"""See how a trained PFN does Bayesian inference, through its TransformerLens hooks.

Plain functions over ``run_with_cache`` / ``run_with_hooks`` and the model's own
``decode_resid``, one job per module:

- ``attention``: patterns of every layer and head, and where each head looks when predicting;
- ``lens``: the logit lens of every layer scored against the exact posterior predictive;
- ``ablation``: zero- and mean-ablation of every head and MLP;
- ``probes``: ridge probes from the residual stream to the posterior's sufficient
  statistics (priors opt in with ``posterior_statistics(x, y)``);
- ``export``: one context's activations as a plain ``.pt`` dict;
- ``scoring`` (held-out datasets and what they are scored against), ``layout`` (token
  roles and masks), ``hooks`` (running the model through hooks), ``plots`` (figures).

``pfn inspect`` runs them all on a trained run.
"""

from pfn_transformers.interp.ablation import (
    ABLATION_MODES,
    Component,
    ablated_predictive_logits,
    ablation_hook,
    ablation_scan,
    components,
    mean_activations,
)
from pfn_transformers.interp.attention import (
    attention_patterns,
    head_attention_summary,
    pattern_names,
)
from pfn_transformers.interp.export import activation_cache, export_activations
from pfn_transformers.interp.hooks import (
    cache_at_predictions,
    predictive_logits_with_hooks,
    residual_points,
)
from pfn_transformers.interp.layout import (
    ATTENTION_ROLES,
    layout_mask,
    num_tokens,
    prediction_role_masks,
    token_roles,
)
from pfn_transformers.interp.lens import lens_scores, logit_lens
from pfn_transformers.interp.probes import (
    PROBE_LAMBDAS,
    RidgeProbe,
    fit_ridge_path,
    has_posterior_statistics,
    posterior_probes,
    posterior_statistics,
    r2_scores,
    ridge_probe,
)
from pfn_transformers.interp.scoring import METRICS, HeldOut, draw_heldout, position_loss, score

__all__ = [
    "ABLATION_MODES",
    "ATTENTION_ROLES",
    "METRICS",
    "PROBE_LAMBDAS",
    "Component",
    "HeldOut",
    "RidgeProbe",
    "ablated_predictive_logits",
    "ablation_hook",
    "ablation_scan",
    "activation_cache",
    "attention_patterns",
    "cache_at_predictions",
    "components",
    "draw_heldout",
    "export_activations",
    "fit_ridge_path",
    "has_posterior_statistics",
    "head_attention_summary",
    "layout_mask",
    "lens_scores",
    "logit_lens",
    "mean_activations",
    "num_tokens",
    "pattern_names",
    "position_loss",
    "predictive_logits_with_hooks",
    "posterior_probes",
    "posterior_statistics",
    "prediction_role_masks",
    "r2_scores",
    "residual_points",
    "ridge_probe",
    "score",
    "token_roles",
]
