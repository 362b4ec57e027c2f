"""The slimmed forward pass against the same network built natively.

    python benchmarks/slim_vs_native.py [--models=resnet56,resnet50]

For each model, its block-internal groups are pruned uniformly to remove
`--reduction` of the MACs (`jaxprune.bench.uniform_masks`, rounded up to
`--round_to`). Three networks are timed, interleaved, each jitted:

* dense: the zoo model at full width;
* slim: `jaxprune.slim.slim`'s re-specialised jaxpr of the dense model;
* native: the zoo model built at the slim widths
  (`models.create(name, **slim.zoo_overrides(name, slim_params))`).

Both inference (`train=False`, batch `--batch`) and one SGD train step
(train mode, batch statistics updated, gradients of the cross-entropy,
batch `--train_batch`) are measured. slim / native near 1 means the
re-specialised pass costs nothing over a hand-written module at those
widths, so whatever speedup falls short of the MAC ratio is XLA's kernels
at those widths. The last line is `slim_over_native_train: <x>` (the worst
model's slim / native train step time).
"""
from absl import app, flags
import jax
import jax.numpy as jnp
import optax

from jaxprune import bench, models, slim, structure

flags.DEFINE_list('models', ['resnet56', 'resnet50'], 'Zoo models.')
flags.DEFINE_float('reduction', 0.56, 'Fraction of MACs to remove.')
flags.DEFINE_integer('round_to', 1, 'Round kept widths up to a multiple.')
flags.DEFINE_integer('batch', 32, 'Inference batch.')
flags.DEFINE_integer('train_batch', 32, 'Train-step batch.')
flags.DEFINE_integer('image_size', 0, 'Input size; 0: 32 (CIFAR ResNets) '
                     'or 224.')
flags.DEFINE_integer('reps', 3, 'Timed calls per variant and round.')
FLAGS = flags.FLAGS

_CIFAR = ('resnet20', 'resnet32', 'resnet44', 'resnet56', 'resnet110')


def _train_step(apply):
  """An SGD step of `apply(variables, x) -> (logits, new_vars)`."""
  tx = optax.sgd(0.01, momentum=0.9)

  @jax.jit
  def step(v, opt, x, y):
    def loss(p):
      logits, new = apply({**v, 'params': p}, x)
      return optax.softmax_cross_entropy_with_integer_labels(
          logits, y).mean(), new
    (l, new), g = jax.value_and_grad(loss, has_aux=True)(v['params'])
    u, opt = tx.update(g, opt, v['params'])
    return {**v, **new, 'params': optax.apply_updates(v['params'], u)}, opt, l
  return step, tx


def main(_):
  worst = []
  for name in FLAGS.models:
    size = FLAGS.image_size or (32 if name in _CIFAR else 224)
    classes = 10 if name in _CIFAR else 1000
    model = models.create(name, classes)
    x1 = jnp.zeros((1, size, size, 3))
    v = model.init(jax.random.key(0), x1)
    graph = structure.trace(model.apply, v, x1, train=False)
    masks = bench.uniform_masks(graph, FLAGS.reduction, FLAGS.round_to)
    dense_macs, macs = graph.macs({}), graph.macs(masks)
    sv, sf = slim.slim(model.apply, v, graph, masks, x1, train=False)
    native = models.create(name, classes,
                           **slim.zoo_overrides(name, sv['params']))
    print(f'{name}: {dense_macs / 1e6:.1f}M -> {macs / 1e6:.1f}M MACs '
          f'(ratio {dense_macs / macs:.3f})')
    x = jax.random.normal(jax.random.key(1), (FLAGS.batch, size, size, 3))
    infer = {'dense': (jax.jit(lambda v, x: model.apply(v, x, train=False)),
                       v),
             'slim': (jax.jit(sf), sv),
             'native': (jax.jit(lambda v, x: native.apply(v, x, train=False)),
                        sv)}
    t = bench.interleaved({k: (lambda f=f, a=a: f(a, x))
                           for k, (f, a) in infer.items()},
                          rounds=3, reps=FLAGS.reps)
    print(f'  inference b{FLAGS.batch}: ' + ', '.join(
        f'{k} {s * 1e3:.2f} ms' for k, s in t.items()) +
          f'; slim / native {t["slim"] / t["native"]:.3f}, dense / slim '
          f'{t["dense"] / t["slim"]:.3f}')
    # Train mode: the graph of the train-mode call, as the engine uses.
    train_fn = lambda v, x: model.apply(v, x, train=True,
                                        mutable=['batch_stats'])
    gt = structure.trace(train_fn, v, x1)
    tv, tf = slim.slim(train_fn, v, gt, masks, x1)
    xt = jax.random.normal(jax.random.key(2),
                           (FLAGS.train_batch, size, size, 3))
    yt = jnp.arange(FLAGS.train_batch) % classes
    runs = {}
    for k, (apply, var) in {
        'dense': (train_fn, v), 'slim': (tf, tv),
        'native': (lambda v, x: native.apply(v, x, train=True,
                                             mutable=['batch_stats']), tv)
    }.items():
      step, tx = _train_step(apply)
      opt = tx.init(var['params'])
      runs[k] = lambda step=step, var=var, opt=opt: step(var, opt, xt, yt)
    t = bench.interleaved(runs, rounds=3, reps=FLAGS.reps)
    ratio = t['slim'] / t['native']
    worst.append(ratio)
    print(f'  train step b{FLAGS.train_batch}: ' + ', '.join(
        f'{k} {s * 1e3:.2f} ms' for k, s in t.items()) +
          f'; slim / native {ratio:.3f}, dense / slim '
          f'{t["dense"] / t["slim"]:.3f}')
  print(f'slim_over_native_train: {max(worst):.4f}')


if __name__ == '__main__':
  app.run(main)
