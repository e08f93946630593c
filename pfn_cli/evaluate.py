"""``pfn eval``: score a run's checkpoint on held-out datasets from its prior.

Loads the newest (or ``step=N``) checkpoint of ``run=RUN_DIR|latest``, or a folder written by
``pfn export`` / ``save_pretrained``, through ``PFNModel.from_pretrained``, and its own prior
(``prior=...`` evaluates on another one); prints a table and writes ``eval.json`` (or
``eval_<prior>.json``; ``eval_rerun.json`` in a saved folder, whose card quotes its
``eval.json``) and figures there. Loading is ``pfn_cli.loading``'s (shared by sample, inspect
and export).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from pfn_cli._app import hydra_app
from pfn_cli.errors import CliError, describe_exception
from pfn_cli.loading import LoadedRun, load_run, resolve_prior
from pfn_cli.reporting import baselines_table, results_table
from pfn_cli.runs import EVAL_FILE, write_json_atomic

log = logging.getLogger("pfn.eval")


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
            baselines=bool(cfg.get("baselines", True)),
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
    table = baselines_table(results)
    if table is not None:
        console.print(table)
    if pit_line:
        console.print(pit_line)
    console.print(
        f"Wrote {out}"
        + (f" and {len(figures)} figures in {Path(figures[0]).parent}" if figures else "")
    )
    return {**results, "out": str(out), "figures": figures}


main = hydra_app("eval", run_eval)

if __name__ == "__main__":  # pragma: no cover
    main()
