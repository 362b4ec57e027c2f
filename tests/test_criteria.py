"""Importance criteria and top-k rules, against numbers worked by hand."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxprune.errors import JaxpruneError
from jaxprune.methods import criteria
from jaxprune.methods.units import Unit

# A 1x2 kernel with 2 inputs and 3 filters: filter c = W[..., c].
W = np.array([[[[1., -2., 0.], [3., 0., -1.]],
               [[-1., 2., 0.], [0., 4., 2.]]]])  # [1, 2, 2, 3]
PARAMS = {'conv': {'kernel': W}, 'bn': {'scale': np.array([0.5, -2., 1.])},
          'bn2': {'scale': np.array([1.5, 0., -1.])},
          'q': {'kernel': np.arange(12.).reshape(2, 6) - 5}}
UNIT = Unit('conv', 3, 'channel', ((('conv', 'kernel'), -1),),
            kernel=('conv', 'kernel'), gammas=(('bn', 'scale'),))


def test_filter_norms_by_hand():
  # |W| per filter: (1+3+1+0, 2+0+2+4, 0+1+0+2) = (5, 8, 3).
  np.testing.assert_allclose(criteria.filter_norm(PARAMS, UNIT), [5, 8, 3])
  # sqrt of squares: (1+9+1, 4+4+16, 1+4).
  np.testing.assert_allclose(criteria.filter_norm(PARAMS, UNIT, 'l2'),
                             np.sqrt([11, 24, 5]), rtol=1e-6)
  with pytest.raises(JaxpruneError, match="norm='l3'; allowed: l1, l2"):
    criteria.filter_norm(PARAMS, UNIT, 'l3')
  with pytest.raises(JaxpruneError, match='no kernel'):
    criteria.filter_norm(PARAMS, Unit('g', 3, 'channel', ()))


def test_bn_gamma_by_hand():
  np.testing.assert_allclose(criteria.bn_gamma(PARAMS, UNIT), [0.5, 2., 1.])
  two = Unit('conv', 3, 'channel', (), gammas=(('bn', 'scale'),
                                                ('bn2', 'scale')))
  np.testing.assert_allclose(criteria.bn_gamma(PARAMS, two), [1., 1., 1.])
  with pytest.raises(JaxpruneError, match='no normalisation scale'):
    criteria.bn_gamma(PARAMS, Unit('g', 3, 'channel', ()))


def test_magnitude_sums_every_producer_and_composite_entries():
  np.testing.assert_allclose(criteria.magnitude(PARAMS, UNIT), [5, 8, 3])
  # q: [2, 6] = [[-5..0], [1..6]]; |q| column sums: 6 5 4 3 2 6 ... by hand:
  # columns (-5, 1) (-4, 2) (-3, 3) (-2, 4) (-1, 5) (0, 6) -> 6 6 6 6 6 6.
  # Two heads of 3 entries: {0, 1, 2}, {3, 4, 5}; plus the conv's filters
  # (a second producer of 3 entries, plain).
  heads = Unit('h', 2, 'head', ((('q', 'kernel'), 1),
                                (('conv', 'kernel'), 3)),
               index=(np.array([[0, 1, 2], [3, 4, 5]]),
                      np.array([[0, 1], [1, 2]])))
  np.testing.assert_allclose(criteria.magnitude(PARAMS, heads),
                             [18 + 5 + 8, 18 + 8 + 3])


def test_unit_and_axis_sums():
  x = jnp.arange(24.).reshape(2, 3, 4)
  np.testing.assert_allclose(criteria.axis_sums(x, 1), [60, 92, 124])
  np.testing.assert_allclose(criteria.axis_sums(x, 0), [66, 210])
  np.testing.assert_allclose(criteria.unit_sums(x, 1, np.array([[0, 2],
                                                                [1, 1]])),
                             [184, 184])


def test_top_k_ties_go_to_the_lower_index():
  s = jnp.array([3., 1., 3., 2., 1.])
  np.testing.assert_array_equal(criteria.top_k(s, 1),
                                [True, False, False, False, False])
  np.testing.assert_array_equal(criteria.top_k(s, 2),
                                [True, False, True, False, False])
  np.testing.assert_array_equal(criteria.top_k(s, 4),
                                [True, True, True, True, False])
  assert int(criteria.top_k(s, 0).sum()) == 0
  assert int(criteria.top_k(s, 5).sum()) == 5


def test_global_top_ranks_over_groups():
  scores = {'a': np.array([0.5, 3.0]), 'b': np.array([1.0, 3.0, 0.1])}
  got = criteria.global_top(scores, 3)
  # 3.0 (a1), 3.0 (b1; the earlier group first on a tie), then 1.0 (b0).
  np.testing.assert_array_equal(got['a'], [False, True])
  np.testing.assert_array_equal(got['b'], [True, True, False])
  got = criteria.global_top(scores, 1)
  np.testing.assert_array_equal(got['a'], [False, True])
  assert not got['b'].any()
  assert all(m.all() for m in criteria.global_top(scores, 5).values())
  assert not any(m.any() for m in criteria.global_top(scores, 0).values())
  with pytest.raises(ValueError, match='keep=6; allowed: 0..5'):
    criteria.global_top(scores, 6)
  with pytest.raises(ValueError, match='keep=-1; allowed: 0..5'):
    criteria.global_top(scores, -1)


def test_magnitude_masks_by_hand():
  params = {'a': {'kernel': np.array([[4., -1.], [0.5, 3.]])},
            'b': {'kernel': np.array([-2., 6., 0.25])},
            'head': {'kernel': np.array([9.])}}
  paths = [('a', 'kernel'), ('b', 'kernel')]
  # 7 weights; rate 0.4 -> int(2.8) = 2 smallest |w| go: 0.25 and 0.5.
  m = criteria.magnitude_masks(params, paths, 0.4)
  np.testing.assert_array_equal(m['a']['kernel'], [[True, True],
                                                   [False, True]])
  np.testing.assert_array_equal(m['b']['kernel'], [True, True, False])
  assert m['head']['kernel'].shape == (1,) and m['head']['kernel'].all()
  # Of the 5 left, rate 0.5 -> int(2.5) = 2 more go: |-1| and |-2|.
  m2 = criteria.magnitude_masks(params, paths, 0.5, m)
  np.testing.assert_array_equal(m2['a']['kernel'], [[True, False],
                                                    [False, True]])
  np.testing.assert_array_equal(m2['b']['kernel'], [False, True, False])
  # keep= instead of rate: the 2 largest of the 5 remaining, 6 and 4.
  m3 = criteria.magnitude_masks(params, paths, current=m, keep=2)
  np.testing.assert_array_equal(m3['a']['kernel'], [[True, False],
                                                    [False, False]])
  np.testing.assert_array_equal(m3['b']['kernel'], [False, True, False])
  # Ties at the threshold: the later weight in paths order is kept.
  tied = {'a': {'kernel': np.array([1., 1.])}, 'b': {'kernel': np.array([1.])}}
  mt = criteria.magnitude_masks(tied, [('a', 'kernel'), ('b', 'kernel')],
                                keep=1)
  np.testing.assert_array_equal(mt['a']['kernel'], [False, False])
  np.testing.assert_array_equal(mt['b']['kernel'], [True])
  for kwargs, match in (({}, 'exactly one'),
                        ({'rate': 0.5, 'keep': 1}, 'exactly one'),
                        ({'rate': 1.0}, 'rate=1.0; allowed'),
                        ({'rate': -0.1}, 'rate=-0.1; allowed'),
                        ({'keep': 8}, 'keep=8; allowed: 0..7'),
                        ({'keep': -1}, 'keep=-1; allowed: 0..7')):
    with pytest.raises(ValueError, match=match):
      criteria.magnitude_masks(params, paths, **kwargs)


class Net(nn.Module):
  """BatchNorm (so that train= matters), then a 3-unit layer on tokens."""

  @nn.compact
  def __call__(self, x, train=False):
    x = nn.BatchNorm(use_running_average=not train, name='bn')(x)
    h = nn.Dense(3, name='mid')(x)
    return nn.Dense(2, name='out')(nn.relu(h)).sum(1)


def net():
  x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 4, 5)),
                  jnp.float32)
  model = Net()
  v = model.init(jax.random.key(0), x)
  # Running statistics unlike the batch's, so eval and train mode differ.
  v = {'params': v['params'], 'batch_stats': {'bn': {
      'mean': jnp.full((5,), 0.5), 'var': jnp.full((5,), 4.0)}}}
  return model, v, x


def test_activation_norms_by_hand():
  model, v, x = net()
  # Unit axis 1 of the [5, 3] kernel: output axis 3 - (2 - 1) = 2 of the
  # [2, 4, 3] output.
  u = Unit('mid', 3, 'neuron', ((('mid', 'kernel'), 1),))
  xn = (np.asarray(x) - 0.5) / np.sqrt(4.0 + 1e-5)  # Eval mode.
  y = xn @ np.asarray(v['params']['mid']['kernel']) + np.asarray(
      v['params']['mid']['bias'])
  got = criteria.activation(model.apply, v, x, [u], 'l1')['mid']
  np.testing.assert_allclose(got, np.abs(y).sum((0, 1)), rtol=1e-5)
  got = criteria.activation(model.apply, v, x, [u], 'l2')['mid']
  np.testing.assert_allclose(got, np.sqrt((y * y).sum((0, 1))), rtol=1e-5)
  # Two units of entries {0, 2} and {1}: sums of their entries' norms.
  pairs = Unit('mid', 2, 'neuron', ((('mid', 'kernel'), 1),),
               index=(np.array([[0, 2], [1, 1]]),))
  got = criteria.activation(model.apply, v, x, [pairs], 'l1')['mid']
  per = np.abs(y).sum((0, 1))
  np.testing.assert_allclose(got, [per[0] + per[2], 2 * per[1]], rtol=1e-5)
  with pytest.raises(ValueError, match="norm='max'; allowed: l1, l2"):
    criteria.activation(model.apply, v, x, [u], 'max')
  ghost = Unit('g', 3, 'neuron', ((('nope', 'kernel'), 1),))
  with pytest.raises(ValueError, match=r"module \('nope',\)"):
    criteria.activation(model.apply, v, x, [ghost])


def test_saliency_by_hand():
  model, v, x = net()
  u = Unit('mid', 3, 'neuron', ((('mid', 'kernel'), 1),))
  # loss = sum of mid's bias-free part: dL/dW[i, j] = sum over tokens of
  # the layer input x_i.
  w = v['params']['mid']['kernel']
  loss = lambda p: jnp.sum(jnp.einsum('bti,ij->btj', x, p['mid']['kernel']))
  got = criteria.saliency(loss, v['params'], [u])['mid']
  grad = np.asarray(x).sum((0, 1))[:, None] * np.ones((1, 3))
  np.testing.assert_allclose(got, np.abs(np.asarray(w) * grad).sum(0),
                             rtol=1e-5)


def test_magnitude_masks_live_zeros_and_edges():
  # A live weight of exactly 0 is a weight (not an already pruned one).
  params = {'a': {'kernel': np.array([0., 0.5, 2.])}}
  paths = [('a', 'kernel')]
  np.testing.assert_array_equal(
      criteria.magnitude_masks(params, paths, 0.0)['a']['kernel'],
      [True, True, True])
  np.testing.assert_array_equal(
      criteria.magnitude_masks(params, paths, keep=3)['a']['kernel'],
      [True, True, True])
  np.testing.assert_array_equal(
      criteria.magnitude_masks(params, paths, keep=0)['a']['kernel'],
      [False, False, False])
  np.testing.assert_array_equal(
      criteria.magnitude_masks(params, paths, keep=1)['a']['kernel'],
      [False, False, True])
  # With masks: the pruned 2.0 stays pruned though it is the largest.
  cur = {'a': {'kernel': np.array([True, True, False])}}
  np.testing.assert_array_equal(
      criteria.magnitude_masks(params, paths, current=cur,
                               keep=1)['a']['kernel'], [False, True, False])
  np.testing.assert_array_equal(
      criteria.magnitude_masks(params, paths, 0.5, cur)['a']['kernel'],
      [False, True, False])
  # No kernels: nothing to keep.
  assert criteria.magnitude_masks(params, [], keep=0)['a']['kernel'].all()
  with pytest.raises(ValueError, match='keep=1; allowed: 0..0'):
    criteria.magnitude_masks(params, [], keep=1)


def test_nested_module_paths():
  """Kernels three levels down (a block's layer): masks and activations
  land at the right place."""
  params = {'blk': {'a': {'kernel': np.array([3., 1., 2.])}},
            'head': {'kernel': np.array([5.])}}
  m = criteria.magnitude_masks(params, [('blk', 'a', 'kernel')], keep=2)
  assert set(m['blk']) == {'a'} and set(m['blk']['a']) == {'kernel'}
  np.testing.assert_array_equal(m['blk']['a']['kernel'], [True, False, True])

  class Block(nn.Module):

    @nn.compact
    def __call__(self, x):
      return nn.Dense(2, name='mid')(x)

  class Outer(nn.Module):

    @nn.compact
    def __call__(self, x, train=False):
      return nn.Dense(1, name='out')(Block(name='blk')(x))

  x = jnp.asarray([[1., -2., 0.5]])
  model = Outer()
  v = model.init(jax.random.key(0), x)
  u = Unit('blk/mid', 2, 'neuron', ((('blk', 'mid', 'kernel'), 1),))
  y = np.asarray(x) @ np.asarray(v['params']['blk']['mid']['kernel']) + (
      np.asarray(v['params']['blk']['mid']['bias']))
  got = criteria.activation(model.apply, v, x, [u])['blk/mid']
  np.testing.assert_allclose(got, np.abs(y).sum(0), rtol=1e-5)
  ghost = Unit('g', 2, 'neuron', ((('blk', 'nope', 'kernel'), 1),))
  with pytest.raises(ValueError, match=r"module \('blk', 'nope'\)"):
    criteria.activation(model.apply, v, x, [ghost])
