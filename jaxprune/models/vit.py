"""Vision Transformer (Dosovitskiy et al. 2021): pre-LN, qkv bias, CLS token.

Attention keeps an explicit head axis in its parameters: the query, key and
value kernels are `[D, H, Dh]` and the output kernel is `[H, Dh, D]`, so
heads are a structure the channel graph can see and prune.

Parameter counts (tests/test_models.py asserts them):
  * vit_small, patch 4, image 32, 10 classes: 21,342,346 (1,420,309,248 MACs).
  * vit_small, patch 16, image 224, 1000 classes: 22,050,664 (4,598,882,304
    MACs).
"""
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jaxprune.models import layers

_init = nn.initializers.truncated_normal(0.02)


class Attention(nn.Module):
  """Multi-head self-attention with `heads` heads of size `head_dim`."""
  heads: int
  head_dim: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    proj = lambda name: nn.DenseGeneral((self.heads, self.head_dim),
                                        kernel_init=_init, dtype=self.dtype,
                                        name=name)
    q, k, v = proj('query')(x), proj('key')(x), proj('value')(x)
    logits = jnp.einsum('bqhd,bkhd->bhqk', q, k) / jnp.sqrt(
        jnp.asarray(self.head_dim, self.dtype))
    weights = nn.softmax(logits.astype(jnp.float32), axis=-1).astype(self.dtype)
    y = jnp.einsum('bhqk,bkhd->bqhd', weights, v)
    return nn.DenseGeneral(x.shape[-1], axis=(-2, -1), kernel_init=_init,
                           dtype=self.dtype, name='out')(y)


class Block(nn.Module):
  """x + Attn(LN(x)); x + MLP(LN(x))."""
  heads: int
  head_dim: int
  mlp_dim: int
  dtype: Any = jnp.float32
  layer_norm_eps: float = 1e-6

  @nn.compact
  def __call__(self, x):
    eps = self.layer_norm_eps
    y = nn.LayerNorm(epsilon=eps, dtype=self.dtype, name='ln1')(x)
    x = x + Attention(self.heads, self.head_dim, self.dtype, name='attn')(y)
    y = nn.LayerNorm(epsilon=eps, dtype=self.dtype, name='ln2')(x)
    y = nn.Dense(self.mlp_dim, kernel_init=_init, dtype=self.dtype, name='fc1')(y)
    y = nn.gelu(y, approximate=False)
    y = nn.Dense(x.shape[-1], kernel_init=_init, dtype=self.dtype, name='fc2')(y)
    return x + y


class ViT(nn.Module):
  """ViT classifier on the CLS token.

  Attributes:
    num_classes: classifier outputs.
    patch_size: side of the square patches.
    image_size: side of the square input the position table is built for.
    hidden_size: token width D.
    depth: number of blocks.
    num_heads: heads per block; an int, or one int per block.
    head_dim: per-head width Dh (default hidden_size // heads of block 0).
    mlp_dim: MLP hidden width; an int, or one int per block.
    dtype: compute dtype (parameters stay float32).
    layer_norm_eps: LayerNorm epsilon (1e-6 as big_vision; PyTorch and
      timm use 1e-5).

  The classifier head, like every other kernel, is initialised
  trunc-normal(0.02).
  """
  num_classes: int = 10
  patch_size: int = 4
  image_size: int = 32
  hidden_size: int = 384
  depth: int = 12
  num_heads: Any = 6
  head_dim: int | None = None
  mlp_dim: Any = 1536
  dtype: Any = jnp.float32
  layer_norm_eps: float = 1e-6

  @nn.compact
  def __call__(self, x, train: bool = False):
    del train  # No dropout or batch statistics.
    heads = layers.per_block(self.num_heads, self.depth, 'num_heads')
    mlps = layers.per_block(self.mlp_dim, self.depth, 'mlp_dim')
    head_dim = self.head_dim or self.hidden_size // heads[0]
    p = self.patch_size
    if x.shape[1] % p or x.shape[2] % p:
      raise ValueError(f'Image {x.shape[1:3]} is not divisible by patch {p}.')
    x = nn.Conv(self.hidden_size, (p, p), strides=(p, p), padding='VALID',
                dtype=self.dtype, name='patch_embed')(x.astype(self.dtype))
    b = x.shape[0]
    x = x.reshape(b, -1, self.hidden_size)
    cls = self.param('cls_token', _init, (1, 1, self.hidden_size))
    n_tokens = (self.image_size // p) ** 2 + 1
    if x.shape[1] + 1 != n_tokens:
      raise ValueError(f'Input gives {x.shape[1] + 1} tokens; image_size='
                       f'{self.image_size} gives {n_tokens}.')
    pos = self.param('pos_embed', _init, (1, n_tokens, self.hidden_size))
    x = jnp.concatenate([jnp.broadcast_to(cls, (b, 1, self.hidden_size)
                                          ).astype(self.dtype), x], axis=1)
    x = x + pos.astype(self.dtype)
    for i in range(self.depth):
      x = Block(heads[i], head_dim, mlps[i], self.dtype, self.layer_norm_eps,
                name=f'block{i}')(x)
    x = nn.LayerNorm(epsilon=self.layer_norm_eps, dtype=self.dtype,
                     name='norm')(x)
    return nn.Dense(self.num_classes, kernel_init=_init, dtype=self.dtype,
                    name='head')(x[:, 0]).astype(jnp.float32)
