"""Where the configs and the runs live (standard library only: no torch, no Hydra)."""

from __future__ import annotations

import os
from pathlib import Path

from pfn_cli.errors import CliError

#: environment variable that moves the run store (default: ./outputs)
OUTPUTS_ENV = "PFN_OUTPUTS"


def conf_dir() -> Path:
    """The Hydra config root: ``pfn_cli/conf`` in a wheel (and in the checkout, where it is a
    link to the top-level ``conf/``), else the checkout's top-level ``conf/``."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "conf", here.parent / "conf"):
        if (candidate / "train.yaml").is_file():
            return candidate.resolve()
    raise CliError(
        f"cannot find the pfn config folder (looked for train.yaml in {here / 'conf'} and "
        f"{here.parent / 'conf'}); the installation is incomplete, reinstall pfn-transformers."
    )


def outputs_root(value: str | os.PathLike | None = None) -> Path:
    """The run store: ``value``, else $PFN_OUTPUTS, else ./outputs."""
    if value is None:
        value = os.environ.get(OUTPUTS_ENV) or "outputs"
    return Path(value)
