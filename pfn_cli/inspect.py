"""``pfn inspect``: see how a trained run does Bayesian inference.

Loads the newest (or ``step=N``) checkpoint of ``run=RUN_DIR|latest`` and runs the analyses
of ``pfn_transformers.interp`` on held-out datasets from the run's prior (``prior=...`` for
another one) and on one context (drawn from the prior or read from a CSV file):

- ``attention``: layers x heads patterns of the context, and each head's share of attention
  to the start token, the earlier data and itself;
- ``lens``: logit lens per layer and context size, scored against the exact posterior;
- ``ablation``: zero-/mean-ablation of every head and MLP;
- ``probes``: ridge probes for the prior's ``posterior_statistics`` (when it declares them);
- ``export``: the context's activation cache as ``cache.pt``.

Writes ``report.json``, the figures and ``cache.pt`` into ``RUN_DIR/inspect/<time>/`` (or
``out=DIR``) and prints a short summary. An analysis that does not apply is recorded as
skipped with the reason; one that fails is recorded with its error, the others still run and
the command exits 1.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from pfn_cli._app import hydra_app
from pfn_cli.csv_context import file_context
from pfn_cli.errors import CliError, describe_exception
from pfn_cli.loading import load_run, resolve_prior
from pfn_cli.runs import write_json_atomic

log = logging.getLogger("pfn.inspect")

ANALYSES = ("attention", "lens", "ablation", "probes", "export")
NEEDS_HELDOUT = ("lens", "ablation", "probes")
REPORT_FILE = "report.json"


class Skip(Exception):
    """The analysis does not apply to this model/prior (the message says why)."""


# ---------------------------------------------------------------------------- config checks
def parse_analyses(value: Any) -> list[str]:
    """``analyses`` as a list of known names (a list, or one name / comma-separated names)."""
    if value is None:
        return list(ANALYSES)
    if isinstance(value, str):
        names = [v.strip() for v in value.split(",") if v.strip()]
    elif isinstance(value, ListConfig | list | tuple):
        names = [str(v).strip() for v in value]
    else:
        raise CliError(f"analyses={value!r} is not valid; give a list such as [lens,probes].")
    if "all" in names:
        return list(ANALYSES)
    unknown = [n for n in names if n not in ANALYSES]
    if unknown or not names:
        raise CliError(
            f"analyses={names}: {', '.join(repr(u) for u in unknown) or 'an empty list'} "
            f"{'is' if len(unknown) == 1 else 'are'} not known; choose from {list(ANALYSES)} "
            "(e.g. analyses=[lens,probes], or analyses=all)."
        )
    return list(dict.fromkeys(names))


def _positive_int(cfg: DictConfig, key: str) -> int:
    value = OmegaConf.select(cfg, key)
    try:
        out = int(value)
    except (TypeError, ValueError):
        out = 0
    if isinstance(value, bool) or out < 1 or out != value:
        raise CliError(f"{key}={value!r} is not valid; it must be a positive int.")
    return out


def _modes(cfg: DictConfig) -> list[str]:
    from pfn_transformers.interp import ABLATION_MODES

    modes = OmegaConf.select(cfg, "ablation.modes", default=list(ABLATION_MODES))
    modes = [modes] if isinstance(modes, str) else [str(m) for m in modes]
    bad = [m for m in modes if m not in ABLATION_MODES]
    if bad or not modes:
        raise CliError(
            f"ablation.modes={modes} is not valid; choose one or more of {list(ABLATION_MODES)}."
        )
    return modes


# ---------------------------------------------------------------------------- the context
def _context(cfg: DictConfig, model: Any, prior: Any) -> tuple[Any, Any, str]:
    """The one context (x [1, n, D] | None, y [1, n]) of attention and export, and its origin."""
    import torch

    from pfn_transformers import sample_batch

    ctx = cfg.context
    source = str(ctx.get("source", "prior"))
    if source == "file":
        if not ctx.get("path"):
            raise CliError("context.source=file needs context.path=FILE.csv (header row, numeric).")
        input_dim = model.config.input_dim if model.supervised else None
        x, y, _ = file_context(ctx, input_dim)
        if model.discrete_y:
            k = int(model.config.d_vocab)
            if not bool((y == y.round()).all()) or int(y.min()) < 0 or int(y.max()) >= k:
                raise CliError(
                    f"context.path={ctx.path}: column {ctx.get('y_column') or 'y'!r} must hold "
                    f"integer class/token ids in [0, {k}) for this model."
                )
            y = y.round().long()
        origin = f"file {ctx.path} ({y.numel()} points)"
    elif source == "prior":
        n = _positive_int(cfg, "context.size")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(cfg.seed) + 1)
            x, y = sample_batch(prior, 1, n)
        x = None if x is None else x[0]
        y = y[0]
        origin = f"prior {type(prior).__name__} ({n} points, seed {int(cfg.seed) + 1})"
    else:
        raise CliError(f"context.source={source!r} is not valid; choose prior or file.")
    dev = model.device
    x = None if x is None else x.unsqueeze(0).to(dev)
    return x, y.unsqueeze(0).to(dev), origin


# ---------------------------------------------------------------------------- analyses
class Inspection:
    """The state the analyses share: model, prior, context, held-out data, output folder."""

    def __init__(self, cfg: DictConfig, loaded: Any, out_dir: Path) -> None:
        self.cfg = cfg
        self.loaded = loaded
        self.model = loaded.model
        self.out_dir = out_dir
        self.prior: Any = None
        self.heldout: Any = None
        self.context: tuple[Any, Any, str] | None = None
        self.batch_size = _positive_int(cfg, "batch_size")
        self.plots = bool(cfg.get("plots", True))
        self.figures: list[str] = []

    def inputs(self) -> tuple[Any, ...]:
        x, y, _ = self.context
        return (y,) if x is None else (x, y)

    def figure(self, draw: Callable[[Path], Path], name: str) -> str | None:
        """Draw one figure; a plotting problem is logged, never fatal (numbers come first)."""
        if not self.plots:
            return None
        try:
            path = str(draw(self.out_dir / name))
        except Exception as exc:  # figures are a bonus; the numbers are in report.json
            log.warning("Could not draw %s: %s", name, exc)
            return None
        self.figures.append(path)
        return path

    # ------------------------------------------------------------------ one per analysis
    def attention(self) -> dict[str, Any]:
        from pfn_transformers.interp import (
            attention_patterns,
            head_attention_summary,
            layout_mask,
            token_roles,
        )
        from pfn_transformers.interp.plots import plot_attention_grid

        inputs = self.inputs()
        s = inputs[-1].shape[1]
        patterns = attention_patterns(self.model, *inputs)  # [L, 1, H, T, T]
        roles = token_roles(self.model, s)
        step = self.loaded.step
        fig = self.figure(
            lambda p: plot_attention_grid(
                patterns[:, 0],
                roles,
                layout_mask(self.model, s),
                p,
                f"attention, step {step}: context from {self.context[2]}",
            ),
            "attention.png",
        )
        return {
            "context": self.context[2],
            "context_size": s,
            "token_roles": roles,
            "averaged_over": "the prediction positions of the context",
            "heads": head_attention_summary(self.model, patterns, s),
            "figure": fig,
        }

    def lens(self) -> dict[str, Any]:
        from pfn_transformers.interp import lens_scores
        from pfn_transformers.interp.plots import plot_lens

        out = lens_scores(self.model, self.heldout, batch_size=self.batch_size)
        out["figure"] = self.figure(
            lambda p: plot_lens(out, p, self._title("logit lens")), "lens.png"
        )
        return out

    def ablation(self) -> dict[str, Any]:
        from pfn_transformers.interp import ablation_scan
        from pfn_transformers.interp.plots import plot_ablation

        out = ablation_scan(
            self.model, self.heldout, modes=_modes(self.cfg), batch_size=self.batch_size
        )
        out["figure"] = self.figure(
            lambda p: plot_ablation(out, p, self._title("ablation")), "ablation.png"
        )
        return out

    def probes(self) -> dict[str, Any]:
        from pfn_transformers.interp import has_posterior_statistics, posterior_probes
        from pfn_transformers.interp.plots import plot_probes

        if not has_posterior_statistics(self.prior):
            raise Skip(
                f"the prior {type(self.prior).__name__} declares no posterior statistics; a "
                "prior opts in with a method posterior_statistics(x, y) -> {name: Tensor "
                "[B, S, k]} (entry n summarising the posterior given the data before n)."
            )
        frac = float(OmegaConf.select(self.cfg, "probes.test_fraction", default=0.5))
        if not 0 < frac < 1:
            raise CliError(f"probes.test_fraction={frac} is not valid; it must be in (0, 1).")
        if self.heldout.num_datasets < 8:
            raise Skip(f"num_datasets={self.heldout.num_datasets}: probes need at least 8.")
        out = posterior_probes(
            self.model,
            self.prior,
            self.heldout,
            batch_size=self.batch_size,
            test_fraction=frac,
            seed=int(self.cfg.seed),
        )
        out["figure"] = self.figure(
            lambda p: plot_probes(out, p, self._title("posterior probes (held-out R²)")),
            "probes.png",
        )
        return out

    def export(self) -> dict[str, Any]:
        from pfn_transformers.interp import export_activations

        path = export_activations(self.model, self.out_dir / "cache.pt", *self.inputs())
        return {
            "path": str(path),
            "context": self.context[2],
            "load_with": "torch.load(path, weights_only=True)",
            "size_bytes": path.stat().st_size,
        }

    def _title(self, what: str) -> str:
        return f"{what}, step {self.loaded.step}, {self.heldout.prior_name}"


# ---------------------------------------------------------------------------- the task
def _fresh_dir(parent: Path) -> Path:
    """``parent/<time>`` not used yet (a second inspection in the same second gets a suffix)."""
    stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
    path, k = parent / stamp, 1
    while path.exists():
        path, k = parent / f"{stamp}_{k}", k + 1
    return path


def run_inspect(cfg: DictConfig) -> dict[str, Any]:
    """Run the chosen analyses on one run; returns the report (also written as JSON)."""
    analyses = parse_analyses(cfg.get("analyses"))
    num_datasets = _positive_int(cfg, "num_datasets")
    loaded = load_run(cfg.get("run"), cfg.get("step"), cfg.outputs_root, cfg.get("device", "auto"))
    if "ablation" in analyses:
        _modes(cfg)  # checked before any work (it imports the library, so after the run)
    import torch

    from pfn_transformers.evaluation import head_kind
    from pfn_transformers.interp import draw_heldout

    t_start = time.perf_counter()
    model = loaded.model
    model.eval()
    seq_len = _positive_int(cfg, "seq_len") if cfg.get("seq_len") else loaded.seq_len
    out_dir = Path(str(cfg.out)) if cfg.get("out") else _fresh_dir(loaded.run_dir / "inspect")
    state = Inspection(cfg, loaded, out_dir)
    needs_prior = any(a in NEEDS_HELDOUT for a in analyses) or (
        str(cfg.context.get("source", "prior")) == "prior"
        and any(a in ("attention", "export") for a in analyses)
    )
    prior_choice = None
    if needs_prior:
        state.prior, prior_choice, _ = resolve_prior(cfg, loaded)
    report: dict[str, Any] = {
        "run": str(loaded.run_dir),
        "checkpoint": str(loaded.checkpoint),
        "step": loaded.step,
        "model_kind": getattr(model.config, "kind", type(model.config).__name__),
        "head": head_kind(model),
        "prior": None if state.prior is None else type(state.prior).__name__,
        "prior_choice": prior_choice,
        "analyses": analyses,
        "skipped": {},
        "errors": {},
        "timings_s": {},
    }
    try:
        with torch.inference_mode():
            if any(a in ("attention", "export") for a in analyses):
                state.context = _context(cfg, model, state.prior)
            if any(a in NEEDS_HELDOUT for a in analyses):
                t0 = time.perf_counter()
                state.heldout = draw_heldout(
                    model,
                    state.prior,
                    num_datasets=num_datasets,
                    seq_len=seq_len,
                    seed=int(cfg.seed),
                )
                report["timings_s"]["heldout"] = round(time.perf_counter() - t0, 3)
                report.update(
                    num_datasets=num_datasets,
                    seq_len=seq_len,
                    metric=state.heldout.metric,
                    metric_description=state.heldout.description,
                )
    except (ValueError, RuntimeError) as exc:
        raise CliError(f"inspect could not prepare its data: {describe_exception(exc)}") from None
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in analyses:
        t0 = time.perf_counter()
        try:
            with torch.inference_mode():
                report[name] = getattr(state, name)()
        except Skip as exc:
            report["skipped"][name] = str(exc)
        except CliError:
            raise
        except Exception as exc:  # one failing analysis must not lose the others
            log.debug("analysis %s failed", name, exc_info=True)
            report["errors"][name] = f"{type(exc).__name__}: {describe_exception(exc)}"
        report["timings_s"][name] = round(time.perf_counter() - t0, 3)
    report["timings_s"]["total"] = round(time.perf_counter() - t_start, 3)
    report["figures"] = state.figures
    report_path = out_dir / REPORT_FILE
    write_json_atomic(report_path, report)
    from pfn_cli.inspect_summary import print_summary

    print_summary(report, report_path)
    if report["errors"]:
        raise CliError(
            f"{len(report['errors'])} analysis(es) failed: "
            + "; ".join(f"{k}: {v}" for k, v in report["errors"].items())
            + f". The other results are in {report_path}.",
            exit_code=1,
        )
    return {**report, "out_dir": str(out_dir), "report_path": str(report_path)}


main = hydra_app("inspect", run_inspect)

if __name__ == "__main__":  # pragma: no cover
    main()
