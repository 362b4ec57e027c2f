"""State-loop units: heads and neurons found by the graph, Refill, RSST."""
import importlib.util
import math
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxprune import flops, models, slim, structure
from jaxprune.methods import base, criteria, refill, rsst, units

from conftest import REPO, make_method


def traced(name, size=32, **kw):
  model = models.create(name, 10, **kw)
  x = jnp.zeros((1, size, size, 3))
  v = model.init(jax.random.key(0), x, train=False)
  return model, v, structure.trace(model.apply, v, x, train=False)


def test_vit_small_at_70_percent_keeps_21_heads_and_5529_neurons():
  """Through the seed-003 config and the state loop's method."""
  spec = importlib.util.spec_from_file_location('cfg', os.path.join(
      REPO, 'configs', 'states', 'vit_small_seed003.py'))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  c = module.get_config('cifar10_refill')
  model, v, g = traced(c.model)
  found = units.units(g, v['params'])
  assert {k: sum(u.size for u in found if u.kind == k) for k in units.KINDS
          } == {'head': 72, 'kv_group': 0, 'neuron': 18432, 'channel': 0}
  heads = [u for u in found if u.kind == 'head']
  assert len(heads) == 12 and {len(u.producers) for u in heads} == {3}
  method = make_method(c.method, g, v['params'], **c.states)
  plan = method.plan(1, {'params': v['params']}, method.dense())
  assert method.kept_counts(plan) == {'head': [21, 72],
                                      'neuron': [5529, 18432]}
  cm = plan.channels
  x = jnp.zeros((1, 32, 32, 3))
  slim_vars, slim_apply = slim.slim(model.apply, v, g, cm, x, train=False)
  counted = flops.count(slim_apply, slim_vars, x)
  assert g.num_params({}) == 21342346
  assert counted.params == g.num_params(cm) == 6396643
  assert method.effective(plan) == (6396643, counted.macs)
  assert counted.macs == g.macs(cm)


def test_refill_picks_the_top_scored_units_on_a_hand_made_vit():
  model, v, g = traced('vit_micro', 8)
  found = units.units(g, v['params'])
  params = jax.tree.map(lambda a: np.zeros(a.shape, np.float32), v['params'])
  rng = np.random.default_rng(0)
  want = {}
  for u in found:
    # Unit c of this group gets score s_c spread over its producers.
    s = rng.permutation(u.size).astype(np.float32) + 1 + 1000 * len(want)
    for path, axis in u.producers:
      w = params
      for k in path[:-1]:
        w = w[k]
      shape = w[path[-1]].shape
      per = np.prod(shape) // shape[axis] * len(u.producers)
      w[path[-1]] = np.moveaxis(np.broadcast_to(
          (s / per).reshape((-1,) + (1,) * (len(shape) - 1)),
          (shape[axis],) + tuple(np.delete(shape, axis))), 0, axis).copy()
    want[u.group] = s
    np.testing.assert_allclose(criteria.magnitude(params, u), s,
                               rtol=1e-5)
  cm = refill.refill_masks(params, found, 0.6)
  for kind in ('head', 'neuron'):
    pool = [u for u in found if u.kind == kind]
    allv = np.concatenate([want[u.group] for u in pool])
    keep = int(allv.size * 0.4)
    thr = np.sort(allv)[::-1][keep - 1]
    for u in pool:
      np.testing.assert_array_equal(cm[u.group], want[u.group] >= thr)


def test_cnn_units_are_block_internal_channels():
  _, v, g = traced('resnet18')
  found = units.units(g, v['params'])
  assert [u.group for u in found] == [f'layer{s}_{b}/conv1' for s in
                                      range(1, 5) for b in range(2)]
  assert {u.kind for u in found} == {'channel'}


@pytest.mark.parametrize('schedule,expect', [
    ('x', lambda k, t: 0.5 * k), ('x^2', lambda k, t: (0.5 * k) ** 2),
    ('x^3', lambda k, t: (0.5 * k) ** 3), ('exp', lambda k, t: math.exp(
        0.5 * k)),
    ('exp_custom_exponents',
     lambda k, t: 0.5 * (math.exp(t ** 4) - 1) / (math.e - 1))])
def test_rsst_lambda_schedules(schedule, expect):
  for k in (0, 1, 3, 10):
    assert float(rsst.lam(schedule, k, 10, 0.5, 4)) == pytest.approx(
        expect(k, k / 10), rel=1e-6)
  with pytest.raises(ValueError, match='allowed: x, x'):
    rsst.lam('linear', 0, 10)


def test_rsst_regulariser_only_touches_weights_outside():
  params = {'w': jnp.array([1.0, -2.0, 3.0])}
  grads = {'w': jnp.array([0.5, 0.5, 0.5])}
  out = rsst.regularise(grads, params, {'w': jnp.array([False, True, True])},
                        2.0)
  np.testing.assert_allclose(out['w'], [0.5, -3.5, 6.5])


def test_imp_global_magnitude_by_hand():
  params = {'a': {'kernel': np.array([[0.1, -0.9], [0.5, 0.3]])},
            'b': {'kernel': np.array([[-0.2, 0.8, 0.05]]),
                  'bias': np.array([0.0, 0.0, 0.0])}}
  paths = [('a', 'kernel'), ('b', 'kernel')]
  m = criteria.magnitude_masks(params, paths, 0.5)
  # |w| sorted: .05 .1 .2 .3 .5 .8 .9 -> the 3 smallest go (int(0.5 * 7)).
  np.testing.assert_array_equal(m['a']['kernel'], [[False, True],
                                                   [True, True]])
  np.testing.assert_array_equal(m['b']['kernel'], [[False, True, False]])
  assert m['b']['bias'].shape == (1,) and m['b']['bias'].all()
  m2 = criteria.magnitude_masks(params, paths, 0.5, m)  # 2 of the 4 left go.
  np.testing.assert_array_equal(m2['a']['kernel'], [[False, True],
                                                    [False, False]])
  np.testing.assert_array_equal(m2['b']['kernel'], [[False, True, False]])


def test_imp_paths_skip_stem_and_head_and_cnn_refill_budget():
  _, v, g = traced('resnet20')
  paths = units.prunable_kernels(g, v['params'])
  assert ('conv1', 'kernel') not in paths and ('fc', 'kernel') not in paths
  assert sorted(paths) == sorted((f'layer{s}_{b}', c, 'kernel') for s in
                                 range(1, 4) for b in range(3)
                                 for c in ('conv1', 'conv2'))
  _, v, g = traced('vit_micro', 8)
  paths = units.prunable_kernels(g, v['params'])
  assert {p[-2] for p in paths} == {'query', 'key', 'value', 'out', 'fc1',
                                    'fc2'}
  # CNN Refill: survivors per channel [2, 0, 1, 1] of 2 weights each ->
  # budget 2 -> channels 0 and 2 (ties by index); Refill+ 0.5 -> 3.
  unit = units.Unit('c', 4, 'channel', ((('k',), 3),))
  imp_masks = {'k': np.array([[1, 0, 1, 0], [1, 0, 0, 1]], bool).reshape(
      1, 1, 2, 4)}
  params = {'k': np.ones((1, 1, 2, 4), np.float32)}
  np.testing.assert_array_equal(
      refill.cnn_masks(params, [unit], imp_masks)['c'],
      [True, False, True, False])
  np.testing.assert_array_equal(
      refill.cnn_masks(params, [unit], imp_masks, fillback_rate=0.5)['c'],
      [True, False, True, True])
  params['k'][..., 3] = 5  # By magnitude, channel 3 first.
  np.testing.assert_array_equal(
      refill.cnn_masks(params, [unit], imp_masks, 'magnitude')['c'],
      [True, False, False, True])


def test_rsst_drives_out_of_structure_weights_to_zero_over_a_state():
  import optax  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(64, 4)), jnp.float32)
  y = x @ jnp.array([1.0, -2.0, 1.5, 3.0])  # Every weight is needed.
  outside = {'w': jnp.array([False, False, True, True])}
  steps = 400

  def train(tx):
    params = {'w': jnp.zeros(4)}
    state = tx.init(params)
    loss = lambda p: jnp.mean((x @ p['w'] - y) ** 2)
    for _ in range(steps):
      g = jax.grad(loss)(params)
      u, state = tx.update(g, state, params)
      params = optax.apply_updates(params, u)
    return np.asarray(params['w'])

  plain = train(optax.sgd(0.05, momentum=0.9))
  reg = train(optax.chain(rsst.transform(outside, 'x', steps, 0.1),
                          optax.sgd(0.05, momentum=0.9)))
  np.testing.assert_allclose(plain, [1.0, -2.0, 1.5, 3.0], atol=1e-3)
  # lambda ramps to 40: the outside weights end near 0 (|w| <= 0.1 of
  # their fitted size) while the inside ones keep fitting.
  assert np.all(np.abs(reg[2:]) < 0.1 * np.abs(plain[2:])), reg
  assert np.all(np.abs(reg[:2]) > 0.3), reg
  # Per-epoch ramps restart.
  tx = rsst.transform(outside, 'x', 10, 1.0, period=10)
  st = tx.init({'w': jnp.ones(4)})
  for _ in range(10):
    _, st = tx.update({'w': jnp.zeros(4)}, st, {'w': jnp.ones(4)})
  u, _ = tx.update({'w': jnp.zeros(4)}, st, {'w': jnp.ones(4)})
  np.testing.assert_array_equal(u['w'], [0, 0, 0, 0])  # lambda(0) = 0.


class FusedQKV(nn.Module):
  """A pre-LN block whose attention uses one fused Dense(3 H Dh)."""
  heads: int = 4
  head_dim: int = 8

  @nn.compact
  def __call__(self, x, train=False):
    del train
    h, dh = self.heads, self.head_dim
    x = nn.Dense(32, name='embed')(x)
    y = nn.LayerNorm(name='ln1')(x)
    b, t, _ = y.shape
    qkv = nn.Dense(3 * h * dh, name='qkv')(y).reshape(b, t, 3, h, dh)
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
    a = jax.nn.softmax(jnp.einsum('bqhd,bkhd->bhqk', q, k) / dh ** 0.5)
    y = jnp.einsum('bhqk,bkhd->bqhd', a, v).reshape(b, t, h * dh)
    x = x + nn.Dense(32, name='proj')(y)
    y = nn.gelu(nn.Dense(64, name='fc1')(nn.LayerNorm(name='ln2')(x)))
    x = x + nn.Dense(32, name='fc2')(y)
    return nn.Dense(5, name='head')(x.mean(1))


def test_fused_qkv_heads_are_units_scored_by_their_qkv_blocks():
  model = FusedQKV()
  x = jax.random.normal(jax.random.key(1), (2, 7, 12))
  v = model.init(jax.random.key(0), x)
  g = structure.trace(model.apply, v, x[:1])
  found = units.units(g, v['params'])
  assert [(u.kind, u.size) for u in found] == [('head', 4), ('neuron', 64)]
  # Head c gets |w| = s[c] on its q, k and v blocks.
  s = np.array([1.0, 3.0, 4.0, 2.0])
  p = jax.tree.map(np.array, v['params'])
  w = p['qkv']['kernel'].reshape(32, 3, 4, 8)
  w[:] = np.sign(w) * s[None, None, :, None] * 0.01
  w[w == 0] = 0.01 * s[np.nonzero(w == 0)[2]]
  p['qkv']['kernel'] = w.reshape(32, 96)
  np.testing.assert_allclose(criteria.magnitude(p, found[0]),
                             s * 0.01 * 32 * 3 * 8, rtol=1e-5)
  method = make_method('refill', g, p, rate=0.5)
  plan = method.plan(1, {'params': p}, method.dense())
  np.testing.assert_array_equal(plan.channels[found[0].group],
                                [False, True, True, False])
  slim_vars, slim_apply = slim.slim(model.apply, {'params': p}, g,
                                    plan.channels, x[:1])
  masked = model.apply({'params': jax.tree.map(
      lambda a, m: a * m, p, plan.param_masks(g))}, x)
  np.testing.assert_allclose(slim_apply(slim_vars, x), masked, atol=1e-5)
  assert slim_vars['params']['qkv']['kernel'].shape == (32, 3 * 2 * 8)
  assert method.effective(plan)[0] == sum(
      a.size for a in jax.tree.leaves(slim_vars))

