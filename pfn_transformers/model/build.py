"""The one builder that turns weights into a model: a config and a state dict in, a model in
eval mode out, with an error naming the first tensor that does not fit.

Every load path ends here (``pfn_transformers.persistence.loading.load_model``, and through
it ``PFN.from_pretrained``, ``checkpointing.load_checkpoint``, ``Run.model()`` and the W&B
loaders). The model class is passed in, so persistence depends on the model and never the
reverse.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from ..persistence.errors import PretrainedError, WeightsMismatchError
from ..utils import resolve_device
from .configs import ConfigError, ModelConfig, config_from_dict


def check_weights(model: torch.nn.Module, state: Mapping[str, Any], where: str) -> None:
    """Raise WeightsMismatchError naming the first tensor of ``state`` that is missing,
    unexpected or of another shape than ``model``'s."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    config = getattr(model, "config", None)
    built = f"the config ({type(config).__name__})" if config is not None else "the model"
    if missing:
        raise WeightsMismatchError(
            f"{where}: tensor {missing[0]!r} is missing"
            + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
            + f"; {built} builds it with shape {list(own[missing[0]].shape)}. The weights were "
            "saved from a model of another kind or size."
        )
    if unexpected:
        raise WeightsMismatchError(
            f"{where}: tensor {unexpected[0]!r} (shape {list(state[unexpected[0]].shape)}) is not "
            f"part of the model {built} builds"
            + (f" (and {len(unexpected) - 1} more)" if len(unexpected) > 1 else "")
            + "; the weights were saved from a model of another kind or size."
        )
    for key, tensor in own.items():
        got = tuple(state[key].shape)
        if got != tuple(tensor.shape):
            raise WeightsMismatchError(
                f"{where}: tensor {key!r} has shape {list(got)} but {built} builds "
                f"{list(tensor.shape)}; the weights belong to a model with other sizes "
                "(input_dim, d_model, buckets, ...)."
            )


def load_weights(model: torch.nn.Module, state: Mapping[str, Any], where: str) -> None:
    """``model.load_state_dict(state)`` after ``check_weights`` (clear errors)."""
    check_weights(model, state, where)
    model.load_state_dict(dict(state))


def build_model(
    model_class: type,
    config: ModelConfig | Mapping[str, Any],
    state: Mapping[str, Any],
    *,
    where: str,
    device: Any = "auto",
) -> Any:
    """``model_class(config)`` with ``state`` loaded, on ``device``, in eval mode.

    ``config``: a model config, or its ``to_dict()`` form (PretrainedError when it cannot be
    built); ``where`` names the weights in error messages."""
    try:
        if isinstance(config, Mapping):
            config = config_from_dict(dict(config))
        model = model_class(config)
    except (ConfigError, TypeError) as exc:
        raise PretrainedError(f"{where}: the model config cannot be built: {exc}") from None
    load_weights(model, state, where)
    model.to(resolve_device(device))
    model.eval()
    return model


__all__ = ["build_model", "check_weights", "load_weights"]
