"""Side by side: runs of any methods, one table and one Pareto plot.

    python -m jaxprune.compare --workdir=/tmp/a --workdir=/tmp/b ... \
        --out=/tmp/compare

reads each workdir's `results.json` and writes, in `--out`:

* `compare.md`: per method (runs of one method and one setting, e.g.
  several seeds, are pooled): runs, MACs, fewer-MACs %, params, top-1
  (mean ± std over the runs, population std), train time. Runs of one
  method whose configs differ in more than the seed (and the fields that
  cannot change results) are separate rows, labelled by the fields that
  differ, e.g. `sfp (sfp.finetune_epochs=5)`;
* `pareto.png`: top-1 against MACs, one marker per method (error bars:
  the std), labelled axes.

Numbers are those of the network each run delivers: the slimmed one for
a pruned run (`slim_top1`, `pruned_macs`, `pruned_params`), else the dense
one. Train time is the sum over the run's phases. An unfinished run
(`complete` false) or a missing `results.json` stops with one line naming
it; nothing is written then.
"""
import collections
import functools
import json
import os
from typing import Any

from absl import app
from absl import flags
import numpy as np

from jaxprune.errors import JaxpruneError



@functools.cache
def _same() -> frozenset[str]:
  """Config fields that do not make two runs different settings: those
  that cannot change results (`jaxprune.config.NEUTRAL`), the seed, and
  where the initial weights were read from."""
  from jaxprune import config as config_lib  # pylint: disable=g-import-not-at-top
  return frozenset(('seed', 'init_from') + tuple(config_lib.NEUTRAL))

FLAGS = flags.FLAGS


def _define_flags() -> None:
  """Command-line flags; only when run as a program (it is imported by
  `jaxprune.report`, which has flags of the same names)."""
  flags.DEFINE_multi_string('workdir', [], 'A run to compare (repeat the '
                            'flag).')
  flags.DEFINE_string('out', '.', 'Where compare.md and pareto.png go.')
  flags.DEFINE_string('metric', 'top1', 'The accuracy field.')


def row_of(results: dict[str, Any], metric: str = 'top1') -> dict[str, Any]:
  """One run's numbers: method, macs, dense_macs, params, metric, seconds."""
  if not results.get('complete', True):
    raise JaxpruneError('the run is not complete (results.json has '
                        'complete: false); finish or resume it first.')
  states = results.get('states')
  if f'slim_{metric}' in results:
    acc = results[f'slim_{metric}']
  elif states:
    acc = states[-1][metric]
  elif metric in results:
    acc = results[metric]
  else:
    raise JaxpruneError(f'results.json has no {metric!r} (nor slim_{metric});'
                        f' fields: {", ".join(sorted(results))}.')
  macs = results.get('pruned_macs', results.get('macs',
                                                 results.get('dense_macs')))
  params = results.get('pruned_params', results.get('params',
                                                     results.get(
                                                         'dense_params')))
  seconds = (sum(float(s.get('seconds', 0.0)) for s in states) if states
             else float(results.get('train_seconds', 0.0)))
  return {'method': results.get('method', '?'), 'macs': int(macs),
          'dense_macs': int(results.get('dense_macs', macs)),
          'params': int(params), metric: float(acc), 'seconds': seconds,
          'seed': results.get('config', {}).get('seed'),
          'settings': _settings(results.get('config', {}))}


def _settings(config: dict[str, Any], prefix: str = '') -> dict[str, Any]:
  """The flat config of a run, less the fields in `_same()`."""
  out = {}
  for k, v in config.items():
    if not prefix and k in _same():
      continue
    if isinstance(v, dict):
      out.update(_settings(v, f'{prefix}{k}.'))
    else:
      out[f'{prefix}{k}'] = json.dumps(v, sort_keys=True, default=str)
  return out


def read(workdirs: list[str], metric: str = 'top1') -> list[dict[str, Any]]:
  """`row_of` every workdir; raises naming the first bad one."""
  if not workdirs:
    raise JaxpruneError('no --workdir given; pass one per run.')
  rows = []
  for w in workdirs:
    path = os.path.join(w, 'results.json')
    if not os.path.exists(path):
      raise JaxpruneError(f'{path} does not exist; allowed: workdirs of '
                          'finished runs.')
    with open(path) as f:
      try:
        rows.append(dict(row_of(json.load(f), metric), workdir=w))
      except JaxpruneError as e:
        raise JaxpruneError(f'{w}: {e}') from None
  return rows


def pooled(rows: list[dict[str, Any]], metric: str = 'top1'
           ) -> list[dict[str, Any]]:
  """Runs of one method and setting pooled: mean and std of every number."""
  by = collections.OrderedDict()
  for r in rows:
    key = (r['method'], json.dumps(r.get('settings', {}), sort_keys=True))
    by.setdefault(key, []).append(r)
  out = []
  for (method, _), rs in by.items():
    method = _label(method, rs[0].get('settings', {}),
                    [v[0].get('settings', {}) for (m, _), v in by.items()
                     if m == method])
    stat = lambda k: (float(np.mean([r[k] for r in rs])),  # pylint: disable=cell-var-from-loop
                      float(np.std([r[k] for r in rs])))
    macs, dense = stat('macs'), rs[0]['dense_macs']
    out.append({'method': method, 'runs': len(rs), 'macs': macs,
                'fewer': 100 * (1 - macs[0] / dense), 'params': stat('params'),
                metric: stat(metric), 'seconds': stat('seconds')})
  return out


def _label(method: str, mine: dict[str, Any],
           siblings: list[dict[str, Any]]) -> str:
  """`method`, plus the fields (up to 3) that set this group apart from
  the other groups of the same method."""
  if len(siblings) < 2:
    return method
  every = set().union(*siblings)
  if any(set(s) != every for s in siblings):
    # A run from an older jaxprune lacks fields added since: it ran them
    # at their defaults.
    from jaxprune import config as config_lib  # pylint: disable=g-import-not-at-top
    base = _settings(json.loads(config_lib.base().to_json_best_effort()))
    fill = lambda s: {**{k: base[k] for k in every if k in base}, **s}
    siblings, mine = [fill(s) for s in siblings], fill(mine)
  keys = sorted(k for k in every
                if len({s.get(k) for s in siblings}) > 1)
  shown = [f'{k}={json.loads(mine[k]) if k in mine else "unset"}'
           for k in keys[:3]] + (['...'] if len(keys) > 3 else [])
  return f'{method} ({", ".join(shown)})'


def table(groups: list[dict[str, Any]], metric: str = 'top1') -> str:
  """The markdown table of `pooled` rows."""
  lines = [f'| method | runs | MACs | fewer MACs | params | {metric} (%) | '
           'train time (s) |', '|---|---|---|---|---|---|---|']
  for g in groups:
    pm = lambda v, f: (f'{v[0]:{f}} ± {v[1]:{f}}' if g['runs'] > 1 else  # pylint: disable=cell-var-from-loop
                       f'{v[0]:{f}}')
    lines.append(f'| {g["method"]} | {g["runs"]} | {g["macs"][0]:,.0f} | '
                 f'{g["fewer"]:.1f}% | {g["params"][0]:,.0f} | '
                 f'{pm(g[metric], ".2f")} | {pm(g["seconds"], ".0f")} |')
  return '\n'.join(lines) + '\n'


def plot(groups: list[dict[str, Any]], path: str, metric: str = 'top1'):
  """top-1 against MACs, one marker per method, to `path` (PNG)."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, ax = plt.subplots(figsize=(6, 4.5))
  markers = 'osD^v<>pP*Xh'
  for i, g in enumerate(groups):
    ax.errorbar(g['macs'][0], g[metric][0], yerr=g[metric][1],
                fmt=markers[i % len(markers)], capsize=3, label=g['method'])
  ax.set_xlabel('MACs per example')
  ax.set_ylabel(f'{metric} (%)')
  ax.set_title(f'{metric} against MACs')
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def compare(workdirs: list[str], out: str, metric: str = 'top1'
            ) -> list[dict[str, Any]]:
  """Writes `out`/compare.md and `out`/pareto.png; returns the pooled rows."""
  groups = pooled(read(workdirs, metric), metric)
  os.makedirs(out, exist_ok=True)
  with open(os.path.join(out, 'compare.md'), 'w') as f:
    f.write(table(groups, metric))
  plot(groups, os.path.join(out, 'pareto.png'), metric)
  return groups


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  try:
    compare(FLAGS.workdir, FLAGS.out, FLAGS.metric)
  except JaxpruneError as e:
    raise SystemExit(f'jaxprune.compare: {e}') from None
  print(f'wrote {os.path.join(FLAGS.out, "compare.md")} and pareto.png')


if __name__ == '__main__':
  _define_flags()
  app.run(main)
