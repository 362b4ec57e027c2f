"""The report of any runs: per-run figures, and the state loop's tables.

Command:
  python -m jaxprune.report --workdir=/tmp/run [--workdir=/tmp/other ...] \
      [--out=/tmp/report]

Writes `report.md` and PNGs to `--out` (default: the first workdir). A
run still in progress is reported as far as it got.

Every run (any method, dense too) gets, from `jaxprune.curves`: its
parameters and MACs before and after, training curves (loss and top-1
against epoch), MACs over training from its prune events, REPrune's
coverage rate against epoch, and kept against dense width per layer
(figure names start with the workdir's name when there are several
runs). Several runs add the accuracy-against-MACs table and
`pareto.png` (`jaxprune.compare`).

Runs with states (the IMP / Refill / RSST state loop; the one-shot
methods' train and fine-tune phases) also get `accuracy.png` (accuracy
per state) and `time.png` (minutes per state), and, per run, the
`State: 0 1 2 ...` / `Acc: ...` row (the test accuracy at the epoch of
best validation accuracy), state 0, the best state, the mean and the
standard deviation (population, ddof=0) over states 2..N, the retention
(best / state 0), parameters before and after with the compression, and
the wall time per state; several such runs get one comparison table.
"""
import glob
import json
import os
import sys
from typing import Any

from absl import app, flags

from jaxprune import compare, curves
from jaxprune.errors import JaxpruneError

FLAGS = flags.FLAGS


def _define_flags() -> None:
  """Command-line flags; only when run as a program (main.py has --workdir)."""
  flags.DEFINE_multi_string('workdir', None, 'A run\'s workdir, any method '
                            '(repeat for several runs).')
  flags.DEFINE_string('out', None, 'Output directory (default: the first '
                      'workdir).')


class ReportError(ValueError):
  """A workdir that holds no state-loop results."""


def epoch_accuracies(workdir: str, metric: str = 'top1'
                     ) -> dict[int, list[float]]:
  """Per state, the evaluated `metric` of every epoch from metrics.jsonl
  (the validation split when the run has one, else test), in epoch order.
  {} when the workdir has no metrics.jsonl."""
  path = os.path.join(workdir, 'metrics.jsonl')
  if not os.path.exists(path):
    return {}
  by: dict[str, dict[int, dict[int, float]]] = {}
  with open(path) as f:
    for line in f:
      try:
        r = json.loads(line)
      except ValueError:
        continue  # A torn last line of a run still being written.
      if r.get('split') in ('validation', 'test') and 'state' in r and (
          'epoch' in r) and f'{r["split"]}/{metric}' in r:
        by.setdefault(r['split'], {}).setdefault(int(r['state']), {})[
            int(r['epoch'])] = float(r[f'{r["split"]}/{metric}'])
  split = by.get('validation') or by.get('test') or {}
  return {k: [v[e] for e in sorted(v)] for k, v in split.items()}


def last_epochs_std(accs: list[float], n: int = 5) -> float | None:
  """Population std of the last `n` epoch accuracies (None if fewer)."""
  if len(accs) < n:
    return None
  tail = accs[-n:]
  mean = sum(tail) / n
  return (sum((a - mean) ** 2 for a in tail) / n) ** 0.5


def load(workdir: str) -> dict[str, Any]:
  """The results of a state-loop workdir (complete or in progress), with
  `epoch_accs` (per state, from metrics.jsonl) added."""
  run = _load(workdir)
  run['epoch_accs'] = {str(k): v for k, v in epoch_accuracies(workdir).items()}
  return run


def _load(workdir: str) -> dict[str, Any]:
  path = os.path.join(workdir, 'results.json')
  if os.path.exists(path):
    with open(path) as f:
      run = json.load(f)
    if 'states' in run:
      return run
    raise ReportError(f'{path} is not from a state loop (method '
                      f'{run.get("config", {}).get("method")!r}; allowed: '
                      'imp, refill, rsst).')
  states = []
  for p in sorted(glob.glob(os.path.join(workdir, 'state_*', 'result.json'))):
    with open(p) as f:
      states.append(json.load(f))
  if not states:
    raise ReportError(f'{workdir} has no results.json and no completed '
                      'state (state_*/result.json).')
  return {'method': os.path.basename(os.path.normpath(workdir)),
          'states': states}


def summary(run: dict[str, Any]) -> dict[str, Any]:
  """The per-state statistics of one run.

  Returns:
    acc (per state), state0, best and best_state, mean, std (population)
    and std_sample over states 2..N (None with fewer than 3 states: the
    across-state std), last5_std (per state: the population std of its
    last 5 epochs' accuracy, seed 003's "std"; None where the run has no
    `epoch_accs` from metrics.jsonl),
    retention (best / state 0, %), params_before, params_after,
    compression, macs_before, macs_after and minutes (per state).
  """
  states = sorted(run['states'], key=lambda s: s['state'])
  acc = [s['top1'] for s in states]
  best_i = max(range(len(acc)), key=lambda i: acc[i])
  tail = acc[2:]
  mean = sum(tail) / len(tail) if tail else None
  var = (sum((a - mean) ** 2 for a in tail) / len(tail)) if tail else None
  out = {
      'acc': acc, 'state0': acc[0], 'best': acc[best_i],
      'best_state': states[best_i]['state'], 'mean': mean,
      'std': var ** 0.5 if var is not None else None,
      'std_sample': ((var * len(tail) / (len(tail) - 1)) ** 0.5
                     if tail and len(tail) > 1 else None),
      'retention': 100 * acc[best_i] / acc[0] if acc[0] else None,
      'params_before': run.get('dense_params', states[0].get('params')),
      'params_after': states[-1].get('params'),
      'macs_before': run.get('dense_macs', states[0].get('macs')),
      'macs_after': states[-1].get('macs'),
      'minutes': [s.get('seconds', 0) / 60 for s in states],
      'kept': states[-1].get('kept', {}),
      'last5_std': [last_epochs_std(run.get('epoch_accs', {}).get(
          str(s['state']), [])) for s in states],
  }
  out['best_last5_std'] = out['last5_std'][best_i]
  out['compression'] = (out['params_before'] / out['params_after']
                        if out['params_after'] else None)
  return out


def _label(run: dict[str, Any], workdir: str, runs) -> str:
  name = run.get('method', '?')
  if sum(r.get('method') == name for r, _ in runs) > 1:
    name = f'{name} ({os.path.basename(os.path.normpath(workdir))})'
  return name


def _f(x, spec='.2f', suffix='') -> str:
  return '-' if x is None else f'{x:{spec}}{suffix}'


def _row(values, width: int = 6) -> str:
  return ' '.join(f'{v:>{width}}' for v in values)


def markdown(runs: list[tuple[dict[str, Any], str]]) -> str:
  """The report for (results, workdir) pairs."""
  lines = ['# State-loop report', '']
  sums = []
  for run, workdir in runs:
    s = summary(run)
    sums.append((_label(run, workdir, runs), s))
    n = len(s['acc']) - 1
    lines += [f'## {_label(run, workdir, runs)}: {run.get("model", "?")} on '
              f'{run.get("dataset", "?")}', '', f'Workdir: `{workdir}`'
              + ('' if run.get('complete', True) else
                 f' (in progress: {n + 1} states done)'), '', '```',
              'State: ' + _row(range(n + 1)),
              'Acc:   ' + _row(f'{a:.2f}' for a in s['acc']),
              'Std5:  ' + _row(_f(x) for x in s['last5_std']), '```', '',
              '| metric | value |', '|---|---|',
              f'| state 0 (dense) | {s["state0"]:.2f}% |',
              f'| best | {s["best"]:.2f}% (state {s["best_state"]}) |',
              f'| mean over states 2..{n} | {_f(s["mean"], suffix="%")} |',
              f'| across-state std, states 2..{n} (population; sample) | '
              f'{_f(s["std"])}; {_f(s["std_sample"])} |',
              f'| last-5-epoch std of the best state (population) | '
              f'{_f(s["best_last5_std"])} |',
              f'| retention (best / state 0) | '
              f'{_f(s["retention"], ".1f", "%")} |',
              f'| params before → after | {_f(s["params_before"], ",")} → '
              f'{_f(s["params_after"], ",")} '
              f'({_f(s["compression"], ".2f", "×")}) |',
              f'| MACs before → after | {_f(s["macs_before"], ",")} → '
              f'{_f(s["macs_after"], ",")} |']
    for kind, (k, total) in s['kept'].items():
      lines.append(f'| kept {kind} (last state) | {k:,} of {total:,} |')
    lines += ['', 'Minutes per state:', '', '```',
              'State: ' + _row(range(n + 1)),
              'Min:   ' + _row(f'{m:.1f}' for m in s['minutes']), '```', '']
  if len(sums) > 1:
    lines += ['## Comparison', '',
              '| metric | ' + ' | '.join(l for l, _ in sums) + ' |',
              '|---|' + '---|' * len(sums)]
    rows = [('state 0', lambda s: _f(s['state0'], suffix='%')),
            ('best (state)', lambda s: f'{s["best"]:.2f}% ({s["best_state"]})'),
            ('mean over states 2..N', lambda s: _f(s['mean'], suffix='%')),
            ('across-state std (population)', lambda s: _f(s['std'])),
            ('last-5-epoch std, best state',
             lambda s: _f(s['best_last5_std'])),
            ('retention', lambda s: _f(s['retention'], '.1f', '%')),
            ('params after', lambda s: _f(s['params_after'], ',')),
            ('compression', lambda s: _f(s['compression'], '.2f', '×')),
            ('minutes per state (mean)',
             lambda s: f'{sum(s["minutes"]) / len(s["minutes"]):.1f}')]
    for name, fn in rows:
      lines.append(f'| {name} | ' + ' | '.join(fn(s) for _, s in sums) + ' |')
    lines.append('')
  lines += ['![accuracy per state](accuracy.png)', '',
            '![minutes per state](time.png)', '']
  return '\n'.join(lines)


def plot(runs: list[tuple[dict[str, Any], str]], out: str) -> list[str]:
  """accuracy.png and time.png; returns their paths."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  paths = []
  for name, key, ylabel in (('accuracy.png', 'acc', 'test top-1 (%) at best '
                             'validation epoch'),
                            ('time.png', 'minutes', 'minutes')):
    fig, ax = plt.subplots(figsize=(7, 4))
    for run, workdir in runs:
      s = summary(run)
      ax.plot(range(len(s[key])), s[key], marker='o',
              label=_label(run, workdir, runs))
    ax.set_xlabel('state')
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = os.path.join(out, name)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    paths.append(path)
  return paths


def _any_run(workdir: str) -> dict[str, Any]:
  """results.json of any run (a dense or pruned run, complete or not)."""
  path = os.path.join(workdir, 'results.json')
  if os.path.exists(path):
    with open(path) as f:
      return json.load(f)
  if os.path.exists(os.path.join(workdir, 'metrics.jsonl')):
    return {'method': os.path.basename(os.path.normpath(workdir)),
            'complete': False}
  raise ReportError(f'{workdir} has no results.json, no metrics.jsonl and '
                    'no completed state (state_*/result.json).')


def _run_sections(runs: list[tuple[dict[str, Any], str]], out: str,
                  names: list[str]) -> list[str]:
  """Per run: the size table and its figures (`jaxprune.curves`)."""
  lines = ['# Runs', '']
  for (run, workdir), name in zip(runs, names):
    prefix = '' if len(runs) == 1 else f'{name}_'
    label = _label(run, workdir, runs)
    lines += [f'## {label}: {run.get("model", "?")} on '
              f'{run.get("dataset", "?")}', '', f'Workdir: `{workdir}`'
              + ('' if run.get('complete', True) else ' (in progress)'), '',
              curves.size_table(run)]
    top = run.get('slim_top1', run.get('top1'))
    if top is not None:
      lines += [f'Top-1 of the delivered network: {top:.2f}%', '']
    paths = curves.figures(workdir, out, prefix, title=label, results=run)
    lines += [f'![{os.path.basename(p)}]({os.path.basename(p)})'
              for p in paths] + ['']
  return lines


def _pareto(workdirs: list[str], out: str) -> list[str]:
  """The accuracy-against-MACs plot of several complete runs."""
  try:
    groups = compare.pooled(compare.read(workdirs))
  except JaxpruneError as e:
    return [f'No Pareto plot: {e}', '']
  compare.plot(groups, os.path.join(out, 'pareto.png'))
  return ['# Accuracy against MACs', '', compare.table(groups),
          '![top-1 against MACs](pareto.png)', '']


def report(workdirs: list[str], out: str | None = None) -> str:
  """Writes report.md and the figures of every run; returns its path.

  State-loop runs (and any run with phases) get the per-state tables and
  plots; every run gets its size table and its figures (training curves,
  MACs over training, coverage rate, widths; `jaxprune.curves`); several
  runs also get the accuracy-against-MACs table and plot.
  """
  if not workdirs:
    raise ReportError('Pass at least one --workdir.')
  state_runs, runs = [], []
  for w in workdirs:
    try:
      run = load(w)
      state_runs.append((run, w))
    except ReportError:
      run = _any_run(w)
    runs.append((run, w))
  out = out or workdirs[0]
  os.makedirs(out, exist_ok=True)
  names, seen = [], {}
  for _, w in runs:  # Unique figure-name prefixes.
    base = os.path.basename(os.path.normpath(w)) or 'run'
    seen[base] = seen.get(base, 0) + 1
    names.append(base if seen[base] == 1 else f'{base}{seen[base]}')
  parts = []
  if state_runs:
    parts.append(markdown(state_runs))
    plot(state_runs, out)
  parts.append('\n'.join(_run_sections(runs, out, names)))
  if len(runs) > 1:
    parts.append('\n'.join(_pareto(workdirs, out)))
  path = os.path.join(out, 'report.md')
  with open(path, 'w') as f:
    f.write('\n'.join(parts))
  return path


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  try:
    path = report(FLAGS.workdir or [], FLAGS.out)
  except (ReportError, JaxpruneError, OSError, KeyError, ValueError) as e:
    sys.exit(f'jaxprune.report: error: {e}')
  print(f'Wrote {path}')


if __name__ == '__main__':
  _define_flags()
  app.run(main)
