"""Exact parameter and MAC counts of the model zoo."""
import jax
import jax.numpy as jnp
import pytest

from jaxprune import flops, models
from jaxprune.errors import JaxpruneError

from conftest import cifar_resnet_macs, cifar_resnet_params


def counts(name, shape, num_classes, **overrides):
  model = models.create(name, num_classes, **overrides)
  x = jax.ShapeDtypeStruct(shape, jnp.float32)
  variables = jax.eval_shape(
      lambda: model.init(jax.random.key(0), jnp.zeros(shape), train=False))
  return flops.count(model.apply, variables, x, train=False)


def vit_macs(image, patch, num_classes, dim=384, depth=12, mlp=1536):
  """Hand formula: patch embedding; per block q, k, v and out projections,
  the two attention matmuls (T x T x D each) and the MLP; the head."""
  t = (image // patch) ** 2 + 1  # Patches plus the class token.
  block = 4 * t * dim * dim + 2 * t * t * dim + 2 * t * dim * mlp
  return ((t - 1) * patch * patch * 3 * dim + depth * block
          + dim * num_classes)


# MACs are exact: the CIFAR ResNets and the ViTs by the formulas above; the
# ImageNet CNNs are the counts of the torchvision/thop convention (1.81G,
# 3.66G, 4.09G, 0.30G as published).
@pytest.mark.parametrize('name,shape,num_classes,overrides,params,macs', [
    ('resnet18', (1, 224, 224, 3), 1000, {}, 11_689_512, 1_814_073_344),
    # The CIFAR ResNet-18 of the lottery-ticket literature: 11,173,962.
    ('resnet18_cifar', (1, 32, 32, 3), 10, {}, 11_173_962, 555_422_720),
    ('resnet34', (1, 224, 224, 3), 1000, {}, 21_797_672, 3_663_761_408),
    ('resnet50', (1, 224, 224, 3), 1000, {}, 25_557_032, 4_089_184_256),
    ('mobilenet_v2', (1, 224, 224, 3), 1000, {}, 3_504_872, 300_774_272),
    ('resnet56', (1, 32, 32, 3), 10, {}, cifar_resnet_params(56),
     cifar_resnet_macs(56)),
    ('resnet20', (1, 32, 32, 3), 10, {}, cifar_resnet_params(20),
     cifar_resnet_macs(20)),
    ('vit_small', (1, 32, 32, 3), 10, {}, 21_342_346, vit_macs(32, 4, 10)),
    ('vit_small', (1, 224, 224, 3), 1000,
     {'patch_size': 16, 'image_size': 224}, 22_050_664,
     vit_macs(224, 16, 1000)),
])
def test_counts(name, shape, num_classes, overrides, params, macs):
  c = counts(name, shape, num_classes, **overrides)
  assert (c.params, c.macs) == (params, macs)


def test_formulas_match_published_sizes():
  assert cifar_resnet_params(20) == 269_722
  assert cifar_resnet_params(56) == 853_018
  assert cifar_resnet_macs(20) == 40_551_040  # 40.55M (He et al. 2016).
  assert cifar_resnet_macs(56) == 125_485_696  # 125.49M.
  assert vit_macs(224, 16, 1000) == 4_598_882_304  # DeiT-S: 4.6G.


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
