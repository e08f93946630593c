"""User-facing errors: one clear paragraph on stderr, a non-zero exit, no traceback."""

from __future__ import annotations

import sys
import textwrap


class CliError(Exception):
    """A problem with the user's input (config, run directory, checkpoint, ...).

    The message is a complete paragraph that names the offending value and what would be
    valid; the CLI prints it without a traceback and exits with ``exit_code``.
    """

    exit_code = 2

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


def print_error(prog: str, message: str) -> None:
    """Print ``prog: error: message`` to stderr, wrapped to a readable paragraph."""
    lines = []
    prefix = f"{prog}: error: "
    for i, para in enumerate(str(message).strip().split("\n")):
        head = prefix if i == 0 else ""
        text = textwrap.fill(head + para, width=100, break_long_words=False, break_on_hyphens=False)
        lines.append(text if para else "")
    sys.stderr.write("\n".join(lines) + "\n")
    sys.stderr.flush()


def describe_exception(exc: BaseException) -> str:
    """The innermost useful message of an exception chain (Hydra wraps instantiate errors)."""
    seen = set()
    while exc.__cause__ is not None and id(exc) not in seen:
        seen.add(id(exc))
        name = type(exc).__name__
        if name not in ("InstantiationException", "InterpolationResolutionError"):
            break
        exc = exc.__cause__
    text = str(exc).strip()
    # Hydra's own "full_key: ..." trailer adds nothing for the user.
    text = "\n".join(line for line in text.splitlines() if not line.startswith("full_key:"))
    return text or type(exc).__name__
