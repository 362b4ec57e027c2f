"""jaxprune: structured neural-network pruning for JAX/Flax."""

__version__ = '0.1.0'
