"""MobileNetV2 (Sandler et al. 2018) with torchvision's topology, width 1.0.

Counts from `jaxprune.flops.count` at 224x224, batch 1, 1000 classes
(tests/test_models.py asserts them): 3,504,872 params, 300,774,272 MACs.
"""
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from jaxprune.models import layers

# (expand ratio t, output channels c, repeats n, first stride s), Table 2.
SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
            (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


class InvertedResidual(nn.Module):
  """[1x1 expand-BN-ReLU6] - 3x3 depthwise-BN-ReLU6 - 1x1 project-BN."""
  hidden: int  # Expansion (hidden) width; equal to the input for t = 1.
  out_width: int
  stride: int
  expand: bool
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    y = x
    if self.expand:
      y = layers.conv(self.hidden, 1, name='expand_conv', dtype=self.dtype)(y)
      y = layers.relu6(layers.batch_norm(train, 'expand_bn', self.dtype)(y))
    y = layers.conv(y.shape[-1], 3, self.stride, groups=y.shape[-1],
                    name='dw_conv', dtype=self.dtype)(y)
    y = layers.relu6(layers.batch_norm(train, 'dw_bn', self.dtype)(y))
    y = layers.conv(self.out_width, 1, name='project_conv', dtype=self.dtype)(y)
    y = layers.batch_norm(train, 'project_bn', self.dtype)(y)
    if self.stride == 1 and x.shape[-1] == self.out_width:
      y = y + x
    return y


class MobileNetV2(nn.Module):
  """torchvision's MobileNetV2.

  Attributes:
    num_classes: classifier outputs.
    stem_width: output channels of the first 3x3 conv.
    block_out_widths: output width of each of the 17 inverted residuals.
    hidden_widths: expansion width of each block (None: t * input width).
    last_width: width of the final 1x1 conv.
    dropout: dropout rate before the classifier.
    dtype: compute dtype (parameters stay float32).
  """
  num_classes: int = 1000
  stem_width: int = 32
  block_out_widths: Sequence[int] | None = None
  hidden_widths: Any = None
  last_width: int = 1280
  dropout: float = 0.2
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    plan = [(t, c, s if i == 0 else 1) for t, c, n, s in SETTINGS
            for i in range(n)]
    outs = layers.per_block(self.block_out_widths, len(plan), 'block_out_widths')
    hidden = layers.per_block(self.hidden_widths, len(plan), 'hidden_widths')
    x = x.astype(self.dtype)
    x = layers.conv(self.stem_width, 3, 2, name='stem_conv', dtype=self.dtype)(x)
    x = layers.relu6(layers.batch_norm(train, 'stem_bn', self.dtype)(x))
    for i, (t, c, s) in enumerate(plan):
      x = InvertedResidual(hidden[i] or t * x.shape[-1], outs[i] or c, s,
                           expand=t != 1, dtype=self.dtype,
                           name=f'block{i}')(x, train)
    x = layers.conv(self.last_width, 1, name='last_conv', dtype=self.dtype)(x)
    x = layers.relu6(layers.batch_norm(train, 'last_bn', self.dtype)(x))
    x = jnp.mean(x, axis=(1, 2))
    x = nn.Dropout(self.dropout, deterministic=not train)(x)
    return layers.dense(self.num_classes, 'classifier', self.dtype)(x).astype(jnp.float32)
