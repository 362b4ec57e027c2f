"""Greedy maximum coverage against brute force and scipy's MILP."""
import itertools

from hypothesis import given, settings, strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import optimize

from jaxprune import coverage


def covered(labels, subset):
  return len({(j, labels[j, i]) for i in subset for j in range(len(labels))})


def reference_greedy(labels, keep):
  """Plain Python greedy with the lowest-index tie-break."""
  chosen, cov = [], set()
  for _ in range(keep):
    gains = [-1 if i in chosen else len(
        {(j, labels[j, i]) for j in range(len(labels))} - cov)
             for i in range(labels.shape[1])]
    i = int(np.argmax(gains))
    chosen.append(i)
    cov |= {(j, labels[j, i]) for j in range(len(labels))}
  return sorted(chosen)


def optimum_milp(labels, keep):
  c_in, n = labels.shape
  pairs = sorted({(j, labels[j, i]) for j in range(c_in) for i in range(n)})
  index = {p: k for k, p in enumerate(pairs)}
  nv = n + len(pairs)  # x_i (filters), y_p (pairs)
  c = np.concatenate([np.zeros(n), -np.ones(len(pairs))])
  rows, lo, hi = [], [], []
  row = np.zeros(nv)
  row[:n] = 1
  rows.append(row), lo.append(keep), hi.append(keep)
  for p, k in index.items():  # y_p <= sum of filters covering p
    row = np.zeros(nv)
    row[n + k] = 1
    for i in range(n):
      if labels[p[0], i] == p[1]:
        row[i] = -1
    rows.append(row), lo.append(-np.inf), hi.append(0)
  res = optimize.milp(c, constraints=optimize.LinearConstraint(
      np.array(rows), lo, hi), integrality=np.ones(nv),
                      bounds=optimize.Bounds(0, 1))
  return int(round(-res.fun))


@settings(max_examples=30, deadline=None)
@given(c_in=st.integers(1, 5), n=st.integers(1, 9), clusters=st.integers(1, 4),
       seed=st.integers(0, 10**6), data=st.data())
def test_greedy_matches_reference_and_bound(c_in, n, clusters, seed, data):
  keep = data.draw(st.integers(0, n))
  # Cluster ids of n filters lie in 0..n-1 (as cluster.cut returns).
  labels = np.random.default_rng(seed).integers(0, min(clusters, n),
                                                (c_in, n))
  got = np.asarray(coverage.greedy(jnp.asarray(labels), keep))
  assert got.sum() == keep
  assert sorted(np.flatnonzero(got).tolist()) == reference_greedy(labels, keep)
  # The library's coverage of its own pick is within (1 - 1/e) of the
  # optimum (found by MILP, itself checked against brute force).
  pairs = covered(labels, range(n))
  rate = float(coverage.coverage_rate(labels, got))
  assert rate == pytest.approx(covered(labels, np.flatnonzero(got)) / pairs)
  best = optimum_milp(labels, keep)
  assert best == max(covered(labels, s)
                     for s in itertools.combinations(range(n), keep))
  assert rate * pairs >= (1 - 1 / np.e) * best - 1e-9


def reference_rate(labels, selected, rows):
  """|pairs of live channels covered by the selection| / |live pairs|."""
  c_in, n = labels.shape
  live = [j for j in range(c_in) if rows[j]]
  allp = {(j, labels[j, i]) for j in live for i in range(n)}
  hit = {(j, labels[j, i]) for j in live for i in range(n) if selected[i]}
  return len(hit) / max(len(allp), 1)


@settings(max_examples=25, deadline=None)
@given(batch=st.integers(1, 3), c_in=st.integers(1, 5), n=st.integers(1, 7),
       seed=st.integers(0, 10**6), with_rows=st.booleans())
def test_coverage_rate_matches_numpy_reference(batch, c_in, n, seed,
                                               with_rows):
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, n, (batch, c_in, n))
  selected = rng.random((batch, n)) < 0.5
  rows = rng.random((batch, c_in)) < 0.6 if with_rows else np.ones(
      (batch, c_in), bool)
  got = np.asarray(coverage.coverage_rate(
      labels, selected, rows if with_rows else None))
  assert got.shape == (batch,)
  want = [reference_rate(labels[b], selected[b], rows[b])
          for b in range(batch)]
  np.testing.assert_allclose(got, want, rtol=1e-6)


def test_coverage_rate_by_hand():
  # Channel 0 has clusters {0, 1} and {2}; channel 1 has {0}, {1, 2}.
  labels = np.array([[0, 0, 2], [0, 1, 1]])
  sel = np.array([True, False, False])
  # Filter 0 covers (0, 0) and (1, 0): 2 of 4 pairs.
  assert float(coverage.coverage_rate(labels, sel)) == 0.5
  # Only channel 1 live: 1 of its 2 pairs.
  assert float(coverage.coverage_rate(labels, sel,
                                      np.array([False, True]))) == 0.5
  # Filter 2 alone, channel 0 live: (0, 2) of {(0, 0), (0, 2)}.
  assert float(coverage.coverage_rate(
      labels, np.array([False, False, True]), np.array([True, False]))) == 0.5
  assert float(coverage.coverage_rate(labels, np.array([True, False, True]))
               ) == 1.0
  # No live channel: 0 of 0 pairs reads as 0.
  assert float(coverage.coverage_rate(labels, sel,
                                      np.array([False, False]))) == 0.0


def test_greedy_optimal_when_every_pick_is_disjoint():
  # keep = number of clusters and each cluster has a filter covering it in
  # every channel: greedy covers everything, which is optimal.
  labels = np.array([[0, 0, 1, 1, 2, 2], [0, 0, 1, 1, 2, 2]])
  got = coverage.greedy(jnp.asarray(labels), 3)
  np.testing.assert_array_equal(np.asarray(got), [1, 0, 1, 0, 1, 0])
  assert float(coverage.coverage_rate(labels, got)) == 1.0


def greedy_outcomes(labels, keep):
  """Every filter set that greedy can return under some tie-breaking."""
  out = set()

  def grow(chosen, cov):
    if len(chosen) == keep:
      out.add(frozenset(chosen))
      return
    gains = {i: len({(j, labels[j, i]) for j in range(len(labels))} - cov)
             for i in range(labels.shape[1]) if i not in chosen}
    best = max(gains.values())
    for i, g in gains.items():
      if g == best:
        grow(chosen | {i}, cov | {(j, labels[j, i])
                                  for j in range(len(labels))})
  grow(frozenset(), frozenset())
  return out


def test_random_tie_break():
  labels = jnp.zeros((2, 8), jnp.int32)  # Every filter is equivalent.
  picks = {int(jnp.argmax(coverage.greedy(labels, 1, 'random',
                                          jax.random.key(s))))
           for s in range(20)}
  assert len(picks) > 3
  with pytest.raises(ValueError, match='needs a PRNG key'):
    coverage.greedy(labels, 1, 'random')
  with pytest.raises(ValueError, match="tie_break='first'"):
    coverage.greedy(labels, 1, 'first')


def test_random_tie_break_never_reorders_unequal_gains():
  """Every random pick is a maximum-gain pick: each result is one greedy
  can reach by breaking ties some way, never a lower gain taken first."""
  rng = np.random.default_rng(0)
  seen = 0
  for _ in range(6):
    labels = rng.integers(0, 3, (3, 6))
    keep = int(rng.integers(2, 5))
    valid = greedy_outcomes(labels, keep)
    got = {frozenset(np.flatnonzero(np.asarray(coverage.greedy(
        labels, keep, 'random', jax.random.key(k)))).tolist())
           for k in range(12)}
    assert got <= valid, (labels, keep, got - valid)
    seen += len(got) > 1
  assert seen > 0  # Ties were broken in more than one way.
  # Gains differing by one only: filter 1 repeats filter 0, filter 2 shares
  # filter 0's cluster in channel 0. Whatever comes first, the three picks
  # hold filter 2, filter 3 and one of filters 0 and 1, never both.
  labels = np.array([[0, 0, 0, 3], [0, 0, 2, 3]])
  for k in range(20):
    m = np.asarray(coverage.greedy(labels, 3, 'random', jax.random.key(k)))
    assert m[2] and m[3] and m[0] != m[1], m


def test_out_of_range_labels_are_rejected():
  # The case that once made greedy and coverage_rate silently disagree with
  # the reference: label 2 of only 2 filters.
  labels = np.array([[2, 1]])
  with pytest.raises(ValueError, match=r'labels in 1..2; allowed: 0..1'):
    coverage.greedy(labels, 1)
  with pytest.raises(ValueError, match=r'allowed: 0..1'):
    coverage.coverage_rate(labels, np.array([True, False]))
  with pytest.raises(ValueError, match=r'labels in -1..1'):
    coverage.greedy(np.array([[-1, 1]]), 1)


@pytest.mark.parametrize('keep', [-1, 3])
def test_keep_out_of_range_is_rejected(keep):
  with pytest.raises(ValueError, match=rf'keep={keep}; allowed: 0 <= keep <= 2'):
    coverage.greedy(np.array([[0, 1]]), keep)


def test_greedy_batch_with_different_keeps_matches_each_layer():
  """One batch runs max(keep) steps; a layer with a smaller keep must stop
  at its own count and match `greedy` on that layer alone."""
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 5, size=(3, 4, 5))
  keeps = np.array([1, 4, 2])
  got = np.asarray(coverage.greedy_batch(jnp.asarray(labels),
                                         jnp.asarray(keeps)))
  assert got.sum(1).tolist() == keeps.tolist()
  for layer, keep in enumerate(keeps):
    np.testing.assert_array_equal(
        got[layer], np.asarray(coverage.greedy(labels[layer], int(keep))))
