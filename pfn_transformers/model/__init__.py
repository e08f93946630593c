"""Model: configs, the hookable PFN transformer, masks and the bar distribution."""
