"""The model config fitted to the prior in the library (issue 25, item 2): what ``pfn train``
derives from a prior, a Python user gets from ``fit_model_config``."""

from __future__ import annotations

import pytest
import torch

from pfn_transformers import (
    ClassificationConfig,
    IncompatibleTaskError,
    RegressionConfig,
    UnsupervisedConfig,
    fit_model_config,
)
from pfn_transformers.data.building import prior_y_range, riemann_borders_for
from pfn_transformers.priors import (
    CategoricalPrior,
    GPPrior,
    LinearRegressionPrior,
    LogisticClassificationPrior,
)

SMALL = {"d_model": 16, "n_layers": 1, "n_heads": 2}


def test_regression_gets_the_priors_input_dim_and_y_range():
    prior = LinearRegressionPrior(input_dim=3)
    config = fit_model_config(RegressionConfig, prior, **SMALL)
    assert config.input_dim == 3
    assert (config.y_min, config.y_max) == pytest.approx(prior_y_range(prior))


def test_given_fields_are_kept_and_checked_once():
    prior = LinearRegressionPrior(input_dim=3)
    config = fit_model_config(RegressionConfig, prior, y_min=-1.0, y_max=2.0, **SMALL)
    assert (config.input_dim, config.y_min, config.y_max) == (3, -1.0, 2.0)
    with pytest.raises(IncompatibleTaskError, match="input_dim=2 .*input_dim=3"):
        fit_model_config(RegressionConfig, prior, input_dim=2, **SMALL)


def test_riemann_borders_come_from_the_prior():
    prior = GPPrior()
    config = fit_model_config(RegressionConfig, prior, bucket_type="riemann", d_vocab=20, **SMALL)
    expected = torch.tensor(riemann_borders_for(prior, 20))
    assert torch.equal(torch.as_tensor(config.riemann_borders), expected)


def test_class_and_token_counts_come_from_the_prior():
    logistic = LogisticClassificationPrior()
    config = fit_model_config(ClassificationConfig, logistic, **SMALL)
    assert (config.input_dim, config.num_classes) == (logistic.input_dim, logistic.num_classes)
    tokens = CategoricalPrior()
    config = fit_model_config(UnsupervisedConfig, tokens, input_type="discrete", **SMALL)
    assert config.d_vocab == tokens.num_classes


def test_a_head_that_cannot_fit_the_prior_is_refused_before_sizes_are_derived():
    with pytest.raises(IncompatibleTaskError, match="classification model"):
        fit_model_config(ClassificationConfig, GPPrior(), **SMALL)
