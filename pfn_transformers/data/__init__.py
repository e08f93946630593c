"""Data generation: the generator contract, the spec's generators and Bayesian utilities."""
