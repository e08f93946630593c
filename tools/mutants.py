"""The breaks `make test-mutants` injects, one entry each (see tools/mutation_check.py).

An entry replaces one exact piece of code (it must occur once in its file) with a bug the
named tests must catch. Name entries ``feature/what-breaks``. To add one: copy the code to
break from the file as it is, write the broken version, list the fastest tests that should
catch it, run ``python tools/mutation_check.py -k NAME``. ``all_must_fail=True`` requires
every listed test to fail (for a property each of those tests claims, such as "a model
that ignores its context fails this quality test"); otherwise one failing test catches it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Mutant:
    name: str  # feature/what-breaks
    why: str  # the bug it stands for, one line
    path: str  # the file patched, relative to the repository root
    old: str  # exact code, occurring once in that file
    new: str  # what replaces it
    tests: tuple[str, ...]  # pytest node ids that must catch it (fastest first)
    all_must_fail: bool = False


TRAINING = "tests/unit/training/test_training.py"
RESUME = (f"{TRAINING}::test_resumed_run_follows_the_uninterrupted_trajectory",)
SCATTERED = f"{TRAINING}::test_scattered_non_finite_steps_stop_the_run_past_max_10_or_1_percent"
GENERATION = "tests/unit/model/test_generation.py"
KV = (
    f"{GENERATION}::test_cached_rollouts_match_recomputed_ones",
    f"{GENERATION}::test_cached_joint_posterior_samples_match_recomputed_ones",
)
NEXT_TOKEN = (
    "tests/unit/model/test_model.py::test_unsupervised_logits_t_predict_the_next_element_from_y_up_to_t",
    "tests/acceptance/test_user_code.py::test_logits_at_t_predict_the_token_after_t",
)
MUON = "tests/unit/training/test_muon.py"
LEAN = "tests/unit/training/test_lean_step.py"
NAN_BATCH = f"{LEAN}::test_a_nan_batch_changes_no_weight_and_no_optimizer_state_and_is_counted"
KERNELS = "tests/unit/model/test_attention_kernels.py"
CLAMP = (f"{TRAINING}::test_bounded_loss_counts_an_out_of_range_target_as_its_nearest_edge",)
OPTUNA = (
    "tests/cli/test_sweeps.py::test_optuna_sweep_ranks_trials_and_records_a_failing_one_as_failed",
)
WANDB = (
    "tests/unit/wandb/test_wandb_logger.py::test_offline_training_run_records_losses_configs_and_checkpoints",
)
GP_BASELINES = "tests/unit/evaluation/test_gp_baselines.py"

COND_MODEL = "tests/unit/model/test_conditioning.py"
COND_TRAIN = "tests/unit/training/test_conditioning.py"
COND_LEARNS = (
    f"{COND_TRAIN}::test_a_conditioned_model_uses_given_values_and_still_predicts_without_them",
)

MUTANTS: list[Mutant] = [
    # ------------------------------------------------------------------ exact resume
    Mutant(
        "resume/scheduler-not-restored",
        "a resumed run restarts the learning-rate schedule",
        "pfn_transformers/training/state.py",
        '        if payload.get("scheduler_state"):\n'
        '            scheduler.load_state_dict(payload["scheduler_state"])\n',
        "",
        RESUME,
    ),
    Mutant(
        "resume/optimizer-not-restored",
        "a resumed run starts AdamW's moments from zero",
        "pfn_transformers/training/state.py",
        '            optimizer.load_state_dict(payload["optimizer_state"])\n',
        "            pass\n",
        RESUME,
    ),
    Mutant(
        "resume/rng-not-restored",
        "a resumed run draws other batches than the uninterrupted one",
        "pfn_transformers/training/state.py",
        '        set_rng_state(payload.get("rng_state"))\n',
        "",
        RESUME,
    ),
    # ------------------------------------------------------------------ compiled step
    Mutant(
        "compiled/gradients-accumulate",
        "the compiled step never zeroes the gradients (only the eager path does)",
        "pfn_transformers/training/step.py",
        "        else:\n"
        "            loss = self.loss(x, y, self.context_size(x, y), hyperparameters)\n"
        "        optimizer.zero_grad(set_to_none=True)\n",
        "        else:\n"
        "            optimizer.zero_grad(set_to_none=True)\n"
        "            loss = self.loss(x, y, self.context_size(x, y), hyperparameters)\n",
        (f"{TRAINING}::test_compiled_step_follows_the_eager_trajectory",),
    ),
    # ------------------------------------------------------------------ KV cache
    Mutant(
        "kv-cache/positions-restart",
        "cached tokens get positional embeddings from 0 instead of their own positions",
        "pfn_transformers/model/pfn.py",
        "        start = 0 if cache is None else cache.length\n",
        "        start = 0\n",
        KV,
    ),
    Mutant(
        "kv-cache/cache-unseen",
        "new tokens attend only to themselves, not to the cached keys and values",
        "pfn_transformers/model/kv_cache.py",
        "        self.length = end\n        return self.keys, self.values\n",
        "        self.length = end\n        return k, v\n",
        KV,
    ),
    Mutant(
        "kv-cache/growth-drops-old-keys",
        "when the cache buffers grow, the keys and values cached so far are lost",
        "pfn_transformers/model/kv_cache.py",
        "        if self.length:\n            new_k[:, :, : self.length] = self.keys\n",
        "        if False:\n            new_k[:, :, : self.length] = self.keys\n",
        KV,
    ),
    # ------------------------------------------------------------------ next-token convention
    Mutant(
        "next-token/logits-aligned-with-y",
        "unsupervised model(y)[:, t] predicts y_t instead of y_{t+1}",
        "pfn_transformers/model/pfn.py",
        "            logits, predictive = full[:, 1:], full[:, :-1]\n",
        "            logits, predictive = full[:, :-1], full[:, :-1]\n",
        NEXT_TOKEN,
    ),
    Mutant(
        "next-token/loss-sees-its-target",
        "the unsupervised training loss scores the prediction made after seeing the target",
        "pfn_transformers/model/pfn.py",
        "        loss = self.loss(predictive, y)\n",
        "        loss = self.loss(predictive if self.supervised else logits, y)\n",
        (
            "tests/unit/evaluation/test_evaluation.py::test_real_tiny_pfn[coin]",
            f"{TRAINING}::test_coin_flip_pfn_gets_within_005_nats_of_exact_posterior",
        ),
    ),
    # ------------------------------------------------------------------ bounded support
    Mutant(
        "clamp/upper-edge-only",
        "targets below y_min are not clamped (their loss is infinite)",
        "pfn_transformers/model/pfn.py",
        "            y = torch.clamp(y.to(borders.dtype), borders[0], borders[-1])\n",
        "            y = torch.clamp(y.to(borders.dtype), max=borders[-1])\n",
        CLAMP,
    ),
    Mutant(
        "clamp/wrong-edge",
        "targets above y_max count as the lowest bucket",
        "pfn_transformers/model/pfn.py",
        "            y = torch.clamp(y.to(borders.dtype), borders[0], borders[-1])\n",
        "            y = y.to(borders.dtype)\n"
        "            y = torch.where(y > borders[-1], borders[0], y).clamp_min(borders[0])\n",
        CLAMP,
    ),
    Mutant(
        "clamp/outliers-dropped",
        "out-of-range targets are dropped from the loss instead of counting as the edge",
        "pfn_transformers/model/pfn.py",
        "            y = torch.clamp(y.to(borders.dtype), borders[0], borders[-1])\n",
        "            outside = (y < borders[0]) | (y > borders[-1])\n"
        "            y = torch.clamp(y.to(borders.dtype), borders[0], borders[-1])\n"
        "            return (-self.log_prob(logits, y)).masked_fill(outside, 0.0)\n",
        CLAMP,
    ),
    Mutant(
        "clamp/out-of-range-share-counts-one-side",
        "out_of_range_frac counts only targets above y_max",
        "pfn_transformers/model/pfn.py",
        "        return (y < borders[0]) | (y > borders[-1])\n",
        "        return y > borders[-1]\n",
        (f"{TRAINING}::test_out_of_range_share_of_training_targets_is_reported",),
    ),
    # ------------------------------------------------------------------ skipped steps
    Mutant(
        "skip/gradient-not-checked",
        "a finite loss with a non-finite gradient updates the weights",
        "pfn_transformers/training/step.py",
        "    checks = [loss.detach().float() + norm]\n",
        "    checks = [loss.detach().float()]\n",
        (f"{TRAINING}::test_a_finite_loss_with_a_non_finite_gradient_skips_the_update",),
    ),
    Mutant(
        "skip/no-share-limit",
        "scattered skipped steps never stop a run, only 10 in a row do",
        "pfn_transformers/training/step.py",
        "        if in_a_row < MAX_SKIPPED_IN_A_ROW and skipped <= self.max_share and not",
        "        if in_a_row < MAX_SKIPPED_IN_A_ROW and not",
        (SCATTERED,),
    ),
    Mutant(
        "skip/no-floor-of-10",
        "the share limit is 1% of the steps even when that is fewer than 10",
        "pfn_transformers/training/step.py",
        "max(MAX_SKIPPED_IN_A_ROW, math.ceil(MAX_SKIPPED_SHARE * num_steps))",
        "math.ceil(MAX_SKIPPED_SHARE * num_steps)",
        (f"{SCATTERED}[floor-of-10]",),
    ),
    Mutant(
        "skip/share-ignores-one-percent",
        "the share limit stays 10 however long the run",
        "pfn_transformers/training/step.py",
        "max(MAX_SKIPPED_IN_A_ROW, math.ceil(MAX_SKIPPED_SHARE * num_steps))",
        "MAX_SKIPPED_IN_A_ROW",
        (f"{SCATTERED}[one-percent]",),
    ),
    # ------------------------------------------------------------------ Optuna objective
    Mutant(
        "optuna/sign-flipped",
        "the sweeper is handed minus the objective, so it maximises the excess NLL",
        "pfn_cli/train.py",
        "    return math.nan if value is None else value",
        "    return math.nan if value is None else -value",
        OPTUNA,
    ),
    Mutant(
        "optuna/constant",
        "the sweeper is handed a constant, so every trial looks as good",
        "pfn_cli/train.py",
        "    return math.nan if value is None else value",
        "    return math.nan if value is None else 0.0",
        OPTUNA,
    ),
    Mutant(
        "optuna/not-the-evaluation",
        "the objective skips the wanted metric and reports the next fallback",
        "pfn_cli/closing.py",
        "    candidates = OBJECTIVES[OBJECTIVES.index(wanted) :]\n",
        "    candidates = OBJECTIVES[OBJECTIVES.index(wanted) + 1 :]\n",
        OPTUNA,
    ),
    # ------------------------------------------------------------------ W&B artifacts
    Mutant(
        "wandb/artifact-by-reference",
        "the artifact points at the local file instead of holding its bytes",
        "pfn_transformers/wandb/logger.py",
        "        artifact.add_file(str(path), name=path.name)\n",
        "        artifact.add_reference(path.resolve().as_uri(), name=path.name)\n",
        WANDB,
    ),
    Mutant(
        "wandb/artifact-holds-the-previous-checkpoint",
        "each checkpoint artifact holds the file of the checkpoint before it",
        "pfn_transformers/training/callbacks.py",
        "        state.last_checkpoint = path\n"
        "        self.saved_step = state.step\n"
        "        if self.logger is not None:\n"
        "            self.logger.log_checkpoint(path, state.step)\n",
        "        previous, state.last_checkpoint = state.last_checkpoint, path\n"
        "        self.saved_step = state.step\n"
        "        if self.logger is not None:\n"
        "            self.logger.log_checkpoint(previous or path, state.step)\n",
        WANDB,
    ),
    # ------------------------------------------------------------------ quality references
    Mutant(
        "quality/unsupervised-context-ignored",
        "unsupervised tokens carry no value of y: a model ignoring its context (an attention"
        " mask alone is not enough: a token still knows its own value through the residual)",
        "pfn_transformers/model/pfn.py",
        "        tokens = torch.cat([self._start(b), self._embed_y(y)], dim=1)\n"
        "        return self._unembed(",
        "        tokens = torch.cat([self._start(b), self._embed_y(y) * 0], dim=1)\n"
        "        return self._unembed(",
        (
            "tests/unit/evaluation/test_evaluation.py::test_real_tiny_pfn[coin]",
            "tests/acceptance/test_user_code.py::test_coin_model_scored_with_the_next_token_idiom_is_close_to_exact",
            "tests/acceptance/test_user_code.py::test_markov_model_trained_from_a_plain_class_beats_ignoring_the_context",
            f"{TRAINING}::test_coin_flip_pfn_gets_within_005_nats_of_exact_posterior",
        ),
        all_must_fail=True,
    ),
    Mutant(
        "quality/supervised-context-ignored",
        "query tokens see no context pairs: a regression model ignoring its context",
        "pfn_transformers/model/attention.py",
        "        parts.append(attend(qq, k[:, :, :n_keys], v[:, :, :n_keys], own_k, own_v, layout))\n",
        "        start_only = AttentionLayout(1, layout.n_queries)  # the start token and itself\n"
        "        parts.append(attend(qq, k[:, :, :1], v[:, :, :1], own_k, own_v, start_only))\n",
        (
            "tests/unit/evaluation/test_evaluation.py::test_real_tiny_pfn[gp]",
            "tests/unit/evaluation/test_evaluation.py::test_real_tiny_pfn[mlp-no-exact]",
            "tests/acceptance/test_user_code.py::test_plain_gp_class_trains",
            "tests/acceptance/test_user_code.py::test_plain_regression_class_learns_towards_the_exact_posterior",
            f"{TRAINING}::test_linear_regression_pfn_beats_the_prior_predictive",
        ),
        all_must_fail=True,
    ),
    # ------------------------------------------------------------------ smaller checks
    Mutant(
        "checks/device-read-once",
        "model.device is fixed at construction and goes stale after .to()",
        "pfn_transformers/model/pfn.py",
        "        return self.W_U.device\n",
        '        return torch.device("cpu")\n',
        ("tests/unit/model/test_model.py::test_device_property_follows_to",),
    ),
    Mutant(
        "checks/noise-free-prior-is-noisy",
        "MLPPrior(noise_std=0) still adds noise, so y is no function of x",
        "pfn_transformers/priors/regression.py",
        "        y = h.squeeze(-1) + self.noise_std * torch.randn(batch_size, seq_len, device=device)\n",
        "        y = h.squeeze(-1) + max(self.noise_std, 0.01) * torch.randn(batch_size, seq_len, device=device)\n",
        ("tests/unit/priors/test_priors.py::test_mlp_prior_moments",),
    ),
    # ------------------------------------------------------------------ issue 14 defaults
    Mutant(
        "legacy/old-config-gets-new-decoder",
        "a config saved before the MLP decoder rebuilds with it and cannot load its weights",
        "pfn_transformers/model/configs.py",
        'LEGACY_DEFAULTS: dict[str, Any] = {"decoder": "linear", "pair_encoder": "sum", "tail_scale": 0.0}\n',
        "LEGACY_DEFAULTS: dict[str, Any] = {}\n",
        (
            "tests/unit/persistence/test_legacy_runs.py::test_new_configs_get_the_new_decoder_and_old_dicts_the_old_one",
        ),
    ),
    Mutant(
        "resume/optimizer-kind-not-kept",
        "a run trained with AdamW resumes under Muon and drops (or chokes on) its state",
        "pfn_transformers/training/state.py",
        '        tc = resumed_training_config(tc, payload.get("training_config"))\n',
        "",
        (
            "tests/unit/persistence/test_legacy_runs.py::test_legacy_checkpoint_resumes_through_train",
        ),
    ),
    Mutant(
        "muon/non-finite-step-not-undone",
        "a step with a non-finite gradient still moves the Muon matrices",
        "pfn_transformers/training/muon.py",
        "                new = torch.where(skip, params, new)\n",
        "",
        (f"{TRAINING}::test_a_finite_loss_with_a_non_finite_gradient_skips_the_update[muon]",),
    ),
    Mutant(
        "muon/rates-not-scaled",
        "Muon's matrices train at the nominal rate, not muon_lr_ratio times it",
        "pfn_transformers/training/optim.py",
        "            lr=lr * muon_lr_ratio,\n",
        "            lr=lr,\n",
        (
            f"{TRAINING}::test_muon_runs_its_groups_at_multiples_of_the_logged_rate_and_falls_back_to_adamw",
        ),
    ),
    Mutant(
        "sample/past-trained-length-silent",
        "pfn sample draws past the trained sequence length without a word",
        "pfn_cli/sample.py",
        "    if length > trained:\n        log.warning(",
        "    if False:\n        log.warning(",
        ("tests/cli/test_cli.py::test_sample_keeps_within_the_trained_length_and_warns_beyond",),
    ),
    Mutant(
        "tails/floor-ignored",
        "tail_scale is accepted but the tails keep the edge-width scale (outliers cost tens of nats)",
        "pfn_transformers/model/bucketizer.py",
        "        if self.tail_scale > 0:\n",
        "        if False:\n",
        (
            "tests/unit/model/test_bucketizer.py::test_tail_scale_floors_the_tails_at_a_share_of_the_inner_range",
        ),
    ),
    Mutant(
        "muon/attention-left-to-adamw",
        "muon_scope='attention' is accepted but the attention weights stay with AdamW",
        "pfn_transformers/training/optim.py",
        '        elif scope == "attention" and p.ndim == 3 and leaf in MUON_ATTENTION:\n',
        "        elif False:\n",
        (f"{MUON}::test_the_scope_decides_which_weights_muon_steps[attention]",),
    ),
    Mutant(
        "muon/heads-not-fused",
        "W_Q is orthogonalised as its raw [h, d, dh] memory reshaped, not as the fused projection",
        "pfn_transformers/training/muon.py",
        "        return t.permute(1, 0, 2).reshape(d, h * dh)\n",
        "        return t.reshape(d, h * dh)\n",
        (f"{MUON}::test_attention_weights_are_orthogonalised_as_the_fused_projection",),
    ),
    Mutant(
        "muon/stack-normalised-as-one",
        "batching by shape lets one matrix's norm scale another's update",
        "pfn_transformers/training/muon.py",
        "    x = x / x.flatten(1).norm(dim=1).clamp(min=eps)[:, None, None]\n",
        "    x = x / x.norm().clamp(min=eps)\n",
        (f"{MUON}::test_matrices_get_torch_muons_update_bit_for_bit_also_when_batched_by_shape",),
    ),
    Mutant(
        "muon/torch-state-without-layout",
        "a torch.optim.Muon state (checkpoints before BatchedMuon) loads without a layout",
        "pfn_transformers/training/muon.py",
        '            group.setdefault("layout", "matrix")\n',
        "            pass\n",
        (f"{MUON}::test_a_state_saved_by_torch_muon_loads_and_steps_on_identically",),
    ),
    Mutant(
        "resume/muon-scope-not-kept",
        "a Muon checkpoint saved before muon_scope resumes with today's attention scope",
        "pfn_transformers/training/state.py",
        'LEGACY_OPTIMIZER = {"optimizer": "adamw", "muon_scope": "mlp"}\n',
        'LEGACY_OPTIMIZER = {"optimizer": "adamw"}\n',
        (
            "tests/unit/persistence/test_legacy_runs.py::test_a_muon_checkpoint_without_a_scope_resumes_as_the_old_code_went_on",
        ),
    ),
    # ------------------------------------------------------------------ hierarchical GP, mixtures
    Mutant(
        "gp-hyper/noise-weight-ignores-outputscale",
        "the quadrature weights use p(log v = log r) instead of p(log v = log r + log s)",
        "pfn_transformers/priors/gp_hyper.py",
        "log_gamma_log_density(u_r[:, None] + u_s[None, :], *self.noise_prior)",
        "log_gamma_log_density(u_r[:, None] + 0 * u_s[None, :], *self.noise_prior)",
        (
            "tests/unit/priors/test_gp_hyper_prior.py::test_quadrature_matches_monte_carlo_over_the_hyperprior",
            "tests/unit/priors/test_gp_hyper_prior.py::test_point_mass_hyperpriors_give_the_fixed_gp",
        ),
    ),
    Mutant(
        "gp-hyper/weights-without-marginal-likelihood",
        "each quadrature node keeps its prior weight, whatever the context says",
        "pfn_transformers/priors/gp_hyper.py",
        "                log_a = logw[js][:, :, None, None] + prefix\n",
        "                log_a = logw[js][:, :, None, None] + 0 * prefix\n",
        (
            "tests/unit/priors/test_gp_hyper_prior.py::test_quadrature_matches_monte_carlo_over_the_hyperprior",
        ),
    ),
    Mutant(
        "mixture/prior-weights-only",
        "the mixture's predictive weights components by prior weight, not by their evidence",
        "pfn_transformers/priors/mixture.py",
        "        a = log_pi[:, None, None] + exclusive_cumsum(lp, -1)  # + log p_c(D_<n), chain rule\n",
        "        a = log_pi[:, None, None] + 0 * exclusive_cumsum(lp, -1)\n",
        (
            "tests/unit/priors/test_mixture_prior.py::test_exact_predictive_matches_brute_force_marginal_likelihoods",
            "tests/unit/priors/test_mixture_prior.py::test_discrete_mixture_is_a_normalised_brute_force_predictive",
        ),
    ),
    Mutant(
        "mixture/inputs-ignored",
        "the mixture's weights leave out the inputs' evidence (x ~ U[-1, 1] vs U[0, 1])",
        "pfn_transformers/priors/mixture.py",
        "        if x_log_p is not None:\n",
        "        if x_log_p is not None and False:\n",
        (
            "tests/unit/priors/test_mixture_prior.py::test_exact_predictive_matches_brute_force_marginal_likelihoods",
            "tests/unit/priors/test_mixture_prior.py::test_the_inputs_are_evidence_when_the_components_draw_them_differently",
        ),
    ),
    # ------------------------------------------------------------------ long-context attention
    Mutant(
        "attention/self-key-dropped",
        "the split SDPA kernel leaves out each query's attention to itself",
        "pfn_transformers/model/attention.py",
        "    return out[..., :dh] + out[..., dh : dh + 1] * own_v\n",
        "    return out[..., :dh]\n",
        (
            f"{KERNELS}::test_split_attention_is_the_dense_masks_function_with_its_gradients",
            f"{KERNELS}::test_every_kernel_gives_the_explicit_paths_logits_in_fp32",
        ),
    ),
    Mutant(
        "attention/causal-queries-see-every-pair",
        "training queries of the split SDPA kernel see the pairs after them (y_i leaks)",
        "pfn_transformers/model/attention.py",
        '    causal = layout.queries_see == "causal"\n',
        "    causal = False\n",
        (f"{KERNELS}::test_every_kernel_gives_the_explicit_paths_logits_in_fp32",),
    ),
    Mutant(
        "attention/matmul-at-every-length",
        "the quadratic matmul kernel runs at every context length",
        "pfn_transformers/model/attention.py",
        '        return "split-matmul" if n_tokens < CPU_BF16_MATMUL_BELOW else "split"\n',
        '        return "split-matmul"\n',
        (f"{KERNELS}::test_kernel_choice_follows_device_precision_and_length",),
    ),
    # ------------------------------------------------------------------ a lean step
    Mutant(
        "lean/muon-momentum-moves-on-skipped-step",
        "a skipped step keeps Muon's matrices but still updates their momentum buffers",
        "pfn_transformers/training/muon.py",
        "                new_buf = torch.where(skip, buf, new_buf)\n",
        "",
        (f"{NAN_BATCH}[muon-x]",),
    ),
    Mutant(
        "lean/stacked-heads-not-fused",
        "the stacked W_Q/W_K/W_V are read as their raw [h, d, dh] memory, not the fused projection",
        "pfn_transformers/training/muon.py",
        "        return t.permute(0, 2, 1) if tall else t.permute(1, 0, 2)\n",
        "        return t.permute(0, 2, 1) if tall else t.reshape(t.shape[1], t.shape[0], -1)\n",
        (f"{MUON}::test_attention_weights_are_orthogonalised_as_the_fused_projection",),
    ),
    Mutant(
        "lean/padded-shapes-misaligned",
        "shapes padded into one Newton-Schulz iteration are read back from the wrong rows",
        "pfn_transformers/training/muon.py",
        "            start += n\n",
        "",
        (f"{LEAN}::test_shapes_padded_into_one_newton_schulz_iteration_match_the_per_shape_ones",),
    ),
    Mutant(
        "lean/decay-always-skipped",
        "Muon treats every weight-decay factor as one that rounds to 1",
        "pfn_transformers/training/muon.py",
        "    return abs(1 - factor) < eps / 4\n",
        "    return True\n",
        (f"{MUON}::test_matrices_get_torch_muons_update_bit_for_bit_also_when_batched_by_shape",),
    ),
    Mutant(
        "lean/flags-carry-autograd-history",
        "the non-finite flags come from the loss with its graph: the counters grow a history",
        "pfn_transformers/training/step.py",
        "    checks = [loss.detach().float() + norm]\n",
        "    checks = [loss.float() + norm]\n",
        (f"{NAN_BATCH}[adamw-x]",),
    ),
    Mutant(
        "lean/nan-targets-not-flagged",
        "the batch check reads x only, so NaN targets are blamed on the learning rate",
        "pfn_transformers/training/step.py",
        "        checks.append(norms[0] if len(norms) == 1 else norms[0] + norms[1])\n",
        "        checks.append(norms[0])\n",
        (f"{NAN_BATCH}[adamw-y]",),
    ),
    Mutant(
        "lean/skips-in-a-row-never-reset",
        "the packed counters never restart skipped_in_a_row after a good step",
        "pfn_transformers/training/step.py",
        "        keep = torch.stack([one, bad, one, one, one])\n",
        "        keep = torch.stack([one, one, one, one, one])\n",
        (f"{NAN_BATCH}[adamw-x]",),
    ),
    Mutant(
        "lean/bar-constants-stale-after-load",
        "the cached bar-distribution constants ignore borders loaded into the same buffer",
        "pfn_transformers/model/bucketizer.py",
        "b.data_ptr(), b._version,",
        "b.data_ptr(),",
        (f"{LEAN}::test_cached_bar_constants_follow_new_borders_and_survive_inference_mode",),
    ),
    Mutant(
        "lean/bar-constants-from-inference-mode",
        "constants derived under inference_mode are reused by training, which cannot save them",
        "pfn_transformers/model/bucketizer.py",
        "               torch.is_inference_mode_enabled(), self.support",
        "               False, self.support",
        (f"{LEAN}::test_cached_bar_constants_follow_new_borders_and_survive_inference_mode",),
    ),
    Mutant(
        "lean/blocked-mask-from-inference-mode",
        "the inverted attention mask made under inference_mode is reused by training",
        "pfn_transformers/model/masks.py",
        "        return _blocked_mask(self, str(device), torch.is_inference_mode_enabled())\n",
        "        return _blocked_mask(self, str(device), False)\n",
        (f"{LEAN}::test_cached_bar_constants_follow_new_borders_and_survive_inference_mode",),
    ),
    # ------------------------------------------------------------------ conditioning
    Mutant(
        "condition/values-ignored",
        "known hyperparameter values never reach the model (only the known flags do)",
        "pfn_transformers/model/conditioning.py",
        "values.append(torch.where(ok, symlog(torch.nan_to_num(col)), torch.zeros_like(col)))",
        "values.append(torch.zeros_like(col))",
        COND_LEARNS,
    ),
    Mutant(
        "condition/drop-mask-inverted",
        "training hides each hyperparameter with probability 1 - condition_drop_prob",
        "pfn_transformers/model/conditioning.py",
        "hide = torch.rand(v.shape, device=v.device) < drop_prob",
        "hide = torch.rand(v.shape, device=v.device) >= drop_prob",
        (
            f"{COND_TRAIN}::test_the_drop_mask_hides_each_value_with_the_configured_probability",
            f"{COND_TRAIN}::test_training_hides_values_at_the_configured_rate",
        ),
        all_must_fail=True,
    ),
    Mutant(
        "condition/training-without-values",
        "the training loop draws the hyperparameters but never hands them to the step",
        "pfn_transformers/training/loop.py",
        "        window.losses.append(clock.step(*batch))\n",
        "        window.losses.append(clock.step(*batch[:2]))\n",
        COND_LEARNS,
    ),
    Mutant(
        "condition/compiled-step-without-values",
        "the compiled training step drops the hyperparameters the eager one uses",
        "pfn_transformers/training/step.py",
        "                state.device.type,\n                hyperparameters,\n",
        "                state.device.type,\n                None,\n",
        (f"{COND_TRAIN}::test_the_compiled_step_takes_the_hyperparameters_as_the_eager_one",),
    ),
    Mutant(
        "condition/cached-context-unconditioned",
        "CachedContext encodes the context without the known hyperparameters",
        "pfn_transformers/context.py",
        "model._start(self.batch_size, cond)",
        "model._start(self.batch_size)",
        (
            f"{COND_MODEL}::test_cached_context_and_predictive_equal_predict_with_the_same_hyperparameters",
        ),
    ),
    # ------------------------------------------------------------------ GP baselines
    Mutant(
        "gp-baselines/mle-ii-sees-the-point-it-predicts",
        "MLE-II fits its hyperparameters to D_<=n, the target y_n included",
        "pfn_transformers/evaluation/gp_baselines.py",
        "        xn, yn = xd[:, :n].repeat(k, 1, 1), yd[:, :n].repeat(k, 1)\n",
        "        xn, yn = xd[:, : n + 1].repeat(k, 1, 1), yd[:, : n + 1].repeat(k, 1)\n",
        (
            f"{GP_BASELINES}::test_mle_ii_loses_to_the_exact_predictive_at_small_n_and_the_oracle_wins",
            f"{GP_BASELINES}::test_mle_ii_reaches_sklearns_optimum_and_predicts_with_it[1d]",
        ),
        all_must_fail=True,
    ),
    Mutant(
        "gp-baselines/oracle-with-prior-mean-hyperparameters",
        "the true-hyperparameter oracle predicts with the hyperprior means, not the drawn ones",
        "pfn_transformers/evaluation/gp_baselines.py",
        '        "true_hyperparameters": prior.exact_log_predictive_given(x, y, params),\n',
        '        "true_hyperparameters": prior.exact_log_predictive_given(\n'
        "            x, y, dict(zip(_KEYS, _prior_mean_theta(prior, x.device).exp()"
        ".expand(x.shape[0], 3).unbind(-1)))\n"
        "        ),\n",
        (
            f"{GP_BASELINES}::test_mle_ii_loses_to_the_exact_predictive_at_small_n_and_the_oracle_wins",
        ),
    ),
]
