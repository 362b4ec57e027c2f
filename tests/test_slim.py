"""Physical slimming equals masking, on the zoo and on custom models."""
import collections
import functools
import json
import os
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxprune import flops, masks as masks_lib, models, slim, structure

ZOO = {
    # name: (input shape, overrides) -- narrow widths keep the tests fast.
    'resnet20': ((2, 8, 8, 3), {}),
    'resnet20_b': ((2, 8, 8, 3), {'shortcut': 'B'}),
    'resnet50': ((2, 32, 32, 3), {'stem_width': 16,
                                  'stage_widths': (32, 48, 64, 80),
                                  'block_widths': ((8, 12),) * 16}),
    'resnet18': ((2, 32, 32, 3), {'stem_width': 16,
                                  'stage_widths': (16, 24, 32, 40),
                                  'block_widths': ((12,),) * 8}),
    'mobilenet_v2': ((2, 32, 32, 3), {'hidden_widths': 24,
                                      'block_out_widths': 16}),
    'vit_micro': ((2, 8, 8, 3), {}),
}


@functools.lru_cache(maxsize=None)
def setup(key):
  shape, overrides = ZOO[key]
  name = key.split('_b')[0] if key.endswith('_b') else key
  model = models.create(name, 10, **overrides)
  x = jax.random.normal(jax.random.key(1), shape)
  v = model.init(jax.random.key(0), x)
  if 'batch_stats' in v:  # Non-trivial running statistics.
    k = iter(jax.random.split(jax.random.key(5), 1000))
    v = {**v, 'batch_stats': jax.tree.map(
        lambda a: a * (1 + 0.2 * jax.random.uniform(next(k), a.shape))
        + 0.05 * jax.random.normal(next(k), a.shape), v['batch_stats'])}
  graph = structure.trace(model.apply, v, x, train=False)
  return name, model, x, v, graph


def close(a, b, tol=1e-4):
  scale = max(float(jnp.abs(b).max()), 1e-6)
  assert float(jnp.abs(a - b).max()) <= tol * scale


@pytest.mark.parametrize('key,seed,keep', [  # Every model, light and heavy.
    (k, i, (0.3, 0.7)[i % 2]) for i, k in enumerate(sorted(ZOO))])
def test_slim_equals_masked_on_the_zoo(key, seed, keep):
  name, model, x, v, g = setup(key)
  cm = masks_lib.random(g, jax.random.key(seed), keep)
  pm = g.param_masks(cm)
  masked = masks_lib.apply(v, pm)
  ref = model.apply(masked, x, train=False)
  sv, sf = slim.slim(model.apply, v, g, cm, x, train=False)
  close(sf(sv, x), ref)
  # Every variable holds exactly its kept entries: strictly fewer wherever
  # the masks prune it, all of them where they do not.
  shrank = 0
  for (_, _, leaf), m, s_leaf in zip(g.leaves, jax.tree.leaves(pm),
                                     jax.tree.leaves(sv)):
    kept = int(np.broadcast_to(np.asarray(m), np.shape(leaf)).sum())
    assert np.size(s_leaf) == kept
    shrank += kept < np.size(leaf)
  assert shrank > 0
  counts = flops.count(sf, sv, x)
  assert g.macs(cm) == counts.macs
  assert counts.params == sum(int(np.prod(np.shape(a))) for a in
                              jax.tree.leaves(sv['params']))


# Option-B projections, depthwise convs and attention (the other ResNets add
# nothing new in train mode and cost minutes).
@pytest.mark.parametrize('key', ['resnet20_b', 'mobilenet_v2', 'vit_micro'])
def test_slim_train_mode_batch_stats(key):
  """apply_fn may be anything: here a train step that updates batch stats
  (the updates are sliced like the statistics, so every group stays
  prunable)."""
  name, model, x, v, g = setup(key)
  fn = lambda v, x: model.apply(v, x, train=True, mutable=['batch_stats'],
                                rngs={'dropout': jax.random.key(0)})
  gt = structure.trace(fn, v, x)
  assert gt.prunable  # Else the comparison below would prune nothing.
  assert [gr.name for gr in gt.prunable] == [gr.name for gr in g.prunable]
  cm = masks_lib.random(gt, jax.random.key(3), 0.6)
  ref_out, ref_vars = fn(masks_lib.apply(v, gt.param_masks(cm)), x)
  sv, sf = slim.slim(fn, v, gt, cm, x)
  out, new_vars = sf(sv, x)
  # Batch normalisation over 2 examples amplifies float rounding.
  close(out, ref_out, 1e-3)
  if 'batch_stats' in v:
    ref_stats = slim.slim_variables(gt, {**v, **ref_vars}, cm)['batch_stats']
    jax.tree.map(lambda a, b: close(a, b, 1e-3), new_vars['batch_stats'],
                 ref_stats)
    assert jax.tree.map(np.shape, new_vars['batch_stats']) == jax.tree.map(
        np.shape, sv['batch_stats'])


@pytest.mark.parametrize('key', ['resnet20_b', 'resnet50', 'resnet18',
                                 'mobilenet_v2', 'vit_micro'])
def test_zoo_module_with_slim_widths(key):
  name, model, x, v, g = setup(key)
  # The zoo ViT has one head_dim, and its LayerNorms normalise over the kept
  # width only, so for it only heads and MLP neurons are slimmed here.
  allowed = [gr.name for gr in g.prunable if not name.startswith('vit') or (
      gr.name.endswith('/attn/query') or gr.name.endswith('/fc1'))]
  cm = masks_lib.random(g, jax.random.key(4), 0.5, groups=allowed)
  sv, sf = slim.slim(model.apply, v, g, cm, x, train=False)
  overrides = {**ZOO[key][1], **slim.zoo_overrides(name, sv['params'])}
  small = models.create(name, 10, **overrides)
  close(small.apply(sv, x, train=False), sf(sv, x))
  # Params shapes agree exactly with a fresh init of the small module.
  fresh = jax.eval_shape(lambda: small.init(jax.random.key(0), x))
  assert jax.tree.map(np.shape, fresh) == jax.tree.map(np.shape, sv)


def _compiled_ops(fn, *args):
  """{(result shape, opcode): count} of the optimized XLA program."""
  text = jax.jit(fn).lower(*args).compile().as_text()
  return collections.Counter(re.findall(r'= (\S+) ([\w-]+)\(', text))


@pytest.mark.parametrize('train', [False, True])
def test_slim_compiles_to_the_native_modules_program(train):
  # The re-specialised pass costs nothing over the zoo module built at
  # the same widths: XLA gets the same ops at the same shapes.
  name, model, x, v, _ = setup('resnet20')
  apply = lambda m: (
      functools.partial(m.apply, train=True, mutable=['batch_stats'])
      if train else functools.partial(m.apply, train=False))
  fn = apply(model)
  g = structure.trace(fn, v, x)
  cm = masks_lib.random(g, jax.random.key(9), 0.5)
  sv, sf = slim.slim(fn, v, g, cm, x)
  native = apply(models.create(name, 10,
                               **slim.zoo_overrides(name, sv['params'])))
  if train:  # The train step's backward pass too.
    grad = lambda f: lambda v, x: jax.grad(
        lambda p: f({**v, 'params': p}, x)[0].sum())(v['params'])
    sf, native = grad(sf), grad(native)
  ops, want = _compiled_ops(sf, sv, x), _compiled_ops(native, sv, x)
  if train:  # Elementwise fusion may differ; the MAC-bearing ops may not.
    ops, want = ({k: n for k, n in c.items() if k[1] in ('convolution', 'dot')}
                 for c in (ops, want))
  assert ops == want
  # ResNet-20: 19 convs forward; backward adds input and kernel gradients.
  convs = sum(n for (_, op), n in ops.items() if op == 'convolution')
  assert convs == (19 * 3 - 1 if train else 19)


def test_other_batch_sizes_retrace():
  name, model, x, v, g = setup('resnet20')
  cm = masks_lib.random(g, jax.random.key(7), 0.5)
  sv, sf = slim.slim(model.apply, v, g, cm, x, train=False)
  x5 = jax.random.normal(jax.random.key(8), (5, 8, 8, 3))
  close(sf(sv, x5), model.apply(masks_lib.apply(v, g.param_masks(cm)), x5,
                                train=False))
  close(jax.jit(sf)(sv, x5), sf(sv, x5), 1e-5)


def test_abstract_variables_give_the_same_slim_function():
  # Shape structs in, shape structs out: the slim function is built from
  # shapes only, and applied to the real slim variables gives the same.
  name, model, x, v, g = setup('resnet20')
  cm = masks_lib.random(g, jax.random.key(3), 0.5)
  sv, sf = slim.slim(model.apply, v, g, cm, x, train=False)
  structs = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), v)
  av, af = slim.slim(model.apply, structs, g, cm, x, train=False)
  assert all(isinstance(a, jax.ShapeDtypeStruct) for a in jax.tree.leaves(av))
  assert jax.tree.map(np.shape, av) == jax.tree.map(np.shape, sv)
  np.testing.assert_array_equal(af(sv, x), sf(sv, x))


def test_round_to_rounds_up():
  _, model, x, v, g = setup('resnet20')
  cm = {gr.name: jnp.arange(gr.size) < 3 for gr in g.prunable}
  r = slim.round_masks(g, cm, 8)
  assert all(int(m.sum()) == min(8, g.group(k).size) for k, m in r.items())
  assert all(bool(m[:3].all()) for m in r.values())
  # Scores that rise with the index reverse the default order: the highest
  # pruned indices come back first.
  scores = {k: np.arange(g.group(k).size).astype(float) for k in cm}
  for k, m in slim.round_masks(g, cm, 8, scores).items():
    size = g.group(k).size
    want = np.arange(size) < 3
    want[max(3, size - 5):] = True
    np.testing.assert_array_equal(m, want, err_msg=k)
  # Hand-made scores on one group of 16: kept {0, 1, 2}; restore the five
  # best-scored pruned channels, 9, 4, 12, 7, 15.
  name16 = next(gr.name for gr in g.prunable if gr.size == 16)
  sc = np.zeros(16)
  sc[[9, 4, 12, 7, 15, 0]] = [10., 9., 8., 7., 6., 100.]
  m = slim.round_masks(g, {name16: cm[name16]}, 8, {name16: sc})[name16]
  np.testing.assert_array_equal(np.flatnonzero(m), [0, 1, 2, 4, 7, 9, 12, 15])
  sv, sf = slim.slim(model.apply, v, g, cm, x, round_to=4, train=False)
  assert sv['params']['layer1_0']['conv1']['kernel'].shape[-1] == 4
  close(sf(sv, x), model.apply(masks_lib.apply(v, g.param_masks(
      slim.round_masks(g, cm, 4))), x, train=False))
  with pytest.raises(ValueError, match='round_to=0'):
    slim.round_masks(g, cm, 0)


def test_unprunable_group_mask_is_refused():
  _, model, x, v, g = setup('resnet20')
  bad = [gr for gr in g.groups if not gr.prunable][0]
  with pytest.raises(ValueError, match='not prunable'):
    slim.slim(model.apply, v, g, {bad.name: np.zeros(bad.size, bool)}, x)


class Custom(nn.Module):
  """Someone else's model: concat, grouped conv, heads via reshape, scan."""

  @nn.compact
  def __call__(self, x):
    a = nn.gelu(nn.Conv(6, (3, 3), name='a')(x))
    b = nn.relu(nn.Conv(4, (1, 1), name='b')(x))
    y = nn.relu(nn.Conv(6, (3, 3), name='c')(jnp.concatenate([a, b], -1)))
    y = nn.Conv(10, (3, 3), feature_group_count=2, name='grouped')(y)
    y = nn.LayerNorm(name='ln')(y)
    t = y.reshape(y.shape[0], -1, 10)
    qkv = nn.Dense(3 * 8, name='qkv')(t).reshape(t.shape[0], t.shape[1], 3, 2, 4)
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
    att = jax.nn.softmax(jnp.einsum('bqhd,bkhd->bhqk', q, k), -1)
    o = jnp.einsum('bhqk,bkhd->bqhd', att, v).reshape(t.shape[0], t.shape[1], 8)
    t = t + nn.Dense(10, name='proj')(o)

    def body(c, _):
      return c + nn.Dense(10, name='shared')(jnp.tanh(c)), None
    t, _ = nn.scan(lambda m, c, _: body(c, _), variable_broadcast='params',
                   split_rngs={'params': False}, length=2)(self, t, None)
    return nn.Dense(3, name='head')(t.mean(1))


def test_custom_model_slims_exactly():
  model = Custom()
  x = jax.random.normal(jax.random.key(0), (2, 5, 5, 3))
  v = model.init(jax.random.key(1), x)
  g = structure.trace(model.apply, v, x)
  names = {gr.name for gr in g.prunable}
  # a, b: concatenated; c's 6 outputs feed 2 conv groups of 3 channels, so
  # they split into a group of 2 (whole conv groups) and one of 3 (the same
  # channel in every conv group); qkv splits into 2 heads x 4 dims.
  assert {'a', 'b', 'c@0', 'c@0:3', 'qkv@0', 'qkv@0:1'} <= names, names
  assert (g.group('c@0').size, g.group('c@0:3').size) == (2, 3)
  assert not g.group('a').residual and g.group('c@0').residual
  for seed in range(4):
    cm = masks_lib.random(g, jax.random.key(seed), 0.5)
    ref = model.apply(masks_lib.apply(v, g.param_masks(cm)), x)
    sv, sf = slim.slim(model.apply, v, g, cm, x)
    close(sf(sv, x), ref)
    assert g.macs(cm) == flops.count(sf, sv, x).macs


def test_export_round_trip(tmp_path):
  _, model, x, v, g = setup('resnet20')
  cm = masks_lib.random(g, jax.random.key(9), 0.5)
  sv, sf = slim.slim(model.apply, v, g, cm, x, train=False)
  path = slim.export(sf, sv, x, path=str(tmp_path / 'exp'))
  assert sorted(os.listdir(path)) == ['forward_b2.jax_exported', 'meta.json',
                                      'variables.msgpack']
  call, loaded = slim.load_export(path)
  close(call(loaded, x), sf(sv, x), 1e-6)
  with open(os.path.join(path, 'meta.json')) as f:
    meta = json.load(f)
  # params: the 'params' collection (as flops.count and results.json count
  # it); variables: batch statistics too.
  assert meta['params'] == flops.count(sf, sv, x).params == g.num_params(cm)
  assert meta['variables'] == meta['params'] + sum(
      np.size(a) for a in jax.tree.leaves(sv['batch_stats']))
  with pytest.raises(ValueError, match=r'batch size 5; allowed: \[2\]'):
    call(loaded, jnp.zeros((5, 8, 8, 3)))


def test_export_other_batch_sizes_and_train_mode(tmp_path):
  _, model, x, v, g = setup('resnet20')
  cm = masks_lib.random(g, jax.random.key(10), 0.5)
  sv, sf = slim.slim(model.apply, v, g, cm, x, train=False)
  path = slim.export(sf, sv, x, path=str(tmp_path / 'eval'),
                     batch_sizes=(1, 5))
  call, loaded = slim.load_export(path)
  for b in (1, 5):
    xb = jax.random.normal(jax.random.key(b), (b, 8, 8, 3))
    close(call(loaded, xb), model.apply(masks_lib.apply(
        v, g.param_masks(cm)), xb, train=False))
  # Train mode: batch statistics of the batch, and updated running ones.
  fn = lambda v, x: model.apply(v, x, train=True, mutable=['batch_stats'])
  gt = structure.trace(fn, v, x)
  sv, sf = slim.slim(fn, v, gt, cm, x)
  path = slim.export(sf, sv, x, path=str(tmp_path / 'train'),
                     batch_sizes=(3,))
  call, loaded = slim.load_export(path)
  x3 = jax.random.normal(jax.random.key(3), (3, 8, 8, 3))
  out, new = call(loaded, x3)
  ref_out, ref_new = fn(masks_lib.apply(v, gt.param_masks(cm)), x3)
  close(out, ref_out, 1e-3)
  ref_stats = slim.slim_variables(gt, {**v, **ref_new}, cm)['batch_stats']
  jax.tree.map(lambda a, b: close(a, b, 1e-3), new['batch_stats'], ref_stats)
  assert np.shape(new['batch_stats']['layer1_0']['bn1']['mean']) == (
      int(cm['layer1_0/conv1'].sum()),)
  with pytest.raises(ValueError, match='batch_sizes=\\(0,\\); allowed'):
    slim.export(sf, sv, x, path=str(tmp_path / 'bad'), batch_sizes=(0,))


def test_remat_and_custom_vjp_are_followed():
  @jax.custom_vjp
  def scale(x):
    return 2.0 * x
  scale.defvjp(lambda x: (2.0 * x, None), lambda _, g: (2.0 * g,))

  class Net(nn.Module):

    @nn.compact
    def __call__(self, x):
      h = nn.remat(nn.Dense)(12, name='d1')(x)
      h = scale(nn.relu(h))
      return nn.Dense(3, name='d2')(h)

  model = Net()
  x = jax.random.normal(jax.random.key(0), (4, 5))
  v = model.init(jax.random.key(1), x)
  g = structure.trace(model.apply, v, x)
  assert g.group('d1').prunable and g.group('d1').size == 12
  cm = {'d1': jnp.arange(12) % 3 == 0}
  sv, sf = slim.slim(model.apply, v, g, cm, x)
  assert sv['params']['d2']['kernel'].shape == (4, 3)
  close(sf(sv, x), model.apply(masks_lib.apply(v, g.param_masks(cm)), x))


class SizesGraph:
  """The part of a ChannelGraph that round_masks reads."""

  def __init__(self, **sizes):
    self.sizes = sizes

  def group(self, name):
    return type('G', (), {'size': self.sizes[name]})()


def test_round_masks_by_hand():
  g = SizesGraph(a=10, b=6, c=4)
  cm = {'a': np.array([0, 1, 0, 0, 1, 0, 0, 0, 1, 0], bool),  # 3 kept.
        'b': np.array([1, 1, 1, 1, 0, 0], bool),  # 4: a multiple already.
        'c': np.array([0, 0, 1, 0], bool)}  # 1 kept.
  r = slim.round_masks(g, cm, 4)
  # a: 3 -> 4, the lowest pruned index (0) comes back; b unchanged; c: 1 ->
  # 4 (its size).
  np.testing.assert_array_equal(np.flatnonzero(r['a']), [0, 1, 4, 8])
  np.testing.assert_array_equal(r['b'], cm['b'])
  assert r['c'].all()
  # a: 3 -> 8, never past the size (6 for b).
  assert int(slim.round_masks(g, cm, 8)['a'].sum()) == 8
  assert int(slim.round_masks(g, cm, 8)['b'].sum()) == 6
  # round_to=1 changes nothing.
  for k, m in slim.round_masks(g, cm, 1).items():
    np.testing.assert_array_equal(m, cm[k])
  # Scores: the best-scored pruned channels come back first; groups
  # without scores use the index order.
  sc = {'a': np.array([0., 9., 5., 7., 9., 1., 8., 2., 0., 6.])}
  r = slim.round_masks(g, cm, 4, sc)
  np.testing.assert_array_equal(np.flatnonzero(r['a']), [1, 4, 6, 8])
  r = slim.round_masks(g, cm, 8, sc)
  np.testing.assert_array_equal(np.flatnonzero(r['a']),
                                [1, 2, 3, 4, 6, 7, 8, 9])
  np.testing.assert_array_equal(r['b'], [1, 1, 1, 1, 1, 1])
  # The input masks are not changed.
  assert int(cm['a'].sum()) == 3
  for bad in (0, -4, 2.0, None):
    with pytest.raises(ValueError, match=f'round_to={bad!r}; allowed'):
      slim.round_masks(g, cm, bad)
