"""REPrune Alg. 1 on every pruned layer of ResNet-50: jaxprune vs a scipy loop.

  python benchmarks/reprune_select.py [--sparsity=0.5] [--layers=N]

For each of ResNet-50's 32 REPrune layers (bottleneck conv1 and conv2,
initialised weights) at uniform sparsity s: jaxprune's `reprune.select`
(one jitted call per layer shape: batched Ward linkage, layer cut height,
greedy coverage) against `reprune.reference_select` (a Python loop over
input channels with `scipy.cluster.hierarchy.linkage` and `fcluster`, then
a Python greedy), both with the deterministic lowest-index tie-break. The
masks must be identical. jaxprune is timed after one warm-up call
(compilation excluded and reported separately). The reference's linkage
loop is also timed alone, so the split of its time is visible.

The last line is `reprune_speedup_vs_scipy: <ratio>` (goal: >= 10).
"""
import time

from absl import app, flags
import jax
import jax.numpy as jnp
import numpy as np
from scipy.cluster import hierarchy

from jaxprune import models, structure
from jaxprune.methods import allocation, reprune

flags.DEFINE_float('sparsity', 0.5, 'Uniform channel sparsity s.')
flags.DEFINE_integer('layers', 0, 'Only the first N layers (0: all 32).')
FLAGS = flags.FLAGS


def main(_):
  model = models.create('resnet50', 1000)
  x = jnp.zeros((1, 224, 224, 3))
  v = model.init(jax.random.key(0), x, train=False)
  graph = structure.trace(model.apply, v, x, train=False)
  lays = reprune.layers(graph, v['params'])
  if FLAGS.layers:
    lays = lays[:FLAGS.layers]
  params = jax.device_get(v['params'])
  pruned = allocation.uniform_counts(lays, FLAGS.sparsity)
  print(f'{len(lays)} layers, s = {FLAGS.sparsity}')

  t0 = time.perf_counter()
  warm, _ = reprune.select(params, lays, pruned, tie_break='lowest_index')
  jax.block_until_ready(warm)
  t_first = time.perf_counter() - t0
  t0 = time.perf_counter()
  ours, _ = reprune.select(params, lays, pruned, tie_break='lowest_index')
  jax.block_until_ready(ours)
  t_ours = time.perf_counter() - t0

  t_ref = t_link = 0.0
  for l in lays:
    w = np.asarray(params[l.kernel[0]][l.kernel[1]][l.kernel[2]])
    t0 = time.perf_counter()
    ref = reprune.reference_select(w, pruned[l.group])
    t_ref += time.perf_counter() - t0
    pts = w.reshape((-1,) + w.shape[-2:]).astype(np.float64)
    t0 = time.perf_counter()
    for j in range(pts.shape[1]):
      hierarchy.linkage(pts[:, j, :].T, 'ward')
    t_link += time.perf_counter() - t0
    same = np.array_equal(np.asarray(ours[l.group]), ref)
    print(f'{l.group:18s} C_in {w.shape[-2]:4d} n {l.size:4d} '
          f'd {pts.shape[0]} masks identical: {same}')
    if not same:
      raise SystemExit(f'Masks differ on {l.group}.')
  print(f'jaxprune: {t_ours:.2f} s ({t_first:.2f} s first call, with '
        'compilation)')
  print(f'reference: {t_ref:.2f} s, of which scipy linkage loop '
        f'{t_link:.2f} s')
  print(f'linkage-only ratio (scipy loop / jaxprune Alg. 1): '
        f'{t_link / t_ours:.2f}')
  print(f'reprune_speedup_vs_scipy: {t_ref / t_ours:.2f}')


if __name__ == '__main__':
  app.run(main)
