"""``pfn sample``: draw samples from a trained run.

Unsupervised models: autoregressive rollouts (optionally continuing a prefix drawn from the
prior or read from a file). Supervised models: posterior-predictive samples at query points
for a context drawn from the prior or read from a CSV file. Writes ``samples.pt``,
``samples.csv`` and ``samples.png`` into ``RUN_DIR/samples/<timestamp>/`` (or ``out=DIR``).
"""

from __future__ import annotations

import csv
import logging
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from pfn_cli._app import hydra_app
from pfn_cli.csv_context import file_context
from pfn_cli.errors import CliError, describe_exception
from pfn_cli.loading import load_run, resolve_prior

log = logging.getLogger("pfn.sample")


# ---------------------------------------------------------------------------- contexts
def _query_grid(prior: Any, x_ctx, m: int):
    import torch

    lo = getattr(prior, "x_low", None)
    hi = getattr(prior, "x_high", None)
    if lo is None or hi is None:
        lo, hi = float(x_ctx.min()), float(x_ctx.max())
        pad = 0.1 * (hi - lo or 1.0)
        lo, hi = lo - pad, hi + pad
    return torch.linspace(float(lo), float(hi), m).unsqueeze(-1)


# ---------------------------------------------------------------------------- sampling
def run_sample(cfg: DictConfig) -> dict[str, Any]:
    """Draw samples from one run; returns paths and shapes."""
    loaded = load_run(cfg.get("run"), cfg.get("step"), cfg.outputs_root, cfg.get("device", "auto"))
    import torch

    model = loaded.model
    mcfg = model.config
    supervised = model.task.supervised
    input_dim = getattr(mcfg, "input_dim", None) if supervised else None
    ctx = cfg.context
    source = str(ctx.get("source", "prior"))
    if source not in ("prior", "file", "none"):
        raise CliError(f"context.source={source!r} is not valid; choose prior, file or none.")
    if source == "none" and supervised:
        raise CliError("context.source=none: a supervised model needs a context (prior or file).")
    if source == "file" and not ctx.get("path"):
        raise CliError("context.source=file needs context.path=FILE.csv (header row, numeric).")
    num_samples = int(cfg.num_samples)
    if num_samples < 1:
        raise CliError(f"num_samples={num_samples} is not valid; it must be a positive int.")
    temperature = float(cfg.temperature)
    if not temperature > 0:
        raise CliError(f"temperature={temperature} is not valid; it must be > 0.")
    prior = None
    if source == "prior":
        prior, _, _ = resolve_prior(cfg, loaded)

    out_dir = (
        Path(str(cfg.out))
        if cfg.get("out")
        else (loaded.run_dir / "samples" / time.strftime("%Y-%m-%d_%H-%M-%S"))
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(int(cfg.seed))
    device = next(model.parameters()).device
    record: dict[str, Any] = {
        "run": str(loaded.run_dir),
        "checkpoint": str(loaded.checkpoint),
        "step": loaded.step,
        "temperature": temperature,
        "num_samples": num_samples,
    }
    try:
        if supervised:
            record.update(
                _sample_supervised(
                    cfg, model, prior, input_dim, num_samples, temperature, device, loaded.seq_len
                )
            )
        else:
            record.update(
                _sample_unsupervised(cfg, loaded, model, prior, num_samples, temperature, device)
            )
    except (ValueError, RuntimeError) as exc:
        raise CliError(f"sampling failed: {describe_exception(exc)}") from None

    pt_path = out_dir / "samples.pt"
    torch.save({k: v for k, v in record.items()}, pt_path)
    csv_path = out_dir / "samples.csv"
    _write_csv(csv_path, record, supervised)
    files = [str(pt_path), str(csv_path)]
    if cfg.get("plot", True):
        try:
            files.append(str(_plot(out_dir / "samples.png", record, supervised)))
        except Exception as exc:  # the samples are written already
            log.warning("Could not draw the figure: %s", exc)
    shape = tuple(record["samples"].shape)
    print(
        f"Wrote {shape[0]} samples {list(shape)} to {out_dir} ({', '.join(Path(f).name for f in files)})"
    )
    return {"out_dir": str(out_dir), "files": files, "shape": list(shape)}


def warn_past_trained(what: str, length: int, trained: int) -> None:
    """Say so when sampling runs past the sequence length the model was trained on: the
    predictions there are extrapolation (no loss ever reached those positions)."""
    if length > trained:
        log.warning(
            "%s needs %d positions but the model was trained on sequences of %d; draws past "
            "position %d are extrapolation. Shorten it to stay within what was trained.",
            what,
            length,
            trained,
            trained,
        )


def _num_query(ctx: DictConfig, n: int, trained: int) -> int:
    """context.num_query, or by default what fits after n context points in the trained
    length (joint draws make every query a position of the sequence)."""
    m = ctx.get("num_query")
    m = max(1, trained - n) if m is None else int(m)
    if n < 0 or m < 1:
        raise CliError(f"context.n={n}, context.num_query={m}: need n >= 0 and num_query >= 1.")
    return m


def _given_hyperparameters(cfg: DictConfig, mcfg: Any) -> dict[str, float]:
    """``hyperparameters`` (name -> value) checked against the model's ``condition_on``."""
    given = {str(k): v for k, v in (cfg.get("hyperparameters") or {}).items()}
    names = list(getattr(mcfg, "condition_on", None) or [])
    from_prior = bool(cfg.get("hyperparameters_from_prior", False))
    if (given or from_prior) and not names:
        raise CliError(
            "hyperparameters / hyperparameters_from_prior: this model was trained without "
            "condition_on, so it takes no hyperparameters; leave them out."
        )
    if from_prior and str(cfg.context.source) != "prior":
        raise CliError(
            f"hyperparameters_from_prior=true needs context.source=prior (the prior's draw "
            f"reports them), not {cfg.context.source!r}."
        )
    unknown = sorted(set(given) - set(names))
    if unknown:
        raise CliError(
            f"hyperparameters {unknown} are not valid; this model conditions on {names}."
        )
    out = {}
    for name, value in given.items():
        try:
            out[name] = float(value)
        except (TypeError, ValueError):
            raise CliError(
                f"hyperparameters.{name}={value!r} is not valid; give a number."
            ) from None
    return out


def _sample_supervised(cfg, model, prior, input_dim, num_samples, temperature, device, trained):
    import torch

    from pfn_transformers import sample_batch
    from pfn_transformers.data.protocol import batch_source

    ctx = cfg.context
    mcfg = model.config
    hypers = _given_hyperparameters(cfg, mcfg)
    if str(ctx.source) == "file":
        x_ctx, y_ctx, x_query = file_context(ctx, input_dim)
        y_true = None
        if x_query is None and input_dim == 1:
            x_query = _query_grid(prior, x_ctx, _num_query(ctx, x_ctx.shape[0], trained))
        elif x_query is None:
            x_query = x_ctx
    else:
        n = int(ctx.n)
        m = _num_query(ctx, n, trained)
        if cfg.get("hyperparameters_from_prior", False):
            try:
                x, y, drawn = batch_source(prior).sample_with_params(1, n + m)
            except TypeError as exc:  # a prior whose draws do not report hyperparameters
                raise CliError(f"hyperparameters_from_prior=true: {exc}") from None
            hypers = {**{k: float(v.reshape(-1)[0]) for k, v in drawn.items()}, **hypers}
            hypers = {k: v for k, v in hypers.items() if k in getattr(mcfg, "condition_on", [])}
        else:
            x, y = sample_batch(prior, 1, n + m)
        x_ctx, y_ctx = x[0, :n], y[0, :n]
        x_query, y_true = x[0, n:], y[0, n:]
        if input_dim == 1:
            order = torch.argsort(x_query[:, 0])
            x_query, y_true = x_query[order], y_true[order]
    n, m = x_ctx.shape[0], x_query.shape[0]
    warn_past_trained(f"{n} context points + {m} query points", n + m, trained)
    ydtype = torch.long if getattr(model, "discrete_y", False) else torch.float32
    samples = model.sample_posterior_predictive(
        x_ctx.unsqueeze(0).to(device),
        y_ctx.to(ydtype).unsqueeze(0).to(device),
        x_query.unsqueeze(0).to(device),
        num_samples=num_samples,
        temperature=temperature,
        **({"hyperparameters": hypers} if hypers else {}),
    )[:, 0].cpu()
    return {
        "kind": "posterior_predictive",
        "hyperparameters": hypers,
        "x_context": x_ctx,
        "y_context": y_ctx,
        "x_query": x_query,
        "y_query_true": y_true,
        "samples": samples,  # [num_samples, num_query]
    }


def _sample_unsupervised(cfg, loaded, model, prior, num_samples, temperature, device):
    from pfn_transformers import sample_batch

    ctx = cfg.context
    seq_len = int(cfg.get("seq_len") or loaded.seq_len)
    warn_past_trained(f"seq_len={seq_len}", seq_len, loaded.seq_len)
    prefix = None
    if str(ctx.source) == "prior" and int(ctx.n) > 0:
        _, y = sample_batch(prior, 1, int(ctx.n))
        prefix = y[0]
    elif str(ctx.source) == "file":
        _, prefix, _ = file_context(ctx, None)
    if prefix is not None:
        if getattr(model, "discrete_y", False):
            prefix = prefix.round().long()
        if prefix.numel() > seq_len:
            raise CliError(
                f"the prefix has {prefix.numel()} values but seq_len={seq_len}; raise seq_len "
                "or shorten the context."
            )
    samples = model.generate(num_samples, seq_len, temperature=temperature, prefix=prefix)
    return {"kind": "rollout", "prefix": prefix, "samples": samples.cpu()}  # [num_samples, seq_len]


def _write_csv(path: Path, record: dict[str, Any], supervised: bool) -> None:
    samples = record["samples"]
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        if supervised:
            xq = record["x_query"]
            d = xq.shape[-1]
            w.writerow(["sample", "query", *[f"x{i}" for i in range(d)], "y"])
            for s in range(samples.shape[0]):
                for j in range(samples.shape[1]):
                    w.writerow([s, j, *(f"{v:.6g}" for v in xq[j].tolist()), _num(samples[s, j])])
        else:
            w.writerow(["sample", *[f"t{t}" for t in range(samples.shape[1])]])
            for s in range(samples.shape[0]):
                w.writerow([s, *(_num(v) for v in samples[s])])


def _num(v: Any) -> str:
    v = v.item() if hasattr(v, "item") else v
    return str(v) if isinstance(v, int) else f"{v:.6g}"


def _plot(path: Path, record: dict[str, Any], supervised: bool) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = record["samples"].float()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    if supervised:
        xq = record["x_query"]
        xs = xq[:, 0] if xq.shape[-1] == 1 else range(xq.shape[0])
        for s in range(samples.shape[0]):
            ax.plot(
                xs,
                samples[s],
                "-",
                color="C0",
                alpha=max(0.05, 1.0 / samples.shape[0] ** 0.5),
                lw=1,
            )
        if xq.shape[-1] == 1:
            ax.scatter(
                record["x_context"][:, 0], record["y_context"], color="k", zorder=3, label="context"
            )
            if record.get("y_query_true") is not None:
                ax.scatter(
                    xs, record["y_query_true"], s=8, color="C3", zorder=3, label="held-out truth"
                )
            ax.set_xlabel("x")
        else:
            ax.set_xlabel("query index")
        ax.set_ylabel("y")
        ax.set_title(
            f"Posterior-predictive samples ({samples.shape[0]} draws, step {record['step']})"
        )
        ax.legend(loc="best")
    else:
        t = range(samples.shape[1])
        discrete = not record["samples"].dtype.is_floating_point
        for s in range(min(samples.shape[0], 16)):
            offset = 0.04 * s if discrete else 0.0  # separate overlapping token paths
            ax.plot(t, samples[s] + offset, "-o", ms=2, lw=1, alpha=0.7)
        prefix = record.get("prefix")
        if prefix is not None:
            ax.axvspan(-0.5, prefix.numel() - 0.5, color="0.9", label="prefix")
            ax.legend(loc="best")
        if discrete:
            from matplotlib.ticker import MaxNLocator

            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("position")
        ax.set_ylabel("y")
        ax.set_title(f"Rollouts ({samples.shape[0]} draws, step {record['step']})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


main = hydra_app("sample", run_sample)

if __name__ == "__main__":  # pragma: no cover
    main()
