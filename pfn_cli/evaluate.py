"""``pfn eval``: score a run's checkpoint on held-out datasets from its prior.

Loads the newest (or ``step=N``) checkpoint of ``run=RUN_DIR|latest``, or a folder written by
``pfn export`` / ``save_pretrained``, through ``PFNModel.from_pretrained``, and its own prior
(``prior=...`` evaluates on another one); prints a table and writes ``eval.json`` (or
``eval_<prior>.json``; ``eval_rerun.json`` in a saved folder, whose card quotes its
``eval.json``) and figures there. ``load_run`` is shared by sample, inspect and export.
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
    EVAL_FILE,
    HYDRA_DIR,
    checkpoint_steps,
    resolve_run,
    write_json_atomic,
)

log = logging.getLogger("pfn.eval")


@dataclass
class LoadedRun:
    """A trained model as ``pfn eval/sample/inspect/export`` see it: a run folder's checkpoint
    or a saved (``pfn export``) folder, with what its provenance says about it."""

    run_dir: Path  # the run folder or the saved folder (outputs land there)
    model: Any
    step: int | None
    checkpoint: Path  # the checkpoint file, or the saved folder's weights
    model_choice: str | None
    prior_choice: str | None
    prior_config: dict[str, Any] | None
    seq_len: int
    exported: bool  # a saved folder: its shipped eval.json is never overwritten


def resolve_source(run: Any, outputs_root: Any, what: str = "run") -> Path:
    """``run=`` as a folder: a saved (``pfn export`` / save_pretrained) folder, a run
    folder, or ``latest`` (the newest run under ``outputs_root``)."""
    from pfn_transformers.hub import is_pretrained_dir

    if run is not None and is_pretrained_dir(Path(str(run)).expanduser()):
        return Path(str(run)).expanduser()
    return resolve_run(None if run is None else str(run), Path(str(outputs_root)), what=what)


def load_run(
    run: Any, step: Any, outputs_root: Any, device: str = "auto", *, what: str = "run"
) -> LoadedRun:
    """Resolve ``run`` (a run folder, a saved folder or ``latest``) and load its model with
    ``PFNModel.from_pretrained`` (the same call a notebook makes)."""
    path = resolve_source(run, outputs_root, what)
    if step is not None:
        try:
            step = int(step)
        except (TypeError, ValueError):
            raise CliError(f"step={step!r} is not valid; pass an integer step or null.") from None
    from pfn_transformers import checkpointing
    from pfn_transformers.hub import PretrainedError
    from pfn_transformers.model.pfn import PFNModel

    try:
        model = PFNModel.from_pretrained(path, step=step, device=device)
    except checkpointing.CheckpointNotFoundError as exc:
        raise CliError(f"{what}={path}: {exc}") from None
    except PretrainedError as exc:
        steps = checkpoint_steps(path)
        hint = f" Pick another checkpoint with step=N (available: {steps})." if steps else ""
        raise CliError(f"{what}={path}: cannot load it: {exc}.{hint}") from None
    except ValueError as exc:  # e.g. an unavailable device
        raise CliError(f"device={device}: {exc}") from None
    prov = model.provenance or {}
    origin, prior = prov.get("origin") or {}, prov.get("prior") or {}
    training = prov.get("training") or {}
    exported = origin.get("kind") == "pretrained"
    return LoadedRun(
        run_dir=path,
        model=model,
        step=training.get("steps"),
        checkpoint=path / "model.safetensors" if exported else Path(origin["checkpoint"]),
        model_choice=prov.get("model_choice"),
        prior_choice=prior.get("choice"),
        prior_config=prior.get("config"),
        seq_len=int(training.get("seq_len") or 64),
        exported=exported,
    )


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
        if loaded.prior_config is None:
            raise CliError(
                f"run={loaded.run_dir}: no prior config was saved with it "
                f"({HYDRA_DIR}/config.yaml of a run, config.json of a saved folder); choose "
                "one with prior=NAME."
            )
        choice = loaded.prior_choice
        prior = instantiate_prior(OmegaConf.create(loaded.prior_config), choice)
        own = True
    check_fit(
        loaded.model.task,
        prior,
        model_choice=loaded.model_choice,
        prior_choice=choice,
        model_label=f"the model of {loaded.run_dir.name}",
        size_hint="Choose a prior of the sizes the run was trained for.",
    )
    return prior, choice, own


def output_name(loaded: LoadedRun, own: bool, choice: str | None, stem: str) -> str:
    """``eval.json``/``figures`` for a run's own prior, ``eval_<prior>.json`` for another;
    a saved folder keeps the eval.json its card quotes (``eval_rerun.json`` instead)."""
    if own:
        return f"{stem}_rerun" if loaded.exported else stem
    return f"{stem}_{choice or 'prior'}"


def run_eval(cfg: DictConfig) -> dict[str, Any]:
    """Evaluate one run; returns the results dict (also written as JSON)."""
    loaded = load_run(cfg.get("run"), cfg.get("step"), cfg.outputs_root, cfg.get("device", "auto"))
    from pfn_transformers.evaluation import evaluate

    prior, choice, own = resolve_prior(cfg, loaded)
    seq_len = int(cfg.get("seq_len") or loaded.seq_len)
    if loaded.model.config.trained_seq_len is None:  # saved before the model recorded it
        loaded.model.config.trained_seq_len = loaded.seq_len
    log.info(
        "Evaluating %s (step %s) on %s: %d datasets of %d positions",
        loaded.run_dir,
        loaded.step,
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
    fig_dir = loaded.run_dir / output_name(loaded, own, choice, "figures")
    from pfn_cli.calibration import add_calibration

    pit_figures, pit_line = add_calibration(
        results, loaded.model, prior, cfg, seq_len=seq_len,
        fig_dir=fig_dir if cfg.get("plots", True) else None,
    )  # fmt: skip
    results = {
        **results,
        "run": str(loaded.run_dir),
        "checkpoint": str(loaded.checkpoint),
        "step": loaded.step,
        "prior_choice": choice,
        "model_choice": loaded.model_choice,
    }
    if cfg.get("out"):
        out = Path(str(cfg.out))
    else:
        out = loaded.run_dir / (output_name(loaded, own, choice, EVAL_FILE[:-5]) + ".json")
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
    console.print(f"[bold]{loaded.run_dir}[/] @ step {loaded.step}")
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
    length = results.get("length")
    if isinstance(length, dict):  # evaluated past the trained length: the two parts apart
        t = length["trained_seq_len"]
        for part, where in (("within", f"n < {t}, trained"), ("beyond", f"n >= {t}, beyond")):
            block = length[part]
            key = "excess_nll" if "excess_nll" in block else "nll"
            text = _fmt(block.get(key))
            if text is not None:
                table.add_row(f"{dict(_ROWS)[key]} ({where})", text)
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
