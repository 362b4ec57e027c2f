"""REPrune: Alg. 1 against scipy, allocation, regrowth, policy, schedule."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from jaxprune import models, structure
from jaxprune import optax as optax_lib
from jaxprune.errors import JaxpruneError
from jaxprune.methods import allocation, reprune

from conftest import layer, make_method


def single_layer(w):
  return layer('g', w.shape[-1], ('k',))


@pytest.mark.parametrize('method', ['ward', 'single', 'complete', 'average'])
@pytest.mark.parametrize('shape,pruned', [
    ((3, 3, 12, 16), 8), ((1, 1, 20, 24), 11), ((3, 3, 6, 10), 9),
    ((3, 3, 6, 10), 0), ((1, 1, 5, 7), 3), ((9, 6), 2), ((3, 3, 4, 2), 1),
    ((3, 3, 4, 1), 0), ((5, 5, 3, 33), 20)])
def test_alg1_equals_scipy_loop_and_python_greedy(shape, pruned, method):
  rng = np.random.default_rng(sum(shape) + pruned)
  w = rng.normal(size=shape).astype(np.float32)
  if shape[-2] > 2:
    w[..., 1, :] = 0  # An already pruned input channel takes no part.
  masks, rates = reprune.select({'k': w}, [single_layer(w)], {'g': pruned},
                                method=method, tie_break='lowest_index')
  ref = reprune.reference_select(w, pruned, method)
  np.testing.assert_array_equal(np.asarray(masks['g']), ref)
  assert int(masks['g'].sum()) == shape[-1] - pruned
  assert 0 < float(rates['g']) <= 1


def test_alg1_hand_computed():
  # One input channel, 1x1 kernels: two tight pairs {0, 1} and {2, 3}.
  w = np.array([0.0, 0.1, 10.0, 10.1], np.float32).reshape(1, 1, 1, 4)
  masks, rates = reprune.select({'k': w}, [single_layer(w)], {'g': 2},
                                tie_break='lowest_index')
  np.testing.assert_array_equal(masks['g'], [True, False, True, False])
  assert float(rates['g']) == 1.0
  # Two input channels: channel 0 pairs {0,1},{2,3}; channel 1 pairs
  # {0,2},{1,3}, at larger distances. The cut height is the max over
  # channels of the 2nd merge, so both channels end with two clusters; the
  # greedy picks filter 0, then filter 3 (the only filter new in both).
  w = np.array([[0.0, 0.1, 10.0, 10.1], [0.0, 50.0, 0.5, 50.5]],
               np.float32).reshape(1, 1, 2, 4)
  masks, _ = reprune.select({'k': w}, [single_layer(w)], {'g': 2},
                            tie_break='lowest_index')
  np.testing.assert_array_equal(masks['g'], [True, False, False, True])


def test_random_tie_break_is_valid_and_keyed():
  rng = np.random.default_rng(0)
  # Eight distinct filters, four near-copies of each: keeping eight, the
  # greedy must take one copy of every filter (a second copy adds nothing,
  # a new filter adds every channel), whichever copy random ties pick.
  base = rng.normal(size=(3, 3, 8, 8)).astype(np.float32)
  w = np.repeat(base, 4, axis=-1) + 1e-4 * rng.normal(
      size=(3, 3, 8, 32)).astype(np.float32)
  lay = [single_layer(w)]
  runs = [np.asarray(reprune.select({'k': w}, lay, {'g': 24},
                                    jax.random.key(k))[0]['g'])
          for k in range(6)]
  for r in runs:
    np.testing.assert_array_equal(r.reshape(8, 4).sum(1), np.ones(8))
  np.testing.assert_array_equal(
      runs[0], reprune.select({'k': w}, lay, {'g': 24}, jax.random.key(0))[0]
      ['g'])
  assert len({r.tobytes() for r in runs}) > 1  # Ties are sampled.


def test_equal_shapes_share_a_batch_and_match_one_by_one():
  rng = np.random.default_rng(1)
  params = {'a': rng.normal(size=(3, 3, 8, 12)).astype(np.float32),
            'b': rng.normal(size=(3, 3, 8, 12)).astype(np.float32)}
  lays = [layer('a', 12, ('a',)), layer('b', 12, ('b',))]
  both, _ = reprune.select(params, lays, {'a': 4, 'b': 7},
                           tie_break='lowest_index')
  for l, p in zip(lays, (4, 7)):
    np.testing.assert_array_equal(
        both[l.group], reprune.reference_select(params[l.group], p))


def trace(name, size, **kw):
  model = models.create(name, 10, **kw)
  x = jnp.zeros((1, size, size, 3))
  v = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))
  graph = structure.trace(model.apply, v, jax.ShapeDtypeStruct(x.shape,
                                                               jnp.float32),
                          train=False)
  return model, v, graph


def test_policy_follows_methods_1_5():
  _, v, g = trace('resnet18', 64)
  lays = reprune.layers(g, v['params'])
  assert [l.group for l in lays] == [f'layer{s}_{b}/conv1' for s in range(
      1, 5) for b in range(2)]
  assert all(l.kernel[-2:] == ('conv1', 'kernel') for l in lays)
  assert lays[0].gammas == (('layer1_0', 'bn1', 'scale'),)
  more = reprune.layers(g, v['params'], residual=True)
  assert len(more) > len(lays) and any('conv2' in l.group for l in more)

  _, v, g = trace('resnet50', 64)
  lays = reprune.layers(g, v['params'])
  assert len(lays) == 32 and {l.group.split('/')[1] for l in lays} == {
      'conv1', 'conv2'}
  stem = reprune.layers(g, v['params'], input_layer=True)
  assert [l.group for l in stem if l not in lays] == ['conv1']

  _, v, g = trace('mobilenet_v2', 64)
  lays = reprune.layers(g, v['params'],
                        exclude=r'project_conv$|^last_conv$')
  assert len(lays) == 16 and all(l.group.endswith('expand_conv') for l in
                                 lays)
  # The expansion conv (many input channels) is clustered, not the
  # depthwise conv that shares its channels; both BN scales are read.
  assert all(l.kernel[-2] == 'expand_conv' for l in lays)
  assert len(lays[0].gammas) == 2


class PlainNet(nn.Module):
  """No BatchNorm, a dense hidden layer: REPrune still applies."""

  @nn.compact
  def __call__(self, x):
    x = nn.relu(nn.Conv(6, (3, 3), name='a')(x))
    x = nn.relu(nn.Conv(10, (3, 3), name='b')(x))
    x = jnp.mean(x, (1, 2))
    x = nn.relu(nn.Dense(12, name='h')(x))
    return nn.Dense(3, name='out')(x)


def test_custom_model_groups_and_uniform_allocation():
  model = PlainNet()
  x = jnp.ones((2, 8, 8, 2))
  v = model.init(jax.random.key(0), x)
  g = structure.trace(model.apply, v, x)
  lays = reprune.layers(g, v['params'])
  assert [l.group for l in lays] == ['b', 'h']  # 'a' reads the input.
  assert [l.gammas for l in lays] == [(), ()]
  with pytest.raises(JaxpruneError, match='no normalisation scale'):
    allocation.bn_gamma_counts(v['params'], lays, 0.5)
  counts = allocation.uniform_counts(lays, 0.55)
  assert counts == {'b': 6, 'h': 7}  # ceil(5.5), ceil(6.6)
  masks, _ = reprune.select(v['params'], lays, counts,
                            tie_break='lowest_index')
  np.testing.assert_array_equal(
      masks['h'], reprune.reference_select(v['params']['h']['kernel'], 7))
  assert [int(m.sum()) for m in masks.values()] == [4, 5]


def test_bn_gamma_quantile_by_hand():
  params = {'x': {'scale': np.array([0.1, 0.5, 0.9, 0.2])},
            'y': {'scale': np.array([-0.05, 0.3, 1.0, 0.7, 0.6, 0.4])}}
  lays = [layer('x', 4, ('x', 'k'), (('x', 'scale'),)),
          layer('y', 6, ('y', 'k'), (('y', 'scale'),))]
  # |gamma| sorted: .05 .1 .2 .3 .4 .5 .6 .7 .9 1.0; the 0.4 quantile is
  # .05 + .4 * 9 -> position 3.6 -> 0.3 + 0.6 * 0.1 = 0.36.
  assert allocation.bn_gamma_counts(params, lays, 0.4) == {'x': 2, 'y': 2}
  # The 0.7 quantile: position 6.3 -> 0.6 + 0.3 * 0.1 = 0.63, so x prunes
  # .1 .5 .2 and y prunes .05 .3 .6 .4.
  assert allocation.bn_gamma_counts(params, lays, 0.7) == {'x': 3, 'y': 4}


TARGETS = [('resnet56', 32, 125485696 * (1 - 0.6038)),
           ('resnet56', 32, 125485696 * (1 - 0.4757)),
           ('resnet18', 224, 1.03e9), ('resnet34', 224, 2.7e9),
           ('resnet34', 224, 2.0e9), ('resnet50', 224, 2.3e9),
           ('resnet50', 224, 1.8e9), ('resnet50', 224, 1.0e9),
           ('resnet50', 224, 4089184256 * (1 - 0.5609))]


@pytest.mark.parametrize('alloc', ['bn_gamma', 'uniform'])
@pytest.mark.parametrize('name,size,target', TARGETS)
def test_flops_target_within_one_percent(name, size, target, alloc):
  model = models.create(name, 10 if size == 32 else 1000)
  x = jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32)
  v = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(
      x.shape), train=False))
  g = structure.trace(model.apply, v, x, train=False)
  rng = np.random.default_rng(0)
  params = jax.tree.map(lambda a: rng.normal(size=a.shape).astype(
      np.float32), v['params'])
  pruner = make_method('reprune', g, params, allocation=alloc,
                       target_macs=target)
  s, counts, _, used = pruner._sparsity(params, alloc)
  assert used == alloc and 0 < s < 1
  masks = {l.group: np.arange(l.size) >= counts[l.group]
           for l in pruner.lays}
  pruned_macs = g.macs(masks)
  assert abs(pruned_macs / target - 1) < 0.005, (pruned_macs, target)


def test_alg1_masks_hit_the_flops_target_on_resnet56():
  model, v, g = trace('resnet56', 32)
  params = model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)),
                      train=False)['params']
  pruner = make_method('reprune', g, params, target_reduction=0.6038)
  # Initial BN scales are all 1: the BN-gamma allocation falls back to
  # uniform for the target.
  s, counts, _, used = pruner._sparsity(params, 'bn_gamma')
  assert used == 'uniform'
  masks, rates = reprune.select(params, pruner.lays, counts,
                                jax.random.key(0))
  assert abs(g.macs(masks) / (125485696 * (1 - 0.6038)) - 1) < 0.005
  assert all(0 < float(r) <= 1 for r in rates.values())


def test_regrowth_samples_by_projection_residual():
  # Kept: filter 0 = e0. Pruned: filter 1 = 2 e0 (in the span, residual 0),
  # filter 2 = 100 e1 (residual 100), filter 3 = e0 + 0.5 e1 (residual 0.5).
  w = np.zeros((1, 1, 2, 4), np.float32)
  w[0, 0, 0, 0] = 1
  w[0, 0, 0, 1] = 2
  w[0, 0, 1, 2] = 100
  w[0, 0, :, 3] = [1, 0.5]
  lay = single_layer(w)
  keep = {'g': jnp.array([True, False, False, False])}
  for k in range(5):
    out = reprune.regrow({'k': w}, [lay], keep, {'g': 1}, jax.random.key(k))
    np.testing.assert_array_equal(out['g'], [True, False, True, False])
  out = reprune.regrow({'k': w}, [lay], keep, {'g': 3}, jax.random.key(0))
  assert bool(out['g'].all())
  assert reprune.regrow({'k': w}, [lay], keep, {'g': 0},
                        jax.random.key(0))['g'] is keep['g']


def small_pruner(**overrides):
  model = models.create('resnet20', 10, stage_widths=(8, 16, 16))
  x = jnp.zeros((1, 8, 8, 3))
  v = model.init(jax.random.key(0), x, train=False)
  g = structure.trace(model.apply, v, x, train=False)
  fields = dict(sparsity=0.5, delta0=0.25, every_epochs=2, until_epoch=6,
                tie_break='lowest_index', coverage_every_epochs=1)
  fields.update(overrides)
  return model, v, g, make_method('reprune', g, v['params'], **fields)


def test_schedule_events_and_delta():
  *_, p = small_pruner()
  assert [e for e in range(10) if p.is_event(e)] == [0, 2, 4, 6]
  assert p.delta(2) == pytest.approx(0.25 * (1 + np.cos(np.pi / 3)) / 2)
  assert p.delta(6) == 0 and p.delta(8) == 0
  *_, p = small_pruner(until_epoch=50)  # Final event at the last epoch.
  assert [e for e in range(10) if p.is_event(e)] == [0, 2, 4, 6, 8, 9]


def test_soft_masks_and_regrown_weights_come_back():
  _, v, g, p = small_pruner(allocation='uniform')
  params = v['params']
  tx = p.wrap(optax.sgd(0.1))
  opt = tx.init(params)
  params, opt, info = p.event(0, 0, params, opt, jax.random.key(0))
  # Initial L1 mask at s - delta0 = 0.25 of every layer.
  cm0 = p.current_masks(opt)
  assert {k: int(m.sum()) for k, m in cm0.items()} == {
      l.group: l.size - int(np.ceil(0.25 * l.size)) for l in p.lays}
  before = jax.tree.map(np.array, params)
  # One step of zero gradients: the soft mask zeroes pruned weights.
  u, opt = tx.update(jax.tree.map(jnp.zeros_like, params), opt, params)
  params = optax.apply_updates(params, u)
  lay = p.lays[0]
  k = np.asarray(params[lay.kernel[0]][lay.kernel[1]][lay.kernel[2]])
  np.testing.assert_array_equal(k[..., ~cm0[lay.group]], 0)
  # At the final event, channels pruned at epoch 0 but kept now get their
  # last weights back.
  params, opt, info = p.event(0, 6, params, opt, jax.random.key(1))
  cm = p.current_masks(opt)
  assert info['delta'] == 0 and 0 < info['coverage_rate'] <= 1
  assert {k: int(m.sum()) for k, m in cm.items()} == {
      l.group: l.size - int(np.ceil(0.5 * l.size)) for l in p.lays}
  back = 0
  for l in p.lays:
    regrown = cm[l.group] & ~cm0[l.group]
    now = np.asarray(params[l.kernel[0]][l.kernel[1]][l.kernel[2]])
    was = before[l.kernel[0]][l.kernel[1]][l.kernel[2]]
    np.testing.assert_array_equal(now[..., regrown], was[..., regrown])
    back += regrown.sum()
  assert back > 0
  assert 0 < p.coverage(params, opt) <= 1


def test_regrowth_event_counts_and_stash_restore():
  """An event with delta > 0: Alg. 1 at s, plus the regrown channels; the
  channels pruned at epoch 0 and kept now get their stashed weights back,
  and the newly pruned ones are stashed."""
  _, v, g, p = small_pruner(allocation='uniform', delta0=0.3, every_epochs=2,
                            until_epoch=4)
  lookup = lambda tree, l: np.asarray(structure.lookup(tree, l.kernel))
  params = v['params']
  tx = p.wrap(optax.sgd(0.1))
  opt = tx.init(params)
  params, opt, _ = p.event(0, 0, params, opt, jax.random.key(0))
  cm0 = p.current_masks(opt)
  # Epoch 0 prunes s - delta0 = 0.2: ceil(1.6) = 2 of 8, ceil(3.2) = 4 of 16.
  assert {k: int((~m).sum()) for k, m in cm0.items()} == {
      l.group: {8: 2, 16: 4}[l.size] for l in p.lays}
  at_prune = jax.tree.map(np.array, params)
  rng = np.random.default_rng(0)
  for _ in range(3):  # Kept weights move on; pruned ones are held at zero.
    grads = jax.tree.map(lambda x: jnp.asarray(rng.normal(size=x.shape),
                                               x.dtype), params)
    u, opt = tx.update(grads, opt, params)
    params = optax.apply_updates(params, u)
  before = jax.tree.map(np.array, params)

  key = jax.random.key(3)
  params, opt, info = p.event(0, 2, params, opt, key)
  cm = p.current_masks(opt)
  # delta_2 = 0.3 (1 + cos(pi / 2)) / 2 = 0.15. Alg. 1 prunes ceil(0.5 n)
  # (4 of 8, 8 of 16); s - delta = 0.35 prunes ceil(2.8) = 3, ceil(5.6) = 6,
  # so 1 and 2 channels regrow.
  assert info['delta'] == pytest.approx(0.15)
  alg1, _ = reprune.select(jax.device_get(before), p.lays,
                           {l.group: l.size // 2 for l in p.lays}, key,
                           tie_break='lowest_index')
  stash = optax_lib.find_state(opt).aux['stash']
  restored = stashed = 0
  for l in p.lays:
    m, a = cm[l.group], np.asarray(alg1[l.group])
    assert not (a & ~m).any()  # Alg. 1's filters are all kept,
    assert int((m & ~a).sum()) == {8: 1, 16: 2}[l.size]  # plus the regrown.
    now, was = lookup(params, l), lookup(before, l)
    back = m & ~cm0[l.group]  # Pruned at epoch 0, kept now: stash values.
    np.testing.assert_array_equal(now[..., back],
                                  lookup(at_prune, l)[..., back])
    assert not np.any(was[..., back])  # (They were zero until now.)
    stay = m & cm0[l.group]
    np.testing.assert_array_equal(now[..., stay], was[..., stay])
    gone = cm0[l.group] & ~m  # Newly pruned: their weights are stashed.
    np.testing.assert_array_equal(lookup(stash, l)[..., gone],
                                  was[..., gone])
    restored += back.sum()
    stashed += gone.sum()
  assert restored > 0 and stashed > 0


def test_bad_settings_name_the_value():
  for field, value, match in [('allocation', 'l2', 'allowed: bn_gamma'),
                              ('linkage', 'centroid', 'allowed: ward'),
                              ('tie_break', 'first', 'allowed: lowest_index'),
                              ('sparsity', 1.5, 'sparsity=1.5'),
                              ('target_macs', 1.0, 'out of reach'),
                              ('every_epochs', 0, 'every_epochs=0; allowed'),
                              ('delta0', 0.6, r'delta0=0.6; allowed: 0 <= '
                               r'sparsity < 1 and 0 <= delta0 <= sparsity')]:
    with pytest.raises(JaxpruneError, match=match):
      small_pruner(**{field: value})
  with pytest.raises(JaxpruneError, match=r'target_macs=1000000.0 and '
                     r'reprune.target_reduction=0.5; allowed: one of them'):
    small_pruner(target_macs=1e6, target_reduction=0.5)
  with pytest.raises(JaxpruneError, match='no channel group'):
    small_pruner(exclude='.')


def test_bn_gamma_needs_scales():
  model = PlainNet()
  x = jnp.ones((2, 8, 8, 2))
  v = model.init(jax.random.key(0), x)
  g = structure.trace(model.apply, v, x)
  with pytest.raises(JaxpruneError, match=r"\['b', 'h'\] have no norm"):
    make_method('reprune', g, v['params'], num_epochs=2)
  p = make_method('reprune', g, v['params'], num_epochs=1,
                  allocation='uniform')
  tx = p.wrap(optax.sgd(0.1))
  params, opt, info = p.event(0, 0, v['params'], tx.init(v['params']),
                              jax.random.key(0))
  # One epoch: epoch 0 is the final event, Alg. 1 at s = 0.5 directly.
  assert info['delta'] == 0 and 'coverage_rate' in info
  assert {k: int(m.sum()) for k, m in p.current_masks(opt).items()} == {
      'b': 5, 'h': 6}
