"""SSD with a ResNet backbone (`ssd300_resnet50`, and small ones for demos).

Follows NVIDIA DeepLearningExamples' PyTorch SSD300 v1.1 (`ssd/model.py`):
- backbone: torchvision ResNet-50 through conv4_x (`layer3`), the first
  conv4_x block's strides set to 1, giving 38x38x1024 at 300x300;
- five extra blocks, each 1x1 conv - BN - ReLU - 3x3 conv - BN - ReLU
  (bottleneck widths 256, 256, 128, 128, 128; outputs 512, 512, 256, 256,
  256), the first three with stride 2 and padding 1, the last two
  unpadded, at 19, 10, 5, 3 and 1;
- on each of the six maps a 3x3 location conv (4 per default box) and a
  3x3 class conv (num_classes per default box), with biases.

`model.apply(variables, x, train=False)` on [B, 300, 300, 3] returns
`(locations [B, 8732, 4], class_logits [B, 8732, num_classes])` in the
reference's default-box order (`jaxprune.boxes.ssd300`): map by map, box
by box, then row and column. The head convs lay their output channels out
as the reference's (coordinate- or class-major, then box), so a ported
checkpoint maps one to one.

Parameters: `backbone/...` holds torchvision's names (`conv1`,
`layer3_5/conv2`, ...), `extra{k}_conv{1,2}`/`extra{k}_bn{1,2}` the extra
layers, and `loc{k}`/`conf{k}` the heads.
"""
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from jaxprune.models import layers, resnet

# Xavier-uniform, as the reference initialises extras and heads.
_xavier = nn.initializers.xavier_uniform()


class ResNetBackbone(nn.Module):
  """The stem and `len(stage_sizes)` stages of a torchvision ResNet."""
  stage_sizes: Sequence[int] = (3, 4, 6)
  block: Any = resnet.Bottleneck
  strides: Sequence[int] = (1, 2, 1)
  stem_width: int = 64
  stage_widths: Sequence[int] | None = None
  block_widths: Any = None
  zero_init_residual: bool = False
  cifar_stem: bool = False
  dtype: Any = jnp.float32
  conv_init: str = 'fan_out'

  @nn.compact
  def __call__(self, x, train: bool = False):
    return resnet.features(self, x, train, strides=self.strides)


class SSD(nn.Module):
  """SSD over a ResNet backbone.

  Attributes:
    num_classes: classes including the background (81 for COCO).
    per_location: default boxes per location of each map.
    extra_widths: per extra block, (1x1 width, output width).
    extra_strides: per extra block, the 3x3 conv's stride; stride 1 blocks
      are unpadded (3 -> 1 in SSD300), stride 2 ones padded by 1.
    stage_sizes, block, backbone_strides, stem_width, stage_widths,
      block_widths, cifar_stem: the backbone's (see `ResNetBackbone`).
    dtype: compute dtype.
  """
  num_classes: int = 81
  per_location: Sequence[int] = (4, 6, 6, 6, 4, 4)
  extra_widths: Sequence[Sequence[int]] = ((256, 512), (256, 512),
                                           (128, 256), (128, 256),
                                           (128, 256))
  extra_strides: Sequence[int] = (2, 2, 2, 1, 1)
  stage_sizes: Sequence[int] = (3, 4, 6)
  block: Any = resnet.Bottleneck
  backbone_strides: Sequence[int] = (1, 2, 1)
  stem_width: int = 64
  stage_widths: Sequence[int] | None = None
  block_widths: Any = None
  cifar_stem: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = ResNetBackbone(self.stage_sizes, self.block, self.backbone_strides,
                       self.stem_width, self.stage_widths, self.block_widths,
                       cifar_stem=self.cifar_stem, dtype=self.dtype,
                       name='backbone')(x, train)
    maps = [x]
    for k, ((mid, out), stride) in enumerate(zip(self.extra_widths,
                                                 self.extra_strides)):
      pad = 1 if stride > 1 else 0
      x = nn.Conv(mid, (1, 1), use_bias=False, kernel_init=_xavier,
                  dtype=self.dtype, name=f'extra{k}_conv1')(x)
      x = nn.relu(layers.batch_norm(train, f'extra{k}_bn1', self.dtype)(x))
      x = nn.Conv(out, (3, 3), (stride, stride), ((pad, pad), (pad, pad)),
                  use_bias=False, kernel_init=_xavier, dtype=self.dtype,
                  name=f'extra{k}_conv2')(x)
      x = nn.relu(layers.batch_norm(train, f'extra{k}_bn2', self.dtype)(x))
      maps.append(x)
    if len(maps) != len(self.per_location):
      raise ValueError(f'SSD: {len(maps)} feature maps (backbone + '
                       f'{len(self.extra_widths)} extra blocks) but '
                       f'per_location has {len(self.per_location)} entries.')
    locs, confs = [], []
    for k, (m, nd) in enumerate(zip(maps, self.per_location)):
      locs.append(_head(self, m, 4, nd, f'loc{k}'))
      confs.append(_head(self, m, self.num_classes, nd, f'conf{k}'))
    return (jnp.concatenate(locs, 1).astype(jnp.float32),
            jnp.concatenate(confs, 1).astype(jnp.float32))



def _head(ssd, m, width, nd, name):
  """A 3x3 conv to nd * width channels, laid out [width, nd] as the
  reference's, returned as [B, nd * H * W, width] (box, row, column).
  Called inside `ssd`'s compact `__call__`."""
  y = nn.Conv(nd * width, (3, 3), padding=((1, 1), (1, 1)),
              kernel_init=_xavier, dtype=ssd.dtype, name=name)(m)
  b, h, w, _ = y.shape
  y = y.reshape(b, h, w, width, nd).transpose(0, 4, 1, 2, 3)
  return y.reshape(b, nd * h * w, width)
