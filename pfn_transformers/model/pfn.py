"""The PFN: a TransformerLens ``HookedRootModule`` for supervised and unsupervised priors.

Supervised, ``model(x, y)[:, i]`` is the predictive of y_i given x_i and (x_<i, y_<i).
Unsupervised, ``model(y)[:, t]`` predicts the *next* element y_{t+1} given y_<=t, the
next-token convention of TransformerLens and GPT code, so
``cross_entropy(logits[:, :-1], y[:, 1:])`` scores it. The prediction of the first element
(the prior predictive, read at a learned start token) is part of the training loss and
reachable through ``predictive_logits``/``log_predictive``, which align position t with y_t
for every model kind. The token layouts and masks live in ``masks.py``.

Inputs on another device than the model are moved to it, as TransformerLens does.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformer_lens import HookedRootModule
from transformer_lens.hook_points import HookPoint

from ..persistence.hub import PretrainedMixin
from .bucketizer import Bucketizer
from .components import MLP, LayerNorm, TransformerBlock
from .conditioning import Hyperparameters, condition_features, logits_given
from .configs import (
    ClassificationConfig,
    ConfigError,
    ModelConfig,
    RegressionConfig,
    UnsupervisedConfig,
)
from .kv_cache import KVCache
from .length import warn_past_trained
from .masks import AttentionLayout, causal_layout, interleaved_layout, pfn_layout


def _autocast_device_types() -> frozenset[str]:
    types = set()
    for device_type in ("cpu", "cuda", "xpu", "mps", "hpu", "mtia", "xla"):
        try:
            if torch.amp.is_autocast_available(device_type):
                types.add(device_type)
        except (RuntimeError, ValueError):
            pass
    return frozenset(types)


# Device types with autocast, asked once: TorchDynamo cannot trace the query itself (a
# graph break in the compiled training step on CUDA, issue 23).
AUTOCAST_DEVICE_TYPES = _autocast_device_types()


def _matmul(x: Tensor, w: Tensor) -> Tensor:
    """``x @ w`` for a 2-D ``w``, the leading dimensions folded into one ``mm`` by a view
    (``@`` folds them alike, then copies the result's shape back with ``_unsafe_view``)."""
    return (x.reshape(-1, x.shape[-1]) @ w).view(*x.shape[:-1], w.shape[-1])


class PFNModel(PretrainedMixin, HookedRootModule):
    """Prior-Fitted Network with TransformerLens hook names (see ``PFN`` for the factory);
    ``save_pretrained`` / ``from_pretrained`` / ``push_to_hub`` come from ``hub.py``."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if not isinstance(config, RegressionConfig | ClassificationConfig | UnsupervisedConfig):
            raise ConfigError(
                f"PFN(config) got {type(config).__name__}; pass a RegressionConfig, "
                "ClassificationConfig or UnsupervisedConfig."
            )
        self.config = config
        self.cfg = config  # TransformerLens convention
        self.task = config.task
        d = config.d_model
        self.supervised = self.task.supervised
        self.discrete_y = self.task.discrete
        self.bucketizer: Bucketizer | None = None
        if self.task.head == "bar":
            self.bucketizer = Bucketizer.from_config(config)
        d_out = 1 if config.prediction_type == "point" else config.d_vocab

        init = config.init_range
        self.start_token = nn.Parameter(torch.randn(d) * init)
        if self.supervised:
            self.W_x = nn.Parameter(torch.randn(config.input_dim, d) * init)
            self.b_x = nn.Parameter(torch.zeros(d))
            if config.x_encoder == "mlp":  # x -> GELU(x W_x + b_x) W_x2 + b_x2
                self.W_x2 = nn.Parameter(torch.randn(d, d) * d**-0.5)
                self.b_x2 = nn.Parameter(torch.zeros(d))
                nn.init.normal_(self.W_x, std=1.0)
            self.token_type = nn.Parameter(torch.randn(2, d) * init)  # 0 = query, 1 = pair
        self.joint_pairs = self.supervised and config.pair_encoder == "joint"
        if self.joint_pairs:  # (x, y features) -> GELU(. W_xy + b_xy) W_xy2 + b_xy2
            y_width = config.d_vocab if self.discrete_y else 1
            self.W_xy = nn.Parameter(torch.randn(config.input_dim + y_width, d))
            self.b_xy = nn.Parameter(torch.zeros(d))
            self.W_xy2 = nn.Parameter(torch.randn(d, d) * d**-0.5)
            self.b_xy2 = nn.Parameter(torch.zeros(d))
        elif self.discrete_y:
            self.W_y = nn.Parameter(torch.randn(config.d_vocab, d) * init)
        else:
            self.W_y = nn.Parameter(torch.randn(1, d) * init)
            self.b_y = nn.Parameter(torch.zeros(d))
        if config.positional_embedding:
            self.W_pos = nn.Parameter(torch.randn(config.n_ctx, d) * init)
            self.hook_pos_embed = HookPoint()
        self.hook_embed = HookPoint()
        self.blocks = nn.ModuleList(TransformerBlock(config) for _ in range(config.n_layers))
        self.ln_final = LayerNorm(d, config.layer_norm_eps)
        if config.decoder == "mlp":  # resid + MLP(resid) before W_U; its output starts at the
            self.decoder_mlp = MLP(config)  # scale of the resid, so it learns from step one
            nn.init.normal_(self.decoder_mlp.W_in, std=d**-0.5)
            nn.init.normal_(self.decoder_mlp.W_out, std=config.d_mlp**-0.5)
        self.W_U = nn.Parameter(torch.randn(d, d_out) * init)
        self.b_U = nn.Parameter(torch.zeros(d_out))
        self.condition_on: list[str] = list(getattr(config, "condition_on", []))
        if self.condition_on:  # created last: the other weights init as without conditioning
            k = len(self.condition_on)  # [symlog values, known flags] -> GELU MLP -> d
            self.W_cond = nn.Parameter(torch.zeros(2 * k, d))  # unseen inputs stay inert
            self.b_cond = nn.Parameter(torch.zeros(d))
            self.W_cond2 = nn.Parameter(torch.randn(d, d) * d**-0.5)
            self.b_cond2 = nn.Parameter(torch.zeros(d))
            self.hook_condition = HookPoint()  # the embedding added to the start token
        self.setup()

    # ------------------------------------------------------------------ properties
    @property
    def device(self) -> torch.device:
        """Current device, read from the parameters (never stale after ``.to()``)."""
        return self.W_U.device

    def set_attention_path(self, path: str) -> None:
        """``"auto"`` (the kernel chosen by device and length; the dense explicit path while
        scores/pattern are hooked), ``"explicit"`` (always the dense explicit path, which
        ``hook_pattern`` sees), or one kernel for every input: ``"split"`` (SDPA) or
        ``"split-matmul"`` (see ``model/attention.py``)."""
        choices = ("auto", "explicit", "split", "split-matmul")
        if path not in choices:
            raise ValueError(f"attention path={path!r} is not valid; choose one of {choices}.")
        forced = {"auto": None, "explicit": "dense"}.get(path, path)
        for block in self.blocks:
            block.attn.forced_path = forced

    # ------------------------------------------------------------------ embedding
    def _embed_y(self, y: Tensor) -> Tensor:
        if self.discrete_y:  # an out-of-range id gets a -inf log prob, not a crash
            return F.embedding(y.clamp(0, self.W_y.shape[0] - 1), self.W_y)
        return y.unsqueeze(-1).to(self.W_y.dtype) * self.W_y + self.b_y

    def _embed_x(self, x: Tensor) -> Tensor:
        h = _matmul(x.to(self.W_x.dtype), self.W_x) + self.b_x
        if self.config.x_encoder == "mlp":
            h = _matmul(F.gelu(h), self.W_x2) + self.b_x2
        return h

    def _query_tokens(self, x: Tensor, ex: Tensor | None = None) -> Tensor:
        """Tokens of points whose y is to be predicted (x only)."""
        return (self._embed_x(x) if ex is None else ex) + self.token_type[0]

    def _pair_tokens(self, x: Tensor, y: Tensor, ex: Tensor | None = None) -> Tensor:
        """Tokens of observed (x, y) pairs; ``ex`` reuses an already computed x embedding."""
        ex = self._embed_x(x) if ex is None else ex
        ey = self._embed_pair(x, y) if self.joint_pairs else self._embed_y(y)
        return ex + ey + self.token_type[1]

    def _embed_pair(self, x: Tensor, y: Tensor) -> Tensor:
        """The joint encoder's part of a pair token: an MLP of x and y's features."""
        if self.discrete_y:
            k = self.W_xy.shape[0] - x.shape[-1]
            feats = F.one_hot(y.long().clamp(0, k - 1), k).to(self.W_xy.dtype)
        else:
            feats = self._standardize_y(y.to(self.W_xy.dtype)).unsqueeze(-1)
        h = _matmul(torch.cat([x.to(self.W_xy.dtype), feats], dim=-1), self.W_xy) + self.b_xy
        return _matmul(F.gelu(h), self.W_xy2) + self.b_xy2

    def _standardize_y(self, y: Tensor) -> Tensor:
        """y on the scale of x, whatever the user's units: the bar head's inner range (about
        +-4 prior standard deviations for the CLI's suggested range) maps to [-4, 4]."""
        if self.bucketizer is None:
            return y
        center, scale = self.bucketizer.standardization()
        return (y - center) * scale

    def _start(self, batch: int, cond: Tensor | None = None) -> Tensor:
        """The start token [B, 1, d]; a conditioned model adds the embedding of ``cond``
        (``_condition``'s features), so every token sees the known hyperparameters."""
        if cond is None:
            return self.start_token.expand(batch, 1, -1)
        h = F.gelu(_matmul(cond.to(self.W_cond.dtype), self.W_cond) + self.b_cond)
        emb = self.hook_condition(_matmul(h, self.W_cond2) + self.b_cond2)
        return (self.start_token + emb).unsqueeze(1)

    def _condition(self, hyperparameters: Hyperparameters | None, batch: int) -> Tensor | None:
        """Features [B, 2k] of the known ``hyperparameters`` (None for a model without
        ``condition_on``, which refuses them: silently ignoring known values would hide a
        mistake)."""
        if not self.condition_on:
            if hyperparameters:
                raise ValueError(
                    f"hyperparameters={sorted(hyperparameters)} were given, but this model has "
                    "no condition_on; train it with RegressionConfig(condition_on=[...]) to "
                    "use known hyperparameters."
                )
            return None
        return condition_features(self.condition_on, hyperparameters, batch, self.device)

    def _run(
        self,
        tokens: Tensor,
        layout: AttentionLayout | None = None,
        cache: KVCache | None = None,
        append: bool = True,
    ) -> Tensor:
        """Blocks + final LayerNorm over a token sequence (the residual stream at the end).

        With a ``cache`` the tokens continue the cached ones: they sit at positions
        ``cache.length ...``, see every cached token and each other causally, and are stored
        when ``append`` (a PFN's query tokens are not: nothing later may see them).
        """
        start = 0 if cache is None else cache.length
        t = tokens.shape[1]
        if cache is not None:
            layout = cache.layout(t)
        elif layout is None:
            raise ValueError("_run needs a layout (or a cache) to know what may attend to what.")
        if self.config.positional_embedding:
            if start + t > self.config.n_ctx:
                raise ValueError(
                    f"sequence needs {start + t} tokens but n_ctx={self.config.n_ctx}; raise "
                    "n_ctx in the model config."
                )
            tokens = tokens + self.hook_pos_embed(self.W_pos[start : start + t])
        resid = self.hook_embed(tokens)
        for i, block in enumerate(self.blocks):
            resid = block(resid, layout, None if cache is None else cache.entries[i], append)
        if cache is not None and append:
            cache.length += t
        return self.ln_final(resid)

    def _unembed(self, resid: Tensor) -> Tensor:
        """Logits from the final LayerNorm's output: the decoder MLP (if any) and W_U, in
        float32 even under bf16 autocast: bf16 logits add ~1e-2 nats of noise to the NLL,
        the size of the excess NLL a good PFN reaches."""
        if resid.device.type not in AUTOCAST_DEVICE_TYPES:  # e.g. the meta device
            return self._decode(resid.float())
        with torch.autocast(device_type=resid.device.type, enabled=False):
            return self._decode(resid.float())

    def _decode(self, resid: Tensor) -> Tensor:
        if self.config.decoder == "mlp":
            resid = resid + self.decoder_mlp(resid)
        return _matmul(resid, self.W_U) + self.b_U

    # ------------------------------------------------------------------ validation
    def _home(self, t: Tensor | None) -> Tensor | None:
        """``t`` on the model's device (a no-op when it is there already)."""
        return None if t is None else t.to(self.device)

    def _check_inputs(self, x: Tensor | None, y: Tensor) -> Tensor:
        name = type(self.config).__name__
        if self.supervised:
            if x is None or x.ndim != 3 or x.shape[-1] != self.config.input_dim:
                got = None if x is None else tuple(x.shape)
                raise ValueError(
                    f"x has shape {got}; this {name} model expects [batch, seq, input_dim="
                    f"{self.config.input_dim}]."
                )
            if y.shape != x.shape[:2]:
                raise ValueError(
                    f"y has shape {tuple(y.shape)}; expected [batch, seq] = {tuple(x.shape[:2])} "
                    "to match x."
                )
        elif y.ndim != 2:
            raise ValueError(f"y has shape {tuple(y.shape)}; expected [batch, seq].")
        if self.discrete_y:
            if y.is_floating_point():
                raise ValueError(
                    f"y has dtype {y.dtype}; a discrete {name} model expects integer class/token "
                    "ids (torch.long)."
                )
            return y.long()
        return y

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        x_or_y: Tensor,
        y: Tensor | None = None,
        *,
        return_type: str | None = "logits",
        loss_per_token: bool = False,
        n_context: int | None = None,
        hyperparameters: Hyperparameters | None = None,
    ) -> Tensor | tuple[Tensor, Tensor] | None:
        """``model(x, y)`` (supervised) or ``model(y)`` (unsupervised).

        return_type (as in TransformerLens): ``"logits"`` -> [B, S, out]; ``"loss"`` -> the
        training loss, a scalar mean or [B, S] with ``loss_per_token=True`` (position t is
        the loss of y_t, position 0 of unsupervised data included); ``"both"`` -> (logits,
        loss); None -> None (run for the hooks only).

        Supervised, logits[:, i] is the predictive of y_i; unsupervised, logits[:, t] that of
        y_{t+1}. No output ever depends on the value it predicts or on anything later.

        ``n_context`` (supervised, with ``return_type="loss"``): the mean loss of the points
        after the first ``n_context``, each given those alone (``split_loss``).

        ``hyperparameters`` (models with ``condition_on``): known values per dataset, a dict
        name -> float or Tensor[B]; missing names and NaN entries are unknown.
        """
        if return_type not in ("logits", "loss", "both", None):
            raise ValueError(
                f"return_type={return_type!r} is not valid; choose 'logits', 'loss', 'both' or "
                "None."
            )
        if n_context is not None:
            if return_type != "loss" or loss_per_token:
                raise ValueError(
                    "n_context is for the mean split loss: call model(x, y, return_type='loss', "
                    "n_context=n)."
                )
            return self.split_loss(x_or_y, y, n_context, hyperparameters=hyperparameters)
        if self.supervised:
            if y is None:
                raise ValueError("supervised model called with one tensor; call model(x, y).")
            y = self._check_inputs(self._home(x_or_y), self._home(y))
            cond = self._condition(hyperparameters, y.shape[0])
            logits = self._forward_supervised(self._home(x_or_y), y, cond)
            predictive = logits
        else:
            if y is not None:
                raise ValueError(
                    "unsupervised model called as model(x, y); call model(y) with y [batch, seq]."
                )
            y = self._check_inputs(None, self._home(x_or_y))
            self._condition(hyperparameters, y.shape[0])  # unsupervised: refuses them
            full = self._unsupervised_logits(y)
            logits, predictive = full[:, 1:], full[:, :-1]
        warn_past_trained(self, "this sequence", y.shape[1])
        if return_type is None:
            return None
        if return_type == "logits":
            return logits
        loss = self.loss(predictive, y)
        if not loss_per_token:
            loss = loss.mean()
        return loss if return_type == "loss" else (logits, loss)

    def _forward_supervised(self, x: Tensor, y: Tensor, cond: Tensor | None = None) -> Tensor:
        b, s = y.shape
        ex = self._embed_x(x)
        queries, pairs = self._query_tokens(x, ex), self._pair_tokens(x, y, ex)
        if self.config.mask_type == "autoregressive-pfn":
            tokens = torch.cat([self._start(b, cond), pairs, queries], dim=1)
            resid = self._run(tokens, pfn_layout(s, s, queries_see_all=False))[:, 1 + s :]
        else:
            inter = torch.stack([queries, pairs], dim=2).reshape(b, 2 * s, -1)
            tokens = torch.cat([self._start(b, cond), inter], dim=1)
            resid = self._run(tokens, interleaved_layout(s, 0))[:, 1::2]
        return self._unembed(resid)

    def _unsupervised_logits(self, y: Tensor) -> Tensor:
        """Logits [B, S+1, out] over ``[start, y_0, ..., y_{S-1}]``: entry t predicts y_t
        (entry 0 is the prior predictive, entry S the next element after y)."""
        b, s = y.shape
        tokens = torch.cat([self._start(b), self._embed_y(y)], dim=1)
        return self._unembed(self._run(tokens, causal_layout(s + 1)))

    def predictive_positions(self, seq_len: int) -> Tensor:
        """Token positions (in the layout of ``model(x, y)`` / ``model(y)``, so indices into
        ``run_with_cache``'s residual streams) whose output predicts y_0..y_{S-1}.

        Supervised ``autoregressive-pfn``: the query tokens after ``[start, pairs]``;
        ``gpt2``: the interleaved query tokens; unsupervised: ``[start, y_0, ..., y_{S-2}]``.
        """
        if not self.supervised:
            return torch.arange(seq_len, device=self.device)
        if self.config.mask_type == "autoregressive-pfn":
            return torch.arange(1 + seq_len, 1 + 2 * seq_len, device=self.device)
        return torch.arange(1, 2 * seq_len, 2, device=self.device)

    def decode_resid(self, resid: Tensor) -> Tensor:
        """Logits from residual-stream vectors: final LayerNorm and unembedding (the logit
        lens; the final block's residual at ``predictive_positions`` gives
        ``predictive_logits``)."""
        return self._unembed(self.ln_final(resid))

    def predictive_logits(
        self,
        x_or_y: Tensor,
        y: Tensor | None = None,
        *,
        hyperparameters: Hyperparameters | None = None,
    ) -> Tensor:
        """Logits [B, S, out] whose position t is the predictive of y_t given what precedes it.

        Supervised this is ``model(x, y)``; unsupervised it is ``model(y)`` shifted by one,
        with the prior predictive of y_0 at position 0.
        """
        if self.supervised:
            return self(x_or_y, y, hyperparameters=hyperparameters)
        if y is not None:
            raise ValueError("unsupervised model: call predictive_logits(y).")
        y = self._check_inputs(None, self._home(x_or_y))
        self._condition(hyperparameters, y.shape[0])  # unsupervised: refuses them
        return self._unsupervised_logits(y)[:, :-1]

    def log_predictive(
        self,
        x_or_y: Tensor,
        y: Tensor | None = None,
        *,
        hyperparameters: Hyperparameters | None = None,
    ) -> Tensor:
        """log p(y_t | everything before y_t) for every position t [B, S] (position 0 of
        unsupervised data is the prior predictive): the quantity scored against the exact
        posterior."""
        target = self._home(y if self.supervised else x_or_y)
        return self.log_prob(logits_given(self, x_or_y, y, hyperparameters), target)

    @torch.no_grad()
    def predict(
        self,
        x_context: Tensor,
        y_context: Tensor,
        x_query: Tensor,
        *,
        hyperparameters: Hyperparameters | None = None,
    ) -> Tensor:
        """Logits [B, M, out] for M query points, each seeing the whole context and itself.

        Queries never see each other, so one call scores any number of test points.
        ``hyperparameters``: known values (models with ``condition_on``), see ``forward``.
        """
        if not self.supervised:
            raise ValueError("predict() is for supervised models; use model(y) or generate().")
        x_context, x_query = self._home(x_context), self._home(x_query)
        y_context = self._check_inputs(x_context, self._home(y_context))
        if x_query.ndim != 3 or x_query.shape[0] != x_context.shape[0]:
            raise ValueError(
                f"x_query has shape {tuple(x_query.shape)}; expected [batch={x_context.shape[0]}, "
                f"num_queries, input_dim={self.config.input_dim}]."
            )
        cond = self._condition(hyperparameters, y_context.shape[0])
        return self._predict_checked(x_context, y_context, x_query, cond)

    def _predict_checked(
        self, x_context: Tensor, y_context: Tensor, x_query: Tensor, cond: Tensor | None
    ) -> Tensor:
        """``predict`` on checked inputs and condition features."""
        n = y_context.shape[1]
        warn_past_trained(self, f"a context of {n} points and a query", n + 1)
        return self._query_logits(x_context, y_context, x_query, cond)

    def _query_logits(
        self, x_context: Tensor, y_context: Tensor, x_query: Tensor, cond: Tensor | None = None
    ) -> Tensor:
        """``predict``'s logits (differentiable; inputs already checked): training with
        ``context_split="random"`` scores its query points through this."""
        b, n = y_context.shape
        m = x_query.shape[1]
        ex = self._embed_x(x_context)
        pairs = self._pair_tokens(x_context, y_context, ex)
        queries = self._query_tokens(x_query)
        if self.config.mask_type == "autoregressive-pfn":
            tokens = torch.cat([self._start(b, cond), pairs, queries], dim=1)
            resid = self._run(tokens, pfn_layout(n, m, queries_see_all=True))[:, 1 + n :]
        else:
            ctx_queries = self._query_tokens(x_context, ex)
            inter = torch.stack([ctx_queries, pairs], dim=2).reshape(b, 2 * n, -1)
            tokens = torch.cat([self._start(b, cond), inter, queries], dim=1)
            resid = self._run(tokens, interleaved_layout(n, m))[:, 1 + 2 * n :]
        return self._unembed(resid)

    def split_loss(
        self,
        x: Tensor,
        y: Tensor,
        n_context: int,
        *,
        hyperparameters: Hyperparameters | None = None,
    ) -> Tensor:
        """Mean training loss of the points after the first ``n_context``, each given those
        (``TrainingConfig.context_split="random"``: one pass over S+1 tokens)."""
        if not self.supervised or y is None:
            raise ValueError(
                "split_loss is for supervised models, called with x and y; score model(y) with "
                "return_type='loss' instead."
            )
        x, y = self._home(x), self._home(y)
        y = self._check_inputs(x, y)
        if not 0 <= n_context < y.shape[1]:
            raise ValueError(
                f"n_context={n_context!r} is not valid; use 0 <= n_context < seq_len={y.shape[1]}."
            )
        cond = self._condition(hyperparameters, y.shape[0])
        logits = self._query_logits(x[:, :n_context], y[:, :n_context], x[:, n_context:], cond)
        return self.loss(logits, y[:, n_context:].contiguous()).mean()

    def predictive(
        self, x_or_y: Tensor, y: Tensor | None = None, x_query: Tensor | None = None, **kwargs
    ):
        """The predictive as a ``torch.distributions.Distribution`` (``BarDistribution`` for
        bar heads, ``Categorical`` for class/token heads); see ``pfn_transformers.predictive``.

        ``predictive(x_context, y_context, x_query)``: at the queries, batch shape [B, M]
        (the context is encoded once, queries run in chunks). ``predictive(x, y)`` /
        ``predictive(y)``: position t given everything before it, batch shape [B, S];
        ``predictive(y, next_element=True)``: the element after y, [B, 1].
        """
        from ..predictive import model_predictive

        return model_predictive(self, x_or_y, y, x_query, **kwargs)

    # ------------------------------------------------------------------ heads
    def loss(self, logits: Tensor, y: Tensor) -> Tensor:
        """Per-position training loss [B, S] of predictive logits aligned with y.

        NLL for distribution heads, squared error for point heads. With a bounded bar
        distribution a y outside [y_min, y_max] counts as the nearest edge (the earlier
        implementation's behaviour), so a rare outlier of the prior cannot make the loss
        infinite. A class/token id outside the head gives an infinite loss, which the training
        step skips.
        """
        y = self._home(y)
        if self.task.head == "point":
            return (logits[..., 0] - y.to(logits.dtype)) ** 2
        if self.bucketizer is not None and self.bucketizer.support == "bounded":
            borders = self.bucketizer.borders
            y = torch.clamp(y.to(borders.dtype), borders[0], borders[-1])
        return -self.log_prob(logits, y)

    def out_of_range(self, y: Tensor) -> Tensor | None:
        """Which targets lie outside a bounded bar distribution's borders (None otherwise)."""
        if self.bucketizer is None or self.bucketizer.support != "bounded":
            return None
        borders = self.bucketizer.borders
        y = self._home(y)
        return (y < borders[0]) | (y > borders[-1])

    def log_prob(self, logits: Tensor, y: Tensor) -> Tensor:
        """Log predictive density (continuous) or mass (discrete) of y [B, S] under logits.

        A class/token id outside [0, num_outputs) has log mass -inf.
        """
        logits, y = self._home(logits), self._home(y)
        if self.discrete_y:
            logp = torch.log_softmax(logits.float(), dim=-1)
            k = logp.shape[-1]
            y = y.long()
            inside = (y >= 0) & (y < k)
            picked = logp.gather(-1, y.clamp(0, k - 1).unsqueeze(-1)).squeeze(-1)
            return picked.masked_fill(~inside, -math.inf)
        if self.bucketizer is None:
            raise ValueError(
                "log_prob is undefined for prediction_type='point'; point heads predict a value, "
                "not a density."
            )
        return self.bucketizer.log_prob(logits.float(), y.float())

    def point_prediction(self, logits: Tensor) -> Tensor:
        """Predictive mean (bar / point heads) or most likely class (discrete heads)."""
        logits = self._home(logits)
        if self.discrete_y:
            return logits.argmax(dim=-1)
        if self.bucketizer is None:
            return logits[..., 0]
        return self.bucketizer.mean(logits.float())

    def get_y_values(self, bucket_indices: Tensor) -> Tensor:
        """Representative y value of each bucket index (bar-distribution heads)."""
        if self.bucketizer is None:
            raise ValueError(
                "get_y_values needs a bar-distribution head (prediction_type='distribution')."
            )
        return self.bucketizer.get_y_values(bucket_indices)

    def sample_from_logits(self, logits: Tensor, temperature: float = 1.0) -> Tensor:
        """One draw per position from the predictive the logits describe."""
        if temperature <= 0:
            raise ValueError(f"temperature={temperature!r} is not valid; it must be > 0.")
        logits = self._home(logits)
        if self.discrete_y:
            probs = torch.softmax(logits.float() / temperature, dim=-1)
            return torch.multinomial(probs.reshape(-1, probs.shape[-1]), 1).view(logits.shape[:-1])
        if self.bucketizer is None:
            return logits[..., 0]
        return self.bucketizer.sample(logits.float(), temperature=temperature)

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def generate(self, *args, use_past_kv_cache: bool = True, **kwargs) -> Tensor:
        """Autoregressive sampling.

        Unsupervised: ``generate(num_samples, seq_len, temperature=1.0, prefix=None)`` ->
        [num_samples, seq_len] rollouts. Supervised: same as
        ``sample_posterior_predictive(x_context, y_context, x_query, num_samples, temperature)``
        with joint (autoregressive) draws over the queries.

        ``use_past_kv_cache`` (TransformerLens' name) reuses cached keys and values, so each
        new token costs one token's forward pass; hooks fire on each step's new tokens.
        ``False`` recomputes the whole sequence every step (for hooks that need the full
        attention pattern).
        """
        if self.supervised:
            return self.sample_posterior_predictive(
                *args, use_past_kv_cache=use_past_kv_cache, **kwargs
            )
        return self._rollout(*args, use_past_kv_cache=use_past_kv_cache, **kwargs)

    def _rollout(
        self,
        num_samples: int = 1,
        seq_len: int = 32,
        temperature: float = 1.0,
        prefix: Tensor | None = None,
        *,
        use_past_kv_cache: bool = True,
    ) -> Tensor:
        dtype = torch.long if self.discrete_y else torch.float32
        if prefix is None:
            y = torch.zeros(num_samples, 0, dtype=dtype, device=self.device)
        else:
            prefix = self._home(prefix)
            y = prefix.unsqueeze(0).expand(num_samples, -1) if prefix.ndim == 1 else prefix
            if y.shape[0] != num_samples:
                raise ValueError(
                    f"prefix has batch {y.shape[0]} but num_samples={num_samples}; pass a 1-D "
                    "prefix or one row per sample."
                )
            y = y.to(dtype)
        if y.shape[1] > seq_len:
            raise ValueError(f"prefix length {y.shape[1]} exceeds seq_len={seq_len}.")
        warn_past_trained(self, f"a rollout of seq_len={seq_len}", seq_len, stacklevel=4)
        if not use_past_kv_cache:
            while y.shape[1] < seq_len:
                logits = self._unsupervised_logits(y)[:, -1]
                step = self.sample_from_logits(logits, temperature).to(dtype)
                y = torch.cat([y, step.unsqueeze(1)], dim=1)
            return y
        cache = KVCache.for_model(len(self.blocks))
        steps = [y]
        with self._decode_threads(num_samples):
            tokens = torch.cat([self._start(num_samples), self._embed_y(y)], 1)
            resid = self._run(tokens, cache=cache)
            for t in range(y.shape[1], seq_len):
                logits = self._unembed(resid[:, -1])
                step = self.sample_from_logits(logits, temperature).to(dtype).unsqueeze(1)
                steps.append(step)
                if t + 1 < seq_len:
                    resid = self._run(self._embed_y(step), cache=cache)
        return torch.cat(steps, dim=1)

    @contextlib.contextmanager
    def _decode_threads(self, rows: int) -> Iterator[None]:
        """One intra-op thread for small one-token CPU steps, where thread hand-offs cost
        more than they share (64 coin rollouts of 256 tokens: 0.76 s on one thread against
        1.32 s on two); larger steps keep every thread."""
        small = self.device.type == "cpu" and rows * self.config.d_model <= 16_384
        before = torch.get_num_threads()
        if small:
            torch.set_num_threads(1)
        try:
            yield
        finally:
            if small:
                torch.set_num_threads(before)

    @torch.no_grad()
    def sample_posterior_predictive(
        self,
        x_context: Tensor,
        y_context: Tensor,
        x_query: Tensor,
        num_samples: int = 1,
        temperature: float = 1.0,
        autoregressive: bool = True,
        *,
        use_past_kv_cache: bool = True,
        hyperparameters: Hyperparameters | None = None,
    ) -> Tensor:
        """Samples [num_samples, B, M] of y at the query points given the context.

        ``autoregressive=True`` draws the queries jointly (each draw joins the context of the
        next, like a function drawn from the posterior); ``False`` draws each marginally.
        With ``use_past_kv_cache`` the context is encoded once and each draw adds one token.
        ``hyperparameters``: known values (models with ``condition_on``), see ``forward``.
        """
        if not self.supervised:
            raise ValueError(
                "sample_posterior_predictive is for supervised models; use generate()."
            )
        x_context, x_query = self._home(x_context), self._home(x_query)
        y_context = self._check_inputs(x_context, self._home(y_context))
        b, m = x_query.shape[0], x_query.shape[1]
        rep = lambda t: t.repeat(num_samples, *([1] * (t.ndim - 1)))  # noqa: E731
        xc, yc, xq = rep(x_context), rep(y_context), rep(x_query)
        cond = self._condition(hyperparameters, b)
        cond = None if cond is None else rep(cond)
        if not autoregressive:
            logits = self._predict_checked(xc, yc, xq, cond)
            return self.sample_from_logits(logits, temperature).view(num_samples, b, m)
        if use_past_kv_cache:
            draws = self._joint_draws_cached(xc, yc, xq, temperature, cond)
            return draws.view(num_samples, b, m)
        out = []
        for j in range(m):
            q = xq[:, j : j + 1]
            draw = self.sample_from_logits(self._predict_checked(xc, yc, q, cond), temperature)
            out.append(draw[:, 0])
            xc = torch.cat([xc, q], dim=1)
            yc = torch.cat([yc, draw.to(yc.dtype)], dim=1)
        return torch.stack(out, dim=1).view(num_samples, b, m)

    def _joint_draws_cached(
        self, xc: Tensor, yc: Tensor, xq: Tensor, temperature: float, cond: Tensor | None = None
    ) -> Tensor:
        """Joint draws [rows, M]: the same token layout as ``predict`` with the drawn points
        joining the context, built one token at a time on a KV cache."""
        with self._decode_threads(xc.shape[0]):
            return self._joint_draws_on_cache(xc, yc, xq, temperature, cond)

    def _joint_draws_on_cache(
        self, xc: Tensor, yc: Tensor, xq: Tensor, temperature: float, cond: Tensor | None = None
    ) -> Tensor:
        rows = xc.shape[0]
        cache = KVCache.for_model(len(self.blocks))
        ex = self._embed_x(xc)
        pairs = self._pair_tokens(xc, yc, ex)
        interleaved = self.config.mask_type == "gpt2"
        if interleaved:  # [start, q_0, p_0, q_1, p_1, ...]: queries stay in the sequence
            queries = self._query_tokens(xc, ex)
            pairs = torch.stack([queries, pairs], dim=2).reshape(rows, -1, pairs.shape[-1])
        self._run(torch.cat([self._start(rows, cond), pairs], dim=1), cache=cache)
        draws = []
        for j in range(xq.shape[1]):
            x_j = xq[:, j : j + 1]
            ex_j = self._embed_x(x_j)
            resid = self._run(self._query_tokens(x_j, ex_j), cache=cache, append=interleaved)
            draw = self.sample_from_logits(self._unembed(resid), temperature)  # [rows, 1]
            draws.append(draw[:, 0])
            self._run(self._pair_tokens(x_j, draw.to(yc.dtype), ex_j), cache=cache)
        return torch.stack(draws, dim=1)


def PFN(config: ModelConfig) -> PFNModel:  # noqa: N802 - the spec names the factory PFN
    """Build the PFN for a config (regression, classification or unsupervised)."""
    return PFNModel(config)


PFN.from_pretrained = PFNModel.from_pretrained  # PFN.from_pretrained(source), see hub.py
