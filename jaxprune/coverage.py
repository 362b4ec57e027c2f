"""Greedy maximum cluster coverage (REPrune, Alg. 1; methods.md 1.2).

The universe is every (input channel j, cluster c) pair. Filter i covers
(j, labels[j, i]) for every j. `greedy` picks `keep` filters one at a time,
each time the filter that covers the most uncovered pairs. Greedy maximum
coverage is within (1 - 1/e) of the optimum (Nemhauser et al. 1978).
"""
import functools

import jax
import jax.numpy as jnp

TIE_BREAKS = ('lowest_index', 'random')


@functools.partial(jax.jit, static_argnames=('keep', 'tie_break'))
def greedy(labels: jax.Array, keep: int, tie_break: str = 'lowest_index',
           key: jax.Array | None = None) -> jax.Array:
  """Selects `keep` filters that greedily maximise cluster coverage.

  Args:
    labels: int `[C_in, n]`: the cluster of filter i in input channel j
      (labels in 0..n-1, as `jaxprune.cluster.cut` returns).
    keep: number of filters to select (0 <= keep <= n).
    tie_break: 'lowest_index' (deterministic) or 'random' (the paper's;
      needs `key`): how to choose among filters of equal gain.
    key: PRNG key for 'random'.

  Returns:
    bool `[n]`, True on the selected filters.
  """
  if tie_break not in TIE_BREAKS:
    raise ValueError(f'tie_break={tie_break!r}; allowed: '
                     f'{", ".join(TIE_BREAKS)}.')
  if tie_break == 'random' and key is None:
    raise ValueError("tie_break='random' needs a PRNG key.")
  labels = jnp.asarray(labels, jnp.int32)
  c_in, n = labels.shape
  if not 0 <= keep <= n:
    raise ValueError(f'keep={keep}; allowed: 0 <= keep <= {n}.')
  rows = jnp.arange(c_in)[:, None]
  keys = (jax.random.split(key, max(keep, 1)) if tie_break == 'random' else
          None)

  def body(t, carry):
    covered, selected = carry
    # gain_i = #{j : (j, labels[j, i]) not yet covered}.
    gain = jnp.sum(~covered[rows, labels], axis=0).astype(jnp.float32)
    gain = jnp.where(selected, -1.0, gain)
    if keys is not None:
      # Uniform in [0, 1) never reorders different integer gains.
      gain = gain + jax.random.uniform(keys[t], (n,), maxval=0.999)
    i = jnp.argmax(gain)
    covered = covered.at[jnp.arange(c_in), labels[:, i]].set(True)
    return covered, selected.at[i].set(True)

  covered = jnp.zeros((c_in, n), bool)
  selected = jnp.zeros((n,), bool)
  return jax.lax.fori_loop(0, keep, body, (covered, selected))[1]


def coverage_rate(labels: jax.Array, selected: jax.Array) -> jax.Array:
  """Fraction of (channel, cluster) pairs covered by the selected filters."""
  labels = jnp.asarray(labels, jnp.int32)
  c_in, n = labels.shape
  rows = jnp.arange(c_in)[:, None]
  present = jnp.zeros((c_in, n), bool).at[rows, labels].set(True)
  hit = jnp.zeros((c_in, n), bool).at[rows, labels].max(
      jnp.broadcast_to(selected, labels.shape))
  return hit.sum() / jnp.maximum(present.sum(), 1)
