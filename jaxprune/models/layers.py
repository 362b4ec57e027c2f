"""Layers shared by the model zoo, with torchvision's conventions."""
import functools
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jaxprune.errors import JaxpruneError

# torchvision initialises convs with kaiming_normal_(mode='fan_out', relu);
# CHEX's published ImageNet command uses fan-in (`conv_init='fan_in'`).
CONV_INITS = ('fan_out', 'fan_in')
conv_init = nn.initializers.variance_scaling(2.0, 'fan_out', 'normal')


def conv_init_of(mode: str):
  """Kaiming-normal (ReLU gain) conv init over fan-out or fan-in."""
  if mode not in CONV_INITS:
    raise JaxpruneError(f'conv_init={mode!r}; allowed: '
                        f'{", ".join(CONV_INITS)}.')
  return nn.initializers.variance_scaling(2.0, mode, 'normal')


def conv(features: int, kernel: int, stride: int = 1, groups: int = 1,
         name: str | None = None, dtype: Any = jnp.float32,
         use_bias: bool = False, init: str = 'fan_out') -> nn.Conv:
  """A square conv with PyTorch's symmetric padding of kernel // 2 and
  Kaiming-normal init over `init` ('fan_out' or 'fan_in')."""
  pad = kernel // 2
  return nn.Conv(features, (kernel, kernel), strides=(stride, stride),
                 padding=((pad, pad), (pad, pad)), feature_group_count=groups,
                 use_bias=use_bias, kernel_init=conv_init_of(init), dtype=dtype,
                 name=name)


def batch_norm(train: bool, name: str | None = None, dtype: Any = jnp.float32,
               zero_init: bool = False) -> nn.BatchNorm:
  """BatchNorm with PyTorch's defaults (momentum 0.1, eps 1e-5)."""
  return nn.BatchNorm(use_running_average=not train, momentum=0.9,
                      epsilon=1e-5, dtype=dtype, name=name,
                      scale_init=(nn.initializers.zeros if zero_init
                                  else nn.initializers.ones))


def dense(features: int, name: str | None = None,
          dtype: Any = jnp.float32) -> nn.Dense:
  """A dense layer with PyTorch's default uniform(1/sqrt(fan_in)) init."""
  return nn.Dense(features, dtype=dtype, name=name,
                  kernel_init=nn.initializers.variance_scaling(
                      1 / 3, 'fan_in', 'uniform'))


def per_block(value, count: int, what: str) -> tuple:
  """Expands an int (or None) to `count` copies; checks a sequence's length."""
  if value is None or isinstance(value, int):
    return (value,) * count
  value = tuple(value)
  if len(value) != count:
    raise JaxpruneError(f'{what} has {len(value)} entries; the model has '
                     f'{count} blocks, so it needs {count}.')
  return value


relu6 = functools.partial(jnp.clip, min=0.0, max=6.0)
