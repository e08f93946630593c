"""The ``pfn`` dispatcher: ``pfn SUBCOMMAND ...``.

``train``, ``eval``, ``sample``, ``inspect``, ``export`` and ``prior-check`` are Hydra apps: the
dispatcher removes the
subcommand word and hands the rest of argv to Hydra untouched, so overrides,
``-m/--multirun``, ``--cfg``, ``--info``, ``--config-dir`` and shell completion behave as in
any Hydra app.
``list-runs`` is plain argparse. This module imports nothing heavy (no torch, no Hydra).
"""

from __future__ import annotations

import difflib
import importlib
import os
import sys
from collections.abc import MutableMapping

# subcommand -> (module with `main`, one-line description, what it takes)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "train": (
        "pfn_cli.train",
        "train a PFN on a prior, then evaluate it (Hydra app, conf/train.yaml)",
        "[model=..] [prior=..] [training=..] [key=value ..] [-m] [resume=RUN_DIR] [init_from=..]",
    ),
    "eval": (
        "pfn_cli.evaluate",
        "evaluate a run's checkpoint against the exact posterior (Hydra app, conf/eval.yaml)",
        "run=RUN_DIR|SAVED_DIR|latest [step=N] [prior=..] [num_datasets=N] [key=value ..]",
    ),
    "sample": (
        "pfn_cli.sample",
        "draw rollouts or posterior-predictive samples from a run (Hydra app, conf/sample.yaml)",
        "run=RUN_DIR|SAVED_DIR|latest [num_samples=N] [context.source=prior|file] [key=value ..]",
    ),
    "inspect": (
        "pfn_cli.inspect",
        "see how a run does inference: attention, logit lens, ablation, probes (conf/inspect.yaml)",
        "run=RUN_DIR|latest [step=N] [analyses=[..]] [context.source=prior|file] [context.size=N]",
    ),
    "export": (
        "pfn_cli.export",
        "write a run as a folder that travels: safetensors + config + model card, or ONNX",
        "run=RUN_DIR|latest out=DIR [step=N] [format=pretrained|onnx]",
    ),
    "prior-check": (
        "pfn_cli.prior_check",
        "look at a prior before training: draws, y vs bucket borders, speed, exact-formula PIT",
        "prior=.. [model=..] [training=..] [num_datasets=N] [out=DIR] [key=value ..]",
    ),
    "list-runs": (
        "pfn_cli.list_runs",
        "list the runs under outputs/ (or W&B runs with --project)",
        "[--dir DIR] [--model M] [--prior P] [--status S] [--sort KEY] [--json] [--project P]",
    ),
}
HYDRA_COMMANDS = ("train", "eval", "sample", "inspect", "export", "prior-check")


def usage() -> str:
    width = max(len(c) for c in COMMANDS)
    lines = [
        "usage: pfn COMMAND [ARGS ...]",
        "",
        "Train, evaluate and sample Prior-Fitted Networks (pfn-transformers).",
        "",
        "commands:",
    ]
    for name, (_, desc, takes) in COMMANDS.items():
        lines.append(f"  {name:<{width}}  {desc}")
        lines.append(f"  {'':<{width}}    pfn {name} {takes}")
    lines += [
        "",
        "`pfn COMMAND --help` shows what a command takes; the Hydra commands (all but list-runs) accept",
        "any Hydra flag as well (--cfg job, --info, -m, --config-dir DIR, --hydra-help).",
        'Shell completion (bash): eval "$(pfn -sc install=bash)"',
        "",
        "examples:",
        "  pfn train                                   # quick CPU demo: regression on linear",
        "  pfn train prior=gp training.num_steps=3000",
        "  pfn train -m prior=linear,gp training.learning_rate=1e-3,3e-4",
        "  pfn eval run=latest",
        "  pfn sample run=latest num_samples=32",
        "  pfn inspect run=latest analyses=[lens,probes]",
        "  pfn export run=latest out=my_pfn            # then PFN.from_pretrained('my_pfn')",
        "  pfn prior-check prior=gp",
        "  pfn list-runs --prior gp --sort excess_nll",
    ]
    return "\n".join(lines)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pfn-transformers")
    except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "unknown"


def _completion(argv: list[str]) -> int:
    """``pfn -sc install=bash`` / ``pfn -sc query=bash`` (called by the completion script).

    Hydra's bash script calls ``pfn -sc query=bash`` with COMP_LINE set; the subcommand in
    COMP_LINE picks the app that completes the rest.
    """
    line = os.environ.get("COMP_LINE")
    mode = argv[1] if len(argv) > 1 else ""
    if mode.startswith("query=") and line is not None:
        words = line.split()
        trailing_space = line.endswith(" ")
        if len(words) <= 1 or (len(words) == 2 and not trailing_space):
            prefix = words[1] if len(words) == 2 else ""
            print(" ".join(c for c in COMMANDS if c.startswith(prefix)))
            return 0
        cmd = words[1]
        if cmd not in HYDRA_COMMANDS:
            if cmd == "list-runs":
                from pfn_cli.list_runs import build_parser

                opts = [o for a in build_parser()._actions for o in a.option_strings]
                print(" ".join(opts))
            return 0
        # Strip the subcommand so Hydra sees "pfn <args>" as for a single app.
        os.environ["COMP_LINE"] = " ".join([words[0], *words[2:]]) + (" " if trailing_space else "")
        return _run_hydra(cmd, argv, argv0=sys.argv[0])
    # install/uninstall: any app prints the same script, registered for "pfn"
    return _run_hydra("train", argv, argv0=sys.argv[0])


def set_openmp_waiting(environ: MutableMapping[str, str]) -> None:
    """A short OpenMP spin unless the environment chose one.

    Small CPU models: OpenMP threads that spin between kernels (libgomp's default) lose
    badly when another process loads a core; threads that never spin
    (OMP_WAIT_POLICY=PASSIVE) lose on idle cores. A short spin stays close to the best of
    both (``make bench-openmp``, 2-core Xeon, make train's model: 47 ms idle / 103 ms with
    a core busy, against 39 / 159 spinning and 83 / 61 passive)."""
    if "OMP_WAIT_POLICY" not in environ:
        environ.setdefault("GOMP_SPINCOUNT", "3000")


def _run_hydra(cmd: str, args: list[str], argv0: str) -> int:
    set_openmp_waiting(os.environ)  # before torch loads
    module = importlib.import_module(COMMANDS[cmd][0])
    sys.argv = [argv0, *args]
    module.main()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``pfn`` console script."""
    try:
        return _main(argv)
    except BrokenPipeError:  # `pfn train --help | head`: the reader left, nothing to report
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


def _main(argv: list[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        sys.stderr.write(usage() + "\n")
        return 2
    first = argv[0]
    if first in ("-h", "--help", "help"):
        if first == "help" and len(argv) > 1 and argv[1] in COMMANDS:
            return main([argv[1], "--help"])
        print(usage())
        return 0
    if first in ("-V", "--version"):
        print(f"pfn (pfn-transformers) {_version()}")
        return 0
    if first in ("-sc", "--shell-completion"):
        return _completion(argv)
    if first not in COMMANDS:
        close = difflib.get_close_matches(first, COMMANDS, n=1)
        hint = f" Did you mean `pfn {close[0]}`?" if close else ""
        sys.stderr.write(
            f"pfn: error: unknown command {first!r}; choose one of "
            f"{', '.join(COMMANDS)} (see `pfn --help`).{hint}\n"
        )
        return 2
    rest = argv[1:]
    if first == "list-runs":
        from pfn_cli.list_runs import main as list_runs_main

        return list_runs_main(rest)
    if first == "train":
        rest = worker_overrides(rest, os.environ)
    # Hydra parses sys.argv; "pfn train" reads better than "pfn" in its usage messages.
    return _run_hydra(first, rest, argv0=f"{sys.argv[0]} {first}")


def worker_overrides(args: list[str], environ: MutableMapping[str, str]) -> list[str]:
    """Ranks above 0 of ``torchrun ... -m pfn_cli train``: Hydra's own folder goes to a
    temporary directory, so rank 0's run folder is the only one (rank 0 alone writes it)."""
    rank = int(environ.get("RANK", "0"))
    if rank == 0:
        return args
    import tempfile

    kept = [a for a in args if not a.startswith(("hydra.run.dir=", "hydra.output_subdir="))]
    scratch = tempfile.mkdtemp(prefix=f"pfn-rank{rank}-")
    return [*kept, f"hydra.run.dir={scratch}", "hydra.output_subdir=null"]


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
