"""The channel graph on the zoo and on hand-written Flax models."""
import warnings

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxprune import flops, models, structure
from jaxprune.structure import Member


def graph_of(name, shape, num_classes=10, **overrides):
  model = models.create(name, num_classes, **overrides)
  v = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(shape)))
  return structure.trace(model.apply, v, jax.ShapeDtypeStruct(shape,
                                                              jnp.float32))


def members(group):
  return {(m.collection, '/'.join(m.path), m.axis) for m in group.members}


def test_resnet56_groups():
  g = graph_of('resnet56', (1, 32, 32, 3))
  internal = [gr for gr in g.groups if gr.prunable and not gr.residual]
  assert len(internal) == 27
  assert sorted(gr.size for gr in internal) == [16] * 9 + [32] * 9 + [64] * 9
  for s in range(3):
    for b in range(9):
      gr = g.group(f'layer{s + 1}_{b}/conv1')
      p = f'layer{s + 1}_{b}'
      assert members(gr) == {
          ('params', f'{p}/conv1/kernel', 3), ('params', f'{p}/bn1/scale', 0),
          ('params', f'{p}/bn1/bias', 0), ('batch_stats', f'{p}/bn1/mean', 0),
          ('batch_stats', f'{p}/bn1/var', 0), ('params', f'{p}/conv2/kernel', 2)}
      assert gr.producers == [Member('params', (p, 'conv1', 'kernel'), 3)]
      assert gr.consumers == [Member('params', (p, 'conv2', 'kernel'), 2)]
  residual = [gr for gr in g.groups if gr.residual]
  # Option A: stage 1's stream, and the zero-padded halves of stages 2 and 3.
  assert sorted(gr.size for gr in residual) == [8, 8, 16, 16, 16]
  assert all(gr.prunable for gr in residual)
  stream = g.group('conv1')
  assert stream.residual and stream.size == 16
  # Stage 1 channels sit in the middle of stage 2 and 3 (offsets 8 and 24).
  idx = stream.index[Member('params', ('layer2_0', 'conv2', 'kernel'), 3)]
  np.testing.assert_array_equal(idx[:, 0], np.arange(8, 24))
  idx = stream.index[Member('params', ('layer3_0', 'conv2', 'kernel'), 3)]
  np.testing.assert_array_equal(idx[:, 0], np.arange(24, 40))
  io = [gr for gr in g.groups if not gr.prunable]
  assert {gr.reason for gr in io} == {
      'touches the model input (args[0], axis 3)',
      'touches the model output (the output, axis 1)'}


def test_resnet50_two_internal_groups_per_bottleneck():
  g = graph_of('resnet50', (1, 64, 64, 3), 1000)
  sizes = (3, 4, 6, 3)
  for s, n in enumerate(sizes):
    for b in range(n):
      for c, w in (('conv1', 64 * 2 ** s), ('conv2', 64 * 2 ** s)):
        gr = g.group(f'layer{s + 1}_{b}/{c}')
        assert gr.prunable and not gr.residual and gr.size == w
  internal = [gr for gr in g.groups if gr.prunable and not gr.residual]
  assert len(internal) == 2 * 16 + 1  # Plus the stem (no add after it).
  residual = [gr for gr in g.groups if gr.residual]
  assert sorted(gr.size for gr in residual) == [256, 512, 1024, 2048]


def test_mobilenet_v2_expansion_groups():
  g = graph_of('mobilenet_v2', (1, 64, 64, 3), 1000)
  for i in range(1, 17):
    gr = g.group(f'block{i}/expand_conv')
    p = f'block{i}'
    assert {('params', f'{p}/expand_conv/kernel', 3),
            ('params', f'{p}/expand_bn/scale', 0),
            ('params', f'{p}/dw_conv/kernel', 3),
            ('params', f'{p}/dw_bn/scale', 0),
            ('params', f'{p}/project_conv/kernel', 2)} <= members(gr)
    assert not gr.residual and gr.prunable
  assert g.group('block2/expand_conv').size == 144


def test_vit_small_heads_mlp_and_residual():
  g = graph_of('vit_small', (1, 32, 32, 3))
  for i in range(12):
    heads = g.group(f'block{i}/attn/query')
    assert heads.size == 6 and heads.prunable and not heads.residual
    p = f'block{i}/attn'
    assert {('params', f'{p}/query/kernel', 1), ('params', f'{p}/key/kernel', 1),
            ('params', f'{p}/value/kernel', 1),
            ('params', f'{p}/out/kernel', 0)} <= members(heads)
    mlp = g.group(f'block{i}/fc1')
    assert mlp.size == 1536 and not mlp.residual
    assert members(mlp) == {('params', f'block{i}/fc1/kernel', 1),
                            ('params', f'block{i}/fc1/bias', 0),
                            ('params', f'block{i}/fc2/kernel', 0)}
  width = g.group('patch_embed')
  assert width.size == 384 and width.residual and width.prunable
  assert ('params', 'cls_token', 2) in members(width)
  assert ('params', 'pos_embed', 2) in members(width)


class Concat(nn.Module):

  @nn.compact
  def __call__(self, x):
    a = nn.relu(nn.Conv(3, (3, 3), name='a')(x))
    b = nn.relu(nn.Conv(5, (1, 1), name='b')(x))
    y = jnp.concatenate([a, b], axis=-1)
    return nn.Dense(2, name='head')(nn.Conv(4, (3, 3), name='c')(y).mean((1, 2)))


def test_concatenation_maps_offsets():
  model = Concat()
  x = jnp.ones((1, 6, 6, 2))
  v = model.init(jax.random.key(0), x)
  g = structure.trace(model.apply, v, x)
  a, b = g.group('a'), g.group('b')
  assert (a.size, b.size) == (3, 5)
  c_in = Member('params', ('c', 'kernel'), 2)
  np.testing.assert_array_equal(a.index[c_in][:, 0], [0, 1, 2])
  np.testing.assert_array_equal(b.index[c_in][:, 0], [3, 4, 5, 6, 7])
  masks = {'a': jnp.array([True, False, True]),
           'b': jnp.array([False, True, True, False, True])}
  pm = g.param_masks(masks)
  np.testing.assert_array_equal(
      pm['params']['c']['kernel'].reshape(-1),
      [1, 0, 1, 0, 1, 1, 0, 1])
  # MACs: c sees 5 of 8 inputs; a keeps 2 of 3 and b 3 of 5 outputs.
  expect = 36 * (9 * 2 * 2) + 36 * (2 * 3) + 36 * (9 * 5 * 4) + 4 * 2
  assert g.macs(masks) == expect


def test_unknown_primitive_warns_and_blocks():
  prim = jax.extend.core.Primitive('jaxprune_test_mystery')
  prim.def_impl(lambda x: x * 2)
  prim.def_abstract_eval(lambda x: jax.core.ShapedArray(x.shape, x.dtype))

  class Net(nn.Module):

    @nn.compact
    def __call__(self, x):
      y = nn.Dense(4, name='d1')(x)
      y = prim.bind(y)
      z = nn.Dense(6, name='d2')(x)
      return nn.Dense(3, name='d3')(nn.relu(nn.Dense(5, name='d4')(z))) + \
          y.sum(-1, keepdims=True)

  model = Net()
  x = jnp.ones((2, 7))
  v = model.init(jax.random.key(0), x)
  with warnings.catch_warnings(record=True) as w:
    warnings.simplefilter('always')
    g = structure.trace(model.apply, v, x)
  msgs = [str(m.message) for m in w if 'jaxprune_test_mystery' in str(m.message)]
  assert len(msgs) == 1
  assert not g.group('d1').prunable
  assert 'jaxprune_test_mystery' in g.group('d1').reason
  assert g.group('d2').prunable and g.group('d4').prunable


def test_flattened_features_map_by_stride():
  class Flat(nn.Module):

    @nn.compact
    def __call__(self, x):
      y = nn.Conv(3, (3, 3), name='conv')(x)  # [B, 2, 2, 3]
      return nn.Dense(4, name='fc')(y.reshape(y.shape[0], -1))

  model = Flat()
  x = jnp.ones((1, 2, 2, 1))
  v = model.init(jax.random.key(0), x)
  g = structure.trace(model.apply, v, x)
  gr = g.group('conv')
  idx = gr.index[Member('params', ('fc', 'kernel'), 0)]
  # Flattened index = (h * 2 + w) * 3 + c.
  np.testing.assert_array_equal(idx[1], [1, 4, 7, 10])


def reference_param_mask(g, coll, path, shape, channel_masks):
  """numpy: the outer product over axes of each axis's keep-mask, where an
  axis position is kept unless a group maps a pruned channel onto it."""
  full = np.ones(shape, bool)
  for a, n in enumerate(shape):
    keep = np.ones(n, bool)
    for gr, idx in g.groups_of(Member(coll, path, a)):
      if gr.name in channel_masks:
        m = np.asarray(channel_masks[gr.name])
        for j in range(gr.size):
          keep[idx[j]] &= m[j]
    bshape = [1] * len(shape)
    bshape[a] = n
    full &= keep.reshape(bshape)
  return full


@pytest.mark.parametrize('name,shape', [('resnet20', (1, 8, 8, 3)),
                                        ('vit_micro', (1, 8, 8, 3))])
def test_param_masks_jit_does_not_recompile(name, shape):
  g = graph_of(name, shape)
  f = jax.jit(g.param_masks)
  m1 = g.full_masks()
  rng = np.random.default_rng(0)
  m2 = {k: jnp.asarray(rng.random(v.shape) < 0.6) for k, v in m1.items()}
  a, b = f(m1), f(m2)
  assert f._cache_size() == 1  # pylint: disable=protected-access
  pruned_leaves = 0
  for (coll, path, leaf), ma, mb in zip(g.leaves, jax.tree.leaves(a),
                                        jax.tree.leaves(b)):
    shp = np.shape(leaf)
    assert np.broadcast_to(ma, shp).all(), path
    want = reference_param_mask(g, coll, path, shp, m2)
    np.testing.assert_array_equal(np.broadcast_to(mb, shp), want,
                                  err_msg='/'.join(path))
    pruned_leaves += not want.all()
  assert pruned_leaves > len(g.leaves) // 3


def test_macs_match_flops_when_dense():
  for name, shape in (('resnet56', (1, 32, 32, 3)),
                      ('mobilenet_v2', (1, 64, 64, 3)),
                      ('vit_micro', (1, 8, 8, 3))):
    model = models.create(name, 10)
    v = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(shape)))
    x = jax.ShapeDtypeStruct(shape, jnp.float32)
    g = structure.trace(model.apply, v, x)
    assert g.macs(g.full_masks()) == flops.count(model.apply, v, x).macs


def test_bad_mask_names():
  g = graph_of('resnet20', (1, 8, 8, 3))
  with pytest.raises(ValueError, match="Unknown group.*'nope'"):
    g.param_masks({'nope': jnp.ones(3, bool)})
  with pytest.raises(ValueError, match='expected \\(16,\\)'):
    g.macs({'layer1_0/conv1': np.ones(3, bool)})


def test_macs_exact_ints_and_under_jit():
  g = graph_of('resnet50', (1, 224, 224, 3), 1000)
  rng = np.random.default_rng(1)
  cm = {gr.name: rng.random(gr.size) < 0.7 for gr in g.prunable}
  macs = g.macs(cm)
  # An exact Python int, beyond what float32 holds.
  assert type(macs) is int and int(np.float32(macs)) != macs
  # By hand on the classifier: its input channels are the last stage's.
  full = g.macs(g.full_masks())
  assert full == 4_089_184_256
  # Inside jit: a float32 scalar within float32 rounding; masks may mix
  # traced and concrete arrays.
  jm = {k: jnp.asarray(v) for k, v in cm.items()}
  got = jax.jit(g.macs)(jm)
  assert got.dtype == jnp.float32 and abs(float(got) / macs - 1) < 1e-6
  first = next(iter(cm))
  mixed = jax.jit(lambda m: g.macs({**cm, first: m}))(jm[first])
  assert abs(float(mixed) / macs - 1) < 1e-6


def test_macs_count_scan_bodies_per_step():
  class Scanned(nn.Module):

    @nn.compact
    def __call__(self, x):
      x = nn.Dense(6, name='inp')(x)

      def body(mdl, c, _):
        return c + nn.Dense(6, name='shared')(nn.relu(c)), None
      x, _ = nn.scan(body, variable_broadcast='params',
                     split_rngs={'params': False}, length=3)(self, x, None)
      h = nn.relu(nn.Dense(5, name='mid')(x))
      return nn.Dense(2, name='out')(h)

  model = Scanned()
  x = jnp.ones((1, 4))
  v = model.init(jax.random.key(0), x)
  g = structure.trace(model.apply, v, x)
  # 4 x 6 + 3 steps x 6 x 6 + 6 x 5 + 5 x 2.
  assert g.macs(g.full_masks()) == 24 + 108 + 30 + 10
  assert g.macs(g.full_masks()) == flops.count(model.apply, v, x).macs
  cm = {'mid': np.array([True, False, True, False, False])}
  assert g.macs(cm) == 24 + 108 + 12 + 4
