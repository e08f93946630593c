"""Trained PFNs that travel: ``model.save_pretrained(dir)`` and ``PFN.from_pretrained(source)``.

A saved PFN is a Hugging Face-style folder::

    model.safetensors   the weights (safetensors: plain tensors, cannot run code)
    config.json         the model config (``to_dict``), the prior's config when known, the
                        training budget, the library version and commit, the parent run
    README.md           a model card; its YAML front matter quotes eval.json's figures
    eval.json           the evaluation against the prior's exact posterior (when there is one)

``PFNModel`` gets these methods from :class:`PretrainedMixin`, a ``huggingface_hub``
``ModelHubMixin``: ``push_to_hub`` and Hub ids (``user/name``) work wherever a network and
credentials exist. ``from_pretrained`` also opens a run folder (``outputs/RUN``, ``step=``
for another checkpoint), a checkpoint file and a W&B reference
(``wandb:entity/project/run_id[@step]``). Nothing it loads can run code: weights come from
safetensors or from ``torch.load(weights_only=True)``, configs from JSON.

Every loaded or trained model carries ``model.provenance``: a plain dict with the keys of
``PROVENANCE_KEYS`` (``prior``, ``model_choice``, ``training``, ``parent``, ``environment``,
``origin``) plus ``evaluation`` (the eval.json of that very step, when known), which
``save_pretrained`` writes into config.json and the card.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import ModelHubMixin

from . import checkpointing
from .model.configs import ConfigError, config_from_dict
from .runs import (
    CHECKPOINT_DIR,
    EVAL_FILE,
    Run,
    RunNotFoundError,
    is_run_dir,
    write_json_atomic,
    write_text_atomic,
)
from .utils import resolve_device, to_plain

FORMAT = "pfn_transformers.pretrained"
FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
CARD_FILE = "README.md"
PROVENANCE_KEYS = ("prior", "model_choice", "training", "parent", "environment", "origin")
_PICKLE_FILES = ("pytorch_model.bin", "model.pt", "model.pth", "model.ckpt")
_REPO_ID = re.compile(r"^[\w.\-]{1,96}/[\w.\-]{1,96}$")
_SOURCE_HINT = (
    "pass a folder written by save_pretrained or `pfn export`, a run folder (outputs/RUN), a "
    "checkpoint file (step-N.pt), a W&B reference (wandb:entity/project/run_id[@step]) or a "
    "Hugging Face Hub id (user/name)"
)


class PretrainedError(ValueError):
    """A source that cannot be loaded as a PFN: missing, not a PFN, weights refused."""


class WeightsMismatchError(PretrainedError):
    """Weights that do not fit the model their config builds (the message names the tensor)."""


# ---------------------------------------------------------------------------- weights
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


# ---------------------------------------------------------------------------- saving
def pretrained_config(model: Any) -> dict[str, Any]:
    """The config.json of a model: its config and its provenance (without evaluation)."""
    from . import __version__

    prov = dict(getattr(model, "provenance", None) or {})
    env = dict(prov.get("environment") or {})
    env.setdefault("library_version", __version__)
    out: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "library": "pfn-transformers",
        "library_version": __version__,
        "model_config": to_plain(model.config.to_dict()),
    }
    for key in PROVENANCE_KEYS:
        out[key] = to_plain(env if key == "environment" else prov.get(key))
    return out


def write_pretrained(
    model: Any, directory: str | os.PathLike, evaluation: Mapping[str, Any] | None = None
) -> Path:
    """Write the folder (see the module doc), each file atomically. ``evaluation`` (an
    ``evaluate`` result) defaults to the model's own provenance ``evaluation``."""
    from safetensors.torch import save_file

    from .card import render_card

    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    prov = getattr(model, "provenance", None) or {}
    if evaluation is None:
        evaluation = prov.get("evaluation")
    evaluation = to_plain(dict(evaluation)) if evaluation is not None else None
    config = pretrained_config(model)
    if evaluation is None and prov.get("evaluation_note"):
        config["evaluation_note"] = prov["evaluation_note"]
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    fd, tmp = tempfile.mkstemp(prefix=f".{WEIGHTS_FILE}.", suffix=".tmp", dir=folder)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata={"format": "pt", "pfn_format": FORMAT})
        os.replace(tmp, folder / WEIGHTS_FILE)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    write_json_atomic(folder / CONFIG_FILE, config)
    if evaluation is not None:
        write_json_atomic(folder / EVAL_FILE, evaluation)
    else:
        (folder / EVAL_FILE).unlink(missing_ok=True)  # an older save's figures would mislead
    write_text_atomic(folder / CARD_FILE, render_card(config, evaluation))
    return folder


# ---------------------------------------------------------------------------- loading
def _model_from(config: Mapping[str, Any], state: Mapping[str, Any], where: str, device: Any):
    from .model.pfn import PFN

    try:
        model = PFN(config_from_dict(dict(config)))
    except (ConfigError, TypeError) as exc:
        raise PretrainedError(f"{where}: the model config cannot be built: {exc}") from None
    load_weights(model, state, where)
    model.to(resolve_device(device))
    model.eval()
    return model


def is_pretrained_dir(path: str | os.PathLike) -> bool:
    """A folder written by save_pretrained (its config.json carries the format tag)."""
    data = _read_config(Path(path) / CONFIG_FILE)
    return data is not None and data.get("format") == FORMAT


def _read_config(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def load_folder(directory: str | os.PathLike, device: Any = "auto") -> Any:
    """A model from a save_pretrained folder: safetensors weights and JSON only."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(directory)
    config = _read_config(folder / CONFIG_FILE)
    if config is None or config.get("format") != FORMAT or "model_config" not in config:
        raise PretrainedError(
            f"{folder}: {CONFIG_FILE} is missing or is not a pfn-transformers config (no "
            f"'format': '{FORMAT}' and 'model_config'); {_SOURCE_HINT}."
        )
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        pickles = [name for name in _PICKLE_FILES if (folder / name).exists()]
        raise PretrainedError(
            f"{folder}: {WEIGHTS_FILE} is missing"
            + (f"; {pickles[0]} is there, but pickled weights are never loaded" if pickles else "")
            + ". Save the model again with save_pretrained."
        )
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as exc:
        raise PretrainedError(
            f"{weights}: not a valid safetensors file ({type(exc).__name__}: {exc}); it was "
            "refused without being run (a pickle is never unpickled here). Save the model "
            "again with save_pretrained."
        ) from None
    model = _model_from(config["model_config"], state, f"{weights} (config {CONFIG_FILE})", device)
    prov = {k: config.get(k) for k in PROVENANCE_KEYS}
    origin = dict(prov.get("origin") or {})
    prov["origin"] = {**origin, "kind": "pretrained", "folder": str(folder)}
    evaluation = _read_config(folder / EVAL_FILE)
    if evaluation is not None:
        prov["evaluation"] = evaluation
    elif config.get("evaluation_note"):
        prov["evaluation_note"] = config["evaluation_note"]
    model.provenance = prov
    return model


def provenance_from_checkpoint(payload: Mapping[str, Any]) -> dict[str, Any]:
    """Provenance of a checkpoint's model: training budget, prior, parent, environment."""
    recorded = dict(payload.get("provenance") or {})
    tc = payload.get("training_config") if isinstance(payload.get("training_config"), dict) else {}
    data = payload.get("data_config") if isinstance(payload.get("data_config"), dict) else {}
    metrics = payload.get("metrics") or {}
    prior = dict(recorded.get("prior") or {})
    if isinstance(data.get("prior_config"), dict):  # the pfn CLI passes the prior's config
        prior.update(config=data["prior_config"], choice=data.get("prior"))
    training = {
        "steps": int(payload["step"]),
        **{k: tc.get(k) for k in ("num_steps", "batch_size", "seq_len", "learning_rate", "seed")},
        "precision": tc.get("precision"),
        "seconds": metrics.get("elapsed_s"),
        "device": recorded.get("device"),
        "world_size": recorded.get("world_size"),
        "config": tc or None,
    }
    return {
        "prior": prior or None,
        "model_choice": data.get("model"),
        "training": training,
        "parent": recorded.get("parent"),
        "environment": recorded.get("environment"),
        "origin": {
            "kind": "checkpoint",
            "checkpoint": payload.get("path"),
            "step": training["steps"],
        },
    }


def load_checkpoint_file(path: str | os.PathLike, device: Any = "auto") -> Any:
    """A model from a ``step-N.pt`` checkpoint (``torch.load(weights_only=True)``)."""
    try:
        payload = checkpointing.read_checkpoint(path)
    except checkpointing.CheckpointError as exc:
        raise PretrainedError(str(exc)) from None
    model = _model_from(payload["model_config"], payload["model_state"], payload["path"], device)
    model.provenance = provenance_from_checkpoint(payload)
    return model


def load_run(run_dir: str | os.PathLike, step: int | None = None, device: Any = "auto") -> Any:
    """A run's checkpoint ``step`` (None: the newest) with the run's provenance: its prior's
    config, status (training time, device, parent) and eval.json when it scores that step."""
    run = Run(run_dir)
    steps = run.checkpoint_steps
    if not steps:
        raise checkpointing.CheckpointNotFoundError(
            f"run {run.path}: the run has no checkpoint (no step-N.pt in {run.path / 'checkpoints'}); "
            "it stopped before its first save. Train it further with `pfn train resume=...` or "
            "pick another run (`pfn list-runs`)."
        )
    if step is not None and int(step) not in steps:
        raise checkpointing.CheckpointNotFoundError(
            f"step={step}: run {run.name} has no checkpoint for step {step}; available steps: "
            f"{', '.join(map(str, steps))} (step=None takes the newest)."
        )
    model = load_checkpoint_file(run.checkpoint(step), device)
    prov = model.provenance
    st = run.status
    prior = dict(prov.get("prior") or {})
    if run.prior_config is not None:
        prior["config"] = run.prior_config
    prior["choice"] = st.get("prior") or prior.get("choice")
    prov["prior"] = prior if prior.get("config") or prior.get("choice") else None
    prov["model_choice"] = st.get("model") or prov.get("model_choice")
    prov["parent"] = run.parent or prov.get("parent")
    training = prov["training"]
    if training["steps"] == st.get("step") and isinstance(st.get("train_time_s"), int | float):
        training["seconds"] = st["train_time_s"]
    training["device"] = training.get("device") or st.get("device")
    prov["origin"] = {**prov["origin"], "kind": "run", "run": str(run.path)}
    evaluation = run.evaluation
    if evaluation is not None and evaluation.get("step") == training["steps"]:
        prov["evaluation"] = evaluation
    elif evaluation is not None:
        prov["evaluation_note"] = (
            f"the run's {EVAL_FILE} scores step {evaluation.get('step')}, not step "
            f"{training['steps']}; run `pfn eval run={run.path} step={training['steps']}` first"
        )
    return model


def load_wandb(spec: str, step: int | None, device: Any, api: Any = None) -> Any:
    """A checkpoint a W&B run logged as an artifact (``pfn_transformers.wandb``)."""
    from .wandb import load_from_pretrained

    model, _, meta = load_from_pretrained(spec, checkpoint_step=step, device=device, api=api)
    payload = {
        "step": meta.step,
        "training_config": meta.training_config,
        "data_config": meta.data_config,
        "metrics": meta.metrics,
        "path": meta.path,
        "provenance": getattr(meta, "provenance", None),
    }
    model.provenance = provenance_from_checkpoint(payload)
    model.provenance["origin"].update(
        kind="wandb", artifact=meta.artifact_name, wandb_run_url=meta.wandb_run_url
    )
    return model


def load_pretrained(
    source: str | os.PathLike,
    *,
    step: int | None = None,
    device: Any = "auto",
    api: Any = None,
    hub_loader: Any = None,
) -> Any:
    """Any source ``from_pretrained`` takes (see the module doc), as a model in eval mode."""
    from .wandb import is_wandb_run_spec

    text = str(source)
    if is_wandb_run_spec(text):
        return load_wandb(text, step, device, api)
    path = Path(text).expanduser()
    if path.is_dir():
        if is_pretrained_dir(path) or (path / WEIGHTS_FILE).exists():
            if step is not None:
                raise PretrainedError(
                    f"step={step}: {path} is a saved model (one set of weights); step= applies "
                    "to run folders and W&B runs."
                )
            return load_folder(path, device)
        if is_run_dir(path):
            return load_run(path, step, device)
        # a folder of step-N.pt files, or one holding them in checkpoints/ (a train() run
        # with TrainingConfig(checkpoint_dir="RUN/checkpoints") but no pfn CLI files)
        for folder in (path, path / CHECKPOINT_DIR):
            if folder.is_dir() and checkpointing.list_checkpoints(folder):
                return load_checkpoint_file(checkpointing.find_checkpoint(folder, step), device)
        raise PretrainedError(
            f"{path} is a folder, but neither a saved model ({CONFIG_FILE} + {WEIGHTS_FILE}), "
            f"nor a run, nor a folder of step-N.pt checkpoints; {_SOURCE_HINT}."
        )
    if path.is_file():
        if path.name == WEIGHTS_FILE:
            return load_folder(path.parent, device)
        return load_checkpoint_file(path, device)
    if _looks_local(text) or hub_loader is None:
        raise PretrainedError(f"source={text!r} does not exist; {_SOURCE_HINT}.")
    return hub_loader()


def _looks_local(text: str) -> bool:
    """A path rather than a Hub id: Hub ids are ``user/name`` (a bare ``name`` is taken for
    a missing local file), and a first part that is a folder here
    (``outputs/RUN_with_a_typo``) makes it a path too."""
    if "/" not in text or not _REPO_ID.match(text) or ".." in text or "--" in text:
        return True
    return Path(text.split("/", 1)[0]).is_dir()


def _hub_error(model_id: str, exc: BaseException) -> PretrainedError:
    first = str(exc).splitlines()[0] if str(exc) else ""
    return PretrainedError(
        f"source={model_id!r} is not a local path, and the Hugging Face Hub could not provide "
        f"it ({type(exc).__name__}: {first}). Check the id, the network and HF_HUB_OFFLINE; "
        f"or {_SOURCE_HINT}."
    )


def hub_download(
    model_id: str,
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    force_download: bool = False,
    token: str | bool | None = None,
    local_files_only: bool = False,
) -> Path:
    """The folder of a Hub model's files (weights, config, card, eval.json when present)."""
    from huggingface_hub import hf_hub_download

    kwargs = dict(
        repo_id=model_id,
        revision=revision,
        cache_dir=cache_dir,
        force_download=force_download,
        token=token,
        local_files_only=local_files_only,
    )
    try:
        weights = hf_hub_download(filename=WEIGHTS_FILE, **kwargs)
        hf_hub_download(filename=CONFIG_FILE, **kwargs)
    except Exception as exc:
        raise _hub_error(model_id, exc) from None
    for optional in (EVAL_FILE, CARD_FILE):  # optional: a card without evaluation has no eval.json
        with contextlib.suppress(Exception):
            hf_hub_download(filename=optional, **kwargs)
    return Path(weights).parent


# ---------------------------------------------------------------------------- the mixin
class PretrainedMixin(
    ModelHubMixin,
    library_name="pfn-transformers",
    tags=["pfn", "prior-fitted-network", "transformer-lens", "bayesian-inference"],
    paper_url="https://arxiv.org/abs/2112.10510",
):
    """``save_pretrained`` / ``from_pretrained`` / ``push_to_hub`` for ``PFNModel``."""

    provenance: dict[str, Any] | None = None

    def save_pretrained(
        self,
        save_directory: str | os.PathLike,
        *,
        evaluation: Mapping[str, Any] | None = None,
        push_to_hub: bool = False,
        repo_id: str | None = None,
        config: Any = None,
        model_card_kwargs: Any = None,
        **push_to_hub_kwargs: Any,
    ) -> str | None:
        """Write ``model.safetensors``, ``config.json``, ``README.md`` (the card) and, when
        known, ``eval.json`` into ``save_directory``; each file atomically.

        ``evaluation``: an ``evaluation.evaluate(model, prior, ...)`` result to quote on the
        card (default: the evaluation the model was loaded with, if any; a card without one
        says so). ``push_to_hub=True`` then uploads the folder (``huggingface_hub``).
        ``config`` and ``model_card_kwargs`` are accepted for ``ModelHubMixin.push_to_hub``,
        which passes them; config.json and the card always describe this model.
        """
        folder = write_pretrained(self, save_directory, evaluation)
        if push_to_hub:
            return self.push_to_hub(repo_id or folder.name, **push_to_hub_kwargs)
        return None

    def _save_pretrained(self, save_directory: Path) -> None:
        write_pretrained(self, save_directory)

    @classmethod
    def from_pretrained(
        cls,
        source: str | os.PathLike,
        *,
        step: int | None = None,
        device: str = "auto",
        api: Any = None,
        revision: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        force_download: bool = False,
        token: str | bool | None = None,
        local_files_only: bool = False,
    ) -> Any:
        """A trained PFN from ``source``: a save_pretrained folder, a run folder
        (``outputs/RUN``; ``step=N`` for another checkpoint than the newest), a checkpoint
        file, a W&B reference (``wandb:entity/project/run_id[@step]``; ``api`` for a W&B
        client) or a Hugging Face Hub id. Returns the model in eval mode on ``device`` with
        ``model.provenance`` set. Nothing loaded can run code."""

        def from_hub() -> Any:
            try:
                return ModelHubMixin.from_pretrained.__func__(
                    cls,
                    str(source),
                    revision=revision,
                    cache_dir=cache_dir,
                    force_download=force_download,
                    token=token,
                    local_files_only=local_files_only,
                    device=device,
                )
            except PretrainedError:
                raise
            except Exception as exc:  # the mixin's own config.json download
                raise _hub_error(str(source), exc) from None

        return load_pretrained(source, step=step, device=device, api=api, hub_loader=from_hub)

    @classmethod
    def _from_pretrained(
        cls,
        *,
        model_id: str,
        revision: str | None,
        cache_dir: str | os.PathLike | None,
        force_download: bool,
        local_files_only: bool,
        token: str | bool | None,
        device: str = "auto",
        **_: Any,
    ) -> Any:
        folder = hub_download(
            model_id,
            revision=revision,
            cache_dir=cache_dir,
            force_download=force_download,
            token=token,
            local_files_only=local_files_only,
        )
        model = load_folder(folder, device)
        model.provenance["origin"].update(kind="hub", hub_id=model_id, revision=revision)
        return model


__all__ = [
    "CARD_FILE",
    "CONFIG_FILE",
    "FORMAT",
    "WEIGHTS_FILE",
    "PretrainedError",
    "PretrainedMixin",
    "RunNotFoundError",
    "WeightsMismatchError",
    "check_weights",
    "is_pretrained_dir",
    "load_folder",
    "load_pretrained",
    "load_weights",
    "write_pretrained",
]
