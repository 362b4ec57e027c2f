"""The baselines (l1, sfp, fpgm, chex, cup, bn_slimming): criteria against
numpy, the budget, soft/hard re-masking, CHEX regrowth on the stash,
init_from, the comparison command, and each method end to end."""
import json
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxprune import compare, pretrained, structure
from jaxprune import optax as jp_optax
from jaxprune.errors import JaxpruneError
from jaxprune.methods import budget, criteria, cup, explore

from conftest import TINY, make_method, results_of, run_main

RNG = np.random.default_rng(0)
KERNEL = RNG.normal(size=(3, 3, 4, 6)).astype(np.float32)


# -- criteria ------------------------------------------------------------------


def test_kernel_criteria_match_numpy():
  f = KERNEL.reshape(-1, 6).astype(np.float64)
  np.testing.assert_allclose(criteria.l1(KERNEL), np.abs(f).sum(0), rtol=1e-5)
  np.testing.assert_allclose(criteria.l2(KERNEL), np.linalg.norm(f, axis=0),
                             rtol=1e-5)
  dist = np.array([[np.linalg.norm(f[:, i] - f[:, k]) for k in range(6)]
                   for i in range(6)])
  np.testing.assert_allclose(criteria.fpgm(KERNEL), dist.sum(1), rtol=1e-4)
  _, _, vt = np.linalg.svd(f, full_matrices=False)
  for r in (1, 2, 5):
    lev = (vt[:r] ** 2).sum(0)
    np.testing.assert_allclose(criteria.leverage(KERNEL, rank=r), lev,
                               atol=1e-5)
    assert np.isclose(float(jnp.sum(criteria.leverage(KERNEL, rank=r))), r,
                      atol=1e-4)
  # Default rank: ceil(min(D, n) / 2) = 3.
  np.testing.assert_allclose(criteria.leverage(KERNEL), (vt[:3] ** 2).sum(0),
                             atol=1e-5)
  # Dense kernels [in, out] too.
  np.testing.assert_allclose(criteria.l1(f[:5]), np.abs(f[:5]).sum(0),
                             rtol=1e-5)
  with pytest.raises(JaxpruneError, match=r'kernel of shape \(6,\)'):
    criteria.l1(np.ones(6))


def test_criteria_orders_by_hand():
  # Filters: 0 = (3, 0), 1 = (0, 1), 2 = (1, 1), 3 = (-1, 1) [2, 4].
  k = np.array([[3., 0., 1., -1.], [0., 1., 1., 1.]])
  np.testing.assert_allclose(criteria.l1(k), [3, 1, 2, 2])
  np.testing.assert_allclose(criteria.l2(k), [3, 1, np.sqrt(2), np.sqrt(2)],
                             rtol=1e-6)
  # Distances from filter 1 = (0, 1): 3.1623, -, 1, 1: summed 5.1623, the
  # smallest, so FPGM prunes filter 1 first although L2 ranks it last too
  # and filter 0 (the outlier) is the most important.
  s = np.asarray(criteria.fpgm(k))
  np.testing.assert_allclose(s[1], np.sqrt(10) + 2, rtol=1e-5)
  assert np.argmin(s) == 1 and np.argmax(s) == 0


# -- the budget ----------------------------------------------------------------


def _net_graph():
  model = nn.Sequential([nn.Conv(8, (3, 3)), nn.BatchNorm(True), nn.relu,
                         nn.Conv(12, (3, 3)), nn.BatchNorm(True), nn.relu,
                         nn.Conv(5, (1, 1))])
  v = model.init(jax.random.key(0), jnp.ones((1, 6, 6, 3)))
  g = structure.trace(model.apply, v, jnp.ones((1, 6, 6, 3)))
  return model, v, g


def _mlp_graph():
  """Three 128-wide hidden layers: one neuron is < 1% of the MACs, so a
  target can be met within 1%."""
  layers = []
  for _ in range(3):
    layers += [nn.Dense(128), nn.BatchNorm(True), nn.relu]
  model = nn.Sequential(layers + [nn.Dense(5)])
  v = model.init(jax.random.key(0), jnp.ones((1, 16)))
  g = structure.trace(model.apply, v, jnp.ones((1, 16)))
  return model, v, g


def _cfg(**kw):
  import ml_collections  # pylint: disable=g-import-not-at-top
  c = budget.fields(ml_collections.ConfigDict())
  c.input_layer = True  # The tiny net's first conv reads the input.
  c.update(kw)
  return c


def test_budget_layer_and_global_counts_by_hand():
  _, v, g = _net_graph()
  b = budget.Budget(g, v['params'], _cfg(sparsity=0.3), 'x')
  assert sorted(u.size for u in b.units) == [8, 12]
  _, c = b.counts()  # ceil(0.3 * 8) = 3, ceil(0.3 * 12) = 4.
  assert sorted(c.values()) == [3, 4]
  scores = {b.units[0].group: np.arange(8.), b.units[1].group:
            np.arange(12.) + 5}
  gb = budget.Budget(g, v['params'], _cfg(sparsity=0.25, ranking='global'),
                     'x')
  # 20 scores 0..7, 5..16: the 0.25 quantile is 4.75: prune 0..4 of the
  # first unit, none of the second.
  _, c = gb.counts(scores)
  assert c == {b.units[0].group: 5, b.units[1].group: 0}
  m = gb.masks(scores)
  np.testing.assert_array_equal(m[b.units[0].group], np.arange(8) >= 5)
  assert m[b.units[1].group].all()
  with pytest.raises(JaxpruneError, match="x.ranking='best'; allowed: "
                     'layer, global'):
    budget.Budget(g, v['params'], _cfg(ranking='best'), 'x')
  with pytest.raises(JaxpruneError, match='not both'):
    budget.Budget(g, v['params'], _cfg(target_macs=1e5,
                                       target_reduction=0.5), 'x')
  with pytest.raises(JaxpruneError, match='out of reach'):
    budget.Budget(g, v['params'], _cfg(target_macs=1.0), 'x')
  with pytest.raises(JaxpruneError, match='found no channel group'):
    budget.Budget(g, v['params'], _cfg(input_layer=False, exclude='.'), 'x')


@pytest.mark.parametrize('ranking', ['layer', 'global'])
def test_budget_meets_a_macs_target_within_one_percent(ranking):
  _, v, g = _mlp_graph()
  b = budget.Budget(g, v['params'], _cfg(target_reduction=0.4,
                                         ranking=ranking), 'x')
  scores = b.kernel_scores(v['params'], 'l2')
  macs = g.macs(b.masks(scores))
  assert 0.99 * b.target <= macs <= b.target


def test_producer_masks_leave_consumers_and_norms():
  _, v, g = _net_graph()
  b = budget.Budget(g, v['params'], _cfg(), 'x')
  u = [u for u in b.units if u.size == 8][0]
  keep = np.arange(8) % 2 == 0
  pm = b.producer_masks({u.group: keep, **{w.group: np.ones(w.size, bool)
                                         for w in b.units if w is not u}},
                        v['params'])
  conv = u.kernel[0]
  np.testing.assert_array_equal(np.broadcast_to(pm[conv]['kernel'],
                                                (3, 3, 3, 8))[0, 0, 0], keep)
  np.testing.assert_array_equal(np.ravel(pm[conv]['bias']), keep)
  # The consumer conv and the BN keep every weight.
  others = [k for k in pm if k != conv]
  assert all(np.all(x) for k in others for x in jax.tree.leaves(pm[k]))


# -- SFP and FPGM re-masking ---------------------------------------------------


def _epochwise(name, g, v, **fields):
  fields.setdefault('input_layer', True)
  fields.setdefault('sparsity', 0.5)
  return make_method(name, g, v['params'], num_epochs=3, **fields)


def _sgd_steps(m, v, opt_state, params, model, steps):
  tx = m.wrap(optax.sgd(0.1))
  x = jnp.asarray(RNG.normal(size=(4, 6, 6, 3)), jnp.float32)

  def loss(p):
    out = model.apply({'params': p, 'batch_stats': v['batch_stats']}, x)
    return jnp.mean(out ** 2)

  for _ in range(steps):
    u, opt_state = tx.update(jax.grad(loss)(params), opt_state, params)
    params = optax.apply_updates(params, u)
  return params, opt_state


@pytest.mark.parametrize('name,regrows', [('sfp', True), ('fpgm', False)])
def test_soft_zeros_regrow_and_hard_zeros_stay(name, regrows):
  model, v, g = _net_graph()
  m = _epochwise(name, g, v)
  # BN shifts beta > 0, so a zeroed filter's channel passes the ReLU (at
  # beta = 0 its gradient would be 0 whatever the method).
  params = jax.tree_util.tree_map_with_path(
      lambda p, x: x + 0.5 if p[-1].key == 'bias' and p[0].key in (
          'layers_1', 'layers_4') else x, v['params'])
  opt_state = m.wrap(optax.sgd(0.1)).init(params)
  params, opt_state, info = m.event(0, 1, params, opt_state,
                                    jax.random.key(0))
  masks = m.current_masks(opt_state)
  u = [u for u in m.units if u.size == 8][0]
  pruned = ~masks[u.group]
  assert pruned.sum() == 4 and info['changed'] == 12 // 2 + 4
  conv = u.kernel[0]
  assert np.all(np.asarray(params[conv]['kernel'])[..., pruned] == 0)
  params, opt_state = _sgd_steps(m, v, opt_state, params, model, 1)
  w = np.asarray(params[conv]['kernel'])[..., pruned]
  if regrows:  # SFP: no gradient mask, a zeroed filter moves at once.
    assert np.all(np.abs(w).reshape(-1, 4).max(0) > 0)
  else:  # FPGM: exactly zero between re-masks.
    params, opt_state = _sgd_steps(m, v, opt_state, params, model, 3)
    assert np.all(np.asarray(params[conv]['kernel'])[..., pruned] == 0)


def test_final_event_zeroes_every_member():
  model, v, g = _net_graph()
  m = _epochwise('sfp', g, v)
  params = v['params']
  opt_state = m.wrap(optax.sgd(0.1)).init(params)
  params, opt_state, _ = m.event(0, 3, params, opt_state, jax.random.key(0))
  cm = m.current_masks(opt_state)
  pm = g.param_masks(cm)['params']
  for p, mk in zip(jax.tree.leaves(params), jax.tree.leaves(pm)):
    assert np.all(np.where(np.broadcast_to(mk, p.shape), True, p == 0))
  assert m.is_event(3) and not m.is_event(0) and m.is_event(1)


@pytest.mark.parametrize('name', ['sfp', 'fpgm'])
def test_finetune_phase_trains_the_final_masks_hard(name):
  model, v, g = _net_graph()
  assert _epochwise(name, g, v).num_phases == 1  # The papers' default.
  with pytest.raises(Exception, match='finetune_epochs=-1'):
    _epochwise(name, g, v, finetune_epochs=-1)
  m = _epochwise(name, g, v, finetune_epochs=2)
  assert m.num_phases == 2
  params = v['params']
  opt_state = m.wrap(optax.sgd(0.1)).init(params)
  params, opt_state, _ = m.event(0, 3, params, opt_state, jax.random.key(0))
  final = m.current_masks(opt_state)
  # Phase 1's plan, read back from the zeroed weights, is the final cut.
  plan = m.plan(1, {'params': params, 'batch_stats': v['batch_stats']}, None)
  assert plan.channels.keys() == final.keys()
  for grp in final:
    np.testing.assert_array_equal(plan.channels[grp], final[grp])
  assert m.channel_masks(1, plan, None) is plan.channels
  assert m.describe(plan)['macs'] == g.macs(final)
  ph = m.phase(1, plan)
  assert (ph.start, ph.epochs, ph.mask_start, ph.masked_eval) == (
      'trained', 2, True, True)
  pm = jax.tree.map(jnp.asarray, plan.param_masks(g))
  tx = ph.wrap(optax.sgd(0.1), pm)
  x = jnp.asarray(RNG.normal(size=(4, 6, 6, 3)), jnp.float32)
  grads = jax.grad(lambda p: jnp.mean(model.apply(
      {'params': p, 'batch_stats': v['batch_stats']}, x) ** 2))(params)
  state = tx.init(params)
  u, _ = tx.update(grads, state, params)
  after = optax.apply_updates(params, u)
  for p, mk in zip(jax.tree.leaves(after), jax.tree.leaves(pm)):
    assert np.all(np.where(np.broadcast_to(mk, p.shape), True, p == 0))


# -- CHEX regrowth ----------------------------------------------------------


def test_chex_regrowth_scores_the_stash_not_the_zeros():
  """A long-pruned filter with large stashed weights is the one regrown."""
  model, v, g = _net_graph()
  m = make_method('chex', g, v['params'], num_epochs=10, sparsity=0.5,
                  delta0=0.25, every_epochs=1, until_epoch=8,
                  input_layer=True, allocation='uniform')
  u = [u for u in m.lays if u.size == 12][0]
  conv = u.kernel[0]
  params = jax.tree.map(jnp.asarray, v['params'])
  # Filters 0..5 alive and small, 6..11 pruned; filter 9 stashed large
  # and orthogonal to the live ones' span.
  k = np.zeros((3, 3, 8, 12), np.float32)
  k[..., :6] = RNG.normal(size=(3, 3, 8, 6)) * 0.01
  params = dict(params, **{conv: dict(params[conv], kernel=jnp.asarray(k))})
  stash_k = k.copy()
  stash_k[..., 9] = 10.0 * RNG.normal(size=(3, 3, 8))
  keep = {w.group: np.ones(w.size, bool) for w in m.lays}
  keep[u.group] = np.arange(12) < 6
  pm = g.param_masks(keep)['params']
  tx = m.wrap(optax.sgd(0.1))
  st = tx.init(params)
  stash = dict(params, **{conv: dict(params[conv],
                                     kernel=jnp.asarray(stash_k))})
  st = jp_optax.set_masks(st, pm, dict(jp_optax.find_state(st).aux,
                                       stash=stash, channels=keep))
  restored = m._restored(params, st)  # pylint: disable=protected-access
  scores = np.asarray(explore.regrowth_scores(restored[conv]['kernel'],
                                              jnp.asarray(keep[u.group])))
  assert np.argmax(scores) == 9 and scores[9] > 100 * np.max(
      np.delete(scores, 9)[6:])
  # On the live weights every pruned filter is a zero column: score 0.
  live = np.asarray(explore.regrowth_scores(params[conv]['kernel'],
                                            jnp.asarray(keep[u.group])))
  np.testing.assert_allclose(live[6:], 0, atol=1e-6)
  # Sampling one regrown filter picks 9 (softmax over ~100 vs ~0) for
  # almost every key.
  picks = [int(np.flatnonzero(np.asarray(explore.regrow(
      restored, [u], {u.group: jnp.asarray(keep[u.group])}, {u.group: 1},
      jax.random.key(s))[u.group]) & ~keep[u.group])[0]) for s in range(5)]
  assert picks == [9] * 5


def test_chex_restores_running_statistics_of_regrown_channels():
  model, v, g = _net_graph()
  m = make_method('chex', g, v['params'], num_epochs=10, sparsity=0.5,
                  delta0=0.25, input_layer=True, allocation='uniform')
  m.stats = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype),
                         v['batch_stats'])
  tx = m.wrap(optax.sgd(0.1))
  params = v['params']
  st = tx.init(params)
  u = [u for u in m.lays if u.size == 12][0]
  bn = [p for p in v['batch_stats'] if np.shape(
      v['batch_stats'][p]['mean']) == (12,)][0]
  stats = jax.tree.map(jnp.asarray, v['batch_stats'])
  stats = dict(stats, **{bn: {'mean': jnp.arange(12.) + 1,
                              'var': jnp.full(12, 2.0)}})
  full = {w.group: np.ones(w.size, bool) for w in m.lays}
  half = dict(full, **{u.group: np.arange(12) < 6})
  # Event 1 prunes 6..11: their statistics are stashed.
  params, st = m._apply(params, st, half)  # pylint: disable=protected-access
  stats, st = m.event_stats(0, 1, stats, st)
  decayed = dict(stats, **{bn: {'mean': jnp.zeros(12), 'var': jnp.zeros(12)}})
  # Event 2 regrows 6..8: they get their stashed statistics back.
  again = dict(full, **{u.group: np.arange(12) < 9})
  params, st = m._apply(params, st, again)  # pylint: disable=protected-access
  stats2, _ = m.event_stats(0, 2, decayed, st)
  np.testing.assert_allclose(stats2[bn]['mean'], [0] * 6 + [7, 8, 9] +
                             [0] * 3)
  np.testing.assert_allclose(stats2[bn]['var'], [0] * 6 + [2] * 3 + [0] * 3)


# -- CUP ---------------------------------------------------------------------


def test_cup_representatives_by_hand():
  pts = np.array([[0.], [0.2], [0.1], [5.], [5.5], [9.]])
  keep = cup.representatives(pts, np.array([0, 0, 0, 1, 1, 2]))
  # Centroids 0.1, 5.25, 9: nearest 2, then 3 (tie 3/4 at 0.25: lower), 5.
  np.testing.assert_array_equal(np.flatnonzero(keep), [2, 3, 5])


def test_cup_features_concatenate_incoming_and_outgoing():
  _, v, g = _net_graph()
  m = make_method('cup', g, v['params'], sparsity=0.5, input_layer=True)
  u = [u for u in m.units if u.size == 8][0]
  f = cup.features(v['params'], g, u)
  # Incoming 3*3*3, outgoing 3*3*12 (the next conv's input slice).
  assert f.shape == (8, 27 + 108)
  np.testing.assert_allclose(np.mean(np.sum(f * f, 1)), 1.0, rtol=1e-6)


@pytest.mark.parametrize('name', ['l1', 'cup', 'bn_slimming'])
def test_oneshot_masks_meet_the_macs_target(name):
  _, v, g = _mlp_graph()
  m = make_method(name, g, v['params'], target_reduction=0.5,
                  input_layer=True)
  params = jax.tree.map(lambda x: x + RNG.normal(size=x.shape) * 0.1,
                        v['params'])
  cm = m.masks({'params': params, 'batch_stats': v['batch_stats']})
  macs = g.macs(cm)
  assert 0.99 * m.budget.target <= macs <= m.budget.target, (name, macs)


@pytest.mark.parametrize('name', ['sfp', 'fpgm', 'chex', 'reprune'])
def test_remasking_methods_meet_the_macs_target(name):
  _, v, g = _mlp_graph()
  m = make_method(name, g, v['params'], num_epochs=3, target_reduction=0.5,
                  input_layer=True)
  params = jax.tree.map(lambda x: x + RNG.normal(size=x.shape) * 0.1,
                        v['params'])
  st = m.wrap(optax.sgd(0.1)).init(params)
  _, st, _ = m.event(0, 2, params, st, jax.random.key(0))
  target = m.budget.target if hasattr(m, 'budget') else m.target
  macs = g.macs(m.current_masks(st))
  assert 0.99 * target <= macs <= target, (name, macs)


def test_l1_penalty_adds_the_sign_on_masked_leaves():
  params = {'a': jnp.array([1., -2., 0.]), 'b': jnp.array([3.])}
  tx = jp_optax.l1_penalty(0.5, {'a': np.array([True]), 'b': np.array(
      [False])})
  u, _ = tx.update(jax.tree.map(jnp.zeros_like, params), tx.init(params),
                   params)
  np.testing.assert_allclose(u['a'], [0.5, -0.5, 0.0])
  np.testing.assert_allclose(u['b'], [0.0])
  with pytest.raises(ValueError, match='strength=-1'):
    jp_optax.l1_penalty(-1, {})


# -- init_from ---------------------------------------------------------------


def _vars():
  model = nn.Sequential([nn.Dense(4), nn.relu, nn.Dense(3)])
  return model.init(jax.random.key(1), jnp.ones((1, 5)))


def test_init_from_npz_safetensors_and_partial(tmp_path):
  v = jax.device_get(_vars())
  w0 = RNG.normal(size=(5, 4)).astype(np.float32)
  b1 = RNG.normal(size=(3,)).astype(np.float32)
  # npz, our names and layout.
  np.savez(tmp_path / 'w.npz', **{'params/layers_0/kernel': w0})
  got, loaded, left = pretrained.load_into(v, pretrained.read(
      str(tmp_path / 'w.npz')))
  assert loaded == ['params/layers_0/kernel']
  assert 'params/layers_2/kernel' in left and len(left) == 3
  np.testing.assert_array_equal(got['params']['layers_0']['kernel'], w0)
  np.testing.assert_array_equal(got['params']['layers_2']['kernel'],
                                v['params']['layers_2']['kernel'])
  # safetensors with PyTorch names and layout ([out, in]) and a name map.
  pretrained.write_safetensors(str(tmp_path / 'w.safetensors'), {
      'fc0.weight': w0.T.copy(), 'fc2.bias': b1,
      'fc2.weight': np.zeros((7, 4), np.float32)})  # Wrong shape.
  src = pretrained.read(str(tmp_path / 'w.safetensors'))
  np.testing.assert_array_equal(src['fc0.weight'], w0.T)
  rules = (r'fc(\d)\.weight=>params/layers_\1/kernel',
           r'fc(\d)\.bias=>params/layers_\1/bias')
  logs = []
  got, loaded, left = pretrained.load_into(
      v, src, rules, log=lambda *a: logs.append(a[0] % a[1:]))
  assert sorted(loaded) == ['params/layers_0/kernel', 'params/layers_2/bias']
  np.testing.assert_array_equal(got['params']['layers_0']['kernel'], w0)
  np.testing.assert_array_equal(got['params']['layers_2']['bias'], b1)
  assert 'params/layers_2/kernel (7, 4) vs (4, 3)' in logs[0]
  with pytest.raises(JaxpruneError, match='no array matches this model'):
    pretrained.load_into(v, {'other': np.ones(3)})
  with pytest.raises(JaxpruneError, match="allowed: 'regex=>replacement'"):
    pretrained.load_into(v, src, ('fc0',))
  with pytest.raises(JaxpruneError, match='does not exist'):
    pretrained.read(str(tmp_path / 'nope.npz'))
  (tmp_path / 'w.bin').write_bytes(b'x')
  with pytest.raises(JaxpruneError, match='allowed: a jaxprune workdir'):
    pretrained.read(str(tmp_path / 'w.bin'))


# -- compare -----------------------------------------------------------------


def _result(tmp_path, name, method, top1, macs, seed, states=False,
            **config):
  wd = tmp_path / name
  wd.mkdir()
  r = {'method': method, 'dense_macs': 1000, 'dense_params': 100,
       'complete': True, 'config': {'seed': seed, 'log_every_steps': seed,
                                    **config}}
  if states:
    r.update(states=[{'seconds': 2.0, 'top1': 1.0}, {'seconds': 3.0,
                                                     'top1': 2.0}],
             pruned_macs=macs, pruned_params=50, slim_top1=top1)
  else:
    r.update(top1=top1, macs=macs, params=100, train_seconds=4.0)
  (wd / 'results.json').write_text(json.dumps(r))
  return str(wd)


def test_compare_pools_seeds_and_writes_table_and_plot(tmp_path):
  wds = [_result(tmp_path, 'd', 'none', 95.0, 1000, 0),
         _result(tmp_path, 'a0', 'l1', 90.0, 300, 0, states=True),
         _result(tmp_path, 'a1', 'l1', 92.0, 300, 1, states=True)]
  out = tmp_path / 'cmp'
  groups = compare.compare(wds, str(out))
  assert [g['method'] for g in groups] == ['none', 'l1']
  l1 = groups[1]
  assert l1['runs'] == 2 and l1['top1'] == (91.0, 1.0)
  assert l1['fewer'] == pytest.approx(70.0) and l1['seconds'] == (5.0, 0.0)
  md = (out / 'compare.md').read_text()
  assert '| l1 | 2 | 300 | 70.0% | 50 | 91.00 ± 1.00 | 5 ± 0 |' in md
  assert '| none | 1 | 1,000 | 0.0% | 100 | 95.00 | 4 |' in md
  png = (out / 'pareto.png').read_bytes()
  assert png[:8] == b'\x89PNG\r\n\x1a\n' and len(png) > 5000
  with pytest.raises(JaxpruneError, match='results.json does not exist'):
    compare.read([str(tmp_path)])
  bad = _result(tmp_path, 'p', 'l1', 1.0, 1, 0)
  r = json.loads(open(os.path.join(bad, 'results.json')).read())
  r['complete'] = False
  open(os.path.join(bad, 'results.json'), 'w').write(json.dumps(r))
  with pytest.raises(JaxpruneError, match='not complete'):
    compare.read([bad])


def test_compare_splits_a_method_by_its_settings(tmp_path):
  wds = [_result(tmp_path, f'{n}{s}', 'sfp', top1 + s, 300, s, states=True,
                 sfp={'every_epochs': 1, 'finetune_epochs': ft})
         for n, ft, top1 in (('a', 0, 50.0), ('b', 5, 90.0)) for s in (0, 2)]
  groups = compare.pooled(compare.read(wds))
  assert [(g['method'], g['runs'], g['top1']) for g in groups] == [
      ('sfp (sfp.finetune_epochs=0)', 2, (51.0, 1.0)),
      ('sfp (sfp.finetune_epochs=5)', 2, (91.0, 1.0))]
  # A run from before a field existed ran it at its default.
  old = _result(tmp_path, 'old', 'sfp', 50.0, 300, 0, states=True,
                sfp={'every_epochs': 1})
  groups = compare.pooled(compare.read([old, wds[-1]]))
  assert [g['method'] for g in groups] == ['sfp (sfp.finetune_epochs=0)',
                                          'sfp (sfp.finetune_epochs=5)']


# -- end to end ----------------------------------------------------------------


@pytest.mark.parametrize('name', ['l1', 'sfp', 'fpgm', 'chex', 'cup',
                                  'bn_slimming'])
def test_each_baseline_end_to_end(name, tmp_path, data_dir):
  """Through `python -m jaxprune.main`: the slimmed network is in
  results.json at the MACs target (within 1% below it)."""
  wd = str(tmp_path / name)
  extra = {'l1': ['--config.l1.pretrain_epochs=1',
                  '--config.l1.finetune_epochs=1'],
           'cup': ['--config.cup.pretrain_epochs=1',
                   '--config.cup.finetune_epochs=1'],
           'bn_slimming': ['--config.bn_slimming.pretrain_epochs=1',
                           '--config.bn_slimming.finetune_epochs=1'],
           'chex': ['--config.chex.until_epoch=1',
                    '--config.chex.every_epochs=1'],
           # FPGM with its fine-tune phase, SFP without (both paths).
           'sfp': [], 'fpgm': ['--config.fpgm.finetune_epochs=1']}[name]
  code, out = run_main(f'--config={TINY}', f'--workdir={wd}',
                       f'--config.data_dir={data_dir}',
                       f'--config.method={name}', '--config.num_epochs=2',
                       '--config.model_overrides.stage_widths=(8, 16, 16)',
                       f'--config.{name}.target_reduction=0.4', *extra)
  assert code == 0, out[-3000:]
  r = results_of(wd)
  assert r['complete'] and r['method'] == name
  target = 0.6 * r['dense_macs']
  assert 0.99 * target <= r['pruned_macs'] <= target, r['pruned_macs']
  assert r['pruned_params'] < r['dense_params']
  assert r['slim_top1'] > 20  # Learned something in 2 (+1) epochs.
  if 'states' in r:  # One-shot: the masked fine-tuned net is the slim one.
    assert abs(r['slim_top1'] - r['states'][-1]['final_top1']) <= (
        100 / 360 + 1e-6)
  else:
    assert abs(r['slim_top1'] - r['top1']) <= 100 / 360 + 1e-6


@pytest.mark.parametrize('name', ['l1', 'sfp', 'fpgm', 'chex', 'cup',
                                  'bn_slimming'])
def test_cifar_config_runs_under_mock_data(name, tmp_path, compile_cache):
  """configs/<method>/resnet56_cifar10.py through the CIFAR-10 data path
  (tfds mock data; ResNet-20 in place of ResNet-56 to keep CI short)."""
  from conftest import ONE_DEVICE, REPO  # pylint: disable=g-import-not-at-top
  wd = str(tmp_path / 'run')
  code, out = run_main(
      f'--config={REPO}/configs/{name}/resnet56_cifar10.py',
      f'--workdir={wd}', '--config.model=resnet20', '--config.num_epochs=1',
      '--config.batch_size=8', '--config.eval_batch_size=8',
      '--config.data_threads=2', '--config.export=False',
      *([f'--config.{name}.until_epoch=0'] if name == 'chex' else []),
      mock_examples=16, env={**compile_cache, 'XLA_FLAGS': ONE_DEVICE})
  assert code == 0, out[-3000:]
  r = results_of(wd)
  target = r['dense_macs'] * (1 - r['config'][name]['target_reduction'])
  assert 0.99 * target <= r['pruned_macs'] <= target


def test_init_from_timm_vit_loads_blocks_norms_and_cls_token(tmp_path):
  """Seed 003's start: timm's ViT-S/16 names and shapes; the blocks, norms
  and cls token load, the 16x16 patch embedding, the 197-token position
  table and the 1000-way head stay at init."""
  from jaxprune import models  # pylint: disable=g-import-not-at-top
  d, h, m, depth = 32, 2, 64, 2
  model = models.create('vit_small', 10, hidden_size=d, depth=depth,
                        num_heads=h, mlp_dim=m, layer_norm_eps=1e-5)
  v = jax.device_get(model.init(jax.random.key(0), jnp.ones((1, 32, 32, 3))))
  r = lambda *s: RNG.normal(size=s).astype(np.float32)
  timm = {'cls_token': r(1, 1, d), 'pos_embed': r(1, 197, d),
          'patch_embed.proj.weight': r(d, 3, 16, 16),
          'patch_embed.proj.bias': r(d), 'norm.weight': r(d),
          'norm.bias': r(d), 'head.weight': r(1000, d), 'head.bias': r(1000)}
  for i in range(depth):
    p = f'blocks.{i}.'
    timm.update({p + 'norm1.weight': r(d), p + 'norm1.bias': r(d),
                 p + 'norm2.weight': r(d), p + 'norm2.bias': r(d),
                 p + 'attn.qkv.weight': r(3 * d, d),
                 p + 'attn.qkv.bias': r(3 * d),
                 p + 'attn.proj.weight': r(d, d), p + 'attn.proj.bias': r(d),
                 p + 'mlp.fc1.weight': r(m, d), p + 'mlp.fc1.bias': r(m),
                 p + 'mlp.fc2.weight': r(d, m), p + 'mlp.fc2.bias': r(d)})
  path = str(tmp_path / 'vit_small_patch16_224.safetensors')
  pretrained.write_safetensors(path, timm)
  got, loaded, left = pretrained.load_into(
      v, pretrained.read(path, 'timm_vit', v))
  assert sorted(left) == ['params/head/bias', 'params/head/kernel',
                          'params/patch_embed/bias',
                          'params/patch_embed/kernel', 'params/pos_embed']
  assert len(loaded) == 3 + depth * 16  # cls, norm x2; 16 per block.
  gp = got['params']
  # The fused qkv: rows [0, d) are q, [d, 2d) k; head j owns Dh rows.
  dh = d // h
  np.testing.assert_array_equal(gp['block1']['attn']['key']['kernel'][:, 1],
                                timm['blocks.1.attn.qkv.weight'][
                                    d + dh:d + 2 * dh].T)
  np.testing.assert_array_equal(gp['block0']['attn']['out']['kernel'][1],
                                timm['blocks.0.attn.proj.weight'][:, dh:].T)
  np.testing.assert_array_equal(gp['block0']['fc1']['kernel'],
                                timm['blocks.0.mlp.fc1.weight'].T)
  np.testing.assert_array_equal(gp['norm']['scale'], timm['norm.weight'])
  np.testing.assert_array_equal(gp['head']['kernel'], v['params']['head'][
      'kernel'])
  # The converted weights compute what the timm layout means: q = x W^T.
  x = RNG.normal(size=(d,)).astype(np.float32)
  q = np.einsum('d,dhk->hk', x, gp['block0']['attn']['query']['kernel'])
  np.testing.assert_allclose(q.ravel(), timm['blocks.0.attn.qkv.weight'][
      :d] @ x, rtol=1e-5, atol=1e-5)
  with pytest.raises(JaxpruneError, match="init_from_format='hf'"):
    pretrained.read(path, 'hf', v)


# -- the CHEX command's options: mixup and the conv init ---------------------


def test_mixup_mixes_inputs_and_loss():
  import ml_collections  # pylint: disable=g-import-not-at-top
  from jaxprune import tasks  # pylint: disable=g-import-not-at-top
  from jaxprune.tasks import classification  # pylint: disable=g-import-not-at-top
  del tasks
  c = ml_collections.ConfigDict({'dataset': 'digits', 'label_smoothing': 0.0,
                                 'mixup': 0.2})
  task = classification.Classification(c)
  x = jnp.asarray(RNG.normal(size=(4, 8, 8, 1)), jnp.float32)
  batch = {'label': jnp.array([0, 1, 2, 3])}
  mx, mb = task.mix(x, batch, jax.random.key(3))
  lam = float(mb['mix_lambda'])
  assert 0 <= lam <= 1
  np.testing.assert_allclose(mx, lam * x + (1 - lam) * jnp.roll(x, 1, 0),
                             rtol=1e-6, atol=1e-6)
  np.testing.assert_array_equal(mb['mix_label'], [3, 0, 1, 2])
  logits = jnp.asarray(RNG.normal(size=(4, 10)), jnp.float32)
  ce = lambda y: float(classification.cross_entropy(logits, y, 10, 0.0))
  assert float(task.loss(logits, mb)) == pytest.approx(
      lam * ce(batch['label']) + (1 - lam) * ce(mb['mix_label']), rel=1e-5)
  # Evaluation ignores the mixing; alpha 0 mixes nothing.
  assert float(task.loss(logits, mb, train=False)) == pytest.approx(
      ce(batch['label']), rel=1e-6)
  c.mixup = 0.0
  same, b2 = task.mix(x, batch, jax.random.key(3))
  assert same is x and b2 is batch


def test_conv_init_fan_in_and_fan_out():
  from jaxprune.models import layers  # pylint: disable=g-import-not-at-top
  shape = (3, 3, 256, 32)  # fan_in 2304, fan_out 288.
  for mode, fan in (('fan_in', 2304), ('fan_out', 288)):
    w = layers.conv_init_of(mode)(jax.random.key(0), shape)
    assert float(jnp.std(w)) == pytest.approx(np.sqrt(2 / fan), rel=0.05)
  with pytest.raises(JaxpruneError, match="conv_init='fan'; allowed: "
                     'fan_out, fan_in'):
    layers.conv_init_of('fan')
  from jaxprune import models  # pylint: disable=g-import-not-at-top
  m = models.create('resnet18', 10, conv_init='fan_in')
  v = jax.eval_shape(lambda: m.init(jax.random.key(0),
                                    jnp.ones((1, 32, 32, 3))))
  assert v['params']['conv1']['kernel'].shape == (7, 7, 3, 64)
