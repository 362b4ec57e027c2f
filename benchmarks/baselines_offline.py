"""The offline baseline comparison of the README: every method at 70% fewer
MACs on ResNet-20 / digits, 3 seeds, then `jaxprune.compare`.

    python benchmarks/baselines_offline.py --out=/tmp/baselines

Runs dense (configs/default.py), reprune (configs/reprune/default_offline.py
at 70%) and configs/<method>/default_offline.py for l1, sfp, fpgm, chex,
cup and bn_slimming, and SFP with 5 fine-tuning epochs after 10
(`sfp_ft`), seeds 0, 1, 2, one after the other (each run resumes
or skips when its workdir is already complete), and writes
`<out>/compare.md` and `<out>/pareto.png`. About 40 minutes on 2 CPU
cores.
"""
import argparse
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# (run name, config, flags); the run name is the workdir's prefix and
# the --methods choice.
RUNS = [('none', 'configs/default.py', []),
        ('reprune', 'configs/reprune/default_offline.py',
         ['--config.reprune.target_reduction=0.7'])] + [
             (m, f'configs/{m}/default_offline.py', [])
             for m in ('l1', 'sfp', 'fpgm', 'chex', 'cup', 'bn_slimming')] + [
                 # SFP's "fine-tuned" variant, 10 + 5 epochs as the one-shots.
                 ('sfp_ft', 'configs/sfp/default_offline.py',
                  ['--config.num_epochs=10', '--config.sfp.finetune_epochs=5'])]


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--out', default='/tmp/baselines')
  parser.add_argument('--seeds', type=int, default=3)
  parser.add_argument('--methods', nargs='*', default=[r[0] for r in RUNS])
  args = parser.parse_args()
  workdirs = []
  for method, config, extra in RUNS:
    if method not in args.methods:
      continue
    for seed in range(args.seeds):
      wd = os.path.join(args.out, f'{method}_seed{seed}')
      workdirs.append(wd)
      t0 = time.time()
      cmd = [sys.executable, '-m', 'jaxprune.main', f'--config={config}',
             f'--workdir={wd}', f'--config.seed={seed}',
             '--config.export=False', *extra]
      print(' '.join(cmd[1:]), flush=True)
      p = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
      if p.returncode:
        sys.exit(f'{method} seed {seed} failed:\n{p.stderr[-3000:]}')
      print(f'  {time.time() - t0:.0f}s', flush=True)
  subprocess.run([sys.executable, '-m', 'jaxprune.compare',
                  *[f'--workdir={w}' for w in workdirs],
                  f'--out={args.out}'], cwd=REPO, check=True)
  print(open(os.path.join(args.out, 'compare.md')).read())


if __name__ == '__main__':
  main()
