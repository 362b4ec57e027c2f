"""ImageNet ResNets with torchvision's topology (resnet18/34/50/101/152).

7x7/2 stem, 3x3/2 max-pool, four stages; Bottleneck puts the stride on the
3x3 conv (ResNet v1.5, as torchvision). Parameter names follow torchvision
(`layer1_0/conv1`, `layer2_0/downsample_conv`, ...).

Counts from `jaxprune.flops.count` at 224x224, batch 1, 1000 classes
(tests/test_models.py asserts them):

| model    | params     | MACs          |
|----------|------------|---------------|
| resnet18 | 11,689,512 | 1,814,073,344 |
| resnet34 | 21,797,672 | 3,663,761,408 |
| resnet50 | 25,557,032 | 4,089,184,256 |
"""
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from jaxprune.models import layers


class BasicBlock(nn.Module):
  """Two 3x3 convs. `widths` = (conv1 width,)."""
  widths: Sequence[int]
  out_width: int
  stride: int = 1
  zero_init_residual: bool = False
  cifar_stem: bool = False
  dtype: Any = jnp.float32
  conv_init: str = 'fan_out'
  expansion = 1

  @nn.compact
  def __call__(self, x, train: bool = False):
    y = layers.conv(self.widths[0], 3, self.stride, name='conv1', dtype=self.dtype,
                    init=self.conv_init)(x)
    y = nn.relu(layers.batch_norm(train, 'bn1', self.dtype)(y))
    y = layers.conv(self.out_width, 3, name='conv2', dtype=self.dtype,
                    init=self.conv_init)(y)
    y = layers.batch_norm(train, 'bn2', self.dtype, self.zero_init_residual)(y)
    return nn.relu(y + _shortcut(self, x, train))


class Bottleneck(nn.Module):
  """1x1 - 3x3 (strided) - 1x1. `widths` = (conv1 width, conv2 width)."""
  widths: Sequence[int]
  out_width: int
  stride: int = 1
  zero_init_residual: bool = False
  cifar_stem: bool = False
  dtype: Any = jnp.float32
  conv_init: str = 'fan_out'
  expansion = 4

  @nn.compact
  def __call__(self, x, train: bool = False):
    y = layers.conv(self.widths[0], 1, name='conv1', dtype=self.dtype,
                    init=self.conv_init)(x)
    y = nn.relu(layers.batch_norm(train, 'bn1', self.dtype)(y))
    y = layers.conv(self.widths[1], 3, self.stride, name='conv2', dtype=self.dtype,
                    init=self.conv_init)(y)
    y = nn.relu(layers.batch_norm(train, 'bn2', self.dtype)(y))
    y = layers.conv(self.out_width, 1, name='conv3', dtype=self.dtype,
                    init=self.conv_init)(y)
    y = layers.batch_norm(train, 'bn3', self.dtype, self.zero_init_residual)(y)
    return nn.relu(y + _shortcut(self, x, train))


def _shortcut(block, x, train):
  """Identity, or torchvision's 1x1-conv + BN downsample."""
  if block.stride == 1 and x.shape[-1] == block.out_width:
    return x
  x = layers.conv(block.out_width, 1, block.stride, name='downsample_conv',
                  dtype=block.dtype, init=block.conv_init)(x)
  return layers.batch_norm(train, 'downsample_bn', block.dtype)(x)


class ResNet(nn.Module):
  """torchvision's ResNet.

  Attributes:
    stage_sizes: blocks per stage, e.g. (2, 2, 2, 2) for ResNet-18.
    block: BasicBlock or Bottleneck.
    num_classes: classifier outputs.
    stem_width: output channels of the 7x7 stem.
    stage_widths: residual width of each stage's output; default
      (64, 128, 256, 512) times the block's expansion.
    block_widths: per block, a tuple of its internal widths (one for
      BasicBlock, two for Bottleneck); None means the torchvision default.
    zero_init_residual: zero-initialise each block's last BN scale.
    conv_init: 'fan_out' (torchvision) or 'fan_in' Kaiming-normal convs.
    cifar_stem: a 3x3/1 stem and no max-pool, for 32x32 inputs (the
      CIFAR ResNet-18 of the lottery-ticket literature).
    dtype: compute dtype (parameters stay float32).
  """
  stage_sizes: Sequence[int] = (2, 2, 2, 2)
  block: Any = BasicBlock
  num_classes: int = 1000
  stem_width: int = 64
  stage_widths: Sequence[int] | None = None
  block_widths: Any = None
  zero_init_residual: bool = False
  cifar_stem: bool = False
  dtype: Any = jnp.float32
  conv_init: str = 'fan_out'

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = features(self, x, train)
    x = jnp.mean(x, axis=(1, 2))
    return layers.dense(self.num_classes, 'fc', self.dtype)(x).astype(jnp.float32)


def features(m: nn.Module, x, train: bool, num_stages: int | None = None,
             strides: Sequence[int] = (1, 2, 2, 2)):
  """The stem and the first `num_stages` stages of a ResNet-like module.

  Called inside `m`'s compact `__call__`, so the layers are `m`'s own
  (torchvision's names at the top level of `m`).

  Args:
    m: a module with ResNet's attributes (stage_sizes, block, stem_width,
      stage_widths, block_widths, zero_init_residual, cifar_stem, dtype,
      conv_init).
    x: images [B, H, W, C].
    train: BatchNorm mode.
    num_stages: stages to run (None: all).
    strides: each stage's first-block stride.

  Returns:
    The last stage's feature map.
  """
  base = (64, 128, 256, 512)
  stage_widths = m.stage_widths or tuple(b * m.block.expansion for b in base)
  n_internal = 1 if m.block is BasicBlock else 2
  block_widths = layers.per_block(m.block_widths, sum(m.stage_sizes),
                                  'block_widths')
  x = x.astype(m.dtype)
  k, s = (3, 1) if m.cifar_stem else (7, 2)
  x = layers.conv(m.stem_width, k, s, name='conv1', dtype=m.dtype,
                  init=m.conv_init)(x)
  x = nn.relu(layers.batch_norm(train, 'bn1', m.dtype)(x))
  if not m.cifar_stem:
    x = nn.max_pool(x, (3, 3), (2, 2), padding=((1, 1), (1, 1)))
  i = 0
  for s, size in enumerate(m.stage_sizes[:num_stages]):
    for b in range(size):
      widths = block_widths[i] or (base[s],) * n_internal
      x = m.block(tuple(widths), stage_widths[s],
                  stride=strides[s] if b == 0 else 1,
                  zero_init_residual=m.zero_init_residual,
                  dtype=m.dtype, conv_init=m.conv_init,
                  name=f'layer{s + 1}_{b}')(x, train)
      i += 1
  return x
