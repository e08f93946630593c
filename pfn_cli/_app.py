"""Shared plumbing of the three Hydra apps: the ``@hydra.main`` wrapper and error reporting."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from typing import Any

from omegaconf import DictConfig

from pfn_cli.errors import CliError, print_error
from pfn_cli.paths import conf_dir
from pfn_cli.resolvers import register_resolvers

log = logging.getLogger("pfn")

register_resolvers()


def _ensure_cwd_on_path() -> None:
    """Let YAML ``_target_`` name modules in the working directory (as ``python -m`` does)."""
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.append(cwd)


def is_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def hydra_app(config_name: str, task: Callable[[DictConfig], Any]) -> Callable[[], Any]:
    """``main()`` for ``pfn <config_name>``: Hydra composes ``conf/<config_name>.yaml`` and
    calls ``task(cfg)``. A CliError becomes one paragraph on stderr and exit code 2; in a
    multirun the failed job is recorded, the sweep goes on and the command exits 1."""
    import hydra

    prog = f"pfn {config_name.replace('_', '-')}"

    @hydra.main(config_path=str(conf_dir()), config_name=config_name, version_base="1.3")
    def _main(cfg: DictConfig) -> Any:
        try:
            return task(cfg)
        except CliError as exc:
            print_error(prog, str(exc))
            if is_multirun():  # the sweep goes on; main() exits non-zero at the end
                from hydra.core.hydra_config import HydraConfig

                failed.append(HydraConfig.get().runtime.output_dir)
                return None
            sys.exit(exc.exit_code)

    failed: list[str] = []

    def main() -> Any:
        _ensure_cwd_on_path()
        try:
            result = _main()
            if failed:
                print_error(
                    prog,
                    f"{len(failed)} sweep job(s) failed (messages above; status.json in "
                    f"{', '.join(failed)}); the other jobs ran.",
                )
                sys.exit(1)
            return result
        except CliError as exc:  # raised before the task (e.g. while resolving run dirs)
            print_error(prog, str(exc))
            sys.exit(exc.exit_code)
        except ValueError as exc:  # Hydra's own flag check, e.g. "-m --cfg job"
            if not str(exc).startswith("Only one of"):
                raise
            print_error(prog, f"{exc} (see `{prog} --help`).")
            sys.exit(2)

    main.__doc__ = f"Entry point of `{prog}` (Hydra reads sys.argv)."
    return main
