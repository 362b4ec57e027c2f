"""Dense / slimmed inference time against the MAC ratio (ResNet-56, ResNet-50).

  python benchmarks/slim_speed.py [--models=resnet56,resnet50]

Each network loses ~56% of its MACs by pruning its block-internal groups
(the channels REPrune prunes) to the widest uniform width, rounded up to a
multiple of 8, that removes at least that much (bisection on
`ChannelGraph.macs`); the slimmed forward pass is `jaxprune.slim.slim`'s
re-specialised jaxpr, jitted. For batch 1, 16 and 32 it prints the measured
speedup and speedup / (dense MACs / slim MACs). The last line is
`slim_speedup_over_mac_ratio_b32: <x>` (the worst model at batch 32; goal
>= 0.85).
"""
from absl import app, flags
import jax
import jax.numpy as jnp

from jaxprune import bench, models, slim, structure

flags.DEFINE_list('models', ['resnet56', 'resnet50'], 'Zoo models.')
flags.DEFINE_list('batches', ['1', '16', '32'], 'Batch sizes.')
flags.DEFINE_float('reduction', 0.56, 'Fraction of MACs to remove.')
flags.DEFINE_integer('round_to', 8, 'Round kept widths up to a multiple.')
flags.DEFINE_integer('reps', 5, 'Timed calls per variant and round.')
FLAGS = flags.FLAGS


def main(_):
  ratios_b32 = []
  for name in FLAGS.models:
    cifar = name in ('resnet20', 'resnet32', 'resnet44', 'resnet56',
                     'resnet110')
    size, classes = (32, 10) if cifar else (224, 1000)
    model = models.create(name, classes)
    x1 = jnp.zeros((1, size, size, 3))
    v = model.init(jax.random.key(0), x1)
    graph = structure.trace(model.apply, v, x1, train=False)
    dense = graph.macs({})
    # The widest uniform keep fraction removing at least `reduction`.
    m = bench.uniform_masks(graph, FLAGS.reduction, FLAGS.round_to)
    pruned = graph.macs(m)
    mac_ratio = dense / pruned
    sv, sf = slim.slim(model.apply, v, graph, m, x1, train=False)
    print(f'{name}: {dense / 1e6:.1f}M -> {pruned / 1e6:.1f}M MACs '
          f'({100 * (1 - pruned / dense):.2f}% removed, ratio {mac_ratio:.3f})')
    dense_fn = jax.jit(lambda v, x: model.apply(v, x, train=False))
    slim_fn = jax.jit(sf)
    for b in map(int, FLAGS.batches):
      x = jax.random.normal(jax.random.key(b), (b, size, size, 3))
      t = bench.interleaved({'dense': lambda: dense_fn(v, x),
                             'slim': lambda: slim_fn(sv, x)},
                            rounds=3, reps=FLAGS.reps)
      speedup = t['dense'] / t['slim']
      print(f'  batch {b:>2}: dense {t["dense"] * 1e3:8.2f} ms, slim '
            f'{t["slim"] * 1e3:8.2f} ms, speedup {speedup:.3f}, '
            f'speedup / MAC ratio {speedup / mac_ratio:.3f}')
      if b == 32:
        ratios_b32.append(speedup / mac_ratio)
  print(f'slim_speedup_over_mac_ratio_b32: {min(ratios_b32):.4f}')


if __name__ == '__main__':
  app.run(main)
