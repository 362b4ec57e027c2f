"""Dense training: no pruning (`--config.method=none`)."""
from jaxprune.methods import base


@base.register
class Dense(base.Method):
  """One phase from the initial weights, no masks, nothing slimmed."""

  name = 'none'
