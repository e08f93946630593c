"""The one load path: ``load_model(source, step=None, device="auto")``.

Every way of getting a trained model from disk, W&B or the Hub ends in the same two calls:
``reading.read_weights`` (a source to plain data, :class:`~.reading.Weights`) and
``Weights.to_model`` (``model.build.build_model``: plain data to a model). ``Run.model()``,
``checkpointing.load_checkpoint`` and the W&B loaders call this module;
``PFN.from_pretrained`` reaches the same two calls through the model's ``_from_pretrained``
hook (``hub.PretrainedMixin``), which cannot import this module (it imports the model class)
without closing an import cycle. Nothing loaded can run code: weights come from
safetensors or from ``torch.load(weights_only=True)``, configs from JSON.
"""

from __future__ import annotations

import os
from typing import Any

from ..model.build import build_model
from ..model.configs import config_from_dict
from .checkpoint import CheckpointMetadata, checkpoint_metadata, read_checkpoint
from .errors import CheckpointError, WeightsMismatchError
from .reading import read_weights
from .sources import Source


def load_model(
    source: str | os.PathLike | Source,
    step: int | None = None,
    device: Any = "auto",
    *,
    api: Any = None,
    model_class: type | None = None,
    **hub: Any,
) -> Any:
    """A trained PFN from ``source``: a save_pretrained folder, a run folder (``outputs/RUN``;
    ``step=N`` for another checkpoint than the newest), a checkpoint file or folder, a W&B
    reference (``wandb:entity/project/run_id[@step]``; ``api`` for a W&B client) or a Hugging
    Face Hub id (``hub``: ``revision``, ``cache_dir``, ``token``, ``force_download``,
    ``local_files_only``). Returns the model in eval mode on ``device`` with
    ``model.provenance`` set (a plain dict; see ``provenance.Provenance``)."""
    return read_weights(source, step, api=api, hub=hub).to_model(
        model_class or _pfn_model(), device
    )


def load_checkpoint(
    checkpoint_path: str | os.PathLike,
    device: str = "auto",
    load_optimizer: bool = False,
) -> tuple[Any, dict | None, CheckpointMetadata]:
    """Rebuild the model from a checkpoint file (or the newest one in a folder).

    Returns ``(model, optimizer_state or None, CheckpointMetadata)``; CheckpointError when the
    file is missing, corrupt or its weights do not fit its config.
    """
    payload = read_checkpoint(checkpoint_path)
    config = config_from_dict(payload["model_config"])
    try:
        model = build_model(
            _pfn_model(), config, payload["model_state"], where=payload["path"], device=device
        )
    except WeightsMismatchError as err:
        raise CheckpointError(
            f"checkpoint {payload['path']!r} weights do not fit its model config: {err}"
        ) from err
    optimizer_state = payload.get("optimizer_state") if load_optimizer else None
    return model, optimizer_state, checkpoint_metadata(payload, config)


def _pfn_model() -> type:
    from ..model.pfn import PFNModel

    return PFNModel


__all__ = ["load_checkpoint", "load_model"]
