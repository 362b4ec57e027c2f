"""Greedy maximum cluster coverage (REPrune, Park et al., AAAI 2024, Alg. 1).

The universe is every (input channel j, cluster c) pair. Filter i covers
(j, labels[j, i]) for every j. `greedy` picks `keep` filters one at a time,
each time the filter that covers the most uncovered pairs. Greedy maximum
coverage is within (1 - 1/e) of the optimum (Nemhauser et al. 1978).
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np

TIE_BREAKS = ('lowest_index', 'random')


def _check_tie_break(tie_break, key):
  if tie_break not in TIE_BREAKS:
    raise ValueError(f'tie_break={tie_break!r}; allowed: '
                     f'{", ".join(TIE_BREAKS)}.')
  if tie_break == 'random' and key is None:
    raise ValueError("tie_break='random' needs a PRNG key.")


def _check_labels(labels) -> None:
  """Raises on labels outside 0..n-1 (when they are concrete: under `jit`
  out-of-range labels are the caller's error and give undefined results)."""
  if isinstance(labels, jax.core.Tracer):
    return
  a = np.asarray(labels)
  n = a.shape[-1]
  if a.size and (a.min() < 0 or a.max() >= n):
    raise ValueError(f'labels in {a.min()}..{a.max()}; allowed: 0..{n - 1} '
                     f'(cluster ids of {n} filters, as cluster.cut returns).')


def greedy(labels: jax.Array, keep: int, tie_break: str = 'lowest_index',
           key: jax.Array | None = None) -> jax.Array:
  """Selects `keep` filters that greedily maximise cluster coverage.

  Args:
    labels: int `[C_in, n]`: the cluster of filter i in input channel j
      (labels in 0..n-1, as `jaxprune.cluster.cut` returns; others raise
      ValueError).
    keep: number of filters to select (0 <= keep <= n).
    tie_break: 'lowest_index' (deterministic) or 'random' (the paper's;
      needs `key`): how to choose among filters of equal gain.
    key: PRNG key for 'random'.

  Returns:
    bool `[n]`, True on the selected filters.
  """
  _check_tie_break(tie_break, key)
  _check_labels(labels)
  n = np.shape(labels)[1]
  if not 0 <= keep <= n:
    raise ValueError(f'keep={keep}; allowed: 0 <= keep <= {n}.')
  return _greedy(jnp.asarray(labels, jnp.int32), keep, tie_break, key)


@functools.partial(jax.jit, static_argnames=('keep', 'tie_break'))
def _greedy(labels, keep, tie_break, key):
  return greedy_batch(labels[None], jnp.full((1,), keep), tie_break, key)[0]


@functools.partial(jax.jit, static_argnames=('tie_break',))
def greedy_batch(labels: jax.Array, keep: jax.Array,
                 tie_break: str = 'lowest_index',
                 key: jax.Array | None = None) -> jax.Array:
  """`greedy` for a batch of layers of equal shape, with traced `keep`.

  Args:
    labels: int `[L, C_in, n]`.
    keep: int `[L]`, filters to select per layer (clipped to 0..n).
    tie_break: as in `greedy`.
    key: PRNG key for 'random'.

  Returns:
    bool `[L, n]`. The loop runs max(keep) steps for the whole batch; a
    layer stops selecting once it has its `keep` filters.
  """
  _check_tie_break(tie_break, key)
  labels = jnp.asarray(labels, jnp.int32)
  num, c_in, n = labels.shape
  keep = jnp.clip(jnp.asarray(keep, jnp.int32), 0, n)
  lay = jnp.arange(num)[:, None]
  rows = jnp.arange(c_in)[None, :]

  def body(t, carry):
    covered, selected = carry
    # gain_i = #{j : (j, labels[j, i]) not yet covered}.
    hit = jnp.take_along_axis(covered, labels, axis=2)
    gain = jnp.sum(~hit, axis=1).astype(jnp.float32)
    gain = jnp.where(selected, -1.0, gain)
    if tie_break == 'random':
      # Uniform in [0, 1) never reorders different integer gains.
      gain = gain + jax.random.uniform(jax.random.fold_in(key, t), (num, n),
                                       maxval=0.999)
    i = jnp.argmax(gain, axis=1)
    active = t < keep
    cols = jnp.take_along_axis(labels, i[:, None, None], axis=2)[..., 0]
    covered = covered.at[lay, rows, cols].max(active[:, None])
    selected = selected.at[jnp.arange(num), i].max(active)
    return covered, selected

  covered = jnp.zeros((num, c_in, n), bool)
  selected = jnp.zeros((num, n), bool)
  return jax.lax.fori_loop(0, jnp.max(keep, initial=0), body,
                           (covered, selected))[1]


def coverage_rate(labels: jax.Array, selected: jax.Array,
                  rows: jax.Array | None = None) -> jax.Array:
  """Fraction of (channel, cluster) pairs covered by the selected filters.

  Args:
    labels: int `[..., C_in, n]` (any leading batch dims), in 0..n-1
      (others raise ValueError).
    selected: bool `[..., n]`.
    rows: optional bool `[..., C_in]`: only these input channels count.

  Returns:
    The rate, shape `[...]`.
  """
  _check_labels(labels)
  labels = jnp.asarray(labels, jnp.int32)
  *batch, c_in, n = labels.shape
  if rows is None:
    rows = jnp.ones((*batch, c_in), bool)
  flat = lambda x, *tail: jnp.reshape(x, (-1, *tail))
  rate = jax.vmap(_rate_one)(flat(labels, c_in, n),
                             flat(jnp.broadcast_to(selected, (*batch, n)), n),
                             flat(jnp.broadcast_to(rows, (*batch, c_in)), c_in))
  return rate.reshape(batch)


def _rate_one(labels, selected, rows):
  c_in, n = labels.shape
  r = jnp.arange(c_in)[:, None]
  present = jnp.zeros((c_in, n), bool).at[r, labels].set(True)
  hit = jnp.zeros((c_in, n), bool).at[r, labels].max(
      jnp.broadcast_to(selected, labels.shape))
  live = rows[:, None]
  return (hit & live).sum() / jnp.maximum((present & live).sum(), 1)
