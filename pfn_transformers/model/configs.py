"""Model configurations: the spec's RegressionConfig, ClassificationConfig, UnsupervisedConfig.

Fields the spec's examples omit are derived (``d_head``, ``d_mlp``, ``act_fn``, context
length), so every documented call works as written. Configs round-trip through plain
dicts (``to_dict`` / ``config_from_dict``) for checkpoints and Hydra.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from ..task import TaskSpec
from .bucketizer import check_tail_scale
from .conditioning import check_condition_fields

PREDICTION_TYPES = ("distribution", "point")
BUCKET_TYPES = ("uniform", "riemann", None)
BUCKET_SUPPORTS = ("unbounded", "bounded")
MASK_TYPES = ("autoregressive-pfn", "gpt2")
INPUT_TYPES = ("discrete", "continuous")
ACT_FNS = ("gelu", "relu", "silu")
X_ENCODERS = ("linear", "mlp")
DECODERS = ("mlp", "linear")
PAIR_ENCODERS = ("joint", "sum")


class ConfigError(ValueError):
    """A configuration value is invalid; the message names field, value and what is valid."""


def _check_choice(cls_name: str, name: str, value: Any, valid: tuple) -> None:
    if value not in valid:
        raise ConfigError(f"{cls_name}.{name}={value!r} is not valid; choose one of {list(valid)}.")


def _int_or_none(value: Any) -> int | None:
    """An int size, or None while it is unknown (unset or an unresolved interpolation)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _check_positive(cls_name: str, name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ConfigError(f"{cls_name}.{name}={value!r} is not valid; it must be a positive int.")


@dataclass
class BaseModelConfig:
    """Transformer shape shared by every PFN kind.

    ``positional_embedding`` (learned, TransformerLens' ``W_pos``) defaults to off for the
    supervised PFNs, whose (x, y) pairs are exchangeable, and on for unsupervised sequence
    models, where order can matter (a Markov chain's next state depends on the previous
    one), as in TransformerLens. ``n_ctx`` is the most tokens it can index (default 2048).
    """

    kind: ClassVar[str] = "base"
    positional_by_default: ClassVar[bool] = False

    d_model: int = 128
    n_layers: int = 4
    n_heads: int = 4
    d_head: int | None = None
    d_mlp: int | None = None
    act_fn: str = "gelu"
    mask_type: str = "autoregressive-pfn"
    positional_embedding: bool | None = None  # None: off (supervised) / on (unsupervised)
    n_ctx: int | None = None
    init_range: float = 0.02
    layer_norm_eps: float = 1e-5
    # "mlp": a residual GELU MLP (width d_mlp) between the final LayerNorm and W_U, as
    # automl/PFNs decodes; "linear": W_U alone (every model before this field existed).
    # See README, "What the defaults are and why".
    decoder: str = "mlp"
    # the longest sequence (points or tokens) the model was trained on; set by train(), None
    # for an untrained model or one saved before this field: predicting beyond it warns
    trained_seq_len: int | None = None

    def __post_init__(self) -> None:
        name = type(self).__name__
        for f in ("d_model", "n_layers", "n_heads"):
            _check_positive(name, f, getattr(self, f))
        if self.d_head is None:
            if self.d_model % self.n_heads:
                raise ConfigError(
                    f"{name}.d_model={self.d_model} is not divisible by n_heads={self.n_heads}; "
                    "set d_head explicitly or choose n_heads dividing d_model."
                )
            self.d_head = self.d_model // self.n_heads
        _check_positive(name, "d_head", self.d_head)
        if self.d_mlp is None:
            self.d_mlp = 4 * self.d_model
        _check_positive(name, "d_mlp", self.d_mlp)
        _check_choice(name, "act_fn", self.act_fn, ACT_FNS)
        _check_choice(name, "mask_type", self.mask_type, MASK_TYPES)
        _check_choice(name, "decoder", self.decoder, DECODERS)
        if self.positional_embedding is None:
            self.positional_embedding = self.positional_by_default
        if self.positional_embedding and self.n_ctx is None:
            self.n_ctx = 2048
        if self.n_ctx is not None:
            _check_positive(name, "n_ctx", self.n_ctx)
        if self.trained_seq_len is not None:
            _check_positive(name, "trained_seq_len", self.trained_seq_len)

    # ------------------------------------------------------------------ task
    @classmethod
    def task_for(cls, fields: Mapping[str, Any]) -> TaskSpec:
        """The task a config of this class with these (possibly partial) fields describes.

        Used before the config can be built (the CLI checks a model choice against a prior
        before resolving its sizes); unknown sizes stay None.
        """
        raise NotImplementedError(f"{cls.__name__} does not describe a task.")

    @property
    def task(self) -> TaskSpec:
        """What this model predicts (see ``pfn_transformers.task``)."""
        return type(self).task_for(vars(self))

    # ------------------------------------------------------------------ dict round trip
    def to_dict(self) -> dict[str, Any]:
        """Plain-data view (tensors become lists) with a ``kind`` tag for reconstruction."""
        out: dict[str, Any] = {"kind": self.kind}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, torch.Tensor):
                value = value.detach().cpu().tolist()
            out[f.name] = value
        return out


@dataclass
class RegressionConfig(BaseModelConfig):
    """Supervised regression PFN: x [input_dim] -> predictive over scalar y."""

    kind: ClassVar[str] = "regression"

    input_dim: int = 1
    # "mlp" (x -> GELU MLP, the default: about half the GP's excess NLL at equal training
    # time, see README) or "linear" (one linear map)
    x_encoder: str = "mlp"
    # how an observed (x, y) becomes a token: "joint" (x's embedding plus a GELU MLP of x
    # and the standardised y, so products such as x*y are one token's work) or "sum" (x's
    # embedding plus a linear map of y: every model before this field existed)
    pair_encoder: str = "joint"
    prediction_type: str = "distribution"
    bucket_type: str | None = "uniform"
    bucket_support: str = "unbounded"
    d_vocab: int | None = None  # buckets; derived: 100 (uniform) or len(riemann_borders) - 1
    y_min: float = -5.0
    y_max: float = 5.0
    # unbounded support: the half-normal tails' scale is at least this fraction of the inner
    # border range (0: the edge bucket's width alone, every model before this field existed);
    # 0.05 removed the outlier spikes of the excess NLL on linear regression (README)
    tail_scale: float = 0.05
    riemann_borders: Any = None
    # hyperparameters (names as the prior's draw() reports them) given to the model as extra
    # input when known; training hides each with condition_drop_prob, so one model learns
    # the conditional and the marginal predictive (model/conditioning.py)
    condition_on: list[str] = dataclasses.field(default_factory=list)
    condition_drop_prob: float = 0.5

    @classmethod
    def task_for(cls, fields: Mapping[str, Any]) -> TaskSpec:
        point = fields.get("prediction_type", "distribution") == "point"
        return TaskSpec(
            supervised=True,
            target_type="continuous",
            input_dim=_int_or_none(fields.get("input_dim")),
            head="point" if point else "bar",
        )

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_positive(type(self).__name__, "input_dim", self.input_dim)
        _check_choice(type(self).__name__, "x_encoder", self.x_encoder, X_ENCODERS)
        _check_choice(type(self).__name__, "pair_encoder", self.pair_encoder, PAIR_ENCODERS)
        _validate_continuous_head(self)
        try:
            self.condition_on = check_condition_fields(
                type(self).__name__, self.condition_on, self.condition_drop_prob
            )
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        self.condition_drop_prob = float(self.condition_drop_prob)


@dataclass
class ClassificationConfig(BaseModelConfig):
    """Supervised classification PFN: x [input_dim] -> categorical over num_classes."""

    kind: ClassVar[str] = "classification"

    input_dim: int = 1
    x_encoder: str = "mlp"  # "mlp" | "linear", as in RegressionConfig
    # "sum" | "joint" as in RegressionConfig (joint: an MLP of x and the one-hot class); the
    # default stays "sum" here: the benchmarks that picked "joint" have no classification task
    pair_encoder: str = "sum"
    num_classes: int = 2
    prediction_type: str = "distribution"
    d_vocab: int | None = None

    @classmethod
    def task_for(cls, fields: Mapping[str, Any]) -> TaskSpec:
        return TaskSpec(
            supervised=True,
            target_type="discrete",
            input_dim=_int_or_none(fields.get("input_dim")),
            num_classes=_int_or_none(fields.get("num_classes")),
            head="categorical",
        )

    def __post_init__(self) -> None:
        super().__post_init__()
        name = type(self).__name__
        _check_positive(name, "input_dim", self.input_dim)
        _check_positive(name, "num_classes", self.num_classes)
        _check_choice(name, "x_encoder", self.x_encoder, X_ENCODERS)
        _check_choice(name, "pair_encoder", self.pair_encoder, PAIR_ENCODERS)
        if self.prediction_type != "distribution":
            raise ConfigError(
                f"{name}.prediction_type={self.prediction_type!r} is not valid; classification "
                "predicts a distribution over classes, so it must be 'distribution'."
            )
        if self.d_vocab is None:
            self.d_vocab = self.num_classes
        elif self.d_vocab != self.num_classes:
            raise ConfigError(
                f"{name}.d_vocab={self.d_vocab!r} disagrees with num_classes={self.num_classes}; "
                "leave d_vocab unset (it is derived from num_classes)."
            )


@dataclass
class UnsupervisedConfig(BaseModelConfig):
    """Next-token PFN over a sequence y (no x): discrete tokens or continuous values.

    Output i is the predictive of y_i given y_<i (a learned start token makes position 0 the
    prior predictive), so it lines up with the supervised models' per-position predictions.
    """

    kind: ClassVar[str] = "unsupervised"
    positional_by_default: ClassVar[bool] = True

    mask_type: str = "gpt2"
    input_type: str = "discrete"
    prediction_type: str = "distribution"
    d_vocab: int | None = None
    bucket_type: str | None = "uniform"
    bucket_support: str = "unbounded"
    y_min: float = -5.0
    y_max: float = 5.0
    # unbounded support: the half-normal tails' scale is at least this fraction of the inner
    # border range (0: the edge bucket's width alone, every model before this field existed);
    # 0.05 removed the outlier spikes of the excess NLL on linear regression (README)
    tail_scale: float = 0.05
    riemann_borders: Any = None

    @classmethod
    def task_for(cls, fields: Mapping[str, Any]) -> TaskSpec:
        input_type = fields.get("input_type", "discrete")
        if input_type not in INPUT_TYPES:
            raise ConfigError(
                f"{cls.__name__}.input_type={input_type!r} is not valid; choose one of "
                f"{list(INPUT_TYPES)}."
            )
        discrete = input_type == "discrete"
        point = fields.get("prediction_type", "distribution") == "point"
        return TaskSpec(
            supervised=False,
            target_type=input_type,
            num_classes=_int_or_none(fields.get("d_vocab")) if discrete else None,
            head="categorical" if discrete else ("point" if point else "bar"),
        )

    def __post_init__(self) -> None:
        super().__post_init__()
        name = type(self).__name__
        if self.mask_type != "gpt2":
            raise ConfigError(
                f"{name}.mask_type={self.mask_type!r} is not valid; unsupervised PFNs must use "
                "'gpt2' (there are no query tokens to separate from observations)."
            )
        _check_choice(name, "input_type", self.input_type, INPUT_TYPES)
        if self.input_type == "discrete":
            if self.prediction_type != "distribution":
                raise ConfigError(
                    f"{name}.prediction_type={self.prediction_type!r} is not valid with "
                    "input_type='discrete'; discrete tokens need 'distribution'."
                )
            if self.d_vocab is None:
                raise ConfigError(
                    f"{name}.d_vocab=None is not valid with input_type='discrete'; "
                    "set d_vocab to the number of distinct tokens."
                )
            _check_positive(name, "d_vocab", self.d_vocab)
        else:
            _validate_continuous_head(self)


def _validate_continuous_head(cfg: RegressionConfig | UnsupervisedConfig) -> None:
    """Validate prediction/bucket fields of a head that predicts a real-valued y."""
    name = type(cfg).__name__
    _check_choice(name, "prediction_type", cfg.prediction_type, PREDICTION_TYPES)
    if cfg.prediction_type == "point":
        return
    _check_choice(name, "bucket_type", cfg.bucket_type, ("uniform", "riemann"))
    _check_choice(name, "bucket_support", cfg.bucket_support, BUCKET_SUPPORTS)
    try:
        check_tail_scale(cfg.tail_scale)
    except ValueError as exc:  # the bucketizer's own check, named after the config
        raise ConfigError(f"{name}.{exc}") from None
    if cfg.bucket_type == "riemann":
        if cfg.riemann_borders is None:
            raise ConfigError(
                f"{name}.riemann_borders=None is not valid with bucket_type='riemann'; pass "
                "borders from estimate_riemann_borders(samples, num_buckets)."
            )
        borders = torch.as_tensor(cfg.riemann_borders, dtype=torch.float32)
        if borders.ndim != 1 or borders.numel() < 3 or not bool((borders.diff() > 0).all()):
            raise ConfigError(
                f"{name}.riemann_borders (shape {tuple(borders.shape)}) is not valid; it must be "
                "a strictly increasing 1-D sequence of at least 3 borders."
            )
        n_buckets = borders.numel() - 1
        if cfg.d_vocab is None:
            cfg.d_vocab = n_buckets
        elif cfg.d_vocab != n_buckets:
            raise ConfigError(
                f"{name}.d_vocab={cfg.d_vocab} disagrees with riemann_borders, which define "
                f"{n_buckets} buckets; set d_vocab={n_buckets} or leave it unset."
            )
    else:
        if cfg.d_vocab is None:
            cfg.d_vocab = 100
        if not isinstance(cfg.d_vocab, int) or cfg.d_vocab < 2:
            raise ConfigError(
                f"{name}.d_vocab={cfg.d_vocab!r} is not valid; it must be an int >= 2."
            )
        if not cfg.y_min < cfg.y_max:
            raise ConfigError(
                f"{name}.y_min={cfg.y_min!r}, y_max={cfg.y_max!r} are not valid; y_min must be "
                "below y_max."
            )


ModelConfig = RegressionConfig | ClassificationConfig | UnsupervisedConfig
CONFIG_CLASSES: dict[str, type] = {
    c.kind: c for c in (RegressionConfig, ClassificationConfig, UnsupervisedConfig)
}


# Fields added after models were already being saved, each with the value that rebuilds a
# model saved before it: a checkpoint whose config lacks the field keeps the architecture it
# was trained with, while new configs get the new default.
LEGACY_DEFAULTS: dict[str, Any] = {"decoder": "linear", "pair_encoder": "sum", "tail_scale": 0.0}


def config_from_dict(data: dict[str, Any]) -> ModelConfig:
    """Rebuild a model config from ``to_dict`` output (the ``kind`` key picks the class).

    Fields missing from ``data`` that are in ``LEGACY_DEFAULTS`` take their legacy value, so
    configs saved by earlier versions rebuild the same architecture.
    """
    data = dict(data)
    kind = data.pop("kind", None)
    if kind not in CONFIG_CLASSES:
        raise ConfigError(
            f"model config kind={kind!r} is not valid; choose one of {list(CONFIG_CLASSES)}."
        )
    cls = CONFIG_CLASSES[kind]
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(
            f"{cls.__name__} got unknown fields {unknown}; valid fields are {sorted(known)}."
        )
    for key, value in LEGACY_DEFAULTS.items():
        if key in known and key not in data:
            data[key] = value
    return cls(**data)


__all__ = [
    "BaseModelConfig",
    "ClassificationConfig",
    "ConfigError",
    "LEGACY_DEFAULTS",
    "ModelConfig",
    "RegressionConfig",
    "UnsupervisedConfig",
    "config_from_dict",
]
