"""Bayesian utilities: ``Prior`` over parameters and ``Likelihood`` p(y | x, theta)."""

from .data.bayes import Likelihood, Prior

__all__ = ["Likelihood", "Prior"]
