"""Errors raised by the W&B integration; each message says what to do next."""

from __future__ import annotations

from ..persistence.errors import CheckpointNotFoundError


class WandbUnavailableError(RuntimeError):
    """W&B cannot be used as asked: missing credentials, unreachable server, bad mode."""


class WandbLookupError(LookupError):
    """A run or checkpoint could not be identified on W&B."""


class RunNotFoundError(WandbLookupError):
    """No W&B run with the given identifier."""


class NoMatchingRunError(WandbLookupError):
    """No run's config matches the requested filters."""


class AmbiguousRunError(WandbLookupError):
    """Several runs match where exactly one is needed."""


# A W&B run without (that) checkpoint artifact raises the library's one
# CheckpointNotFoundError (a LookupError, like WandbLookupError).


__all__ = [
    "AmbiguousRunError",
    "CheckpointNotFoundError",
    "NoMatchingRunError",
    "RunNotFoundError",
    "WandbLookupError",
    "WandbUnavailableError",
]
