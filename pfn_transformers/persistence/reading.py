"""Weights from any source, as plain data: the reading half of the one load path.

:func:`read_weights` resolves a source (``sources.parse_source``) and returns
:class:`Weights`: the model config as a dict, the state dict, where they came from, the
typed provenance and, for checkpoints, the raw payload. ``Weights.to_model(cls)`` hands them
to ``model.build.build_model``, the one builder; ``loading.load_model`` and the model's
``_from_pretrained`` hook both end there. W&B is imported only for W&B references.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .checkpoint import read_checkpoint
from .errors import CheckpointError, CheckpointNotFoundError, PretrainedError
from .files import find_step_file
from .pretrained import hub_download, read_pretrained
from .provenance import Provenance
from .run_folder import RunFolder
from .sources import CHECKPOINT_DIR, EVAL_FILE, Source, parse_source


@dataclass
class Weights:
    """A model's weights and what is known about them, before any model is built."""

    model_config: dict[str, Any]
    state: dict[str, Any]
    where: str  # names the weights in error messages
    provenance: Provenance
    payload: dict[str, Any] | None = field(default=None, repr=False)  # checkpoints only

    def to_model(self, model_class: type, device: Any = "auto") -> Any:
        """``model_class`` built from these weights (``model.build.build_model``, the one
        builder) on ``device``, in eval mode, with ``model.provenance`` set."""
        from ..model.build import build_model

        model = build_model(
            model_class, self.model_config, self.state, where=self.where, device=device
        )
        model.provenance = self.provenance.to_dict()
        return model


def from_checkpoint_payload(payload: dict[str, Any]) -> Weights:
    """The Weights of a read checkpoint (``checkpoint.read_checkpoint``)."""
    return Weights(
        payload["model_config"],
        payload["model_state"],
        payload["path"],
        Provenance.from_checkpoint(payload),
        payload,
    )


def read_checkpoint_file(path: str | os.PathLike) -> Weights:
    """A ``step-N.pt`` checkpoint (``torch.load(weights_only=True)``); PretrainedError when it
    is missing or unreadable."""
    try:
        payload = read_checkpoint(path)
    except CheckpointError as exc:
        raise PretrainedError(str(exc)) from None
    return from_checkpoint_payload(payload)


def read_run(run_dir: str | os.PathLike, step: int | None = None) -> Weights:
    """A run's checkpoint ``step`` (None: the newest) with the run's provenance: its prior's
    config, status (training time, device, parent) and eval.json when it scores that step."""
    run = RunFolder(run_dir)
    steps = run.checkpoint_steps
    if not steps:
        raise CheckpointNotFoundError(
            f"run {run.path}: the run has no checkpoint (no step-N.pt in {run.path / 'checkpoints'}); "
            "it stopped before its first save. Train it further with `pfn train resume=...` or "
            "pick another run (`pfn list-runs`)."
        )
    if step is not None and int(step) not in steps:
        raise CheckpointNotFoundError(
            f"step={step}: run {run.name} has no checkpoint for step {step}; available steps: "
            f"{', '.join(map(str, steps))} (step=None takes the newest)."
        )
    weights = read_checkpoint_file(run.checkpoint(step))
    prov = weights.provenance
    st = run.status
    prior = dict(prov.prior or {})
    if run.prior_config is not None:
        prior["config"] = run.prior_config
    prior["choice"] = st.get("prior") or prior.get("choice")
    prov.prior = prior if prior.get("config") or prior.get("choice") else None
    prov.model_choice = st.get("model") or prov.model_choice
    prov.parent = run.parent or prov.parent
    training = prov.training
    if training["steps"] == st.get("step") and isinstance(st.get("train_time_s"), int | float):
        training["seconds"] = st["train_time_s"]
    training["device"] = training.get("device") or st.get("device")
    prov.origin = {**prov.origin, "kind": "run", "run": str(run.path)}
    evaluation = run.evaluation
    if evaluation is not None and evaluation.get("step") == training["steps"]:
        prov.evaluation = evaluation
    elif evaluation is not None:
        prov.evaluation_note = (
            f"the run's {EVAL_FILE} scores step {evaluation.get('step')}, not step "
            f"{training['steps']}; run `pfn eval run={run.path} step={training['steps']}` first"
        )
    return weights


def read_wandb(reference: str, step: int | None, api: Any = None) -> Weights:
    """A checkpoint a W&B run logged as an artifact, downloaded (``pfn_transformers.wandb``)."""
    from ..wandb.artifacts import fetch_checkpoint

    with fetch_checkpoint(reference, step, api=api) as (path, wandb_fields):
        payload = read_checkpoint(path)
    payload["path"] = wandb_fields.get("path", payload["path"])
    weights = from_checkpoint_payload(payload)
    weights.provenance.origin.update(
        kind="wandb",
        artifact=wandb_fields["artifact_name"],
        wandb_run_url=wandb_fields["wandb_run_url"],
    )
    return weights


def read_folder(directory: str | os.PathLike) -> Weights:
    """A save_pretrained folder: safetensors weights and JSON only."""
    config, state, prov = read_pretrained(directory)
    return Weights(
        config, state, f"{Path(directory) / 'model.safetensors'} (config config.json)", prov
    )


def read_hub(model_id: str, revision: str | None = None, **download: Any) -> Weights:
    """A model on the Hugging Face Hub (``user/name``), downloaded to the Hub cache."""
    weights = read_folder(hub_download(model_id, revision=revision, **download))
    weights.provenance.origin.update(kind="hub", hub_id=model_id, revision=revision)
    return weights


def read_weights(
    source: str | os.PathLike | Source,
    step: int | None = None,
    *,
    api: Any = None,
    hub: dict[str, Any] | None = None,
) -> Weights:
    """The weights ``source`` names (see ``sources.KINDS``). ``step``: a checkpoint of a run,
    a checkpoint folder or a W&B run (None: the newest); ``api``: a W&B client; ``hub``: the
    Hub download options (``revision``, ``cache_dir``, ``token``, ...)."""
    parsed = source if isinstance(source, Source) else parse_source(source)
    if parsed.kind == "wandb":
        return read_wandb(parsed.text, step, api)
    if parsed.kind == "hub":
        return read_hub(parsed.text, **(hub or {}))
    if parsed.kind == "pretrained":
        if step is not None:
            raise PretrainedError(
                f"step={step}: {parsed.path} is a saved model (one set of weights); step= applies "
                "to run folders and W&B runs."
            )
        return read_folder(parsed.path)
    if parsed.kind == "run":
        return read_run(parsed.path, step)
    if parsed.kind == "checkpoints":
        return read_checkpoint_file(find_step_file(parsed.path, step))
    return read_checkpoint_file(parsed.path)


__all__ = [
    "CHECKPOINT_DIR",
    "Weights",
    "read_checkpoint_file",
    "read_folder",
    "read_hub",
    "read_run",
    "read_wandb",
    "read_weights",
]
