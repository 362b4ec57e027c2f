"""Hard-masked train step time / dense train step time (ResNet-56, batch 128).

  python benchmarks/mask_overhead.py [--steps=N]

Both steps run the same unslimmed network with SGD momentum and weight decay;
the masked one wraps the optimizer in `jaxprune.optax.masked(mode='hard')`
with half the channels of every prunable group pruned. The last line is
`mask_overhead_ratio: <x>` (goal: <= 1.02).
"""
import functools
import sys

from absl import app, flags
import jax
import jax.numpy as jnp
import optax

from jaxprune import bench, masks, models, structure
from jaxprune import optax as jp_optax

flags.DEFINE_integer('batch', 128, 'Batch size.')
flags.DEFINE_integer('rounds', 5, 'Alternating timing rounds.')
flags.DEFINE_integer('reps', 3, 'Steps per round and variant.')
FLAGS = flags.FLAGS


def main(_):
  model = models.create('resnet56', 10)
  x = jax.random.normal(jax.random.key(0), (FLAGS.batch, 32, 32, 3))
  y = jax.random.randint(jax.random.key(1), (FLAGS.batch,), 0, 10)
  v = model.init(jax.random.key(2), x[:1])
  graph = structure.trace(model.apply, v, x[:1])
  pm = graph.param_masks(masks.random(graph, jax.random.key(3), 0.5))
  inner = optax.chain(optax.add_decayed_weights(5e-4),
                      optax.sgd(0.1, momentum=0.9))
  txs = {'dense': inner, 'hard': jp_optax.masked(inner, pm['params'])}

  def step(tx, params, stats, opt, x, y):
    def loss(p):
      logits, new = model.apply({'params': p, 'batch_stats': stats}, x,
                                train=True, mutable=['batch_stats'])
      return optax.softmax_cross_entropy_with_integer_labels(
          logits, y).mean(), new['batch_stats']
    (l, stats), g = jax.value_and_grad(loss, has_aux=True)(params)
    u, opt = tx.update(g, opt, params)
    return optax.apply_updates(params, u), stats, opt, l

  thunks = {}
  for name, tx in txs.items():
    f = jax.jit(functools.partial(step, tx))
    state = [v['params'], v['batch_stats'], tx.init(v['params'])]
    thunks[name] = functools.partial(lambda f, s: f(*s, x, y), f, state)
  t = bench.interleaved(thunks, FLAGS.rounds, FLAGS.reps)
  print(f'devices: {jax.devices()[0].platform} x {jax.device_count()}, '
        f'batch {FLAGS.batch}')
  for k, s in t.items():
    print(f'{k:>6} train step: {s * 1e3:.1f} ms')
  print(f'mask_overhead_ratio: {t["hard"] / t["dense"]:.4f}')


if __name__ == '__main__':
  app.run(main)
