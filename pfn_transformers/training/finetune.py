"""Fine-tuning: start a run from a trained PFN's weights (``train(..., init_from=...)``).

Weights only: the optimizer, schedule and step start fresh. The source's config (its
architecture and bar-distribution buckets) is kept; ``refit_buckets=True`` re-estimates the
borders for the new prior, keeping their number, and re-initialises the unembedding
(``W_U``, ``b_U``), discarding what the source learned about its old buckets. ``freeze``
names TransformerLens modules or parameters (``blocks.0``, ``blocks.1.attn``, ``W_x``,
``ln_final``) whose weights stay as they are. The parent is recorded in every checkpoint
(and from there in the run's status and the model card).
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from ..model.configs import ModelConfig, config_from_dict

log = logging.getLogger("pfn_transformers.finetune")

# the tensors refit_buckets re-initialises (the bucket logits and the borders themselves)
BUCKET_TENSORS = ("W_U", "b_U", "bucketizer.borders")


class FineTuneError(ValueError):
    """``init_from`` / ``freeze`` / ``refit_buckets`` cannot be applied (message says why)."""


@dataclass
class InitSource:
    """What a fine-tuning run starts from."""

    config: ModelConfig  # the config the new run trains (the source's, maybe refit)
    state: dict[str, Tensor]  # the source's weights
    skip: tuple[str, ...]  # tensors left at their fresh initialisation (refit_buckets)
    parent: dict[str, Any]  # recorded in checkpoints, status.json and the card
    model: Any  # the source model (for before/after evaluations)


def load_source(init_from: Any, step: int | None = None) -> Any:
    """The source model: ``init_from`` itself when it is a model, else
    ``PFNModel.from_pretrained(init_from, step=step)`` on the CPU."""
    from ..model.pfn import PFNModel

    if isinstance(init_from, PFNModel):
        return init_from
    if not isinstance(init_from, str | os.PathLike):
        raise FineTuneError(
            f"init_from={init_from!r} is not valid; pass a saved folder, a run folder, a "
            "checkpoint file, a W&B reference or a PFNModel."
        )
    return PFNModel.from_pretrained(init_from, step=step, device="cpu")


def parent_record(
    source: Any, init_from: Any, refit_buckets: bool, freeze: Iterable[str] | None
) -> dict[str, Any]:
    """The parent as recorded: where it came from, its step, its prior, and what changed."""
    prov = getattr(source, "provenance", None) or {}
    origin = dict(prov.get("origin") or {})
    label = init_from if isinstance(init_from, str | os.PathLike) else origin.get("folder")
    return {
        "source": str(label or origin.get("run") or origin.get("checkpoint") or "a PFNModel"),
        "kind": origin.get("kind"),
        "run": origin.get("run"),
        "step": origin.get("step"),
        "prior": prov.get("prior"),
        "model_choice": prov.get("model_choice"),
        "evaluation": _headline(prov.get("evaluation")),
        "refit_buckets": bool(refit_buckets),
        "frozen": sorted(freeze or []),
    }


def _headline(evaluation: Any) -> dict[str, Any] | None:
    if not isinstance(evaluation, dict):
        return None
    ex = evaluation.get("excess_nll") or {}
    return {
        "prior": evaluation.get("prior"),
        "excess_nll": ex.get("mean"),
        "step": evaluation.get("step"),
    }


def prepare(
    init_from: Any,
    model_config: ModelConfig | None,
    data_generator: Any,
    *,
    refit_buckets: bool = False,
    freeze: Iterable[str] | None = None,
) -> InitSource:
    """Load the source and decide the new run's config; clear errors when ``model_config``
    (if given) disagrees with the source, or buckets cannot be refit."""
    from ..data.building import refit_bucket_fields
    from ..model.build import check_weights
    from ..model.pfn import PFN
    from ..persistence.errors import WeightsMismatchError

    source = load_source(init_from)
    base = source.config.to_dict()
    skip: tuple[str, ...] = ()
    if refit_buckets:
        if source.bucketizer is None:
            raise FineTuneError(
                f"refit_buckets=True: the model of init_from={_label(init_from)} has a "
                f"{source.task.head} head, not a bar distribution; there are no buckets to refit."
            )
        old = source.bucketizer.borders
        base = refit_bucket_fields(base, data_generator)
        skip = BUCKET_TENSORS
    config = config_from_dict(base)
    if refit_buckets:
        new = PFN(config).bucketizer.borders
        message = (
            f"refit_buckets=True: the bar distribution's {new.numel() - 1} buckets now span "
            f"[{new[0].item():.4g}, {new[-1].item():.4g}] (the source's spanned "
            f"[{old[0].item():.4g}, {old[-1].item():.4g}]); the unembedding W_U, b_U was "
            "re-initialised, discarding what the source learned about its buckets."
        )
        log.warning(message)
        warnings.warn(message, UserWarning, stacklevel=3)
    if model_config is not None:
        given, kept = model_config.to_dict(), config.to_dict()
        differ = [k for k in sorted(set(given) | set(kept)) if given.get(k) != kept.get(k)]
        if differ:
            shown = ", ".join(
                f"{k} (given {_short(given.get(k))}, source {_short(kept.get(k))})" for k in differ
            )
            try:
                check_weights(
                    PFN(model_config), source.state_dict(), f"init_from={_label(init_from)}"
                )
                tensors = ""
            except WeightsMismatchError as exc:
                tensors = f" The weights would not fit: {exc}"
            raise FineTuneError(
                f"init_from={_label(init_from)}: model_config differs from the source model's "
                f"config in {shown}. Fine-tuning keeps the source's architecture and buckets."
                f"{tensors} Pass model_config=None to train the source's config, or "
                "refit_buckets=True to refit its buckets to the new prior."
            )
    parent = parent_record(source, init_from, refit_buckets, freeze)
    state = {k: v for k, v in source.state_dict().items() if k not in skip}
    return InitSource(config=config, state=state, skip=skip, parent=parent, model=source)


def _label(init_from: Any) -> str:
    return repr(str(init_from)) if isinstance(init_from, str | os.PathLike) else "<PFNModel>"


def _short(value: Any) -> str:
    if isinstance(value, list) and len(value) > 4:
        return f"[{value[0]:.4g}, ..., {value[-1]:.4g}] ({len(value)} values)"
    return repr(value)


def apply_init(model: nn.Module, init: InitSource) -> None:
    """Copy the source's weights into a freshly built model (the ``skip`` tensors keep their
    fresh initialisation)."""
    from ..model.build import load_weights

    own = model.state_dict()
    full = {**{k: own[k] for k in init.skip}, **init.state}
    load_weights(model, full, f"init_from={init.parent['source']!r}")


def freezable_names(model: nn.Module) -> list[str]:
    """The names ``freeze`` accepts: every module path (``blocks.0``, ``blocks.0.attn``,
    ``ln_final``) that holds parameters, and every parameter (``W_x``, ``blocks.0.attn.W_Q``)."""
    modules = {
        name
        for name, mod in model.named_modules()
        if name and next(mod.parameters(), None) is not None
    }
    return sorted(modules | {name for name, _ in model.named_parameters()})


def apply_freeze(model: nn.Module, names: Iterable[str] | None) -> list[str]:
    """Stop gradients for the parameters under ``names``; returns the parameters frozen."""
    names = [str(n) for n in (names or [])]
    if not names:
        return []
    params = dict(model.named_parameters())
    valid = freezable_names(model)
    unknown = [n for n in names if n not in valid]
    if unknown:
        hint = [v for v in valid if "." not in v] + ["blocks.0", "blocks.0.attn", "blocks.0.mlp"]
        raise FineTuneError(
            f"freeze={names}: {', '.join(repr(u) for u in unknown)} "
            f"{'is' if len(unknown) == 1 else 'are'} not a module or parameter of this model; "
            f"use TransformerLens names such as {', '.join(hint)} (any module path or "
            "parameter name of model.named_parameters())."
        )
    frozen = [p for p in params if any(p == n or p.startswith(n + ".") for n in names)]
    if len(frozen) == len(params):
        raise FineTuneError(f"freeze={names} freezes every parameter; nothing would train.")
    for name in frozen:
        params[name].requires_grad_(False)
    return frozen


__all__ = [
    "BUCKET_TENSORS",
    "FineTuneError",
    "InitSource",
    "apply_freeze",
    "apply_init",
    "freezable_names",
    "load_source",
    "parent_record",
    "prepare",
]
