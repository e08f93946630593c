"""``pfn prior-check``: look at a prior before training on it (Hydra app, conf/prior_check.yaml).

Composes a prior, a model and a training profile as ``pfn train`` does, runs
``pfn_transformers.prior_check.prior_check`` and writes ``prior_check.json`` plus its figures
into ``out`` (default ``outputs_root/prior_check/<time>_<prior>/``), then prints a summary
with every warning. Nothing is trained.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from pfn_cli._app import hydra_app
from pfn_cli.errors import CliError, describe_exception
from pfn_cli.resolvers import instantiate_prior, register_resolvers, slug
from pfn_cli.runs import write_json_atomic

log = logging.getLogger("pfn.prior_check")

REPORT_FILE = "prior_check.json"


def _choices() -> dict[str, str]:
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return {}
    return {k: v for k, v in HydraConfig.get().runtime.choices.items() if v is not None}


def _training_config(cfg: DictConfig) -> Any:
    from pfn_transformers import TrainingConfig

    fields = OmegaConf.to_container(cfg.training, resolve=True)
    fields.pop("_target_", None)
    try:
        return TrainingConfig.from_dict(fields)
    except (TypeError, ValueError) as exc:
        raise CliError(f"training: invalid training config: {describe_exception(exc)}") from None


def _positive(cfg: DictConfig, key: str) -> int:
    value = cfg.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise CliError(f"{key}={value!r} is not valid; it must be a positive int.")
    return value


def run_prior_check(cfg: DictConfig, choices: dict[str, str] | None = None) -> dict[str, Any]:
    """Check the configured prior; returns the report (also written as JSON)."""
    from pfn_cli.experiment import build_model_config

    register_resolvers()
    choices = _choices() if choices is None else choices
    prior_choice, model_choice = choices.get("prior"), choices.get("model")
    for key in ("num_datasets", "num_draws", "num_targets", "speed_repeats"):
        _positive(cfg, key)
    prior = instantiate_prior(cfg.get("prior"), prior_choice)
    model_config, _ = build_model_config(cfg, prior, model_choice, prior_choice)
    tc = _training_config(cfg)
    seq_len = int(cfg.get("seq_len") or tc.seq_len)
    if cfg.get("out"):
        out = Path(str(cfg.out))
    else:
        stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
        name = slug(prior_choice or type(prior).__name__)
        out = Path(str(cfg.outputs_root)) / "prior_check" / f"{stamp}_{name}"
    from pfn_transformers.prior_check import prior_check

    log.info("Checking %s (model %s) into %s", type(prior).__name__, model_choice, out)
    try:
        report = prior_check(
            prior,
            model_config=model_config,
            training_config=tc,
            num_datasets=int(cfg.num_datasets),
            seq_len=seq_len,
            num_draws=int(cfg.num_draws),
            num_targets=int(cfg.num_targets),
            exact=bool(cfg.exact),
            speed=bool(cfg.speed),
            speed_repeats=int(cfg.speed_repeats),
            seed=int(cfg.seed),
            out_dir=out,
        )
    except ValueError as exc:
        raise CliError(f"prior-check failed: {describe_exception(exc)}") from None
    report = {**report, "prior_choice": prior_choice, "model_choice": model_choice}
    for key in ("values", "border_values"):  # drawn in the figure; too long for the JSON
        report["targets"].pop(key, None)
    write_json_atomic(out / REPORT_FILE, report)
    _print_summary(report, out)
    return {**report, "out": str(out)}


def _print_summary(report: dict[str, Any], out: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(soft_wrap=True)
    table = Table(title=f"pfn prior-check: {report['prior']}", title_justify="left")
    table.add_column("check")
    table.add_column("result", justify="right")
    table.add_row("task", report["task"])
    targets = report["targets"]
    if targets["kind"] == "continuous":
        q = targets["quantiles"]
        table.add_row(
            "y: 0.1% / 50% / 99.9% quantiles",
            f"{q['0.001']:.4g} / {q['0.5']:.4g} / {q['0.999']:.4g}",
        )
        lo, hi = targets["suggested_range"]
        table.add_row("suggested y range", f"[{lo:.4g}, {hi:.4g}]")
        if "borders" in targets:
            b = targets["borders"]
            table.add_row(
                f"model borders ({targets['num_buckets']} buckets)", f"[{b[0]:.4g}, {b[1]:.4g}]"
            )
            table.add_row("y outside the borders", f"{targets['out_of_range_share']:.3%}")
    elif "model_classes" in targets:
        table.add_row("class ids beyond the model's", f"{targets['out_of_range_share']:.3%}")
    speed = report.get("speed")
    if speed:
        table.add_row(
            f"sampling (batch {speed['batch_size']} x seq {speed['seq_len']})",
            f"{speed['sample_s'] * 1e3:.2f} ms",
        )
        if "step_s" in speed:
            table.add_row(f"training step ({speed['device']})", f"{speed['step_s'] * 1e3:.2f} ms")
            table.add_row("sampling share of a step", f"{speed['data_share']:.1%}")
    exact = report.get("exact")
    if exact:
        verdict = "[green]passes[/]" if exact["calibrated"] else "[red]fails[/]"
        table.add_row(
            "exact posterior formula (PIT)",
            f"{verdict} (KS {exact['ks']['distance']:.4f}, band {exact['ks']['critical']:.4f})",
        )
    elif not report["has_exact"]:
        table.add_row("exact posterior formula", "none (no exact_log_predictive)")
    console.print(table)
    for text in report["warnings"]:
        console.print(f"[yellow]warning:[/] {text}")
    console.print(f"Wrote {out / REPORT_FILE} and {len(report['figures'])} figures in {out}")


main = hydra_app("prior_check", run_prior_check)

if __name__ == "__main__":  # pragma: no cover
    main()
