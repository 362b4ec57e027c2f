"""CIFAR ResNets (He et al. 2016, Sec. 4.2): resnet20/32/44/56/110.

Three stages of n BasicBlocks at widths 16/32/64, depth = 6n + 2. Shortcuts
are option A (stride-2 subsampling plus zero channel padding, no parameters)
by default, or option B (1x1 projection conv + BN) with `shortcut='B'`.

Counts from `jaxprune.flops.count` at 32x32, batch 1, 10 classes
(tests/test_models.py asserts them):

| model     | params  | MACs        |
|-----------|---------|-------------|
| resnet20  | 269,722 | 40,551,040  |
| resnet56  | 853,018 | 125,485,696 |
"""
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from jaxprune.models import layers


class BasicBlock(nn.Module):
  """conv3x3-BN-ReLU-conv3x3-BN plus shortcut, then ReLU."""
  width: int  # Block-internal width: conv1's output channels.
  out_width: int  # Residual-stream width after the block.
  stride: int = 1
  shortcut: str = 'A'
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    y = layers.conv(self.width, 3, self.stride, name='conv1', dtype=self.dtype)(x)
    y = nn.relu(layers.batch_norm(train, 'bn1', self.dtype)(y))
    y = layers.conv(self.out_width, 3, name='conv2', dtype=self.dtype)(y)
    y = layers.batch_norm(train, 'bn2', self.dtype)(y)
    in_width = x.shape[-1]
    if self.stride != 1 or in_width != self.out_width:
      if self.shortcut == 'A':
        if in_width > self.out_width:
          raise ValueError(
              f'Option-A shortcut cannot shrink {in_width} channels to '
              f'{self.out_width}; use shortcut="B".')
        x = x[:, ::self.stride, ::self.stride, :]
        pad = self.out_width - in_width
        x = jnp.pad(x, ((0, 0), (0, 0), (0, 0), (pad // 2, pad - pad // 2)))
      else:
        x = layers.conv(self.out_width, 1, self.stride, name='shortcut_conv',
                        dtype=self.dtype)(x)
        x = layers.batch_norm(train, 'shortcut_bn', self.dtype)(x)
    return nn.relu(y + x)


class CifarResNet(nn.Module):
  """A CIFAR ResNet of depth 6n + 2.

  Attributes:
    depth: 20, 32, 44, 56, 110 or any 6n + 2.
    num_classes: classifier outputs.
    stage_widths: residual width of each of the three stages; the stem
      outputs stage_widths[0].
    block_widths: the internal (conv1) width of every block, in order; an
      int or None means "the stage width" for every block.
    shortcut: 'A' (zero-pad, parameter free) or 'B' (1x1 projection).
    dtype: compute dtype (parameters stay float32).
  """
  depth: int = 56
  num_classes: int = 10
  stage_widths: Sequence[int] = (16, 32, 64)
  block_widths: Any = None
  shortcut: str = 'A'
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    if (self.depth - 2) % 6 or self.depth < 8:
      raise ValueError(f'depth={self.depth}; a CIFAR ResNet needs 6n + 2.')
    if self.shortcut not in ('A', 'B'):
      raise ValueError(f'shortcut={self.shortcut!r}; allowed: "A", "B".')
    n = (self.depth - 2) // 6
    widths = layers.per_block(self.block_widths, 3 * n, 'block_widths')
    x = x.astype(self.dtype)
    x = layers.conv(self.stage_widths[0], 3, name='conv1', dtype=self.dtype)(x)
    x = nn.relu(layers.batch_norm(train, 'bn1', self.dtype)(x))
    for s, out_width in enumerate(self.stage_widths):
      for b in range(n):
        i = s * n + b
        x = BasicBlock(widths[i] or out_width, out_width,
                       stride=2 if (s > 0 and b == 0) else 1,
                       shortcut=self.shortcut, dtype=self.dtype,
                       name=f'layer{s + 1}_{b}')(x, train)
    x = jnp.mean(x, axis=(1, 2))
    return layers.dense(self.num_classes, 'fc', self.dtype)(x).astype(jnp.float32)
