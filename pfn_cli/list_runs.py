"""``pfn list-runs``: a table of the local runs (or of W&B runs with ``--project``).

Plain argparse, standard library + Rich: never imports torch, Hydra or wandb for the local
listing, so it answers in well under a second.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from pathlib import Path
from typing import Any

from pfn_cli.errors import CliError, print_error
from pfn_cli.paths import OUTPUTS_ENV, outputs_root
from pfn_cli.runs import RunInfo, iter_run_dirs, load_run_info

PROG = "pfn list-runs"
SORT_KEYS = ("started", "name", "model", "prior", "status", "step", "loss", "excess_nll")


def list_runs(
    root: str | Path | None = None,
    *,
    model: str | None = None,
    prior: str | None = None,
    status: str | None = None,
    sort: str = "started",
    reverse: bool = False,
    limit: int | None = None,
) -> list[RunInfo]:
    """Every run and sweep job under ``root`` (default ./outputs or $PFN_OUTPUTS).

    ``model``/``prior``/``status`` keep rows whose value matches (comma-separated
    alternatives allowed); ``sort`` is one of SORT_KEYS (missing values sort last).
    """
    root = outputs_root(root)
    if not root.exists():
        return []
    if not root.is_dir():
        raise CliError(f"--dir {root}: not a folder; pass the folder that holds your runs.")
    if sort not in SORT_KEYS:
        raise CliError(f"--sort {sort!r} is not valid; choose one of {', '.join(SORT_KEYS)}.")
    runs = [load_run_info(p, root) for p in iter_run_dirs(root)]

    def keep(value: str | None, wanted: str | None) -> bool:
        return wanted is None or (value is not None and value in wanted.split(","))

    runs = [
        r for r in runs if keep(r.model, model) and keep(r.prior, prior) and keep(r.status, status)
    ]
    attr = {"loss": "last_loss"}.get(sort, sort)

    def key(r: RunInfo) -> tuple:
        v = getattr(r, attr)
        missing = v is None or (isinstance(v, float) and math.isnan(v))
        return (missing, v if not missing else 0, r.path)

    runs.sort(key=key, reverse=False)
    if reverse:
        present = [r for r in runs if not key(r)[0]][::-1]
        runs = present + [r for r in runs if key(r)[0]]
    if limit is not None:
        runs = runs[:limit]
    return runs


def _fmt_float(v: float | None, digits: int = 4) -> str:
    if v is None:
        return "-"
    if isinstance(v, float) and math.isnan(v):
        return "nan"
    return f"{v:.{digits}g}"


_STATUS_STYLE = {
    "finished": "green",
    "running": "cyan",
    "interrupted": "yellow",
    "failed": "red",
    "killed": "red",
    "damaged": "red",
}


def render_table(runs: list[RunInfo], root: Path, console: Any = None) -> None:
    from rich.table import Table

    console = console or _console()
    if not runs:
        console.print(
            f"No runs under {root}/. Train one with `pfn train` "
            f"(or pass --dir / set ${OUTPUTS_ENV})."
        )
        return
    table = Table(title=f"pfn runs in {root}/ ({len(runs)})", title_justify="left")
    table.add_column("run", overflow="fold")
    table.add_column("model")
    table.add_column("prior")
    table.add_column("steps", justify="right")
    table.add_column("loss", justify="right")
    table.add_column("excess NLL", justify="right")
    table.add_column("status")
    table.add_column("path", overflow="fold")
    for r in runs:
        steps = f"{r.step if r.step is not None else '?'}/{r.num_steps or '?'}"
        excess = _fmt_float(r.excess_nll)
        if r.excess_nll is not None and r.excess_nll_stderr is not None:
            excess += f" ± {_fmt_float(r.excess_nll_stderr, 2)}"
        name = r.name if r.sweep is None else f"{r.sweep}/{r.name}"
        table.add_row(
            name,
            r.model or "-",
            r.prior or "-",
            steps,
            _fmt_float(r.last_loss),
            excess,
            _status_cell(r),
            r.path,
        )
    console.print(table)


def _status_cell(r: RunInfo) -> str:
    style = _STATUS_STYLE.get(r.status, "")
    text = f"[{style}]{r.status}[/]" if style else r.status
    torn = [f for f in r.damaged if r.status != "damaged"]
    return text + (f" [red](damaged {', '.join(torn)})[/]" if torn else "")


def _console() -> Any:
    from rich.console import Console

    # Pipes and files get wide lines instead of truncated cells.
    return Console(width=None if sys.stdout.isatty() else 1000)


# ---------------------------------------------------------------------------- one sweep
def _params(run: RunInfo) -> dict[str, str]:
    out = {}
    for item in run.overrides:
        key, sep, value = item.partition("=")
        if sep:
            out[key.lstrip("+~")] = value
    return out


def sweep_jobs(sweep_dir: Path) -> tuple[list[RunInfo], list[str]]:
    """A sweep's jobs ranked by objective (lower first; jobs without one last) and the
    parameters that differ between jobs."""
    jobs = [load_run_info(p, sweep_dir.parent) for p in iter_run_dirs(sweep_dir, max_depth=1)]
    params = [_params(j) for j in jobs]
    keys = sorted({k for p in params for k in p})
    varied = [k for k in keys if len({p.get(k) for p in params}) > 1]
    for job, p in zip(jobs, params, strict=True):
        job.extra["params"] = {k: p.get(k) for k in varied}
    jobs.sort(key=lambda j: (j.objective is None or math.isnan(j.objective), j.objective or 0))
    return jobs, varied


def resolve_sweep(spec: str, root: Path) -> Path:
    """A sweep folder from a path or ``latest`` (the newest folder holding sweep jobs)."""
    if spec != "latest":
        path = Path(spec)
        if not path.is_dir():
            raise CliError(f"--sweep {spec}: no such folder; pass a sweep folder or latest.")
        return path
    sweeps = {p.parent for p in iter_run_dirs(root) if p.parent != root and p.parent.parent == root}
    if not sweeps:
        raise CliError(f"--sweep latest: there are no sweeps under {root}/ (pfn train -m ...).")
    return max(sweeps, key=lambda p: p.stat().st_mtime)


def print_sweep(sweep_dir: Path, as_json: bool = False) -> None:
    """The sweep's jobs ranked by objective, varied parameters as columns, best job named."""
    jobs, varied = sweep_jobs(Path(sweep_dir))
    if as_json:
        print(json.dumps([j.to_dict() for j in jobs], indent=2))
        return
    from rich.table import Table

    console = _console()
    table = Table(title=f"sweep {sweep_dir} ({len(jobs)} jobs, lower objective is better)")
    for col in ("rank", "job", "status", "objective", *varied, "path"):
        table.add_column(col, justify="right" if col in ("rank", "objective") else "left")
    for i, j in enumerate(jobs, start=1):
        row = [str(i), j.name, _status_cell(j), _fmt_float(j.objective)]
        table.add_row(*row, *(str(j.extra["params"].get(k, "-")) for k in varied), j.path)
    console.print(table)
    best = jobs[0] if jobs and jobs[0].objective is not None else None
    if best is None:
        console.print("No job of this sweep reported an objective.")
    else:
        console.print(f"Best job: {best.path} (objective {best.objective:.6g})")


# ---------------------------------------------------------------------------- W&B
def list_wandb_runs(
    project: str, entity: str | None = None, tags: list[str] | None = None
) -> list[dict[str, Any]]:
    """Runs with checkpoints in a W&B project, via pfn_transformers.wandb (imports wandb)."""
    try:
        from pfn_transformers.wandb import list_available_models
    except ImportError as exc:
        raise CliError(
            f"--project {project}: listing W&B runs needs "
            "pfn_transformers.wandb.list_available_models, which this installation does not "
            f"provide ({exc}). Use `pfn list-runs` without --project for local runs."
        ) from None
    try:
        models = list_available_models(project=project, entity=entity, tags=tags or None)
    except CliError:
        raise
    except Exception as exc:  # network, credentials, unknown project: say so in one line
        raise CliError(
            f"--project {project}: could not list W&B runs ({type(exc).__name__}: {exc}). "
            "Check the project/entity names, `wandb login` (or WANDB_API_KEY) and the network."
        ) from None
    return [_as_dict(m) for m in models]


def _as_dict(obj: Any) -> dict[str, Any]:
    if isinstance(obj, dict):
        data = dict(obj)
    elif dataclasses.is_dataclass(obj):
        data = dataclasses.asdict(obj)
    elif hasattr(obj, "_asdict"):
        data = obj._asdict()
    else:
        data = {k: v for k, v in vars(obj).items() if not k.startswith("_")}
    return json.loads(json.dumps(data, default=str))


def render_wandb_table(rows: list[dict[str, Any]], project: str) -> None:
    from rich.table import Table

    console = _console()
    if not rows:
        console.print(f"No runs with checkpoints in W&B project {project}.")
        return
    preferred = ["run_name", "run_id", "checkpoint_step", "state", "created_at", "tags", "run_url"]
    cols = [c for c in preferred if any(c in r for r in rows)]
    cols += [c for c in rows[0] if c not in cols and not isinstance(rows[0][c], dict | list)]
    table = Table(title=f"W&B runs in {project} ({len(rows)})", title_justify="left")
    for c in cols:
        table.add_column(c, overflow="fold")
    for r in rows:
        table.add_row(*("-" if r.get(c) is None else str(r.get(c)) for c in cols))
    console.print(table)


# ---------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "List the runs and sweep jobs under outputs/ (or --dir): run name, model and prior "
            "choices, steps done/total, last training loss, excess NLL of the latest "
            "evaluation, status and path. With --project, list W&B runs instead."
        ),
    )
    p.add_argument(
        "--dir",
        default=None,
        help=f"folder holding the runs (default: ${OUTPUTS_ENV} or ./outputs)",
    )
    p.add_argument("--model", help="keep runs with this model choice (comma-separated: a,b)")
    p.add_argument("--prior", help="keep runs with this prior choice (comma-separated: a,b)")
    p.add_argument(
        "--status",
        help="keep runs with this status: running, finished, failed, interrupted, killed, damaged",
    )
    p.add_argument(
        "--sort", default="started", choices=SORT_KEYS, help="sort key (default: started)"
    )
    p.add_argument("--reverse", "-r", action="store_true", help="reverse the order")
    p.add_argument("--limit", "-n", type=int, default=None, help="show at most N runs")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument(
        "--sweep",
        metavar="DIR|latest",
        help="one sweep's jobs ranked by their objective, varied parameters as columns",
    )
    w = p.add_argument_group("W&B (instead of local runs)")
    w.add_argument("--project", help="list the runs of this W&B project (needs wandb access)")
    w.add_argument("--entity", help="W&B entity (team or user) of --project")
    w.add_argument("--tags", nargs="+", help="only W&B runs with these tags")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.project:
            rows = list_wandb_runs(args.project, args.entity, args.tags)
            if args.json:
                print(json.dumps(rows, indent=2))
            else:
                render_wandb_table(rows, args.project)
            return 0
        if args.entity or args.tags:
            raise CliError("--entity and --tags filter W&B runs; pass --project as well.")
        root = outputs_root(args.dir)
        if args.dir is not None and not root.is_dir():
            raise CliError(
                f"--dir {args.dir}: no such folder; pass the folder that holds your runs "
                "(default ./outputs)."
            )
        if args.sweep:
            print_sweep(resolve_sweep(args.sweep, root), as_json=args.json)
            return 0
        runs = list_runs(
            root,
            model=args.model,
            prior=args.prior,
            status=args.status,
            sort=args.sort,
            reverse=args.reverse,
            limit=args.limit,
        )
        if args.json:
            print(json.dumps([r.to_dict() for r in runs], indent=2))
        else:
            render_table(runs, root)
    except CliError as exc:
        print_error(PROG, str(exc))
        return exc.exit_code
    except BrokenPipeError:  # `pfn list-runs | head`
        return 0
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
