"""PFNRegressor.fit(X, y, hyperparameters=...) for models trained with condition_on."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from pfn_transformers import PFNRegressor
from tests.unit.model.test_conditioning import conditioned


def data():
    rng = np.random.default_rng(0)
    return rng.uniform(size=(12, 1)), rng.normal(size=12), rng.uniform(size=(5, 1))


def test_fit_takes_the_known_hyperparameters_of_its_dataset():
    model = conditioned()
    X, y, Xq = data()
    hp = {"lengthscale": 0.4}
    reg = PFNRegressor(model).fit(X, y, hyperparameters=hp)
    assert reg.hyperparameters_ == hp
    x_t = lambda a: torch.tensor(a, dtype=torch.float32)[None]  # noqa: E731
    logits = model.predict(x_t(X), torch.tensor(y, dtype=torch.float32)[None], x_t(Xq),
                           hyperparameters=hp)  # fmt: skip
    expected = model.point_prediction(logits)[0].numpy()
    np.testing.assert_allclose(reg.predict(Xq), expected, rtol=1e-5, atol=1e-5)
    marginal = PFNRegressor(model).fit(X, y).predict(Xq)
    assert np.abs(marginal - expected).max() > 1e-3
    # in a pipeline, as a fit parameter routed to the estimator
    pipe = make_pipeline(FunctionTransformer(), PFNRegressor(model))
    pipe.fit(X, y, pfnregressor__hyperparameters=hp)
    np.testing.assert_allclose(pipe.predict(Xq), expected, rtol=1e-5, atol=1e-5)


def test_a_name_the_model_does_not_condition_on_is_an_error():
    X, y, _ = data()
    with pytest.raises(ValueError, match="not ones this model conditions on"):
        PFNRegressor(conditioned()).fit(X, y, hyperparameters={"period": 1.0})
