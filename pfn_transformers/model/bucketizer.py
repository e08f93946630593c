"""Bar distribution: the predictive density a PFN head puts over a real-valued y.

A head emits K logits; ``softmax(logits)[k]`` is the mass of bucket k, spread uniformly over
``[borders[k], borders[k+1]]``. With ``support="unbounded"`` the two edge buckets are replaced
by half-normal tails anchored at the inner borders (``borders[1]`` going left, ``borders[-2]``
going right), scaled so that half of each tail's mass lies inside the edge bucket and half
beyond it. That is automl/PFNs' ``FullSupportBarDistribution``: a y outside the training range
still gets a finite log density, so one outlier cannot produce an infinite loss.

Every operation (log density, ``log_bucket_densities``, cdf/icdf/quantiles, mean, variance,
sampling) honours the tails. Computation runs in float32 at least (bf16 logits under autocast
are upcast), float64 logits stay float64.
"""

from __future__ import annotations

import math
import numbers
import statistics
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

SUPPORTS = ("bounded", "unbounded")
BUCKET_TYPES = ("uniform", "riemann")

# HalfNormal(1): median (so that half the tail mass falls inside the edge bucket), mean,
# variance and log normaliser of the density sqrt(2/pi) exp(-x^2/2).
_HN_MEDIAN = statistics.NormalDist().inv_cdf(0.75)
_HN_MEAN = math.sqrt(2.0 / math.pi)
_HN_VAR = 1.0 - 2.0 / math.pi
_HN_LOG_NORM = 0.5 * math.log(2.0 / math.pi)
_SQRT2 = math.sqrt(2.0)


def check_tail_scale(tail_scale: Any) -> float:
    """``tail_scale`` as a float, or a ValueError naming it and what is valid."""
    if (
        isinstance(tail_scale, bool)
        or not isinstance(tail_scale, numbers.Real)
        or not (math.isfinite(tail_scale) and tail_scale >= 0)
    ):
        raise ValueError(
            f"tail_scale={tail_scale!r} is not valid; use a finite number >= 0 (the smallest "
            "half-normal tail scale as a fraction of the inner border range; 0 = edge width only)."
        )
    return float(tail_scale)


def _fmt_values(t: Tensor) -> str:
    """Short rendering of a border tensor for error messages (long tensors are elided)."""
    vals = [round(v, 6) for v in t.detach().flatten().cpu().tolist()]
    if len(vals) <= 8:
        return str(vals)
    head = ", ".join(str(v) for v in vals[:3])
    tail = ", ".join(str(v) for v in vals[-2:])
    return f"tensor of shape {tuple(t.shape)} [{head}, ..., {tail}]"


def _check_support(support: Any) -> str:
    if support not in SUPPORTS:
        raise ValueError(
            f"Bucketizer support={support!r} is not valid; choose one of {list(SUPPORTS)} "
            "('bounded': zero density outside the borders, 'unbounded': half-normal tails)."
        )
    return support


def _validate_borders(borders: Tensor | Sequence[float], support: str) -> Tensor:
    """Turn ``borders`` into a float32 1-D tensor, or raise a ValueError saying what is wrong."""
    hint = "pass a strictly increasing 1-D sequence of finite floats"
    try:
        raw = borders.detach() if isinstance(borders, Tensor) else borders
        b = torch.as_tensor(raw, dtype=torch.float32).clone()
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ValueError(f"Bucketizer borders={borders!r} is not valid ({exc}); {hint}.") from None
    if b.ndim != 1:
        raise ValueError(
            f"Bucketizer borders (shape {tuple(b.shape)}) is not valid; it must be 1-D; {hint}."
        )
    min_buckets = 3 if support == "unbounded" else 1
    if b.numel() - 1 < min_buckets:
        why = (
            "support='unbounded' needs two tail buckets plus at least one inner bucket"
            if support == "unbounded"
            else "at least one bucket is needed"
        )
        raise ValueError(
            f"Bucketizer borders={_fmt_values(b)} define {max(b.numel() - 1, 0)} bucket(s), which "
            f"is not valid: {why}, so pass at least {min_buckets + 1} borders"
            + (" or use support='bounded'." if support == "unbounded" else ".")
        )
    if not bool(torch.isfinite(b).all()):
        raise ValueError(f"Bucketizer borders={_fmt_values(b)} is not valid: {hint}.")
    bad = (b.diff() <= 0).nonzero()
    if bad.numel():
        i = int(bad[0, 0]) + 1
        raise ValueError(
            f"Bucketizer borders={_fmt_values(b)} is not valid: borders[{i}]={b[i].item()!r} is "
            f"not above borders[{i - 1}]={b[i - 1].item()!r} (as float32); {hint}."
        )
    return b


def _halfnormal_log_norm(scale: Tensor) -> Tensor:
    """The log normaliser of HalfNormal(scale): its log density at 0."""
    return _HN_LOG_NORM - torch.log(scale)


def _halfnormal_log_pdf(x: Tensor, scale: Tensor, log_norm: Tensor | None = None) -> Tensor:
    """log density of HalfNormal(scale) at x >= 0 (written out so it is bit-reproducible);
    ``log_norm`` is ``_halfnormal_log_norm(scale)`` when the caller has it already."""
    z = x / scale
    if log_norm is None:
        log_norm = _halfnormal_log_norm(scale)
    return log_norm - 0.5 * (z * z)


def _take(values: Tensor, idx: Tensor, batch: torch.Size) -> Tensor:
    """values[..., idx] per batch element, broadcasting both to ``batch``."""
    k = values.shape[-1]
    return values.expand(*batch, k).gather(-1, idx.expand(batch).unsqueeze(-1)).squeeze(-1)


class Bucketizer(torch.nn.Module):
    """Bar distribution over K buckets given by K+1 strictly increasing borders.

    The borders live in a float32 buffer ``borders`` so they move with ``.to(device)`` and are
    saved in the model's state dict; everything else is derived from them, once: the derived
    tensors (widths, centers, tail scales, the log constants of the density) are kept while
    the borders are unchanged (same storage and version counter, so ``.to()`` and
    ``load_state_dict`` refresh them), which spares every training step a few dozen tiny
    operators. Under ``torch.compile`` they are derived inside the graph instead.
    """

    borders: Tensor

    def __init__(
        self,
        borders: Tensor | Sequence[float],
        support: str = "unbounded",
        tail_scale: float = 0.0,
    ) -> None:
        super().__init__()
        self.support = _check_support(support)
        self.tail_scale = check_tail_scale(tail_scale)
        self.register_buffer("borders", _validate_borders(borders, support))

    # ------------------------------------------------------------------ constructors
    @classmethod
    def uniform(
        cls,
        y_min: float,
        y_max: float,
        num_buckets: int,
        support: str = "unbounded",
        tail_scale: float = 0.0,
    ) -> Bucketizer:
        """Equal-width buckets over [y_min, y_max]."""
        support = _check_support(support)
        min_buckets = 3 if support == "unbounded" else 1
        if (
            isinstance(num_buckets, bool)
            or not isinstance(num_buckets, numbers.Integral)
            or num_buckets < min_buckets
        ):
            raise ValueError(
                f"Bucketizer.uniform num_buckets={num_buckets!r} is not valid with "
                f"support={support!r}; it must be an int >= {min_buckets} (unbounded support "
                "needs two tail buckets plus at least one inner bucket)."
            )
        lo, hi = float(y_min), float(y_max)
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise ValueError(
                f"Bucketizer.uniform y_min={y_min!r}, y_max={y_max!r} are not valid; they must be "
                "finite with y_min < y_max."
            )
        borders = torch.linspace(lo, hi, int(num_buckets) + 1, dtype=torch.float64)
        return cls(borders.float(), support, tail_scale)

    @classmethod
    def from_config(cls, config: Any) -> Bucketizer:
        """Build the head's bucketizer from a Regression/Unsupervised model config."""
        name = type(config).__name__
        bucket_type = getattr(config, "bucket_type", None)
        support = getattr(config, "bucket_support", "unbounded")
        tail_scale = getattr(config, "tail_scale", 0.0)
        if bucket_type == "uniform":
            return cls.uniform(config.y_min, config.y_max, config.d_vocab, support, tail_scale)
        if bucket_type == "riemann":
            borders = getattr(config, "riemann_borders", None)
            if borders is None:
                raise ValueError(
                    f"{name}.riemann_borders=None is not valid with bucket_type='riemann'; pass "
                    "borders from estimate_riemann_borders(samples, num_buckets)."
                )
            bucketizer = cls(borders, support, tail_scale)
            d_vocab = getattr(config, "d_vocab", None)
            if d_vocab is not None and d_vocab != bucketizer.num_buckets:
                raise ValueError(
                    f"{name}.d_vocab={d_vocab!r} disagrees with riemann_borders, which define "
                    f"{bucketizer.num_buckets} buckets; set d_vocab={bucketizer.num_buckets}."
                )
            return bucketizer
        raise ValueError(
            f"{name}.bucket_type={bucket_type!r} is not valid for a bar distribution; choose one "
            f"of {list(BUCKET_TYPES)}."
        )

    def extra_repr(self) -> str:
        return (
            f"num_buckets={self.num_buckets}, support={self.support!r}, "
            f"tail_scale={self.tail_scale!r}"
        )

    # ------------------------------------------------------------------ geometry
    @property
    def num_buckets(self) -> int:
        return self.borders.numel() - 1

    @property
    def widths(self) -> Tensor:
        """Bucket widths [K]."""
        return self.borders.diff()

    @property
    def tail_scales(self) -> Tensor:
        """Half-normal scales [2] (left, right) of the unbounded tails: edge width / median(HN(1))
        (half the tail's mass inside the edge bucket), and at least ``tail_scale`` times the
        inner range ``borders[-2] - borders[1]``: with many narrow buckets the first rule alone
        makes a target a little past the range cost tens of nats."""
        w = self.widths
        scales = torch.stack([w[0], w[-1]]) / _HN_MEDIAN
        if self.tail_scale > 0:
            b = self.borders
            # tensor ops only: no host sync in a compiled step, and it works on meta tensors
            scales = torch.maximum(scales, self.tail_scale * (b[-2] - b[1]))
        return scales

    @property
    def centers(self) -> Tensor:
        """Representative y per bucket [K]: midpoints, and the tails' means when unbounded."""
        b = self.borders
        c = b[:-1] + self.widths / 2
        if self.support == "unbounded":
            s = self.tail_scales
            c = torch.cat(
                [(b[1] - s[0] * _HN_MEAN)[None], c[1:-1], (b[-2] + s[1] * _HN_MEAN)[None]]
            )
        return c

    def _derived(self, name: str, dtype: torch.dtype, device: Any, build: Any) -> Any:
        """``build()``, kept while the borders are unchanged (see the class docstring); keyed
        also by inference mode, whose tensors a later backward could not save."""
        if torch.compiler.is_compiling():
            return build()
        b = self.borders
        key = (name, dtype, str(device), b.device, b.data_ptr(), b._version,
               torch.is_inference_mode_enabled(), self.support, self.tail_scale)  # fmt: skip
        cache = self.__dict__.setdefault("_derived_cache", {})
        if key not in cache:
            if len(cache) >= 32:
                cache.clear()
            cache[key] = build()
        return cache[key]

    def _geometry(self, dtype: torch.dtype, device: torch.device) -> tuple[Tensor, ...]:
        """borders, widths, centers, tail scales in the working dtype.

        Derived in the buffer's float32 first, then cast, so ``centers`` fed back into
        ``log_prob`` hits exactly the numbers ``log_bucket_densities`` uses.
        """

        def build() -> tuple[Tensor, ...]:
            out = (self.borders, self.widths, self.centers, self.tail_scales)
            return tuple(t.to(device=device, dtype=dtype) for t in out)

        return self._derived("geometry", dtype, device, build)

    def _log_constants(self, geometry: tuple[Tensor, ...]) -> tuple[Tensor, Tensor, Tensor]:
        """log(widths) and the left and right tails' half-normal log normalisers."""
        _, w, _, s = geometry

        def build() -> tuple[Tensor, Tensor, Tensor]:
            return torch.log(w), _halfnormal_log_norm(s[0]), _halfnormal_log_norm(s[1])

        return self._derived("log_constants", w.dtype, w.device, build)

    def standardization(self) -> tuple[Tensor, Tensor]:
        """``(center, scale)`` mapping the inner range (bounded: the whole range) to [-4, 4]:
        ``(y - center) * scale`` puts y on the scale of x whatever the user's units."""

        def build() -> tuple[Tensor, Tensor]:
            b = self.borders
            lo, hi = (b[1], b[-2]) if self.support == "unbounded" else (b[0], b[-1])
            return (lo + hi) / 2, 8 / (hi - lo)

        return self._derived("standardization", self.borders.dtype, self.borders.device, build)

    def _log_probs(self, logits: Tensor) -> Tensor:
        if logits.ndim < 1 or logits.shape[-1] != self.num_buckets:
            raise ValueError(
                f"logits of shape {tuple(logits.shape)} are not valid for this Bucketizer; the "
                f"last dimension must equal num_buckets={self.num_buckets}."
            )
        dtype = torch.promote_types(logits.dtype, torch.float32)
        # results live with the borders (the model's device), wherever the logits came from
        return torch.log_softmax(logits.to(device=self.borders.device, dtype=dtype), dim=-1)

    def _bucketize(self, y: Tensor, borders: Tensor) -> Tensor:
        idx = torch.bucketize(y, borders.contiguous(), right=True) - 1
        return idx.clamp_(0, self.num_buckets - 1)

    def bucketize(self, y: Tensor) -> Tensor:
        """Index of the bucket containing y: borders[k] <= y < borders[k+1].

        The last bucket includes its right border; values outside clamp to the edge buckets
        (which, when unbounded, are exactly the tails that cover them).
        """
        y = torch.as_tensor(y, device=self.borders.device)
        dtype = torch.promote_types(y.dtype, self.borders.dtype)
        return self._bucketize(y.to(dtype), self.borders.to(dtype))

    def get_y_values(self, bucket_indices: Tensor) -> Tensor:
        """Representative y of each bucket index (``centers[bucket_indices]``)."""
        return self.centers[bucket_indices.to(self.borders.device)]

    # ------------------------------------------------------------------ densities
    def _log_density(
        self, logp_b: Tensor, idx: Tensor, y: Tensor, geometry: tuple[Tensor, ...]
    ) -> Tensor:
        """Log density at y given its bucket idx and that bucket's log mass.

        Shared by ``log_prob`` and ``log_bucket_densities`` so the two agree bit for bit.
        """
        b, w, _, s = geometry
        log_w, norm_left, norm_right = self._log_constants(geometry)
        out = logp_b - log_w[idx]
        if self.support == "unbounded":
            k = self.num_buckets
            left = logp_b + _halfnormal_log_pdf((b[1] - y).clamp_min(0), s[0], norm_left)
            right = logp_b + _halfnormal_log_pdf((y - b[-2]).clamp_min(0), s[1], norm_right)
            out = torch.where(idx == 0, left, out)
            out = torch.where(idx == k - 1, right, out)
        else:
            out = out.masked_fill((y < b[0]) | (y > b[-1]), -math.inf)
        return out

    def log_prob(self, logits: Tensor, y: Tensor) -> Tensor:
        """Log density of y [...] under the bar distribution given by logits [..., K]."""
        logp = self._log_probs(logits)
        geometry = self._geometry(logp.dtype, logp.device)
        y = torch.as_tensor(y, device=logp.device).to(logp.dtype)
        batch = torch.broadcast_shapes(logp.shape[:-1], y.shape)
        idx = self._bucketize(y, geometry[0])
        out = self._log_density(_take(logp, idx, batch), idx, y, geometry)
        return torch.where(torch.isnan(y), y, out)

    def nll(self, logits: Tensor, y: Tensor) -> Tensor:
        """Per-element negative log density: the training loss."""
        return -self.log_prob(logits, y)

    def forward(self, logits: Tensor, y: Tensor) -> Tensor:
        """Calling the module gives the per-element NLL (as automl/PFNs' BarDistribution)."""
        return self.nll(logits, y)

    def log_bucket_densities(self, logits: Tensor) -> Tensor:
        """Log density at every bucket's center [..., K] (tails included).

        Entry k equals ``log_prob(logits, centers[k])``, so ``argmax`` gives the predictive
        mode among the centers and ``get_y_values`` turns it into a y.
        """
        logp = self._log_probs(logits)
        geometry = self._geometry(logp.dtype, logp.device)
        idx = torch.arange(self.num_buckets, device=logp.device)
        return self._log_density(logp, idx, geometry[2], geometry)

    # ------------------------------------------------------------------ cdf / icdf
    def cdf(self, logits: Tensor, y: Tensor) -> Tensor:
        """P(Y <= y), y broadcast against logits[..., 0]."""
        logp = self._log_probs(logits)
        b, w, _, s = self._geometry(logp.dtype, logp.device)
        probs = logp.exp()
        before = F.pad(probs.cumsum(-1)[..., :-1], (1, 0))  # mass left of each bucket
        y = torch.as_tensor(y, device=logp.device).to(logp.dtype)
        batch = torch.broadcast_shapes(logp.shape[:-1], y.shape)
        idx = self._bucketize(y, b)
        p_k, c_k = _take(probs, idx, batch), _take(before, idx, batch)
        out = c_k + p_k * ((y - b[idx]) / w[idx]).clamp(0, 1)
        if self.support == "unbounded":
            k = self.num_buckets
            left = p_k * torch.special.erfc((b[1] - y).clamp_min(0) / (s[0] * _SQRT2))
            right = c_k + p_k * torch.erf((y - b[-2]).clamp_min(0) / (s[1] * _SQRT2))
            out = torch.where(idx == 0, left, torch.where(idx == k - 1, right, out))
        out = out.clamp(0, 1)
        return torch.where(torch.isnan(y), y, out)

    def icdf(self, logits: Tensor, p: Tensor) -> Tensor:
        """Inverse cdf at probabilities p in [0, 1] (NaN outside), p broadcast like y.

        Unbounded tails map p=0/1 to -inf/+inf; the tails are inverted in float64 (except on
        MPS) so far quantiles do not collapse to infinity at float32 resolution.
        """
        logp = self._log_probs(logits)
        dtype, device = logp.dtype, logp.device
        b, w, _, s = self._geometry(dtype, device)
        probs = logp.exp()
        cum = probs.cumsum(-1)
        before = F.pad(cum[..., :-1], (1, 0))
        p = torch.as_tensor(p, device=device).to(dtype)
        batch = torch.broadcast_shapes(logp.shape[:-1], p.shape)
        k = self.num_buckets
        idx = (cum < p.unsqueeze(-1)).sum(-1).clamp_max(k - 1)
        p_k, c_k = _take(probs, idx, batch), _take(before, idx, batch)
        p_k_safe = p_k.clamp_min(torch.finfo(dtype).tiny)
        frac = ((p - c_k) / p_k_safe).clamp(0, 1)
        out = b[idx] + frac * w[idx]
        if self.support == "unbounded":
            hp = dtype if device.type == "mps" else torch.promote_types(dtype, torch.float64)
            below = (p / p_k_safe).to(hp).clamp(0, 1)  # tail mass fraction beyond y, left
            above = ((1 - p) / p_k_safe).to(hp).clamp(0, 1)  # ... and right
            x_left = (torch.erfinv(1 - below) * (_SQRT2 * s[0].to(hp))).to(dtype)
            x_right = (torch.erfinv(1 - above) * (_SQRT2 * s[1].to(hp))).to(dtype)
            out = torch.where(idx == 0, b[1] - x_left, out)
            out = torch.where(idx == k - 1, b[-2] + x_right, out)
        invalid = (p < 0) | (p > 1) | torch.isnan(p)
        return out.masked_fill(invalid, math.nan)

    def quantile(self, logits: Tensor, q: float | Tensor) -> Tensor:
        """q-quantile per batch element (``icdf`` that also accepts a plain float)."""
        if not isinstance(q, Tensor) and not 0.0 <= float(q) <= 1.0:
            raise ValueError(f"quantile q={q!r} is not valid; it must lie in [0, 1].")
        return self.icdf(logits, torch.as_tensor(q, dtype=torch.float64))

    # ------------------------------------------------------------------ moments
    def _bucket_variances(self, w: Tensor, s: Tensor) -> Tensor:
        """Variance of y within each bucket: uniform w^2/12, half-normal s^2 (1 - 2/pi)."""
        var = w * w / 12
        if self.support == "unbounded":
            tails = s * s * _HN_VAR
            var = torch.cat([tails[:1], var[1:-1], tails[1:]])
        return var

    def mean(self, logits: Tensor) -> Tensor:
        """Predictive mean [...]."""
        logp = self._log_probs(logits)
        _, _, c, _ = self._geometry(logp.dtype, logp.device)
        return (logp.exp() * c).sum(-1)

    def variance(self, logits: Tensor) -> Tensor:
        """Predictive variance [...], by the law of total variance (no E[y^2] - E[y]^2 loss)."""
        logp = self._log_probs(logits)
        _, w, c, s = self._geometry(logp.dtype, logp.device)
        probs = logp.exp()
        m = (probs * c).sum(-1, keepdim=True)
        return (probs * (self._bucket_variances(w, s) + (c - m) ** 2)).sum(-1)

    # ------------------------------------------------------------------ sampling
    def sample(
        self,
        logits: Tensor,
        sample_shape: torch.Size | Sequence[int] = (),
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Draw y of shape ``sample_shape + logits.shape[:-1]``.

        The bucket is chosen from ``softmax(logits / temperature)`` (Gumbel-max; temperature 0
        is the argmax), then y is uniform inside it or half-normal in a tail.
        """
        try:
            temp = float(temperature)
        except (TypeError, ValueError):
            temp = math.nan
        if not (math.isfinite(temp) and temp >= 0):
            raise ValueError(
                f"sample temperature={temperature!r} is not valid; it must be a finite float >= 0."
            )
        logp = self._log_probs(logits)
        dtype, device = logp.dtype, logp.device
        b, w, _, s = self._geometry(dtype, device)
        shape = torch.Size(sample_shape) + logp.shape[:-1]
        logp = logp.expand(*shape, self.num_buckets)
        if temp == 0:
            idx = logp.argmax(-1)
        else:
            expo = torch.empty(logp.shape, dtype=dtype, device=device).exponential_(
                generator=generator
            )
            gumbel = -torch.log(expo.clamp_min(torch.finfo(dtype).tiny))
            idx = (logp / temp + gumbel).argmax(-1)
        u = torch.rand(shape, dtype=dtype, device=device, generator=generator)
        out = b[idx] + u * w[idx]
        if self.support == "unbounded":
            z = torch.randn(shape, dtype=dtype, device=device, generator=generator).abs()
            out = torch.where(idx == 0, b[1] - s[0] * z, out)
            out = torch.where(idx == self.num_buckets - 1, b[-2] + s[1] * z, out)
        return out


# ---------------------------------------------------------------------- Riemann borders
def _float32_outward(value: float, direction: float) -> float:
    """value rounded to float32, moved one step outward if rounding went inward."""
    v = torch.tensor(value, dtype=torch.float64)
    v32 = v.float()
    inward = v32.double() > v if direction < 0 else v32.double() < v
    if bool(inward):
        v32 = torch.nextafter(v32, torch.tensor(direction * math.inf, dtype=torch.float32))
    return float(v32)


def estimate_riemann_borders(sample_data: Tensor, num_buckets: int) -> Tensor:
    """Quantile borders [num_buckets + 1] (float32, strictly increasing) from samples of y.

    Buckets hold about equal sample mass, which is what a bar distribution needs to spend
    its resolution where y lives. Ties (repeated or discrete values) would make quantiles
    coincide; the missing borders then go, one at a time, to the bucket with the most samples
    strictly inside it (split at their median), or, once only point masses are left, halve
    the bucket whose count times width is largest, so every repeated value gets a narrow
    bucket of its own. Buckets never get narrower than float32 can tell apart. The outer
    borders are the sample min and max (rounded outward to float32).
    """
    if (
        isinstance(num_buckets, bool)
        or not isinstance(num_buckets, numbers.Integral)
        or num_buckets < 1
    ):
        raise ValueError(
            f"estimate_riemann_borders num_buckets={num_buckets!r} is not valid; it must be an "
            "int >= 1."
        )
    data = torch.as_tensor(sample_data)
    device = data.device
    x = data.detach().flatten().cpu().to(torch.float64)
    x = x[torch.isfinite(x)].sort().values
    n = x.numel()
    if n == 0:
        raise ValueError(
            f"estimate_riemann_borders sample_data (shape {tuple(data.shape)}) is not valid; "
            "it holds no finite values to take quantiles of."
        )
    k = int(num_buckets)
    pos = torch.linspace(0, 1, k + 1, dtype=torch.float64) * (n - 1)
    lo, hi = pos.floor().long(), pos.ceil().long()
    q = x[lo] + (x[hi] - x[lo]) * (pos - lo)
    q[0] = _float32_outward(float(x[0]), -1.0)
    q[-1] = _float32_outward(float(x[-1]), 1.0)
    b = torch.unique(q.float()).double()  # sorted; ties removed at float32 resolution
    if b.numel() == 1:  # constant data: no scale to learn from, use a unit-ish interval
        half = 0.5 * max(1.0, abs(float(b[0])))
        b = torch.tensor([float(b[0]) - half, float(b[0]) + half], dtype=torch.float32).double()

    eps32 = torch.finfo(torch.float32).eps
    while b.numel() < k + 1:
        min_width = 64 * eps32 * max(abs(float(b[0])), abs(float(b[-1])), 1e-30)
        left_of = torch.searchsorted(x, b, right=False)  # samples below each border
        upto = torch.searchsorted(x, b, right=True)  # samples at or below each border
        counts = (left_of[1:] - left_of[:-1]).double()
        counts[-1] += n - left_of[-1]  # the last bucket includes its right border
        interior = (left_of[1:] - upto[:-1]).double()  # samples strictly inside
        widths = b.diff()
        eligible = widths > 2 * min_width
        if not bool(eligible.any()):  # too narrow for float32 everywhere: grow outward
            step = max(float(widths[-1]), 2 * min_width)
            b = torch.cat([b, torch.tensor([float(b[-1]) + step], dtype=torch.float64)])
            b = b.float().double()
            continue
        rel_width = widths / widths.max()
        if bool((interior[eligible] > 0).any()):  # refine where continuous mass is
            score = interior + 0.5 * rel_width
        else:  # only point masses left: narrow their buckets in turn, widest first
            score = counts * rel_width + 1e-9 * rel_width
        j = int(score.masked_fill(~eligible, -1.0).argmax())
        left, right = float(b[j]), float(b[j + 1])
        start, end = int(upto[j]), int(left_of[j + 1])
        cut = float(x[(start + end - 1) // 2]) if end > start else 0.5 * (left + right)
        if not left + min_width < cut < right - min_width:
            cut = 0.5 * (left + right)
        cut = float(torch.tensor(cut, dtype=torch.float32))
        b = torch.cat([b[: j + 1], torch.tensor([cut], dtype=torch.float64), b[j + 1 :]])
    return b.float().to(device)


__all__ = ["BUCKET_TYPES", "SUPPORTS", "Bucketizer", "estimate_riemann_borders"]
