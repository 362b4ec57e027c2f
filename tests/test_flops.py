"""MAC counting from the jaxpr against hand-computed values."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from jaxprune import flops


def macs_of(fn, *args):
  return flops.count(lambda v, *a: fn(*a), {}, *args).macs


def test_conv_dense_grouped_depthwise():
  class Net(nn.Module):

    @nn.compact
    def __call__(self, x):
      x = nn.Conv(8, (3, 3), padding='SAME')(x)  # 6*6*8 * 9*4
      x = nn.Conv(8, (3, 3), strides=2, feature_group_count=2,
                  padding='VALID')(x)  # 2*2*8 * 9*4
      x = nn.Conv(8, (3, 3), feature_group_count=8, padding='SAME')(x)  # 2*2*8*9
      x = x.reshape(x.shape[0], -1)
      return nn.Dense(5)(x)  # 32*5

  net = Net()
  x = jnp.zeros((1, 6, 6, 4))
  v = net.init(jax.random.key(0), x)
  c = flops.count(net.apply, v, x)
  assert c.macs == 6 * 6 * 8 * 36 + 2 * 2 * 8 * 36 + 2 * 2 * 8 * 9 + 32 * 5
  assert c.params == (36 * 8 + 8) + (36 * 8 + 8) + (9 * 8 + 8) + (32 * 5 + 5)


def test_batch_scales_macs():
  f = lambda x, w: x @ w
  w = jnp.zeros((4, 3))
  assert macs_of(f, jnp.zeros((1, 4)), w) == 12
  assert macs_of(f, jnp.zeros((5, 4)), w) == 60


def test_attention_matmuls():
  q = jnp.zeros((1, 7, 2, 4))  # [B, T, H, Dh]
  f = lambda q, k: jnp.einsum('bqhd,bkhd->bhqk', q, k)
  assert macs_of(f, q, q) == 2 * 7 * 7 * 4


def test_sub_jaxprs_are_counted():
  w = jnp.zeros((4, 4))
  x = jnp.zeros((1, 4))
  base = 16

  @jax.custom_jvp
  def cj(x, w):
    return x @ w
  cj.defjvp(lambda p, t: (cj(*p), t[0] @ p[1]))

  @jax.custom_vjp
  def cv(x, w):
    return x @ w
  cv.defvjp(lambda x, w: (x @ w, (x, w)), lambda r, g: (g, g))

  assert macs_of(jax.jit(lambda x, w: x @ w), x, w) == base
  assert macs_of(jax.checkpoint(lambda x, w: x @ w), x, w) == base
  assert macs_of(cj, x, w) == base
  assert macs_of(cv, x, w) == base

  def scanned(x, w):
    return jax.lax.scan(lambda c, _: (c @ w, None), x, None, length=3)[0]
  assert macs_of(scanned, x, w) == 3 * base

  def branch(x, w):
    return jax.lax.cond(x.sum() > 0, lambda: x @ w @ w, lambda: x @ w)
  assert macs_of(branch, x, w) == 2 * base


@pytest.mark.parametrize('dtype', [jnp.float32, jnp.bfloat16])
def test_shape_dtype_structs_need_no_data(dtype):
  x = jax.ShapeDtypeStruct((2, 3), dtype)
  w = jax.ShapeDtypeStruct((3, 5), dtype)
  assert macs_of(lambda x, w: x @ w, x, w) == 30
