"""``pfn eval``: score a run's checkpoint on held-out datasets from its prior.

Loads the newest (or ``step=N``) checkpoint of ``run=RUN_DIR|latest`` and the run's own prior
(``prior=...`` evaluates on another one), prints a table, writes ``eval.json`` (or
``eval_<prior>.json``) and figures into the run directory.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from pfn_cli._app import hydra_app
from pfn_cli.compat import check_fit
from pfn_cli.errors import CliError, describe_exception
from pfn_cli.resolvers import instantiate_prior, register_resolvers
from pfn_cli.runs import (
    CHECKPOINT_DIR,
    EVAL_FILE,
    HYDRA_DIR,
    checkpoint_steps,
    read_json,
    resolve_run,
    write_json_atomic,
)

log = logging.getLogger("pfn.eval")


@dataclass
class LoadedRun:
    run_dir: Path
    run_cfg: DictConfig | None
    model: Any
    metadata: Any
    checkpoint: Path
    model_choice: str | None
    prior_choice: str | None


def load_run(
    run: Any, step: Any, outputs_root: Any, device: str = "auto", *, what: str = "run"
) -> LoadedRun:
    """Resolve ``run`` (path or ``latest``), load its checkpoint and saved config."""
    run_dir = resolve_run(None if run is None else str(run), Path(str(outputs_root)), what=what)
    ckpt_dir = run_dir / CHECKPOINT_DIR
    steps = checkpoint_steps(run_dir)  # cheap checks first: the library imports torch
    if not steps:
        raise CliError(
            f"{what}={run_dir}: the run has no checkpoint (no step-N.pt in {ckpt_dir}); it "
            "stopped before its first save. Train it further with `pfn train resume=...` or "
            "pick another run (`pfn list-runs`)."
        )
    if step is not None:
        try:
            step = int(step)
        except (TypeError, ValueError):
            raise CliError(f"step={step!r} is not valid; pass an integer step or null.") from None
        if step not in steps:
            raise CliError(
                f"step={step}: {run_dir.name} has no checkpoint for step {step}; available "
                f"steps: {', '.join(map(str, steps))} (step=null takes the newest)."
            )
    from pfn_transformers import checkpointing

    ckpt = checkpointing.find_checkpoint(ckpt_dir, step)
    try:
        model, _, meta = checkpointing.load_checkpoint(ckpt, device=device)
    except checkpointing.CheckpointError as exc:
        raise CliError(
            f"{what}={run_dir}: cannot load checkpoint {ckpt.name}: {exc}. Pick another "
            f"checkpoint with step=N (available: {', '.join(sorted(p.name for p in ckpt_dir.glob('step-*.pt')))})."
        ) from None
    except ValueError as exc:  # e.g. an unavailable device
        raise CliError(f"device={device}: {exc}") from None
    run_cfg = None
    cfg_path = run_dir / HYDRA_DIR / "config.yaml"
    if cfg_path.is_file():
        run_cfg = OmegaConf.load(cfg_path)
    status = read_json(run_dir / "status.json") or {}
    return LoadedRun(run_dir, run_cfg, model, meta, ckpt, status.get("model"), status.get("prior"))


def resolve_prior(cfg: DictConfig, loaded: LoadedRun) -> tuple[Any, str | None, bool]:
    """The prior to evaluate/sample on: ``cfg.prior`` when given, else the run's own.

    Returns (prior, choice name, is_the_runs_own_prior).
    """
    from hydra.core.hydra_config import HydraConfig

    register_resolvers()
    if cfg.get("prior") is not None:
        choice = None
        if HydraConfig.initialized():
            choice = HydraConfig.get().runtime.choices.get("prior")
        prior = instantiate_prior(cfg.prior, choice or "override")
        own = False
    else:
        if loaded.run_cfg is None or loaded.run_cfg.get("prior") is None:
            raise CliError(
                f"run={loaded.run_dir}: the run has no saved prior config "
                f"({HYDRA_DIR}/config.yaml); choose one with prior=NAME."
            )
        choice = loaded.prior_choice
        prior = instantiate_prior(loaded.run_cfg.prior, choice)
        own = True
    check_fit(
        loaded.metadata.model_config.task,
        prior,
        model_choice=loaded.model_choice,
        prior_choice=choice,
        model_label=f"the model of {loaded.run_dir.name}",
        size_hint="Choose a prior of the sizes the run was trained for.",
    )
    return prior, choice, own


def _run_seq_len(loaded: LoadedRun) -> int:
    tc = loaded.metadata.training_config or {}
    if isinstance(tc, dict) and tc.get("seq_len"):
        return int(tc["seq_len"])
    if loaded.run_cfg is not None:
        return int(OmegaConf.select(loaded.run_cfg, "training.seq_len", default=64))
    return 64


def run_eval(cfg: DictConfig) -> dict[str, Any]:
    """Evaluate one run; returns the results dict (also written as JSON)."""
    loaded = load_run(cfg.get("run"), cfg.get("step"), cfg.outputs_root, cfg.get("device", "auto"))
    from pfn_transformers.evaluation import evaluate

    prior, choice, own = resolve_prior(cfg, loaded)
    seq_len = int(cfg.get("seq_len") or _run_seq_len(loaded))
    log.info(
        "Evaluating %s (step %d) on %s: %d datasets of %d positions",
        loaded.run_dir,
        loaded.metadata.step,
        type(prior).__name__,
        cfg.num_datasets,
        seq_len,
    )
    try:
        results = evaluate(
            loaded.model,
            prior,
            num_datasets=int(cfg.num_datasets),
            seq_len=seq_len,
            batch_size=int(cfg.batch_size),
            seed=int(cfg.seed),
        )
    except ValueError as exc:
        raise CliError(f"evaluation failed: {describe_exception(exc)}") from None
    fig_dir = loaded.run_dir / ("figures" if own else f"figures_{choice or 'prior'}")
    from pfn_cli.calibration import add_calibration

    pit_figures, pit_line = add_calibration(
        results, loaded.model, prior, cfg, seq_len=seq_len,
        fig_dir=fig_dir if cfg.get("plots", True) else None,
    )  # fmt: skip
    results = {
        **results,
        "run": str(loaded.run_dir),
        "checkpoint": str(loaded.checkpoint),
        "step": loaded.metadata.step,
        "prior_choice": choice,
        "model_choice": loaded.model_choice,
    }
    if cfg.get("out"):
        out = Path(str(cfg.out))
    else:
        name = EVAL_FILE if own else f"eval_{choice or 'prior'}.json"
        out = loaded.run_dir / name
    write_json_atomic(out, results)
    figures: list[str] = list(pit_figures)
    if cfg.get("plots", True):
        from pfn_transformers.evaluation import plot_evaluation

        try:
            figures += [str(p) for p in plot_evaluation(results, fig_dir)]
        except Exception as exc:  # figures are a bonus; the numbers are written already
            log.warning("Could not draw figures: %s", exc)
    from rich.console import Console

    console = Console(soft_wrap=True)
    console.print(f"[bold]{loaded.run_dir}[/] @ step {loaded.metadata.step}")
    console.print(results_table(results, title=None))
    if pit_line:
        console.print(pit_line)
    console.print(
        f"Wrote {out}"
        + (f" and {len(figures)} figures in {Path(figures[0]).parent}" if figures else "")
    )
    return {**results, "out": str(out), "figures": figures}


# ---------------------------------------------------------------------------- table
_ROWS = (
    ("excess_nll", "excess NLL (PFN - exact)"),
    ("nll", "NLL (PFN)"),
    ("exact_nll", "NLL (exact posterior)"),
    ("prior_predictive_nll", "NLL (prior predictive)"),
    ("floor_nll", "NLL floor (bucket borders)"),
    ("floor_excess_nll", "floor excess NLL"),
    ("kl", "KL(exact || PFN)"),
    ("mse", "MSE of predictive mean"),
    ("exact_mse", "MSE (exact mean)"),
    ("accuracy", "accuracy"),
    ("exact_accuracy", "accuracy (exact)"),
)


def _fmt(stat: Any) -> str | None:
    if isinstance(stat, dict):
        mean, se = stat.get("mean"), stat.get("stderr")
        if mean is None:
            return None
        text = f"{mean:.4f}"
        if se is not None and not (isinstance(se, float) and math.isnan(se)):
            text += f" ± {se:.4f}"
        return text
    if isinstance(stat, int | float) and not isinstance(stat, bool):
        return f"{stat:.4f}"
    return None


def results_table(results: dict[str, Any], title: str | None = "Evaluation") -> Any:
    """A Rich table of the headline numbers of an ``evaluate`` result."""
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    table.add_column("metric")
    table.add_column("mean ± stderr", justify="right")
    for key, label in _ROWS:
        if key == "kl" and results.get("kl") == results.get("excess_nll"):
            continue
        text = _fmt(results.get(key))
        if text is not None:
            table.add_row(label, text)
    cov = results.get("coverage")
    if isinstance(cov, dict):
        for level, stat in cov.items():
            text = _fmt(stat)
            if text is not None:
                table.add_row(f"coverage of {float(level):.0%} interval", text)
    beats = results.get("beats_prior_predictive")
    if beats is not None:
        table.add_row("beats prior predictive", "[green]yes[/]" if beats else "[red]no[/]")
    table.caption = (
        f"{results.get('num_datasets', '?')} datasets x {results.get('seq_len', '?')} positions, "
        f"prior {results.get('prior', '?')}; nats"
    )
    return table


main = hydra_app("eval", run_eval)

if __name__ == "__main__":  # pragma: no cover
    main()
