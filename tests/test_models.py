"""Exact parameter counts and MAC tolerances of the model zoo."""
import jax
import jax.numpy as jnp
import pytest

from jaxprune import flops, models
from jaxprune.errors import JaxpruneError


def counts(name, shape, num_classes, **overrides):
  model = models.create(name, num_classes, **overrides)
  x = jax.ShapeDtypeStruct(shape, jnp.float32)
  variables = jax.eval_shape(
      lambda: model.init(jax.random.key(0), jnp.zeros(shape), train=False))
  return flops.count(model.apply, variables, x, train=False)


def cifar_resnet_params(depth, num_classes=10, widths=(16, 32, 64)):
  """Hand formula: 3x3 convs without bias, 2 BN params per channel."""
  n = (depth - 2) // 6
  total = 27 * widths[0] + 2 * widths[0]  # Stem conv + BN.
  c_in = widths[0]
  for w in widths:
    for _ in range(n):
      total += 9 * c_in * w + 9 * w * w + 4 * w
      c_in = w
  return total + widths[-1] * num_classes + num_classes


@pytest.mark.parametrize('name,shape,num_classes,overrides,params,macs', [
    ('resnet18', (1, 224, 224, 3), 1000, {}, 11_689_512, 1.82e9),
    # The CIFAR ResNet-18 of the lottery-ticket literature: 11,173,962.
    ('resnet18_cifar', (1, 32, 32, 3), 10, {}, 11_173_962, 0.556e9),
    ('resnet34', (1, 224, 224, 3), 1000, {}, 21_797_672, 3.67e9),
    ('resnet50', (1, 224, 224, 3), 1000, {}, 25_557_032, 4.11e9),
    ('mobilenet_v2', (1, 224, 224, 3), 1000, {}, 3_504_872, 0.30e9),
    ('resnet56', (1, 32, 32, 3), 10, {}, cifar_resnet_params(56), 125.49e6),
    ('resnet20', (1, 32, 32, 3), 10, {}, cifar_resnet_params(20), 40.55e6),
    ('vit_small', (1, 32, 32, 3), 10, {}, 21_342_346, None),
    ('vit_small', (1, 224, 224, 3), 1000,
     {'patch_size': 16, 'image_size': 224}, 22_050_664, 4.6e9),
])
def test_counts(name, shape, num_classes, overrides, params, macs):
  c = counts(name, shape, num_classes, **overrides)
  assert c.params == params
  if macs is not None:
    assert abs(c.macs - macs) / macs < 0.01, c.macs


def test_cifar_resnet_formula_matches_published_sizes():
  assert cifar_resnet_params(20) == 269_722
  assert cifar_resnet_params(56) == 853_018


def test_option_b_shortcut_adds_projections():
  a = counts('resnet20', (1, 32, 32, 3), 10)
  b = counts('resnet20', (1, 32, 32, 3), 10, shortcut='B')
  # Two projections: 16->32 and 32->64, each 1x1 conv + BN.
  assert b.params - a.params == (16 * 32 + 2 * 32) + (32 * 64 + 2 * 64)


def test_width_overrides_shrink_layers():
  model = models.create('resnet20', 10, block_widths=(4,) * 9)
  v = jax.eval_shape(lambda: model.init(jax.random.key(0),
                                        jnp.zeros((1, 8, 8, 3))))
  assert v['params']['layer1_0']['conv1']['kernel'].shape == (3, 3, 16, 4)
  assert v['params']['layer3_2']['conv2']['kernel'].shape == (3, 3, 4, 64)
  vit = models.create('vit_micro', 10, num_heads=(1, 3), mlp_dim=(8, 16),
                      head_dim=8)
  v = jax.eval_shape(lambda: vit.init(jax.random.key(0),
                                      jnp.zeros((1, 8, 8, 3))))
  assert v['params']['block0']['attn']['query']['kernel'].shape == (32, 1, 8)
  assert v['params']['block1']['attn']['out']['kernel'].shape == (3, 8, 32)
  assert v['params']['block1']['fc1']['kernel'].shape == (32, 16)


def test_vit_attention_has_head_axis():
  model = models.create('vit_small', 10)
  v = jax.eval_shape(lambda: model.init(jax.random.key(0),
                                        jnp.zeros((1, 32, 32, 3))))
  attn = v['params']['block0']['attn']
  for k in ('query', 'key', 'value'):
    assert attn[k]['kernel'].shape == (384, 6, 64)
  assert attn['out']['kernel'].shape == (6, 64, 384)


@pytest.mark.parametrize('name,shape', [
    ('resnet20', (2, 8, 8, 3)), ('resnet18', (2, 32, 32, 3)),
    ('resnet50', (2, 32, 32, 3)), ('mobilenet_v2', (2, 32, 32, 3)),
    ('vit_micro', (2, 8, 8, 3))])
def test_forward_train_and_eval(name, shape):
  model = models.create(name, 7)
  x = jax.random.normal(jax.random.key(1), shape)
  variables = model.init(jax.random.key(0), x, train=False)
  y = model.apply(variables, x, train=False)
  assert y.shape == (2, 7) and bool(jnp.isfinite(y).all())
  y, new = model.apply(variables, x, train=True, mutable=['batch_stats'],
                       rngs={'dropout': jax.random.key(2)})
  assert y.shape == (2, 7)
  if 'batch_stats' in variables:
    assert jax.tree.structure(new['batch_stats']) == jax.tree.structure(
        variables['batch_stats'])


def test_bad_names_and_overrides():
  with pytest.raises(JaxpruneError, match="Unknown model 'resnet9'.*resnet18"):
    models.create('resnet9', 10)
  with pytest.raises(JaxpruneError, match="no field.*'widths'.*block_widths"):
    models.create('resnet56', 10, widths=3)
  with pytest.raises(JaxpruneError, match='block_widths has 2 entries'):
    model = models.create('resnet20', 10, block_widths=(4, 4))
    model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 3)))
