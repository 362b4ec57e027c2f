"""jaxprune.cluster against scipy: identical linkage matrices and cuts."""
from hypothesis import given, settings, strategies as st
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.cluster import hierarchy

from jaxprune import cluster


def same_partition(a, b) -> bool:
  a, b = np.asarray(a), np.asarray(b)
  return len(set(zip(a.tolist(), b.tolist()))) == len(set(a.tolist())) == len(
      set(b.tolist()))


def check(points, method):
  """Z equals scipy's; every cut gives scipy's partition."""
  points = np.asarray(points, np.float32)
  z = np.asarray(cluster.linkage(jnp.asarray(points), method))
  for b in range(points.shape[0]):
    ref = hierarchy.linkage(points[b].astype(np.float64), method)
    np.testing.assert_array_equal(z[b][:, [0, 1, 3]], ref[:, [0, 1, 3]])
    np.testing.assert_allclose(z[b][:, 2], ref[:, 2], rtol=2e-5, atol=2e-6)
    heights = z[b][:, 2]
    cuts = np.asarray(cluster.cut(np.broadcast_to(z[b], (len(heights),) +
                                                  z[b].shape), heights))
    for k in range(len(heights)):
      assert same_partition(cuts[k], hierarchy.fcluster(ref, ref[k, 2],
                                                        'distance'))


@settings(max_examples=25, deadline=None)
@given(n=st.integers(2, 24), d=st.sampled_from([1, 2, 4, 9]),
       method=st.sampled_from(cluster.METHODS), seed=st.integers(0, 10**6))
def test_matches_scipy(n, d, method, seed):
  rng = np.random.default_rng(seed)
  check(rng.normal(size=(3, n, d)), method)


@pytest.mark.parametrize('method', cluster.METHODS)
@pytest.mark.parametrize('n,d', [(2, 1), (2, 3), (16, 2), (64, 9), (100, 1)])
def test_shapes(method, n, d):
  rng = np.random.default_rng(n * d)
  check(rng.normal(size=(2, n, d)), method)


@pytest.mark.parametrize('method', cluster.METHODS)
def test_single_point_and_leading_dims(method):
  assert cluster.linkage(jnp.ones((4, 5, 1, 3)), method).shape == (4, 5, 0, 4)
  z = cluster.linkage(jnp.asarray(np.random.default_rng(0).normal(
      size=(2, 3, 6, 2))), method)
  assert z.shape == (2, 3, 5, 4)


@pytest.mark.parametrize('method', cluster.METHODS)
def test_duplicate_points(method):
  x = np.array([[0.0], [0.0], [1.0], [5.0], [5.0], [5.0]], np.float32)
  z = np.asarray(cluster.linkage(jnp.asarray(x[None]), method))[0]
  ref = hierarchy.linkage(x.astype(np.float64), method)
  np.testing.assert_allclose(z[:, 2], ref[:, 2], atol=1e-6)
  np.testing.assert_array_equal(z[:, 3], ref[:, 3])
  for h in (0.0, 0.5, 3.0, 10.0):
    assert same_partition(cluster.cut(z, h),
                          hierarchy.fcluster(ref, h, 'distance'))


def test_hand_computed_ward():
  # Points 0, 1, 10 on a line: merge (0, 1) at 1, then with 10 at
  # sqrt(2 * 2 * 1 / 3) * 9.5.
  z = np.asarray(cluster.linkage(jnp.array([[0.0], [1.0], [10.0]]), 'ward'))
  np.testing.assert_allclose(z, [[0, 1, 1, 2],
                                 [2, 3, np.sqrt(4 / 3) * 9.5, 3]], rtol=1e-6)
  np.testing.assert_array_equal(cluster.cut(z, 1.0), [0, 0, 1])
  np.testing.assert_array_equal(cluster.cut(z, 0.5), [0, 1, 2])


def test_bad_method():
  with pytest.raises(ValueError, match="method='median'; allowed: ward"):
    cluster.linkage(jnp.zeros((3, 2)), 'median')


@pytest.mark.parametrize('method', cluster.METHODS)
@pytest.mark.parametrize('d', [1, 9])
def test_float64_matches_scipy_to_rounding_on_wide_sets(method, d):
  """With x64, 200 points per set: same merges, heights to 1e-12."""
  import jax  # pylint: disable=g-import-not-at-top
  points = np.random.default_rng(d).normal(size=(4, 200, d))
  with jax.enable_x64(True):
    z = np.asarray(cluster.linkage(jnp.asarray(points), method))
  assert z.dtype == np.float64
  for b in range(4):
    ref = hierarchy.linkage(points[b], method)
    np.testing.assert_array_equal(z[b][:, [0, 1, 3]], ref[:, [0, 1, 3]])
    np.testing.assert_allclose(z[b][:, 2], ref[:, 2], rtol=1e-12)


@pytest.mark.parametrize('method', cluster.METHODS)
def test_long_nearest_neighbour_chain(method):
  """Points closing in geometrically on 0: the chain grows to every point
  before the first merge (2-D, so the general chain runs, not the 1-D
  path)."""
  x = np.stack([-(0.5 ** np.arange(12)), np.zeros(12)], 1)
  check(x[None], method)


@pytest.mark.parametrize('method', cluster.METHODS)
def test_tied_distances_in_two_dimensions(method):
  """A unit square, a duplicate and a far pair: ties everywhere. Heights
  and the partition at every height match scipy's, whichever tie wins."""
  x = np.array([[0., 0.], [1., 0.], [0., 1.], [1., 1.], [1., 1.],
                [6., 0.], [6., 2.]])
  z = np.asarray(cluster.linkage(jnp.asarray(x[None], jnp.float32),
                                 method))[0]
  ref = hierarchy.linkage(x, method)
  np.testing.assert_allclose(np.sort(z[:, 2]), np.sort(ref[:, 2]), rtol=1e-6)
  for h in np.unique(ref[:, 2]):
    assert same_partition(cluster.cut(z, h + 1e-6), hierarchy.fcluster(
        ref, h + 1e-6, 'distance'))


@pytest.mark.parametrize('method', ['ward', 'complete', 'average'])
@pytest.mark.parametrize('x', [
    # Chain 0 -> 3 -> 2, where 2 is as near to 1 as to 3 (the previous
    # element): the chain must merge (2, 3), as scipy's does.
    [[3., 0.], [0., 1.], [0., 0.], [1., 0.]],
    # Chain 0 -> 2, where 2's nearest is 1 (not the previous element 0).
    [[0., 0.], [3., 0.], [2., 0.], [9., 5.]],
])
def test_chain_prefers_the_previous_element_on_ties_as_scipy(method, x):
  """With exactly tied distances the NN chain merges with the previous
  chain element (else the nearest, lowest index first), as scipy's
  nn_chain: the whole linkage matrix equals scipy's, row by row."""
  x = np.asarray(x)
  z = np.asarray(cluster.linkage(jnp.asarray(x[None], jnp.float32),
                                 method))[0]
  np.testing.assert_allclose(z, hierarchy.linkage(x, method), rtol=1e-6)


def test_cut_labels_are_numbered_by_first_point():
  z = np.asarray(cluster.linkage(jnp.array([[0.0], [10.0], [1.0], [11.0],
                                            [30.0]]), 'single'))
  np.testing.assert_array_equal(cluster.cut(z, 100.0), [0, 0, 0, 0, 0])
  np.testing.assert_array_equal(cluster.cut(z, 1.0), [0, 1, 0, 1, 2])
  np.testing.assert_array_equal(cluster.cut(z, 0.5), [0, 1, 2, 3, 4])
  np.testing.assert_array_equal(cluster.cut(z, 9.5), [0, 0, 0, 0, 1])
