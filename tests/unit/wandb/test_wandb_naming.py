"""Structured run names: exact format, values that keep their value, and the inverse parser."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from pfn_transformers import RegressionConfig
from pfn_transformers.wandb import RunNameScheme, create_run_name, format_value, parse_run_name
from pfn_transformers.wandb.naming import describe_scheme, values_equal


@dataclass
class MyDataConfig:
    num_tasks: int = 100
    input_dim: int = 10


SPEC_SCHEME = RunNameScheme.from_templates(
    model={"n_layers": None, "d_model": None},
    data={"num_tasks": None, "input_dim": None},
)


def test_spec_example_name_is_exact() -> None:
    model_config = RegressionConfig(d_model=128, n_layers=4, n_heads=4, input_dim=10)
    name = create_run_name(
        base="my-experiment",
        model_config=model_config,
        data_config=MyDataConfig(),
        scheme=SPEC_SCHEME,
    )
    assert name == "my-experiment-model-n_layers4-d_model128-data-num_tasks100-input_dim10"
    assert parse_run_name(name, SPEC_SCHEME) == {
        "base": "my-experiment",
        "model": {"n_layers": 4, "d_model": 128},
        "data": {"num_tasks": 100, "input_dim": 10},
    }


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (100.0, "100.0"),
        (1e-4, "0.0001"),
        (1e-5, "0.00001"),
        (0.1, "0.1"),
        (2.50, "2.5"),
        (1e20, "1e+20"),
        (-5.0, "-5.0"),
        (10, "10"),
        (0, "0"),
        (True, "True"),
        (None, "None"),
        ("autoregressive-pfn", "autoregressive-pfn"),
        ([1, 2.0], "[1,2.0]"),
    ],
)
def test_format_value_keeps_the_value(value, text) -> None:
    assert format_value(value) == text
    if isinstance(value, float):
        assert float(text) == value  # never "1" for 100.0


def test_round_trip_with_floats_dashes_and_strings() -> None:
    scheme = RunNameScheme.from_templates(
        model={"mask_type": None, "y_min": None, "d_model": None},
        training=["learning_rate", "use_warmup"],
        data={"noise": None, "name": None},
    )
    model = RegressionConfig(d_model=64, n_heads=4, y_min=-5.0, mask_type="autoregressive-pfn")
    training = {"learning_rate": 1e-4, "use_warmup": False}
    data = {"noise": 100.0, "name": "gp-rbf"}
    name = create_run_name("exp-1", model, data, scheme, training_config=training)
    assert name == (
        "exp-1-model-mask_typeautoregressive-pfn-y_min-5.0-d_model64"
        "-training-learning_rate0.0001-use_warmupFalse-data-noise100.0-namegp-rbf"
    )
    parsed = parse_run_name(name, scheme)
    assert parsed["base"] == "exp-1"
    assert parsed["model"] == {"mask_type": "autoregressive-pfn", "y_min": -5.0, "d_model": 64}
    assert parsed["training"] == {"learning_rate": 1e-4, "use_warmup": False}
    assert parsed["data"] == {"noise": 100.0, "name": "gp-rbf"}
    assert isinstance(parsed["data"]["noise"], float)


def test_templates_accept_dataclasses_lists_and_objects() -> None:
    class Plain:
        def __init__(self) -> None:
            self.alpha = 1
            self._hidden = 2

    scheme = RunNameScheme.from_templates(model=["n_layers"], data=MyDataConfig(), training=Plain())
    assert scheme.model_fields == ("n_layers",)
    assert scheme.data_fields == ("num_tasks", "input_dim")
    assert scheme.training_fields == ("alpha",)
    assert RunNameScheme.from_templates().all_fields == ()
    assert describe_scheme(SPEC_SCHEME) == (
        "{base}-model-n_layers{n_layers}-d_model{d_model}-data-num_tasks{num_tasks}"
        "-input_dim{input_dim}"
    )


def test_clear_errors() -> None:
    model = RegressionConfig(d_model=32, n_heads=4)
    bad = RunNameScheme.from_templates(model={"n_layer": None})
    with pytest.raises(ValueError, match=r"n_layer.*RegressionConfig.*available"):
        create_run_name("x", model, None, bad)
    with pytest.raises(ValueError, match="data_config=None"):
        create_run_name("x", model, None, SPEC_SCHEME)
    with pytest.raises(ValueError, match="non-empty"):
        create_run_name("", model, MyDataConfig(), SPEC_SCHEME)
    with pytest.raises(ValueError, match="does not follow the scheme"):
        parse_run_name("random-name", SPEC_SCHEME)
    assert create_run_name("plain", model) == "plain"


def test_values_equal_is_value_based() -> None:
    assert values_equal(100, 100.0)
    assert values_equal("100.0", 100)
    assert values_equal(1e-4, "0.0001")
    assert not values_equal(500, 5000)
    assert not values_equal(1, True)
    assert values_equal("gp-rbf", "gp-rbf")
    assert values_equal([1, 2], (1.0, 2.0))
