"""Provenance: where a trained model comes from, as one typed record.

Every loaded or trained model carries ``model.provenance``, the plain-dict form
(:meth:`Provenance.to_dict`) of a :class:`Provenance`: the prior (its config and the CLI's
choice), the model choice, the training budget, the parent run (fine-tuning), the
environment (library version, commit), the origin (checkpoint, run, pretrained folder, W&B,
Hub) and the evaluation of that very step when known. ``save_pretrained`` writes it into
config.json and the model card. Standard library only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

# the keys config.json carries (``evaluation`` goes to eval.json instead)
PROVENANCE_KEYS = ("prior", "model_choice", "training", "parent", "environment", "origin")
_TRAINING_KEYS = ("num_steps", "batch_size", "seq_len", "learning_rate", "seed")


@dataclass
class Provenance:
    """Where a model comes from; each field is plain data (or None when unknown)."""

    prior: dict[str, Any] | None = None
    model_choice: str | None = None
    training: dict[str, Any] | None = None
    parent: dict[str, Any] | None = None
    environment: dict[str, Any] | None = None
    origin: dict[str, Any] = field(default_factory=dict)
    evaluation: dict[str, Any] | None = None
    evaluation_note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The ``model.provenance`` dict: the keys of PROVENANCE_KEYS, plus ``evaluation`` or
        ``evaluation_note`` when set."""
        out = {key: getattr(self, key) for key in PROVENANCE_KEYS}
        if self.evaluation is not None:
            out["evaluation"] = self.evaluation
        elif self.evaluation_note:
            out["evaluation_note"] = self.evaluation_note
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Provenance:
        """A record from a ``model.provenance`` dict or a config.json (unknown keys ignored)."""
        data = data or {}
        names = {f.name for f in fields(cls)}
        values = {k: data.get(k) for k in names if data.get(k) is not None}
        values["origin"] = dict(values.get("origin") or {})
        return cls(**values)

    @classmethod
    def from_checkpoint(cls, payload: Mapping[str, Any]) -> Provenance:
        """Provenance of a checkpoint's model: training budget, prior, parent, environment."""
        recorded = dict(payload.get("provenance") or {})
        tc = _as_dict(payload.get("training_config"))
        data = _as_dict(payload.get("data_config"))
        metrics = payload.get("metrics") or {}
        prior = dict(recorded.get("prior") or {})
        if isinstance(data.get("prior_config"), dict):  # the pfn CLI passes the prior's config
            prior.update(config=data["prior_config"], choice=data.get("prior"))
        training = {
            "steps": int(payload["step"]),
            **{k: tc.get(k) for k in _TRAINING_KEYS},
            "precision": tc.get("precision"),
            "seconds": metrics.get("elapsed_s"),
            "device": recorded.get("device"),
            "world_size": recorded.get("world_size"),
            "config": tc or None,
            "outcome": recorded.get("outcome"),  # stop reason, planned steps, compile seconds
        }
        return cls(
            prior=prior or None,
            model_choice=data.get("model"),
            training=training,
            parent=recorded.get("parent"),
            environment=recorded.get("environment"),
            origin={
                "kind": "checkpoint",
                "checkpoint": payload.get("path"),
                "step": training["steps"],
            },
        )


def _as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


__all__ = ["PROVENANCE_KEYS", "Provenance"]
