"""The figures of any run, read from its `metrics.jsonl` and `results.json`.

`jaxprune.report` calls `figures` for every workdir it is given, whatever
the method (dense, REPrune, a baseline, a state loop):

* `curves.png`: training loss, and top-1 (training batches, every
  evaluated epoch, the final test), against the epoch; prune events are
  marked (a detection run plots COCO mAP in place of top-1);
* `macs.png`: MACs per example and the fewer-MACs % over training, from
  the prune events (the mask each event set holds until the next);
* `coverage.png`: REPrune's cluster coverage rate against the epoch (the
  paper's Fig. 3), when the run logged one;
* `widths.png`: per pruned layer, kept against dense width;

and `size_table` gives parameters and MACs before and after.

The x axis is the epoch counted over the whole run (a state loop's or a
one-shot method's phases follow each other): the global step divided by
the steps per epoch. A resumed run may log a step twice; the last record
of a (split, step) wins.
"""
import json
import os
from typing import Any

_EVAL_SPLITS = ('validation', 'test')


def read_metrics(workdir: str) -> list[dict[str, Any]]:
  """The records of `workdir`/metrics.jsonl in file order ([] if none);
  torn lines (a run still writing) are skipped, repeated (split, step)
  records keep the last one."""
  path = os.path.join(workdir, 'metrics.jsonl')
  if not os.path.exists(path):
    return []
  rows, where = [], {}
  with open(path) as f:
    for line in f:
      try:
        r = json.loads(line)
      except ValueError:
        continue
      if not isinstance(r, dict) or 'split' not in r or 'step' not in r:
        continue
      key = (r['split'], r['step'], r.get('state'))
      if key in where:
        rows[where[key]] = r
      else:
        where[key] = len(rows)
        rows.append(r)
  return rows


def steps_per_epoch(rows: list[dict[str, Any]]) -> float | None:
  """Optimizer steps per epoch: the last step logged in the first epoch
  of the first phase (the train log always writes an epoch's last step)."""
  best = None
  for r in rows:
    if r['split'] == 'state':
      break
    if r['split'] != 'train':
      continue
    if r.get('epoch') != 1:
      break
    best = r['step']
  return float(best) if best else None


# The evaluation metric plotted, by the first found in a run's rows: the
# classification task's top-1, else the detection task's COCO mAP.
METRICS = {'top1': 'top-1', 'map': 'mAP@[.5:.95]'}


def metric_of(rows: list[dict[str, Any]]) -> str:
  """The run's plotted evaluation metric (a key of `METRICS`)."""
  for r in rows:
    if r.get('split') in _EVAL_SPLITS + ('slim_test',):
      for k in METRICS:
        if k in r or f'{r["split"]}/{k}' in r:
          return k
  return 'top1'


def series(rows: list[dict[str, Any]], metric: str = 'top1'
           ) -> dict[str, list[tuple]]:
  """The plotted series, x in epochs over the whole run.

  Returns:
    'train': (x, loss, accuracy or None); 'eval': (x, split, `metric`);
    'prune': (x, macs, fewer-MACs fraction); 'coverage': (x, rate), of
    both 'coverage_event' (an event's greedy selection at its sparsity,
    before regrowth, from its prune record) and 'coverage_logged' (the
    periodic log of the current masks, regrown channels included, on the
    current weights); 'shrink': (x, macs) of each new masking that a
    `config.shrink` run trained from there on (widths as trained, rounded
    up by `shrink_round_to`).
  """
  spe = steps_per_epoch(rows)
  out = {'train': [], 'eval': [], 'prune': [], 'coverage': [],
         'coverage_event': [], 'coverage_logged': [], 'shrink': []}
  if not spe:
    return out
  x = lambda r: r['step'] / spe
  for r in rows:
    split = r['split']
    if split == 'train' and 'loss' in r:
      out['train'].append((x(r), r['loss'], r.get('accuracy')))
    elif split in _EVAL_SPLITS and 'epoch' in r:
      key = next((k for k in (metric, f'{split}/{metric}') if k in r), None)
      if key is not None:
        out['eval'].append((x(r), split, r[key]))
    elif split == 'prune' and 'macs' in r:
      out['prune'].append((x(r), r['macs'], r.get('flops_reduction')))
      if 'coverage_rate' in r:
        out['coverage_event'].append((x(r), r['coverage_rate']))
    elif split == 'coverage' and 'coverage_rate' in r:
      out['coverage_logged'].append((x(r), r['coverage_rate']))
    elif split == 'shrink' and 'macs' in r:
      out['shrink'].append((x(r), r['macs']))
  out['coverage'] = sorted(out['coverage_event'] + out['coverage_logged'])
  return out


def final_test(rows: list[dict[str, Any]], results: dict[str, Any],
               metric: str = 'top1') -> tuple[float, float] | None:
  """(x, `metric`) of the delivered network: the slimmed one when there is
  one, else the final test."""
  spe = steps_per_epoch(rows)
  for split in ('slim_test', 'test'):
    got = [r for r in rows if r['split'] == split and metric in r]
    if got and spe:
      return got[-1]['step'] / spe, got[-1][metric]
  if spe and metric in results and 'steps' in results:
    return results['steps'] / spe, results[metric]
  return None


def size_table(results: dict[str, Any]) -> str:
  """Markdown: parameters and MACs before and after pruning."""
  dense_p = results.get('dense_params', results.get('params'))
  dense_m = results.get('dense_macs', results.get('macs'))
  after_p = results.get('pruned_params', results.get('params', dense_p))
  after_m = results.get('pruned_macs', results.get('macs', dense_m))
  if dense_p is None or dense_m is None:
    return 'No parameter or MAC counts in results.json.\n'
  pct = lambda a, d: f'{100 * (1 - a / d):.2f}%' if d else '-'
  return ('| | dense | after | fewer |\n|---|---|---|---|\n'
          f'| parameters | {dense_p:,} | {after_p:,} | '
          f'{pct(after_p, dense_p)} |\n'
          f'| MACs per example | {dense_m:,} | {after_m:,} | '
          f'{pct(after_m, dense_m)} |\n')


def _axes(plt, ncols=1, width=6.5):
  fig, axes = plt.subplots(1, ncols, figsize=(width * ncols, 4.2))
  return fig, axes


def _save(fig, plt, path: str) -> str:
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return path


def figures(workdir: str, out: str, prefix: str = '',
            title: str | None = None,
            results: dict[str, Any] | None = None) -> list[str]:
  """Writes the figures of one run to `out` (names start with `prefix`);
  returns their paths (a figure with nothing to show is left out).
  `results`: the run's results.json, when the caller has read it."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  if results is None:
    results = {}
    path = os.path.join(workdir, 'results.json')
    if os.path.exists(path):
      with open(path) as f:
        results = json.load(f)
  rows = read_metrics(workdir)
  metric = metric_of(rows)
  label = METRICS[metric]
  s = series(rows, metric)
  title = title or os.path.basename(os.path.normpath(workdir))
  name = lambda n: os.path.join(out, f'{prefix}{n}.png')
  paths = []
  events = [p[0] for p in s['prune']]

  if s['train']:
    fig, (ax_loss, ax_acc) = _axes(plt, 2)
    xs = [t[0] for t in s['train']]
    ax_loss.plot(xs, [t[1] for t in s['train']], label='train loss')
    ax_loss.set_ylabel('loss (training batches)')
    if any(t[2] is not None for t in s['train']):
      ax_acc.plot([t[0] for t in s['train'] if t[2] is not None],
                  [t[2] for t in s['train'] if t[2] is not None],
                  label='train batches', alpha=0.8)
    for split in _EVAL_SPLITS:
      ev = [e for e in s['eval'] if e[1] == split]
      if ev:
        ax_acc.plot([e[0] for e in ev], [e[2] for e in ev], marker='.',
                    label=f'{split} (per epoch)')
    fin = final_test(rows, results, metric)
    if fin is not None:
      ax_acc.plot([fin[0]], [fin[1]], marker='*', markersize=12,
                  linestyle='none', label=f'final test {fin[1]:.2f}%')
    ax_acc.set_ylabel(f'{label} (%)')
    for ax in (ax_loss, ax_acc):
      for e in events:
        ax.axvline(e, color='grey', alpha=0.25, linewidth=0.8)
      ax.set_xlabel('epoch (whole run)')
      ax.grid(alpha=0.3)
      ax.legend(fontsize=8)
    ax_loss.set_title(f'{title}: training loss'
                      + (' (grey: prune events)' if events else ''))
    ax_acc.set_title(f'{title}: {label}')
    paths.append(_save(fig, plt, name('curves')))

  if s['prune']:
    dense = results.get('dense_macs')
    pts = ([(0.0, dense, 0.0)] if dense else []) + s['prune']
    end = max([t[0] for t in s['train']], default=pts[-1][0])
    if end > pts[-1][0]:  # The last mask holds to the end of training.
      pts.append((end,) + tuple(pts[-1][1:]))
    fig, ax = _axes(plt)
    ax.step([p[0] for p in pts], [p[1] / 1e6 for p in pts], where='post',
            marker='o', label='masks (prune events)')
    if s['shrink']:  # What the slim steps ran (rounded widths included).
      sh = s['shrink'] + [(max(end, s['shrink'][-1][0]), s['shrink'][-1][1])]
      ax.step([p[0] for p in sh], [p[1] / 1e6 for p in sh], where='post',
              marker='x', linestyle='--',
              label='trained by the slim step (shrink)')
      ax.legend(fontsize=8)
    ax.set_xlabel('epoch (whole run)')
    ax.set_ylabel('MACs per example (millions)')
    ax.set_title(f'{title}: MACs over training (prune events)')
    ax.grid(alpha=0.3)
    if dense:
      twin = ax.twinx()
      lo, hi = ax.get_ylim()
      twin.set_ylim(100 * (1 - lo * 1e6 / dense), 100 * (1 - hi * 1e6 / dense))
      twin.set_ylabel('fewer MACs than dense (%)')
    paths.append(_save(fig, plt, name('macs')))

  if s['coverage']:
    fig, ax = _axes(plt)
    for key, label in (('coverage_event', 'greedy selection at each event '
                        '(before regrowth)'),
                       ('coverage_logged', 'current masks (with regrowth), '
                        'after the epoch')):
      if s[key]:
        ax.plot([c[0] for c in s[key]], [c[1] for c in s[key]], marker='o',
                label=label)
    ax.legend(fontsize=8)
    ax.set_xlabel('epoch (whole run)')
    ax.set_ylabel('mean cluster coverage rate')
    ax.set_title(f'{title}: coverage rate against epoch')
    ax.grid(alpha=0.3)
    paths.append(_save(fig, plt, name('coverage')))

  widths = results.get('widths')
  if isinstance(widths, dict) and widths:
    groups = list(widths)
    fig, ax = plt.subplots(figsize=(7, max(2.5, 0.28 * len(groups) + 1.2)))
    ys = range(len(groups))
    ax.barh(ys, [widths[g][1] for g in groups], color='lightgrey',
            label='dense')
    ax.barh(ys, [widths[g][0] for g in groups], color='tab:blue',
            label='kept')
    ax.set_yticks(list(ys))
    ax.set_yticklabels(groups, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel('channels')
    ax.set_title(f'{title}: kept against dense width per layer')
    ax.legend(fontsize=8)
    paths.append(_save(fig, plt, name('widths')))
  return paths
