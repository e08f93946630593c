"""Mixtures of priors: each dataset comes from one component, drawn by weight.

``MixturePrior(components, weights)`` mixes any data generators that produce the same kind
of data (the same ``input_dim`` or none, the same target type and class count). Components
are generator objects, ``{"_target_": ...}`` configs, or names of ``prior`` config-group
options (``"linear"``, ``"gp"``, a user's own from ``--config-dir``). When every component
has an exact posterior predictive, so does the mixture (an ``ExactMixturePrior``):

    p(y_n | x_n, D_<n) = sum_c pi_c p_c(D_<n) p_c(y_n | x_n, D_<n) / sum_c pi_c p_c(D_<n),

with p_c(D_<n) = prod_{i<n} p_c(y_i | x_i, D_<i), the component's marginal likelihood of the
context by the chain rule (so its sequential exact predictive is all a component needs).

When the components draw x from different distributions, the inputs are evidence too: the
weights also carry prod_{i<=n} p_c(x_i) (x_n is seen before y_n is predicted). A linear prior
on U[-1, 1] mixed with a GP on U[0, 1] is certain to be the linear one once an x < 0 is
seen, and a PFN learns that. Components give p_c(x) by an ``x_log_density(x) -> [B, S]``
method (every built-in prior that draws x ~ U[x_low, x_high]^d has it, from
``UniformInputsMixin``); when any component has none, the inputs are left out, with a warning.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from pfn_transformers.data.base import DataGenerator, ExactPosteriorMixin, has_exact_posterior
from pfn_transformers.priors._common import (
    PriorDraw,
    as_float_list,
    exclusive_cumsum,
    normal_log_pdf,
)

_MAX_DEPTH = 4  # mixtures of mixtures named by config, at most this deep
_depth = [0]


def _builtin_prior_dirs() -> list[Path]:
    """The built-in ``prior`` config folders: the checkout's ``conf/prior`` and the wheel's
    ``pfn_cli/conf/prior`` (read as files; the library never imports the CLI)."""
    root = Path(__file__).resolve().parents[2]
    return [root / "conf" / "prior", root / "pfn_cli" / "conf" / "prior"]


def prior_config_by_name(name: str) -> Any:
    """The config node of the ``prior`` option ``name``: from Hydra's search path when Hydra
    is running (``pfn train``, the compose API; a user's ``--config-dir`` included), else
    from the built-in config folder."""
    try:
        from hydra.core.global_hydra import GlobalHydra
    except ImportError:  # pragma: no cover - hydra is a dependency
        GlobalHydra = None  # noqa: N806
    if GlobalHydra is not None and GlobalHydra.instance().is_initialized():
        from hydra import compose

        options = GlobalHydra.instance().config_loader().get_group_options("prior")
        if name in options:
            return compose(config_name=f"prior/{name}").prior
        known = options
    else:
        from omegaconf import OmegaConf

        for folder in _builtin_prior_dirs():
            if (folder / f"{name}.yaml").is_file():
                return OmegaConf.load(folder / f"{name}.yaml")
        known = sorted(
            {
                p.stem
                for folder in _builtin_prior_dirs()
                if folder.is_dir()
                for p in folder.glob("*.yaml")
            }
        )
    raise ValueError(
        f"MixturePrior: component {name!r} is not a prior config; choose one of {known}, or "
        "give the component as a {_target_: ...} node or a generator object."
    )


def _instantiate(node: Any, label: str) -> Any:
    """A ``{_target_: ...}`` node built by Hydra (as ``data.building.build_prior`` does; that
    module imports this package, so this one does not import it)."""
    from hydra.utils import instantiate
    from omegaconf import DictConfig, OmegaConf

    if not isinstance(node, DictConfig):
        node = OmegaConf.create(dict(node))
    try:
        prior = instantiate(node, _convert_="all")
    except Exception as exc:
        while exc.__cause__ is not None and type(exc).__name__ == "InstantiationException":
            exc = exc.__cause__
        raise ValueError(f"{label}: could not build {node.get('_target_')}: {exc}") from None
    from pfn_transformers.data.protocol import batch_source

    try:
        batch_source(prior)
    except TypeError as exc:
        raise ValueError(f"{label}: {exc}") from None
    return prior


def _build_component(item: Any, index: int) -> tuple[str, Any]:
    if isinstance(item, str):
        _depth[0] += 1
        try:
            if _depth[0] > _MAX_DEPTH:
                raise ValueError(
                    f"MixturePrior: component {item!r} nests mixtures more than {_MAX_DEPTH} "
                    "deep (a mixture that names itself?)."
                )
            node = prior_config_by_name(item)
            return item, _instantiate(node, f"MixturePrior component {item!r}")
        finally:
            _depth[0] -= 1
    if isinstance(item, Mapping) or type(item).__name__ == "DictConfig":
        if "_target_" not in item:
            raise ValueError(
                f"MixturePrior: component {index} ({dict(item)!r}) has no _target_; give a "
                "prior config name, a {_target_: ...} node or a generator object."
            )
        prior = _instantiate(item, f"MixturePrior component {index}")
        return type(prior).__name__, prior
    return type(item).__name__, item


def _resolve(components: Any, weights: Any, names: Any) -> dict[str, Any]:
    from pfn_transformers.data.protocol import describe_generator

    single = isinstance(components, str | Mapping) or type(components).__name__ == "DictConfig"
    items = [components] if single or not isinstance(components, Iterable) else list(components)
    if len(items) < 1:
        raise ValueError("MixturePrior.components is empty; give at least one prior.")
    built = [_build_component(item, i) for i, item in enumerate(items)]
    labels = [n for n, _ in built] if names is None else [str(n) for n in names]
    if len(labels) != len(built):
        raise ValueError(
            f"MixturePrior.names={list(names)!r} has {len(labels)} entries for {len(built)} "
            "components."
        )
    if len(set(labels)) != len(labels):  # the same class twice: number them
        labels = [f"{n}[{i}]" for i, n in enumerate(labels)]
    priors = [p for _, p in built]
    if weights is None:
        w = [1.0 / len(priors)] * len(priors)
    else:
        w = as_float_list(weights, "MixturePrior.weights")
        if len(w) != len(priors) or min(w) < 0 or not math.isfinite(sum(w)) or sum(w) <= 0:
            raise ValueError(
                f"MixturePrior.weights={w!r} is not valid for the components {labels}; give "
                f"{len(priors)} non-negative finite weights with a positive sum (or null: equal)."
            )
        w = [v / sum(w) for v in w]
    specs = [describe_generator(p) for p in priors]
    problems = []
    for field, what in (
        ("target_type", "continuous and discrete targets"),
        ("supervised", "supervised (x, y) and unsupervised (y only) data"),
        ("input_dim", "different input sizes"),
        ("num_classes", "different numbers of classes"),
    ):
        values = [getattr(s, field) for s in specs]
        if len(set(values)) > 1:
            listed = ", ".join(f"{n} ({field}={v!r})" for n, v in zip(labels, values))
            problems.append(f"{what}: {listed}")
    if problems:
        raise ValueError(
            f"MixturePrior cannot mix {'; nor '.join(problems)}. Every component must produce "
            "the same kind of data: the same input_dim (or none), target type and class count."
        )
    return {"priors": priors, "labels": labels, "weights": w, "spec": specs[0]}


class MixturePrior(DataGenerator):
    """A mixture of priors: each dataset's component is drawn with probability ``weights``
    (None: equal), then the dataset from that component.

    ``components``: a list of data generators, ``{_target_: ...}`` configs or names of
    ``prior`` config options (``[linear, gp]``; see ``prior_config_by_name``). Components must
    produce the same kind of data (input_dim, supervised or not, target type, class count);
    a bad combination is a ``ValueError`` naming each component and its value. ``names``
    labels the components (default: the config names, else the class names).

    ``draw(B, S)`` also returns ``params["component"]`` (int64 ``[B]``, the index into
    ``component_names``) and, for components that report their own latents through
    ``draw``, those as ``"NAME.PARAM"`` (NaN for datasets of other components).

    Built with components that all have an exact posterior predictive, the object is an
    ``ExactMixturePrior`` whose exact predictive is the posterior-weighted mixture (see the
    module doc).
    """

    def __new__(cls, components: Any = (), weights: Any = None, names: Any = None) -> Any:
        resolved = _resolve(components, weights, names)
        if cls is MixturePrior and all(has_exact_posterior(p) for p in resolved["priors"]):
            cls = ExactMixturePrior
        obj = super().__new__(cls)
        obj._resolved = resolved
        return obj

    def __init__(self, components: Any = (), weights: Any = None, names: Any = None) -> None:
        r = self.__dict__.pop("_resolved", None) or _resolve(components, weights, names)
        self.components = r["priors"]
        self.component_names = r["labels"]
        self.weights = r["weights"]
        spec = r["spec"]
        self.input_dim = spec.input_dim if spec.supervised else None
        self.target_type = spec.target_type
        self.num_classes = spec.num_classes

    def __getnewargs_ex__(self):  # copy/pickle: rebuild from the built components
        return (list(self.components), list(self.weights), list(self.component_names)), {}

    def _hparams(self) -> dict[str, Any]:
        return {"components": self.component_names, "weights": self.weights}

    # ------------------------------------------------------------------ sampling
    def assign(self, batch_size: int) -> Tensor:
        """Each dataset's component index, int64 ``[B]`` on the CPU (torch's global RNG)."""
        w = torch.tensor(self.weights, dtype=torch.float64)
        return torch.multinomial(w, batch_size, replacement=True)

    def draw(
        self, batch_size: int, seq_len: int, device: torch.device | str | None = None
    ) -> PriorDraw:
        """``PriorDraw(x, y, params)``: the batch, ``params["component"]`` and the
        components' own latents (see the class doc)."""
        from pfn_transformers.data.protocol import batch_source

        comp = self.assign(batch_size)
        counts = torch.bincount(comp, minlength=len(self.components)).tolist()  # host: no sync
        x = y = None
        params: dict[str, Tensor] = {}
        for c, (prior, name, n) in enumerate(zip(self.components, self.component_names, counts)):
            if n == 0:
                continue
            idx = (comp == c).nonzero().squeeze(-1).to(device or "cpu")
            sub_params: dict[str, Tensor] = {}
            if hasattr(prior, "draw"):
                out = prior.draw(n, seq_len, device=device)
                xc, yc, sub_params = out.x, out.y, out.params
            else:
                xc, yc = batch_source(prior).sample(n, seq_len, device=device)
            if y is None:
                y = torch.empty((batch_size, *yc.shape[1:]), dtype=yc.dtype, device=yc.device)
                if xc is not None:
                    x = torch.empty((batch_size, *xc.shape[1:]), dtype=xc.dtype, device=xc.device)
            y[idx] = yc
            if x is not None:
                x[idx] = xc.to(x.dtype)
            for key, value in sub_params.items():
                full = params.setdefault(
                    f"{name}.{key}",
                    torch.full((batch_size, *value.shape[1:]), math.nan, dtype=torch.float64,
                               device=value.device),
                )  # fmt: skip
                full[idx] = value.to(torch.float64)
        params["component"] = comp.to(device or "cpu")
        return PriorDraw(x, y, params)

    def generate_batch(
        self, batch_size: int, seq_len: int, device: torch.device | str | None = None
    ) -> tuple[Tensor | None, Tensor]:
        """Draws on ``device`` (None: CPU); ``draw`` also returns each dataset's component."""
        out = self.draw(batch_size, seq_len, device)
        return out.x, out.y


def _x_log_density(prior: Any, x: Tensor) -> Tensor | None:
    """A component's log p(x_i) ``[B, S]`` (float64, CPU), or None when it has no
    ``x_log_density`` (built-in priors get it from ``UniformInputsMixin``)."""
    if not hasattr(prior, "x_log_density"):
        return None
    return prior.x_log_density(x).double().cpu()


def _log_predictive64(prior: Any, x: Tensor | None, y: Tensor) -> Tensor:
    """A component's exact log p(y_n | x_n, D_<n) ``[B, S]`` in float64 (from its moments or
    class probabilities when it has them, else its float32 ``exact_log_predictive``)."""
    if hasattr(prior, "exact_predictive_moments"):
        mean, std = prior.exact_predictive_moments(x, y)
        return normal_log_pdf(y.double().to(mean.device), mean, std)
    if hasattr(prior, "exact_predictive_log_probs"):
        logp = prior.exact_predictive_log_probs(x, y).double()
        return logp.gather(-1, y.long().to(logp.device).unsqueeze(-1)).squeeze(-1)
    if hasattr(prior, "_reduce"):  # GPHyperPrior: its float64 result
        return prior._reduce(x, y)[0]
    return prior.exact_log_predictive(x, y).double()


class ExactMixturePrior(ExactPosteriorMixin, MixturePrior):
    """A ``MixturePrior`` whose components all have exact posterior predictives.

    ``exact_log_predictive`` is the posterior-weighted mixture of the components'
    predictives (module doc); ``exact_predictive_cdf``, ``exact_predictive_mean`` and
    ``exact_predictive_log_probs`` exist when every component has them.
    """

    def component_log_predictives(self, x: Tensor | None, y: Tensor) -> Tensor:
        """``[C, B, S]``: each component's exact log p_c(y_n | x_n, D_<n), float64."""
        return torch.stack([_log_predictive64(p, x, y).cpu() for p in self.components])

    def posterior_log_weights(self, x: Tensor | None, y: Tensor) -> Tensor:
        """``[C, B, S]``: log p(component c | D_<n, x_n) = log pi_c + log p_c(D_<n)
        + log p_c(x_<=n) - normaliser (the last term only where the components' inputs
        differ in distribution; see the module doc)."""
        lp = self.component_log_predictives(x, y)
        return self._log_post(lp, x)

    def inputs_log_density(self, x: Tensor | None) -> Tensor | None:
        """``[C, B, S]``: each component's log p_c(x_i), or None when the inputs carry no
        evidence (no x, identical input distributions, or one component that does not say)."""
        if x is None or len(self.components) < 2:
            return None
        parts = [_x_log_density(p, x) for p in self.components]
        if any(part is None for part in parts):
            if not getattr(self, "_warned_x", False):
                unknown = [n for n, part in zip(self.component_names, parts) if part is None]
                warnings.warn(
                    f"MixturePrior: the components {unknown} do not say how they draw x (no "
                    "x_log_density(x) method); the exact predictive weighs the "
                    "components by y alone, which is exact only if every component draws x "
                    "from the same distribution.",
                    stacklevel=3,
                )
                self._warned_x = True
            return None
        stacked = torch.stack(parts)
        if (stacked == stacked[:1]).all():
            return None  # the same input distribution: the inputs say nothing about c
        return stacked

    def _log_post(self, lp: Tensor, x: Tensor | None) -> Tensor:
        log_pi = torch.tensor(self.weights, dtype=torch.float64).clamp_min(1e-300).log()
        a = log_pi[:, None, None] + exclusive_cumsum(lp, -1)  # + log p_c(D_<n), chain rule
        x_log_p = self.inputs_log_density(x)
        if x_log_p is not None:
            a = a + x_log_p.cumsum(-1)  # + log p_c(x_<=n): x_n is seen before y_n
        return a - torch.logsumexp(a, 0, keepdim=True)

    def exact_log_predictive(self, x: Tensor | None, y: Tensor) -> Tensor:
        """``[B, S]``: log p(y_n | x_n, D_<n) under the mixture's exact predictive."""
        lp = self.component_log_predictives(x, y)
        out = torch.logsumexp(self._log_post(lp, x) + lp, 0)
        return out.float().to(y.device)

    def _need(self, method: str) -> None:
        missing = [
            n for n, p in zip(self.component_names, self.components) if not hasattr(p, method)
        ]
        if missing:
            raise AttributeError(f"{method}: the components {missing} have none")

    @property
    def exact_predictive_cdf(self):
        """``(x, y, values) -> [B, S, V]``: the posterior-weighted components' cdfs."""
        self._need("exact_predictive_cdf")

        def cdf(x: Tensor | None, y: Tensor, values: Tensor) -> Tensor:
            w = self.posterior_log_weights(x, y).exp()  # [C, B, S]
            parts = [p.exact_predictive_cdf(x, y, values).double().cpu() for p in self.components]
            return (w[..., None] * torch.stack(parts)).sum(0)

        return cdf

    @property
    def exact_predictive_mean(self):
        """``(x, y) -> [B, S]``: the posterior-weighted components' means."""
        self._need("exact_predictive_mean")

        def mean(x: Tensor | None, y: Tensor) -> Tensor:
            w = self.posterior_log_weights(x, y).exp()
            parts = [p.exact_predictive_mean(x, y).double().cpu() for p in self.components]
            return (w * torch.stack(parts)).sum(0).float()

        return mean

    @property
    def exact_predictive_log_probs(self):
        """``(x, y) -> [B, S, C]``: discrete targets, the mixture's class log probabilities."""
        self._need("exact_predictive_log_probs")

        def log_probs(x: Tensor | None, y: Tensor) -> Tensor:
            parts = [p.exact_predictive_log_probs(x, y).double().cpu() for p in self.components]
            lp = torch.stack(parts)  # [C, B, S, K]
            picked = lp.gather(-1, y.long().cpu()[None, ..., None].expand(lp.shape[0], -1, -1, 1))
            post = self._log_post(picked.squeeze(-1), x)
            return torch.logsumexp(post[..., None] + lp, 0)

        return log_probs
