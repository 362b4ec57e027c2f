"""Channel masks: applying them, random masks, counts (by hand)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxprune import masks as masks_lib


class Group:

  def __init__(self, name, size):
    self.name, self.size = name, size


class Graph:
  """The part of a ChannelGraph that masks use."""

  def __init__(self, sizes):
    self.prunable = [Group(k, n) for k, n in sizes.items()]

  def group(self, name):
    return next(g for g in self.prunable if g.name == name)

  def full_masks(self, value=True):
    return {g.name: jnp.full((g.size,), value) for g in self.prunable}


def test_apply_by_hand():
  v = {'a': jnp.array([[1., 2., 3.], [4., 5., 6.]]),
       'b': jnp.array([7, 8], jnp.int32), 'c': jnp.array([9.])}
  m = {'a': jnp.array([[True, False, True]]), 'b': jnp.array([False, True]),
       'c': None}
  out = masks_lib.apply(v, m)
  np.testing.assert_array_equal(out['a'], [[1., 0., 3.], [4., 0., 6.]])
  np.testing.assert_array_equal(out['b'], [0, 8])
  assert out['b'].dtype == jnp.int32 and out['c'] is v['c']


def test_random_keeps_about_keep_and_never_empties_a_group():
  g = Graph({'x': 400, 'y': 3, 'z': 1})
  m = masks_lib.random(g, jax.random.key(0), keep=0.25)
  assert set(m) == {'x', 'y', 'z'}
  assert m['x'].shape == (400,) and m['x'].dtype == jnp.bool_
  assert 70 <= int(m['x'].sum()) <= 130
  assert int(m['z'].sum()) == 1
  # keep=0: exactly one channel (the lowest draw) per group.
  m0 = masks_lib.random(g, jax.random.key(1), keep=0.0)
  assert masks_lib.kept_counts(m0) == {'x': 1, 'y': 1, 'z': 1}
  # keep=1: everything.
  m1 = masks_lib.random(g, jax.random.key(2), keep=1.0)
  assert masks_lib.kept_counts(m1) == {'x': 400, 'y': 3, 'z': 1}
  # Other keys give other masks; the same key the same.
  a = masks_lib.random(g, jax.random.key(3), 0.5)['x']
  b = masks_lib.random(g, jax.random.key(4), 0.5)['x']
  assert not np.array_equal(a, b)
  np.testing.assert_array_equal(
      a, masks_lib.random(g, jax.random.key(3), 0.5)['x'])
  # Only the named groups.
  assert set(masks_lib.random(g, jax.random.key(5), groups=['y'])) == {'y'}
  assert masks_lib.random(g, jax.random.key(5), groups=[]) == {}


def test_kept_counts_and_ones_like():
  assert masks_lib.kept_counts({'a': np.array([True, False, True]),
                                'b': jnp.zeros(4, bool)}) == {'a': 2, 'b': 0}
  g = Graph({'x': 2, 'y': 3})
  assert masks_lib.kept_counts(masks_lib.ones_like(g)) == {'x': 2, 'y': 3}
  assert masks_lib.kept_counts(masks_lib.ones_like(g, False)) == {'x': 0,
                                                                  'y': 0}


@pytest.mark.parametrize('keep', [0.1, 0.9])
def test_random_mask_is_the_draws_below_keep(keep):
  g = Graph({'x': 50})
  key = jax.random.key(7)
  m = masks_lib.random(g, key, keep)['x']
  k, = jax.random.split(key, 1)
  r = np.asarray(jax.random.uniform(k, (50,)))
  want = r < keep
  want[np.argmin(r)] = True
  np.testing.assert_array_equal(m, want)


def test_random_keeps_half_by_default():
  g = Graph({'x': 64})
  np.testing.assert_array_equal(
      masks_lib.random(g, jax.random.key(9))['x'],
      masks_lib.random(g, jax.random.key(9), 0.5)['x'])
  assert not np.array_equal(masks_lib.random(g, jax.random.key(9))['x'],
                            masks_lib.random(g, jax.random.key(9), 0.7)['x'])
