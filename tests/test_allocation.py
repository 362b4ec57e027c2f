"""Per-layer allocation: uniform and BN-gamma counts, MACs search, give-back
(on a graph whose MACs are a hand-checkable sum)."""
import numpy as np
import pytest

from jaxprune.methods import allocation
from jaxprune.methods.units import Unit


class LinearGraph:
  """MACs = sum over groups of cost x kept channels."""
  COST = {'a': 10, 'b': 1, 'c': 100}

  def macs(self, cm):
    return int(sum(self.COST[g] * int(np.sum(m)) for g, m in cm.items()))


UNITS = [Unit('a', 4, 'channel', (), gammas=(('a', 'scale'),)),
         Unit('b', 8, 'channel', (), gammas=(('b', 'scale'),)),
         Unit('c', 2, 'channel', (), gammas=(('c', 'scale'),))]


def test_uniform_counts_by_hand():
  assert allocation.uniform_counts(UNITS, 0.5) == {'a': 2, 'b': 4, 'c': 1}
  assert allocation.uniform_counts(UNITS, 0.3) == {'a': 2, 'b': 3, 'c': 1}
  assert allocation.uniform_counts(UNITS, 0.0) == {'a': 0, 'b': 0, 'c': 0}
  # Never a whole unit: at most n - 1.
  assert allocation.uniform_counts(UNITS, 0.99) == {'a': 3, 'b': 7, 'c': 1}
  # 0.3 * 10 is 3.0000000000000004 in floats: still 3, not 4.
  ten = [Unit('t', 10, 'channel', ())]
  assert allocation.uniform_counts(ten, 0.3) == {'t': 3}
  assert allocation.uniform_counts(ten, 0.31) == {'t': 4}
  # Within 1e-6 of an integer counts as it; 4e-7 above 1 still rounds to 1.
  assert allocation.uniform_counts(ten, 0.10000004) == {'t': 1}
  assert allocation.uniform_counts(ten, 0.1000004) == {'t': 2}


def test_bn_gamma_counts_and_ties():
  params = {'a': {'scale': np.array([0.1, -0.9, 0.3, 0.2])},
            'b': {'scale': np.linspace(0.05, 0.8, 8)},
            'c': {'scale': np.array([1.0, 0.0])}}
  # 14 |gamma|; the 0 quantile is the smallest (0.0): c prunes one.
  assert allocation.bn_gamma_counts(params, UNITS, 0.0) == {'a': 0, 'b': 0,
                                                            'c': 1}
  # The 1.0 quantile is the largest: every channel, n reported.
  assert allocation.bn_gamma_counts(params, UNITS, 1.0) == {'a': 4, 'b': 8,
                                                            'c': 2}
  assert allocation.bn_gamma_counts(params, [], 0.5) == {}
  assert not allocation.gammas_tied(params, UNITS)
  ones = {k: {'scale': -np.ones(u.size)} for k, u in zip('abc', UNITS)}
  assert allocation.gammas_tied(ones, UNITS)
  fn = allocation.counts_fn(params, UNITS, 'bn_gamma')
  assert fn(0.0) == {'a': 0, 'b': 0, 'c': 1}
  assert allocation.counts_fn(params, UNITS, 'uniform')(0.5) == {
      'a': 2, 'b': 4, 'c': 1}


def test_macs_of_counts():
  g = LinearGraph()
  assert allocation.macs_of_counts(g, UNITS, {'a': 0, 'b': 0, 'c': 0}) == 248
  assert allocation.macs_of_counts(g, UNITS, {'a': 1, 'b': 2, 'c': 1}) == (
      30 + 6 + 100)
  # A whole unit is capped at n - 1 pruned (one channel stays).
  assert allocation.macs_of_counts(g, UNITS, {'a': 4, 'b': 8, 'c': 2}) == (
      10 + 1 + 100)


def test_search_by_hand():
  g = LinearGraph()
  fn = lambda s: allocation.uniform_counts(UNITS, s)
  # MACs <= 120 needs c at 1 channel (any s > 0) and 10 (4 - p_a) +
  # (8 - p_b) <= 20: s just above 0.5 gives p = (3, 5, 1): 113 MACs.
  s, counts, macs = allocation.search(g, UNITS, fn, 120, refine=False)
  assert s == pytest.approx(0.5, abs=1e-6) and s > 0.5
  assert counts == {'a': 3, 'b': 5, 'c': 1} and macs == 113
  # Refined: 113 is more than 0.5% under 120, so b gives back all 5 (one
  # at a time: 114 ... 118); a cannot (124), nor c (213).
  s2, counts, macs = allocation.search(g, UNITS, fn, 120)
  assert s2 == s and counts == {'a': 3, 'b': 0, 'c': 1} and macs == 118
  # Within tolerance: nothing given back.
  _, counts, macs = allocation.search(g, UNITS, fn, 113.5)
  assert counts == {'a': 3, 'b': 5, 'c': 1} and macs == 113
  # 113 < 0.995 x 114: b gives one back.
  _, counts, macs = allocation.search(g, UNITS, fn, 114)
  assert counts == {'a': 3, 'b': 4, 'c': 1} and macs == 114
  # A target met exactly is met (<=), not passed over.
  _, counts, macs = allocation.search(g, UNITS, fn, 113, refine=False)
  assert counts == {'a': 3, 'b': 5, 'c': 1} and macs == 113
  # Out of reach below the floor: the sparsest counts (s = 1).
  s, counts, macs = allocation.search(g, UNITS, fn, 50, refine=False)
  assert s == 1.0 and counts == {'a': 3, 'b': 7, 'c': 1} and macs == 111
  # The same with BN-gamma counts, whose sparsity must stay in 0..1 (a
  # quantile): every channel reported, one kept by the MACs count.
  params = {k: {'scale': np.arange(1., u.size + 1)} for k, u in
            zip('abc', UNITS)}
  s, counts, macs = allocation.search(
      g, UNITS, allocation.counts_fn(params, UNITS, 'bn_gamma'), 50,
      refine=False)
  assert s == 1.0 and counts == {'a': 4, 'b': 8, 'c': 2} and macs == 111


def test_search_tolerance_edges():
  # a costs 1000 a channel, b 1: MACs <= ~2000 first at s just above 0.25,
  # p = (2, 3): 2005 MACs.
  g = LinearGraph()
  g.COST = {'a': 1000, 'b': 1}
  two = UNITS[:2]
  fn = lambda s: allocation.uniform_counts(two, s)
  # 2005 is within 0.5% of 2007.5: kept as it is.
  _, counts, macs = allocation.search(g, two, fn, 2007.5)
  assert counts == {'a': 2, 'b': 3} and macs == 2005
  # Exactly 0.5% under (0.995 x 2015.07... == 2005.0): not more than tol
  # under, so kept as well.
  _, counts, macs = allocation.search(g, two, fn, 2005 / 0.995)
  assert counts == {'a': 2, 'b': 3} and macs == 2005
  # 1% under: b gives back all three; a cannot (3005).
  _, counts, macs = allocation.search(g, two, fn, 2025)
  assert counts == {'a': 2, 'b': 0} and macs == 2008


def test_give_back_by_hand():
  g = LinearGraph()
  start = {'a': 2, 'b': 4, 'c': 1}  # Kept (2, 4, 1): 124 MACs.
  for target, counts, macs in (
      # Passes go by size, widest first: b 3 (125), a 1 (135), c no (235);
      # b 2 (136), a 0 (146); b 1 (147); b 0 (148); then nothing fits.
      (150, {'a': 0, 'b': 0, 'c': 1}, 148),
      # A trial landing exactly on the target is taken.
      (148, {'a': 0, 'b': 0, 'c': 1}, 148),
      # Widest unit first: b gives back all four (128), then a cannot
      # (138); narrowest first would take a's (134) and block b.
      (134, {'a': 2, 'b': 0, 'c': 1}, 128),
      # Already at the target: unchanged.
      (124, {'a': 2, 'b': 4, 'c': 1}, 124)):
    got = allocation.give_back(g, UNITS, start, target)
    assert got == (counts, macs), target
  assert start == {'a': 2, 'b': 4, 'c': 1}  # The input is not changed.
