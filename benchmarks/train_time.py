"""Training time saved by shrinking: REPrune's schedule, scaled down.

    python benchmarks/train_time.py --out=/tmp/train_time

Three runs of `python -m jaxprune.main` on the offline digits data (by
default upsampled to CIFAR's 32x32, `digits32`, so ResNet-56 runs at its
CIFAR size), one after the other, each in a fresh process (no compile
cache is shared):

* dense: configs/reprune/default_offline.py's recipe, `method=none`;
* masked: REPrune at `--reduction` fewer MACs, the masked full-width
  network trained to the end (`shrink=False`);
* shrink: the same, training only the kept channels from the first mask
  event on (`shrink=True`, widths rounded up to `--round_to`).

The schedule keeps the paper's T_prune / T = 180 / 250 and ΔT = 2 epochs
(ImageNet). REPrune's coverage-rate logging is off (a diagnostic, not
training). Times are each run's `train_seconds` (training, compiles, the
one evaluation and the checkpoints). Prints a table with the fractions
saved against dense, the shrink run's compile bill and the saving of the
epochs themselves (events and compiles left out; both from metrics.jsonl);
the last line is `train_time_saved_fraction: <x>` (shrink
against dense).
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(workdir, flags):
  cmd = [sys.executable, '-m', 'jaxprune.main',
         f'--config={REPO}/configs/reprune/default_offline.py',
         f'--workdir={workdir}', *flags]
  t0 = time.time()
  done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True,
                        check=False)
  wall = time.time() - t0
  if done.returncode:
    sys.stderr.write(done.stderr[-4000:])
    raise SystemExit(f'{workdir}: exit {done.returncode}')
  with open(os.path.join(workdir, 'results.json')) as f:
    return json.load(f), wall


def _records(path):
  """The records of a run's metrics.jsonl."""
  with open(path) as f:
    return [json.loads(line) for line in f]


def _compile_bill(records):
  """Lowering and compile seconds of the slim steps."""
  bill = {'maskings': 0, 'compiled': 0, 'reused': 0, 'lower': 0.0,
          'compile': 0.0}
  for r in records:
    if r.get('split') != 'shrink':
      continue
    bill['maskings'] += 1
    bill['reused' if r['cached'] else 'compiled'] += 1
    bill['lower'] += r['lower_seconds']
    bill['compile'] += r['compile_seconds']
  return bill


def _epoch_seconds(records):
  """{epoch: seconds from the record before its train record}: the epoch's
  steps (and a shrink run's slicing), without events or compiles, which
  log their own records first. Epoch 1 also holds the first compile."""
  out, prev = {}, None
  for r in records:
    if r.get('split') == 'train' and prev is not None:
      out[r['epoch']] = r['time'] - prev
    prev = r['time']
  return out


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--out', default='/tmp/train_time')
  parser.add_argument('--model', default='resnet56')
  parser.add_argument('--epochs', type=int, default=10)
  parser.add_argument('--reduction', type=float, default=0.56)
  parser.add_argument('--batch_size', type=int, default=64)
  parser.add_argument('--dataset', default='digits32')
  parser.add_argument('--every_epochs', type=int, default=2,
                      help='ΔT: epochs between mask events (the paper: 2).')
  parser.add_argument('--round_to', type=int, default=8,
                      help='shrink_round_to of the shrink run.')
  args = parser.parse_args()
  until = round(args.epochs * 180 / 250)
  common = [f'--config.model={args.model}',
            f'--config.num_epochs={args.epochs}',
            f'--config.batch_size={args.batch_size}',
            f'--config.dataset={args.dataset}',
            '--config.reprune.coverage_every_epochs=0',
            f'--config.eval_every_epochs={args.epochs}',
            f'--config.checkpoint_every_epochs={args.epochs}',
            '--config.export=False']
  pruned = [f'--config.reprune.target_reduction={args.reduction}',
            f'--config.reprune.until_epoch={until}',
            f'--config.reprune.every_epochs={args.every_epochs}']
  runs = [('dense', ['--config.method=none']),
          ('masked', pruned + ['--config.shrink=False']),
          ('shrink', pruned + ['--config.shrink=True',
                               f'--config.shrink_round_to={args.round_to}'])]
  rows = {}
  for name, flags in runs:
    workdir = os.path.join(args.out, name)
    shutil.rmtree(workdir, ignore_errors=True)
    print(f'{name}: running ...', flush=True)
    res, wall = _run(workdir, common + flags)
    rows[name] = (res, wall)
    print(f'{name}: {res["train_seconds"]:.1f} s training, {wall:.1f} s '
          f'wall, top-1 {res["top1"]:.2f}%', flush=True)
  dense = rows['dense'][0]['train_seconds']
  print(f'\n{args.model} on {args.dataset}, {args.epochs} epochs (T_prune '
        f'{until}, ΔT {args.every_epochs}), REPrune at {args.reduction:.0%} '
        f'fewer MACs, batch {args.batch_size}, shrink widths rounded to '
        f'{args.round_to}\n')
  print('| run | train s | saved vs dense | wall s | top-1 % | MACs |')
  print('|---|---|---|---|---|---|')
  for name, (res, wall) in rows.items():
    t = res['train_seconds']
    print(f'| {name} | {t:.1f} | {1 - t / dense:.3f} | {wall:.1f} | '
          f'{res["top1"]:.2f} | {res["macs"]:,} |')
  records = {n: _records(os.path.join(args.out, n, 'metrics.jsonl'))
             for n in ('dense', 'shrink')}
  bill = _compile_bill(records['shrink'])
  epoch = dense / args.epochs
  each = (bill['lower'] + bill['compile']) / max(bill['maskings'], 1)
  print(f'\nshrink: {bill["maskings"]} new maskings, {bill["compiled"]} '
        f'compiled ({bill["reused"]} reused a compiled step); '
        f'{bill["lower"]:.1f} s lowering + {bill["compile"]:.1f} s compiling '
        f'in all, {each:.1f} s per masking = {each / epoch:.2f} of a dense '
        f'epoch ({epoch:.1f} s)')
  per = {n: _epoch_seconds(r) for n, r in records.items()}
  later = sorted(set(per['dense']) & set(per['shrink']) - {1})
  steady = 1 - (sum(per['shrink'][e] for e in later) /
                sum(per['dense'][e] for e in later))
  print(f'epochs {later[0]}-{later[-1]} without events and compiles: dense '
        f'{sum(per["dense"][e] for e in later):.1f} s, shrink '
        f'{sum(per["shrink"][e] for e in later):.1f} s: '
        f'steady_state_saved_fraction {steady:.3f}')
  saved = 1 - rows['shrink'][0]['train_seconds'] / dense
  masked = 1 - rows['masked'][0]['train_seconds'] / dense
  print(f'\nmasked_saved_fraction: {masked:.3f}')
  print(f'train_time_saved_fraction: {saved:.3f}')


if __name__ == '__main__':
  main()
