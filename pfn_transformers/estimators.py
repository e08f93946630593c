"""scikit-learn estimators around a trained PFN: ``PFNRegressor`` and ``PFNClassifier``.

A PFN does Bayesian inference in context, so ``fit(X, y)`` trains nothing: it checks the data
against what the model was trained on and stores ``(X, y)`` as the context, encoded once
(``CachedContext``); every prediction then costs one pass over the query points, in chunks::

    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import MinMaxScaler
    from pfn_transformers import PFNRegressor

    reg = make_pipeline(MinMaxScaler(), PFNRegressor(model))     # or a run folder / checkpoint
    reg.fit(X_train, y_train)
    mean = reg.predict(X_test)
    lo_hi = reg[-1].predict_interval(X_test_scaled, coverage=0.9)

``score`` is the mean log predictive density (log probability for the classifier), the
quantity a PFN is trained to maximise; it is what ``cross_val_score`` reports by default.
scikit-learn is an optional extra (``pip install pfn-transformers[sklearn]``).
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.distributions import Distribution

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.utils.multiclass import check_classification_targets
    from sklearn.utils.validation import check_is_fitted, validate_data
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "PFNRegressor and PFNClassifier need scikit-learn; install it with "
        "`pip install 'pfn-transformers[sklearn]'` (or `pip install scikit-learn`)."
    ) from exc

from .context import CachedContext
from .predictive import AffinePredictive, distribution_from_logits

PRIOR_RANGE_DRAWS = (256, 32)  # datasets x points drawn from a prior to learn its ranges
RANGE_MARGIN = 0.02  # the drawn ranges widened by this share of their width on each side
_RANGE_SEED = 0


class PriorRangeWarning(UserWarning):
    """X or y lie outside what the model's prior produced (predictions there extrapolate)."""


class ContextSizeWarning(UserWarning):
    """The context is larger than any the model was trained on."""


# ---------------------------------------------------------------------------- sources
@dataclass
class ResolvedModel:
    """A trained model and what its source says about its training."""

    model: Any
    trained_seq_len: int | None = None  # longest context seen in training, when known
    origin: str = "model object"


def resolve_model(source: Any, device: str | None = None) -> ResolvedModel:
    """The trained PFN a ``source`` names: a model object, or anything
    ``PFN.from_pretrained`` opens (a saved folder, a run folder, a checkpoint, a W&B
    reference, a Hub id). Nothing loaded can run code. The longest context seen in training
    comes from the model's provenance when it is known."""
    if source is None:
        raise ValueError(
            "model=None: pass a trained PFN (the model train() returns), or a source "
            "PFN.from_pretrained opens: a saved folder, a run folder (outputs/RUN) or a "
            "step-N.pt checkpoint."
        )
    if isinstance(source, torch.nn.Module):
        if not hasattr(source, "task") or not hasattr(source, "config"):
            raise TypeError(
                f"model={type(source).__name__} is not a PFN; pass a model made by "
                "pfn_transformers.PFN / train(), or the path of a run folder or checkpoint."
            )
        model, origin = (source if device is None else source.to(device)), "model object"
    elif isinstance(source, str | os.PathLike):
        from .model.pfn import PFNModel

        model, origin = PFNModel.from_pretrained(source, device=device or "cpu"), str(source)
    else:
        raise TypeError(
            f"model={source!r} is not valid; pass a trained PFN or the path of a run folder, "
            "saved folder or checkpoint."
        )
    training = (getattr(model, "provenance", None) or {}).get("training") or {}
    seq_len = training.get("seq_len")
    return ResolvedModel(model, int(seq_len) if seq_len else None, origin)


# ---------------------------------------------------------------------------- ranges
@dataclass
class PriorRanges:
    """Per-feature x range and the y values a prior produced (fixed-seed draws; ``fit``
    warns beyond them widened by ``RANGE_MARGIN`` of their width, since a finite sample
    falls a little short of the prior's support)."""

    x_min: np.ndarray
    x_max: np.ndarray
    x_mean: np.ndarray
    x_std: np.ndarray
    y_min: float
    y_max: float
    y_mean: float
    y_std: float

    @classmethod
    def from_prior(cls, prior: Any) -> PriorRanges:
        from .data.protocol import batch_source

        source = batch_source(prior)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(_RANGE_SEED)
            x, y = source.sample(*PRIOR_RANGE_DRAWS)
        if x is None:
            raise ValueError(
                f"prior={type(prior).__name__} draws no x; the estimators need a supervised "
                "prior (x, y pairs)."
            )
        xs = x.reshape(-1, x.shape[-1]).double().numpy()
        ys = y.reshape(-1).double().numpy()
        return cls(
            xs.min(0), xs.max(0), xs.mean(0), _safe_std(xs.std(0)),
            float(ys.min()), float(ys.max()), float(ys.mean()), float(_safe_std(ys.std())),
        )  # fmt: skip


def _safe_std(std: Any) -> Any:
    """Standard deviations with zeros (constant columns) replaced by one."""
    std = np.asarray(std, dtype=np.float64)
    return np.where(std > 0, std, 1.0) if std.ndim else (float(std) if std > 0 else 1.0)


# ---------------------------------------------------------------------------- base
class _PFNEstimator(BaseEstimator):
    """What both estimators share: the source, the checks in ``fit``, the cached context."""

    def _check_task(self, model: Any) -> None:
        raise NotImplementedError

    def _encode_y(self, y: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    # ------------------------------------------------------------------ fit
    def _fit_context(
        self, X: Any, y: Any, y_numeric: bool, hyperparameters: dict[str, float] | None = None
    ) -> None:
        name = type(self).__name__
        resolved = resolve_model(self.model, self.device)
        model = resolved.model
        self._check_task(model)
        X, y = validate_data(self, X, y, dtype=np.float64, y_numeric=y_numeric)
        input_dim = model.config.input_dim
        if X.shape[1] != input_dim:
            raise ValueError(
                f"{name}.fit: X has {X.shape[1]} feature(s) (n_features={X.shape[1]}), but the "
                f"model was trained with input_dim={input_dim}; pass X with {input_dim} columns "
                "(a PFN's number of features is fixed by its prior), e.g. select or project "
                "features first."
            )
        limit = self.max_context_size or resolved.trained_seq_len
        if limit is not None and X.shape[0] > limit:
            warnings.warn(
                f"{name}.fit: the context has {X.shape[0]} points, more than the {limit} the "
                "model was trained on (training.seq_len); predictions extrapolate beyond the "
                "trained context sizes. Subsample the training data or train on longer "
                "sequences.",
                ContextSizeWarning,
                stacklevel=3,
            )
        self.model_ = model
        self.trained_seq_len_ = resolved.trained_seq_len
        self.prior_ranges_ = None if self.prior is None else PriorRanges.from_prior(self.prior)
        self._fit_x_scaling(X)
        Xs = self._scale_x(X)
        ys = self._encode_y(y)
        self._warn_ranges(Xs, ys)
        device = model.device
        x_ctx = _tensor(Xs, torch.float32, device)[None]
        y_ctx = _tensor(ys, None, device)[None]
        self.context_x_, self.context_y_ = x_ctx, y_ctx
        self.hyperparameters_ = None if hyperparameters is None else dict(hyperparameters)
        self.context_ = CachedContext(
            model, x_ctx, y_ctx, chunk_size=self.chunk_size, hyperparameters=self.hyperparameters_
        )

    def _fit_x_scaling(self, X: np.ndarray) -> None:
        if self.standardize_x:
            self.x_mean_, self.x_scale_ = X.mean(0), _safe_std(X.std(0))
            ranges = self.prior_ranges_
            self.x_target_mean_ = 0.0 if ranges is None else ranges.x_mean
            self.x_target_std_ = 1.0 if ranges is None else ranges.x_std
        else:
            self.x_mean_ = self.x_scale_ = None

    def _scale_x(self, X: np.ndarray) -> np.ndarray:
        if self.x_mean_ is None:
            return X
        return (X - self.x_mean_) / self.x_scale_ * self.x_target_std_ + self.x_target_mean_

    def _warn_ranges(self, Xs: np.ndarray, ys: np.ndarray) -> None:
        ranges = self.prior_ranges_
        if ranges is None or not self.warn_out_of_range:
            return
        name = type(self).__name__
        span = np.maximum(ranges.x_max - ranges.x_min, 1e-12)
        low = Xs.min(0) < ranges.x_min - RANGE_MARGIN * span
        high = Xs.max(0) > ranges.x_max + RANGE_MARGIN * span
        for j in np.flatnonzero(low | high)[:3]:
            warnings.warn(
                f"{name}.fit: feature {j} spans [{Xs[:, j].min():.4g}, {Xs[:, j].max():.4g}]"
                f"{' after standardisation' if self.standardize_x else ''}, outside the "
                f"[{ranges.x_min[j]:.4g}, {ranges.x_max[j]:.4g}] the prior "
                f"{type(self.prior).__name__} produced; predictions there extrapolate. Rescale "
                "X to the prior's range (e.g. a MinMaxScaler in a Pipeline, or "
                "standardize_x=True).",
                PriorRangeWarning,
                stacklevel=4,
            )
        self._warn_y_range(ys, ranges)

    def _warn_y_range(self, ys: np.ndarray, ranges: PriorRanges) -> None:
        pass

    # ------------------------------------------------------------------ predictions
    def _query(self, X: Any) -> Tensor:
        check_is_fitted(self, "context_")
        X = validate_data(self, X, reset=False, dtype=np.float64)
        device = self.model_.device
        return _tensor(self._scale_x(X), torch.float32, device)[None]

    def _base_predictive(self, X: Any) -> Distribution:
        """The model's predictive at X on the model's own scale, batch shape [n]."""
        xq = self._query(X)
        logits = self.context_.logits(xq)[0]
        return distribution_from_logits(self.model_, logits, validate_args=False)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.non_deterministic = False
        return tags


# ---------------------------------------------------------------------------- regressor
class PFNRegressor(RegressorMixin, _PFNEstimator):
    """A trained regression PFN (bar-distribution head) as a scikit-learn regressor.

    Parameters
    ----------
    model: the trained PFN, or the path of a run folder / checkpoint (``resolve_model``).
    prior: the prior the model was trained on (optional); when given, ``fit`` warns about X
        or y outside what it produced and standardisation targets its moments.
    standardize_x, standardize_y: z-score X / y with the fitted data's mean and standard
        deviation (mapped onto the prior's moments when ``prior`` is given), and map every
        prediction back to the original scale.
    max_context_size: warn when ``fit`` gets more points (default: the training seq_len a
        checkpoint records; None for a bare model).
    chunk_size: query points per forward pass (memory grows with it; None: about the
        context size, see ``CachedContext``).
    device: where the model runs (None: where it is, and sources load on the CPU; a given
        model object is moved there).
    warn_out_of_range: emit ``PriorRangeWarning``s.
    """

    def __init__(
        self,
        model: Any = None,
        *,
        prior: Any = None,
        standardize_x: bool = False,
        standardize_y: bool = False,
        max_context_size: int | None = None,
        chunk_size: int | None = None,
        device: str | None = None,
        warn_out_of_range: bool = True,
    ) -> None:
        self.model = model
        self.prior = prior
        self.standardize_x = standardize_x
        self.standardize_y = standardize_y
        self.max_context_size = max_context_size
        self.chunk_size = chunk_size
        self.device = device
        self.warn_out_of_range = warn_out_of_range

    def _check_task(self, model: Any) -> None:
        task = model.task
        if not task.supervised or task.discrete or model.bucketizer is None:
            raise ValueError(
                f"PFNRegressor needs a regression PFN with a bar-distribution head "
                f"(RegressionConfig(prediction_type='distribution')); this model is "
                f"{type(model.config).__name__} with a {task.head} head"
                + (" (use PFNClassifier)." if task.supervised and task.discrete else ".")
            )

    def fit(self, X: Any, y: Any, hyperparameters: dict[str, float] | None = None) -> PFNRegressor:
        """Check (X, y) against the model and store it as the context (nothing is trained).

        ``hyperparameters``: for a model trained with ``condition_on``, the values known for
        this dataset (name -> float; leave a name out for unknown), in the units the model
        sees (after ``standardize_x``/``standardize_y``). In a pipeline pass them as
        ``pipe.fit(X, y, pfnregressor__hyperparameters={...})``.
        """
        self._fit_context(X, y, y_numeric=True, hyperparameters=hyperparameters)
        return self

    def _encode_y(self, y: np.ndarray) -> np.ndarray:
        y = np.asarray(y, dtype=np.float64)
        if self.standardize_y:
            ranges = self.prior_ranges_
            t_mean = 0.0 if ranges is None else ranges.y_mean
            t_std = 1.0 if ranges is None else ranges.y_std
            std = float(_safe_std(y.std()))
            self.y_scale_ = std / t_std  # y = y_loc_ + y_scale_ * model_y
            self.y_loc_ = float(y.mean()) - t_mean * self.y_scale_
        else:
            self.y_loc_, self.y_scale_ = 0.0, 1.0
        return ((y - self.y_loc_) / self.y_scale_).astype(np.float32)

    def _warn_y_range(self, ys: np.ndarray, ranges: PriorRanges) -> None:
        borders = self.model_.bucketizer.borders.detach().cpu().double()
        pad = RANGE_MARGIN * (ranges.y_max - ranges.y_min)
        lo = min(ranges.y_min - pad, float(borders[0]))
        hi = max(ranges.y_max + pad, float(borders[-1]))
        if ys.min() < lo or ys.max() > hi:
            warnings.warn(
                f"PFNRegressor.fit: y spans [{ys.min():.4g}, {ys.max():.4g}]"
                f"{' after standardisation' if self.standardize_y else ''}, outside the "
                f"[{lo:.4g}, {hi:.4g}] covered by the prior {type(self.prior).__name__} and the "
                "model's bucket borders; the predictive there is only the bar distribution's "
                "tail. Rescale y (standardize_y=True) or train with a wider y range.",
                PriorRangeWarning,
                stacklevel=4,
            )

    def predictive(self, X: Any) -> Distribution:
        """The predictive distribution at each row of X, in y's units (batch shape [n])."""
        base = self._base_predictive(X)
        if self.y_loc_ == 0.0 and self.y_scale_ == 1.0:
            return base
        return AffinePredictive(base, self.y_loc_, self.y_scale_)

    def predict(self, X: Any) -> np.ndarray:
        """Predictive means [n]."""
        return _numpy(self.predictive(X).mean)

    def predict_std(self, X: Any) -> np.ndarray:
        """Predictive standard deviations [n]."""
        return _numpy(self.predictive(X).stddev)

    def predict_quantiles(self, X: Any, quantiles: Any = (0.05, 0.5, 0.95)) -> np.ndarray:
        """Predictive quantiles [n, Q] at the levels ``quantiles`` (each in [0, 1])."""
        levels = np.atleast_1d(np.asarray(quantiles, dtype=np.float64))
        return _numpy(self.predictive(X).quantile(torch.as_tensor(levels)).T)

    def predict_interval(self, X: Any, coverage: float = 0.9) -> np.ndarray:
        """Central predictive intervals [n, 2] (lower, upper) holding ``coverage`` of the mass."""
        lo, hi = self.predictive(X).interval(coverage)
        return np.stack([_numpy(lo), _numpy(hi)], axis=1)

    def sample_y(
        self, X: Any, n_samples: int = 1, random_state: int | None = None, joint: bool = False
    ) -> np.ndarray:
        """Draws [n, n_samples] of y at the rows of X given the context.

        ``joint=False`` draws each point from its own predictive; ``joint=True`` draws the
        points jointly (each draw joins the context of the next, a function from the
        posterior, as ``GaussianProcessRegressor.sample_y`` does).
        """
        _check_n_samples(n_samples)
        if not joint:
            base = self._base_predictive(X)
            gen = _generator(random_state, base.logits.device)
            draws = base.sample((n_samples,), generator=gen).T
        else:
            xq = self._query(X)
            with torch.random.fork_rng(devices=_rng_devices(xq.device)):
                if random_state is not None:
                    torch.manual_seed(int(random_state))
                draws = self.model_.sample_posterior_predictive(
                    self.context_x_, self.context_y_, xq, num_samples=n_samples
                )[:, 0].T
        return _numpy(self.y_loc_ + self.y_scale_ * draws)

    def score(self, X: Any, y: Any, sample_weight: Any = None) -> float:
        """Mean log predictive density of y at X (nats; higher is better)."""
        y = np.asarray(y, dtype=np.float64).reshape(-1)
        dist = self._base_predictive(X)
        z = torch.as_tensor((y - self.y_loc_) / self.y_scale_, device=dist.logits.device)
        logp = _numpy(dist.log_prob(z.to(dist.logits.dtype))) - math.log(self.y_scale_)
        return float(np.average(logp, weights=sample_weight))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.regressor_tags.poor_score = True  # a prior's model, not a fit to arbitrary data
        return tags


# ---------------------------------------------------------------------------- classifier
class PFNClassifier(ClassifierMixin, _PFNEstimator):
    """A trained classification PFN as a scikit-learn classifier.

    Labels may be any values ``numpy.unique`` sorts; the i-th of ``classes_`` is the model's
    class i, and ``predict_proba`` renormalises the model's probabilities over the classes
    seen in ``fit`` (a model trained for more classes can serve fewer). Parameters as for
    ``PFNRegressor`` (without ``standardize_y``).
    """

    def __init__(
        self,
        model: Any = None,
        *,
        prior: Any = None,
        standardize_x: bool = False,
        max_context_size: int | None = None,
        chunk_size: int | None = None,
        device: str | None = None,
        warn_out_of_range: bool = True,
    ) -> None:
        self.model = model
        self.prior = prior
        self.standardize_x = standardize_x
        self.max_context_size = max_context_size
        self.chunk_size = chunk_size
        self.device = device
        self.warn_out_of_range = warn_out_of_range

    def _check_task(self, model: Any) -> None:
        task = model.task
        if not (task.supervised and task.discrete):
            raise ValueError(
                f"PFNClassifier needs a classification PFN (ClassificationConfig); this model "
                f"is {type(model.config).__name__}"
                + (" (use PFNRegressor)." if task.supervised else ".")
            )

    def fit(self, X: Any, y: Any) -> PFNClassifier:
        """Check (X, y) against the model and store it as the context (nothing is trained)."""
        check_classification_targets(y)
        self._fit_context(X, y, y_numeric=False)
        return self

    def _encode_y(self, y: np.ndarray) -> np.ndarray:
        self.classes_, codes = np.unique(y, return_inverse=True)
        num = self.model_.config.num_classes
        if len(self.classes_) > num:
            raise ValueError(
                f"PFNClassifier.fit: y has {len(self.classes_)} classes, but the model predicts "
                f"num_classes={num}; use a model trained for at least {len(self.classes_)} "
                "classes."
            )
        return codes.astype(np.int64)

    def predictive(self, X: Any) -> Distribution:
        """``Categorical`` over ``classes_`` at each row of X (batch shape [n])."""
        from torch.distributions import Categorical

        base = self._base_predictive(X)
        logits = base.logits[..., : len(self.classes_)]
        return Categorical(logits=logits, validate_args=False)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities [n, n_classes] in the order of ``classes_``."""
        return _numpy(self.predictive(X).probs)

    def predict_log_proba(self, X: Any) -> np.ndarray:
        """Log class probabilities [n, n_classes]."""
        return _numpy(torch.log_softmax(self.predictive(X).logits, -1))

    def predict(self, X: Any) -> np.ndarray:
        """The most probable class of each row."""
        proba = self.predict_proba(X)
        return self.classes_[proba.argmax(1)]

    def sample_y(self, X: Any, n_samples: int = 1, random_state: int | None = None) -> np.ndarray:
        """Labels [n, n_samples] drawn from each row's predictive."""
        _check_n_samples(n_samples)
        probs = self.predictive(X).probs  # (checks fitted before classes_ is read below)
        gen = _generator(random_state, probs.device)
        idx = torch.multinomial(probs, n_samples, replacement=True, generator=gen)
        return self.classes_[_numpy(idx)]

    def score(self, X: Any, y: Any, sample_weight: Any = None) -> float:
        """Mean log predictive probability of the true labels (nats; higher is better);
        a label not seen in ``fit`` has probability zero (-inf)."""
        y = np.asarray(y).reshape(-1)
        logp = self.predict_log_proba(X)
        pos = np.searchsorted(self.classes_, y)
        known = (pos < len(self.classes_)) & (
            self.classes_[np.minimum(pos, len(self.classes_) - 1)] == y
        )
        picked = np.where(
            known, logp[np.arange(len(y)), np.minimum(pos, logp.shape[1] - 1)], -np.inf
        )
        return float(np.average(picked, weights=sample_weight))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.poor_score = True
        return tags


# ---------------------------------------------------------------------------- helpers
def _tensor(a: np.ndarray, dtype: torch.dtype | None, device: torch.device) -> Tensor:
    """A copy of a numpy array as a tensor (the array may be read-only or strided)."""
    return torch.tensor(np.ascontiguousarray(a), dtype=dtype, device=device)


def _numpy(t: Tensor) -> np.ndarray:
    return t.detach().cpu().double().numpy() if t.is_floating_point() else t.cpu().numpy()


def _check_n_samples(n_samples: Any) -> None:
    if isinstance(n_samples, bool) or not isinstance(n_samples, int | np.integer) or n_samples < 1:
        raise ValueError(f"sample_y n_samples={n_samples!r} is not valid; it must be an int >= 1.")


def _generator(random_state: Any, device: torch.device) -> torch.Generator | None:
    if random_state is None:
        return None
    return torch.Generator(device=device).manual_seed(int(random_state))


def _rng_devices(device: torch.device) -> list:
    return [device] if device.type == "cuda" else []


__all__ = [
    "ContextSizeWarning",
    "PFNClassifier",
    "PFNRegressor",
    "PriorRangeWarning",
    "PriorRanges",
    "ResolvedModel",
    "resolve_model",
]
