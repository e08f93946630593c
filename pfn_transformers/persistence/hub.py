"""``save_pretrained`` / ``from_pretrained`` / ``push_to_hub`` for ``PFNModel``, through the
two hooks ``huggingface_hub.ModelHubMixin`` asks for.

``_save_pretrained`` writes the pretrained folder (``pretrained.write_pretrained``);
``_from_pretrained`` reads any source (``reading.read_weights``) and builds the model class
it is called on (``Weights.to_model``, the one builder). The public methods stay the
mixin's, widened only where the mixin cannot take our arguments: ``save_pretrained`` takes
``evaluation=`` (the figures the card quotes), and ``from_pretrained`` takes ``step=``,
``device=`` and ``api=`` and sends sources that are not Hub ids (run folders, checkpoint
files, W&B references, missing paths) straight to the hook, because the mixin would ask the
Hub for their config.json.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from huggingface_hub import ModelHubMixin

from .errors import PretrainedError
from .pretrained import hub_error, write_pretrained
from .reading import read_weights
from .sources import Source, parse_source


class PretrainedMixin(
    ModelHubMixin,
    library_name="pfn-transformers",
    tags=["pfn", "prior-fitted-network", "transformer-lens", "bayesian-inference"],
    paper_url="https://arxiv.org/abs/2112.10510",
):
    """The Hub mixin of ``PFNModel`` (see the module doc)."""

    provenance: dict[str, Any] | None = None
    _evaluation_to_save: Mapping[str, Any] | None = None

    # ------------------------------------------------------------------ the hooks
    def _save_pretrained(self, save_directory: Path) -> None:
        write_pretrained(self, save_directory, self._evaluation_to_save)

    @classmethod
    def _from_pretrained(
        cls,
        *,
        model_id: str,
        revision: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        force_download: bool = False,
        local_files_only: bool = False,
        token: str | bool | None = None,
        step: int | None = None,
        device: str = "auto",
        api: Any = None,
        source: Source | None = None,
        **_: Any,  # the mixin passes config.json's content as ``config``
    ) -> Any:
        hub = dict(
            revision=revision,
            cache_dir=cache_dir,
            force_download=force_download,
            token=token,
            local_files_only=local_files_only,
        )
        weights = read_weights(source or model_id, step, api=api, hub=hub)
        return weights.to_model(cls, device)

    # ------------------------------------------------------------------ public, widened
    def save_pretrained(
        self,
        save_directory: str | os.PathLike,
        *,
        evaluation: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> str | None:
        """Write ``model.safetensors``, ``config.json``, ``README.md`` (the card) and, when
        known, ``eval.json`` into ``save_directory``; each file atomically.

        ``evaluation``: an ``evaluation.evaluate(model, prior, ...)`` result to quote on the
        card (default: the evaluation the model was loaded with, if any; a card without one
        says so). The other arguments are ``ModelHubMixin.save_pretrained``'s
        (``push_to_hub=True`` then uploads the folder); config.json and the card always
        describe this model.
        """
        self._evaluation_to_save = evaluation
        try:
            return super().save_pretrained(save_directory, **kwargs)
        finally:
            self._evaluation_to_save = None

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
        hub = dict(
            revision=revision,
            cache_dir=cache_dir,
            force_download=force_download,
            token=token,
            local_files_only=local_files_only,
        )
        parsed = parse_source(source)  # no W&B import for a local path, no network
        if parsed.kind != "hub":
            return cls._from_pretrained(
                model_id=parsed.text, step=step, device=device, api=api, source=parsed, **hub
            )
        try:  # the mixin fetches config.json, then calls _from_pretrained
            return super().from_pretrained(parsed.text, device=device, **hub)
        except PretrainedError:
            raise
        except Exception as exc:  # the mixin's own config.json download
            raise hub_error(parsed.text, exc) from None


__all__ = ["PretrainedMixin"]
