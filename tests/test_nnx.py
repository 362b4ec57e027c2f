"""nnx users: trace nnx.split state, slim it, and mask an nnx.Optimizer."""
from flax import nnx
import jax
import jax.numpy as jnp
import optax

from jaxprune import masks as masks_lib, slim, structure
from jaxprune import optax as jp_optax


class Net(nnx.Module):

  def __init__(self, rngs):
    self.conv = nnx.Conv(3, 8, (3, 3), rngs=rngs)
    self.bn = nnx.BatchNorm(8, rngs=rngs)
    self.fc1 = nnx.Linear(8, 16, rngs=rngs)
    self.fc2 = nnx.Linear(16, 4, rngs=rngs)

  def __call__(self, x):
    x = nnx.relu(self.bn(self.conv(x)))
    return self.fc2(nnx.relu(self.fc1(x.mean((1, 2)))))


def test_nnx_trace_slim_and_optimizer():
  model = Net(nnx.Rngs(0))
  model.eval()
  graphdef, state = nnx.split(model)
  x = jax.random.normal(jax.random.key(1), (2, 6, 6, 3))
  apply_fn = lambda s, x: nnx.merge(graphdef, s)(x)
  g = structure.trace(apply_fn, state, x)
  assert [(gr.name, gr.size) for gr in g.prunable] == [('conv', 8),
                                                       ('fc1', 16)]
  cm = masks_lib.random(g, jax.random.key(2), 0.5)
  pm = g.param_masks(cm)
  sv, sf = slim.slim(apply_fn, state, g, cm, x)
  ref = apply_fn(masks_lib.apply(state, pm), x)
  assert float(jnp.abs(sf(sv, x) - ref).max()) < 1e-5
  # An nnx.Optimizer whose masks live in its optax state.
  model.train()
  param_masks = pm.filter(nnx.Param)
  opt = nnx.Optimizer(model, jp_optax.masked(optax.adam(1e-2), param_masks),
                      wrt=nnx.Param)
  for _ in range(3):
    opt.update(model, nnx.grad(lambda m: (m(x) ** 2).mean())(model))
  pruned = jax.tree.map(lambda p, m: jnp.abs(jnp.where(m, 0, p)).max(),
                        nnx.state(model, nnx.Param), param_masks)
  assert max(float(a) for a in jax.tree.leaves(pruned)) == 0.0
