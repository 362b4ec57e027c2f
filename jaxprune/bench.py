"""Inference throughput, and the timing helpers of benchmarks/.

    python -m jaxprune.bench --workdir=RUN [--out=DIR]
    python -m jaxprune.bench --model=resnet50 --flops_reduction=0.43,0.56,0.75 \
        [--round_to=8|auto] [--batches=1,16,32] [--out=DIR]

The first form times the dense network of a finished run against its
slimmed one (the run's model and widths; random weights, since speed
depends on shapes only); the second prunes a zoo model's block-internal
groups uniformly to each MAC reduction (widths optionally rounded up; with
`--round_to=auto` to the multiple measured fastest on this backend at the
same or lower MACs, its table in `round_to.md`).
For every batch size the networks are timed in alternating rounds after
a warm-up (median and interquartile range), on whatever backend JAX
runs; `bench.md` gives latency, images/s, the speedup over dense and the
speedup ÷ MAC ratio (the figure of merit: 1 means the time fell as much
as the MACs), `bench.png` the images/s per batch size (seed 000's Fig. 4).
"""
import dataclasses
import functools
import json
import os
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxprune.errors import JaxpruneError


def time_fn(fn: Callable[..., Any], *args: Any, reps: int = 10,
            warmup: int = 2) -> float:
  """Median wall seconds of `fn(*args)`, blocking on the result."""
  for _ in range(warmup):
    jax.block_until_ready(fn(*args))
  times = []
  for _ in range(reps):
    t = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - t)
  return float(np.median(times))


def interleaved(fns: dict[str, Callable[[], Any]], rounds: int = 5,
                reps: int = 3) -> dict[str, float]:
  """Median seconds per call of each thunk, timed in alternating rounds.

  Alternating the candidates spreads machine noise (other processes, clock
  changes) evenly over them, which matters for ratios close to 1.
  """
  return {k: med for k, (med, _) in timed(fns, rounds, reps).items()}


def timed(fns: dict[str, Callable[[], Any]], rounds: int = 5, reps: int = 3
          ) -> dict[str, tuple[float, float]]:
  """(median, interquartile range) seconds per call of each thunk, timed
  in alternating rounds after one warm-up call each (as `interleaved`)."""
  for f in fns.values():
    jax.block_until_ready(f())
  samples = {k: [] for k in fns}
  for _ in range(rounds):
    for k, f in fns.items():
      for _ in range(reps):
        t = time.perf_counter()
        jax.block_until_ready(f())
        samples[k].append(time.perf_counter() - t)
  out = {}
  for k, v in samples.items():
    q1, med, q3 = np.percentile(v, [25, 50, 75])
    out[k] = (float(med), float(q3 - q1))
  return out


# -- `python -m jaxprune.bench`: inference throughput -------------------------


@dataclasses.dataclass
class Variant:
  """One network to time: its name, MACs per example, forward and vars."""
  name: str
  macs: int
  fn: Callable[..., Any]
  variables: Any


def _uniform(groups, keep: float) -> dict[str, np.ndarray]:
  return {g.name: np.arange(g.size) < max(1, round(keep * g.size))
          for g in groups}


def uniform_masks(graph, reduction: float, round_to: int = 1,
                  groups=None) -> dict[str, np.ndarray]:
  """Block-internal groups pruned to one uniform kept fraction: the widest
  that removes at least `reduction` of the MACs (bisection), widths
  rounded up to multiples of `round_to` (`jaxprune.slim.round_masks`)."""
  from jaxprune import slim  # pylint: disable=g-import-not-at-top
  if not 0 < reduction < 1:
    raise JaxpruneError(f'flops_reduction={reduction!r}; allowed: a number '
                        'in (0, 1).')
  groups = groups if groups is not None else [
      g for g in graph.prunable if not g.residual]
  if not groups:
    raise JaxpruneError('the model has no block-internal channel group to '
                        'prune.')
  dense = graph.macs({})
  masks = lambda f: slim.round_masks(graph, _uniform(groups, f), round_to)
  lo, hi = 0.0, 1.0
  if 1 - graph.macs(masks(lo)) / dense < reduction:
    raise JaxpruneError(
        f'flops_reduction={reduction} cannot be reached by pruning the '
        f'block-internal groups (at most '
        f'{1 - graph.macs(masks(lo)) / dense:.3f} with round_to={round_to}).')
  for _ in range(30):
    mid = (lo + hi) / 2
    if 1 - graph.macs(masks(mid)) / dense >= reduction:
      lo = mid
    else:
      hi = mid
  return masks(lo)


def _traced(model, x1):
  """(variables, channel graph) of `model` on the input `x1`."""
  from jaxprune import structure  # pylint: disable=g-import-not-at-top
  v = model.init(jax.random.key(0), x1)
  return v, structure.trace(model.apply, v, x1, train=False)


def _dense_variant(model, v, graph) -> Variant:
  return Variant('dense', int(graph.macs({})),
                 jax.jit(lambda v, x: model.apply(v, x, train=False)), v)


def _slim_variant(name, model, v, graph, masks, x1) -> Variant:
  from jaxprune import slim  # pylint: disable=g-import-not-at-top
  sv, sf = slim.slim(model.apply, v, graph, masks, x1, train=False)
  return Variant(name, int(graph.macs(masks)), jax.jit(sf), sv)


def _zoo(name: str, image_size: int | None, num_classes: int | None):
  """(model, x1, variables, graph) of a zoo model at its bench input."""
  from jaxprune import models  # pylint: disable=g-import-not-at-top
  cifar = name.startswith('resnet') and name[len('resnet'):] in (
      '20', '32', '44', '56', '110')
  size = image_size or (32 if cifar else 224)
  model = models.create(name, num_classes or (10 if cifar else 1000))
  x1 = jnp.zeros((1, size, size, 3))
  v, graph = _traced(model, x1)
  return model, x1, v, graph


def model_variants(name: str, reductions: list[float], round_to: Any = 1,
                   image_size: int | None = None,
                   num_classes: int | None = None
                   ) -> tuple[list[Variant], tuple[int, ...]]:
  """The dense zoo model and uniformly pruned versions of it.

  `round_to` is one multiple for every reduction, or a list of one per
  reduction (as `pick_round_to` chooses them).
  """
  model, x1, v, graph = _zoo(name, image_size, num_classes)
  per = list(round_to) if isinstance(round_to, (list, tuple)) else (
      [round_to] * len(reductions))
  out = [_dense_variant(model, v, graph)]
  for r, k in zip(reductions, per):
    tag = f' (round_to {k})' if isinstance(round_to, (list, tuple)) else ''
    out.append(_slim_variant(f'>= {100 * r:.0f}% fewer MACs{tag}', model, v,
                             graph, uniform_masks(graph, r, k), x1))
  return out, tuple(x1.shape[1:])


def pick_round_to(name: str, reductions: list[float],
                  candidates: list[int] = (1, 4, 8, 16, 32), batch: int = 32,
                  image_size: int | None = None, rounds: int = 5,
                  reps: int = 3, log: Callable[..., None] = print
                  ) -> tuple[list[int], list[dict[str, Any]]]:
  """The fastest width multiple per reduction, measured on this backend.

  For each reduction, every candidate multiple gives the widest uniform
  pruning that still removes at least that share of the MACs
  (`uniform_masks`: the same or lower MACs than asked), and the candidates
  are timed against one another (interleaved, batch `batch`). A candidate
  that cannot reach the reduction is left out.

  Returns:
    (the chosen multiple per reduction, one row per candidate timed:
    reduction, round_to, macs, latency_ms, iqr_ms, chosen).
  """
  if not candidates or any(not isinstance(k, int) or k < 1
                           for k in candidates):
    raise JaxpruneError(f'round_to candidates={list(candidates)!r}; '
                        'allowed: ints >= 1.')
  model, x1, v, graph = _zoo(name, image_size, None)
  x = jax.random.normal(jax.random.key(batch), (batch, *x1.shape[1:]))
  chosen, rows = [], []
  for r in reductions:
    variants = {}
    for k in dict.fromkeys(candidates):
      try:
        masks = uniform_masks(graph, r, k)
      except JaxpruneError:
        log(f'round_to {k} cannot reach {r:.0%} fewer MACs: skipped')
        continue
      variants[k] = _slim_variant(str(k), model, v, graph, masks, x1)
    if not variants:
      raise JaxpruneError(f'no round_to in {list(candidates)} reaches '
                          f'flops_reduction={r}.')
    t = timed({k: functools.partial(s.fn, s.variables, x)
               for k, s in variants.items()}, rounds, reps)
    best = min(t, key=lambda k: t[k][0])
    chosen.append(best)
    for k, s in variants.items():
      rows.append({'reduction': r, 'round_to': k, 'macs': s.macs,
                   'latency_ms': 1e3 * t[k][0], 'iqr_ms': 1e3 * t[k][1],
                   'chosen': k == best})
      log(f'{r:.0%} fewer MACs, round_to {k:>2}: {s.macs:,} MACs, '
          f'{1e3 * t[k][0]:.3f} ms (IQR {1e3 * t[k][1]:.3f})'
          + ('  <- fastest' if k == best else ''))
  return chosen, rows


def round_to_markdown(rows: list[dict[str, Any]], name: str,
                      batch: int) -> str:
  lines = [f'# Width multiple per reduction: {name}', '',
           f'Backend: {jax.default_backend()} '
           f'({jax.devices()[0].device_kind}); batch {batch}. Each '
           'multiple gives the widest uniform pruning that still removes '
           'the reduction; the fastest is chosen.', '',
           '| reduction | round_to | MACs | latency (ms) | IQR (ms) | chosen |',
           '|---|---|---|---|---|---|']
  for r in rows:
    lines.append(f'| {100 * r["reduction"]:.0f}% | {r["round_to"]} | '
                 f'{r["macs"]:,} | {r["latency_ms"]:.3f} | '
                 f'{r["iqr_ms"]:.3f} | {"yes" if r["chosen"] else ""} |')
  return '\n'.join(lines) + '\n'


def workdir_variants(workdir: str) -> tuple[list[Variant], tuple[int, ...]]:
  """Dense against the slimmed network of a finished run: its model and
  config from run.json, its kept widths from results.json (speed depends
  on the widths, not on which channels; weights are random)."""
  import ml_collections  # pylint: disable=g-import-not-at-top
  from jaxprune.engine import setup  # pylint: disable=g-import-not-at-top
  from jaxprune.tasks import base as tasks_base  # pylint: disable=g-import-not-at-top
  paths = [os.path.join(workdir, f) for f in ('run.json', 'results.json')]
  for p in paths:
    if not os.path.exists(p):
      raise JaxpruneError(f'{p} does not exist; allowed: the workdir of a '
                          'finished run.')
  with open(paths[0]) as f:
    meta = json.load(f)
  with open(paths[1]) as f:
    results = json.load(f)
  if 'config' not in meta:
    raise JaxpruneError(f'{paths[0]} holds no config (written by an older '
                        'jaxprune); rerun the experiment.')
  widths = results.get('widths')
  if not widths:
    raise JaxpruneError(f'{paths[1]} has no widths: the run pruned nothing '
                        f'(method {results.get("method")!r}).')
  config = ml_collections.ConfigDict(meta['config'])
  task = tasks_base.get(config.task)(config)
  model = setup.build_model(config, task.num_outputs())
  x1 = jnp.zeros(task.input_shape())
  v, graph = _traced(model, x1)
  names = {g.name for g in graph.prunable}
  bad = sorted(set(widths) - names)
  if bad:
    raise JaxpruneError(f'results.json widths name groups this model does not '
                        f'have: {", ".join(bad[:5])}.')
  masks = {g: np.arange(total) < kept for g, (kept, total) in widths.items()}
  slimmed = _slim_variant('slimmed', model, v, graph, masks, x1)
  if 'pruned_macs' in results and slimmed.macs != results['pruned_macs']:
    raise JaxpruneError(f'the widths give {slimmed.macs:,} MACs, results.json '
                        f'says {results["pruned_macs"]:,}.')
  return ([_dense_variant(model, v, graph), slimmed],
          tuple(task.input_shape()[1:]))


def measure(variants: list[Variant], shape: tuple[int, ...],
            batches: list[int], rounds: int = 5, reps: int = 3,
            log: Callable[..., None] = print) -> list[dict[str, Any]]:
  """Rows: variant, batch, latency (median, IQR), images/s, speedup over
  the first variant and speedup / MAC ratio."""
  rows = []
  for b in batches:
    x = jax.random.normal(jax.random.key(b), (b, *shape))
    t = timed({v.name: functools.partial(v.fn, v.variables, x)
               for v in variants}, rounds, reps)
    base, base_macs = t[variants[0].name][0], variants[0].macs
    for v in variants:
      med, iqr = t[v.name]
      speedup = base / med
      rows.append({'variant': v.name, 'macs': v.macs, 'batch': b,
                   'latency_ms': 1e3 * med, 'iqr_ms': 1e3 * iqr,
                   'images_per_s': b / med, 'speedup': speedup,
                   'speedup_over_mac_ratio': speedup / (base_macs / v.macs)})
      log(f'batch {b:>3} {v.name:>18}: {1e3 * med:9.3f} ms (IQR '
          f'{1e3 * iqr:.3f}), {b / med:10.1f} images/s, speedup '
          f'{speedup:.3f}, / MAC ratio {rows[-1]["speedup_over_mac_ratio"]:.3f}')
  return rows


def markdown(rows: list[dict[str, Any]], title: str) -> str:
  dense = rows[0]['macs']
  lines = [f'# {title}', '', f'Backend: {jax.default_backend()} '
           f'({jax.devices()[0].device_kind}), {len(jax.devices())} '
           'device(s); one device used. Latency: median of the timed calls '
           '(IQR beside it).', '',
           '| network | MACs | fewer MACs | batch | latency (ms) | IQR (ms) '
           '| images/s | speedup | speedup ÷ MAC ratio |',
           '|---|---|---|---|---|---|---|---|---|']
  for r in rows:
    lines.append(f'| {r["variant"]} | {r["macs"]:,} | '
                 f'{100 * (1 - r["macs"] / dense):.1f}% | {r["batch"]} | '
                 f'{r["latency_ms"]:.3f} | {r["iqr_ms"]:.3f} | '
                 f'{r["images_per_s"]:.1f} | {r["speedup"]:.3f} | '
                 f'{r["speedup_over_mac_ratio"]:.3f} |')
  return '\n'.join(lines) + '\n'


def plot(rows: list[dict[str, Any]], path: str, title: str) -> None:
  """Images/s per batch size, one bar per network (seed 000's Fig. 4)."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  names = list(dict.fromkeys(r['variant'] for r in rows))
  batches = list(dict.fromkeys(r['batch'] for r in rows))
  fig, ax = plt.subplots(figsize=(7, 4.2))
  width = 0.8 / len(names)
  for i, n in enumerate(names):
    ys = [next(r['images_per_s'] for r in rows if r['variant'] == n and
               r['batch'] == b) for b in batches]
    ax.bar(np.arange(len(batches)) + i * width, ys, width, label=n)
  ax.set_xticks(np.arange(len(batches)) + width * (len(names) - 1) / 2)
  ax.set_xticklabels([str(b) for b in batches])
  ax.set_xlabel('batch size')
  ax.set_ylabel('images per second')
  ax.set_title(f'{title} ({jax.default_backend()})')
  ax.grid(alpha=0.3, axis='y')
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def run(workdir: str | None = None, model: str | None = None,
        reductions: list[float] = (), round_to: Any = 1,
        batches: list[int] = (1, 16, 32), rounds: int = 5, reps: int = 3,
        out: str = '.', image_size: int | None = None,
        candidates: list[int] = (1, 4, 8, 16, 32)) -> list[dict[str, Any]]:
  """Times the networks, writes `out`/bench.md and bench.png.

  With `round_to='auto'` (the model form) the width multiple of each
  reduction is first chosen on this backend (`pick_round_to` over
  `candidates`, at the largest batch), with its table in round_to.md.
  """
  if (workdir is None) == (model is None):
    raise JaxpruneError('pass exactly one of --workdir (a finished run) and '
                        '--model (a zoo model, with --flops_reduction).')
  if not batches or any(not isinstance(b, int) or b < 1 for b in batches):
    raise JaxpruneError(f'batches={list(batches)!r}; allowed: ints >= 1.')
  if round_to != 'auto' and (not isinstance(round_to, int) or round_to < 1):
    raise JaxpruneError(f"round_to={round_to!r}; allowed: an int >= 1 or "
                        "'auto'.")
  os.makedirs(out, exist_ok=True)
  if workdir is not None:
    variants, shape = workdir_variants(workdir)
    title = f'Inference: {workdir}'
  else:
    if not reductions:
      raise JaxpruneError('--model needs --flops_reduction=r1,r2,... '
                          '(fractions in (0, 1)).')
    if round_to == 'auto':
      round_to, table = pick_round_to(model, list(reductions), candidates,
                                      max(batches), image_size, rounds, reps)
      with open(os.path.join(out, 'round_to.md'), 'w') as f:
        f.write(round_to_markdown(table, model, max(batches)))
      title = f'Inference: {model}, widths rounded to the fastest multiple'
    else:
      title = f'Inference: {model}' + (f', widths rounded to {round_to}'
                                       if round_to > 1 else '')
    variants, shape = model_variants(model, list(reductions), round_to,
                                     image_size)
  rows = measure(variants, shape, list(batches), rounds, reps)
  with open(os.path.join(out, 'bench.md'), 'w') as f:
    f.write(markdown(rows, title))
  plot(rows, os.path.join(out, 'bench.png'), title)
  return rows


def main(argv):
  from absl import flags  # pylint: disable=g-import-not-at-top
  if len(argv) > 1:
    raise SystemExit(f'jaxprune.bench: unexpected arguments {argv[1:]}')
  f = flags.FLAGS
  try:
    reductions = [float(r) for r in f.flops_reduction]
    batches = [int(b) for b in f.batches]
    round_to = f.round_to
    if round_to != 'auto':
      if not round_to.strip().isdigit():
        raise JaxpruneError(f"round_to={round_to!r}; allowed: an int >= 1 "
                            "or 'auto'.")
      round_to = int(round_to)
    run(f.workdir, f.model, reductions, round_to, batches, f.rounds,
        f.reps, f.out, f.image_size,
        [int(k) for k in f.round_to_candidates])
  except (JaxpruneError, ValueError) as e:
    raise SystemExit(f'jaxprune.bench: error: {e}') from None
  print(f'wrote {os.path.join(f.out, "bench.md")} and bench.png')


def _define_flags() -> None:
  from absl import flags  # pylint: disable=g-import-not-at-top
  flags.DEFINE_string('workdir', None, 'A finished run: dense against its '
                      'slimmed network.')
  flags.DEFINE_string('model', None, 'A zoo model, pruned uniformly.')
  flags.DEFINE_list('flops_reduction', [], 'With --model: MAC reductions.')
  flags.DEFINE_string('round_to', '1', 'With --model: round kept widths '
                      'up to a multiple of this; auto: the fastest of '
                      '--round_to_candidates on this backend, per reduction.')
  flags.DEFINE_list('round_to_candidates', ['1', '4', '8', '16', '32'],
                    'With --round_to=auto: the multiples to time.')
  flags.DEFINE_integer('image_size', None, 'With --model: input size '
                       '(default 32 for CIFAR ResNets, else 224).')
  flags.DEFINE_list('batches', ['1', '16', '32'], 'Batch sizes.')
  flags.DEFINE_integer('rounds', 5, 'Alternating timing rounds.')
  flags.DEFINE_integer('reps', 3, 'Timed calls per network and round.')
  flags.DEFINE_string('out', '.', 'Where bench.md and bench.png go.')


if __name__ == '__main__':
  from absl import app  # pylint: disable=g-import-not-at-top
  _define_flags()
  app.run(main)
