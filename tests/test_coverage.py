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
  best = max(covered(labels, s) for s in itertools.combinations(range(n), keep))
  assert covered(labels, np.flatnonzero(got)) >= (1 - 1 / np.e) * best
  assert optimum_milp(labels, keep) == best


def test_greedy_optimal_when_every_pick_is_disjoint():
  # keep = number of clusters and each cluster has a filter covering it in
  # every channel: greedy covers everything, which is optimal.
  labels = np.array([[0, 0, 1, 1, 2, 2], [0, 0, 1, 1, 2, 2]])
  got = coverage.greedy(jnp.asarray(labels), 3)
  np.testing.assert_array_equal(np.asarray(got), [1, 0, 1, 0, 1, 0])
  assert float(coverage.coverage_rate(labels, got)) == 1.0


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
