"""REPrune end to end: every seed-row config for 2 steps under mock data, and
a real offline run whose slimmed network matches the masked one."""
import json
import os
import signal
import time

import jax
import numpy as np
import pytest

from jaxprune import checkpoint, slim

from conftest import (ONE_DEVICE, TINY, config_rows, results_of, row_id,
                      run_cli, run_main)

ROWS = config_rows('reprune', one_per_method=True)


@pytest.mark.parametrize('row', ROWS, ids=[row_id(r) for r in ROWS])
def test_config_runs_two_steps_under_mock_data(row, tmp_path, compile_cache):
  path, arg = row
  workdir = str(tmp_path / 'run')
  code, out = run_main(f'--config={path}' + (f':{arg}' if arg else ''),
                       f'--workdir={workdir}',
                       '--config.num_epochs=1', '--config.batch_size=8',
                       '--config.eval_batch_size=8', '--config.data_threads=2',
                       '--config.reprune.coverage_every_epochs=0',
                       '--config.export=False', mock_examples=16,
                       env={**compile_cache, 'XLA_FLAGS': ONE_DEVICE})
  assert code == 0, out[-3000:]
  assert 'REPrune event at epoch 0' in out, out[-3000:]
  r = results_of(workdir)
  assert r['steps'] == 2
  assert r['pruned_macs'] < r['dense_macs'] and r['pruned_params'] < r[
      'dense_params']
  assert r['flops_reduction'] == pytest.approx(
      1 - r['pruned_macs'] / r['dense_macs'])
  cfg = r['config']['reprune']
  target = cfg['target_macs'] or (
      r['dense_macs'] * (1 - cfg['target_reduction'])
      if cfg['target_reduction'] else None)
  if target:
    assert abs(r['pruned_macs'] / target - 1) < 0.01, (r['pruned_macs'],
                                                        target)
  widths = r['widths']
  assert widths and all(0 < k <= n for k, n in widths.values())
  assert any(k < n for k, n in widths.values())
  # 16 mock test images: the slimmed and masked networks agree (bf16
  # configs may flip one near-tied prediction).
  assert abs(r['slim_top1'] - r['top1']) <= 100 / 16 + 1e-6


def test_offline_run_slimmed_equals_masked_and_logs_coverage(tmp_path,
                                                             data_dir):
  workdir = str(tmp_path / 'run')
  args = [f'--config={TINY}', f'--workdir={workdir}',
          f'--config.data_dir={data_dir}', '--config.method=reprune',
          '--config.model_overrides.stage_widths=(8, 16, 16)',
          '--config.reprune.target_reduction=0.5',
          '--config.reprune.every_epochs=1', '--config.reprune.until_epoch=2']
  code, out = run_main(*args)
  assert code == 0, out[-3000:]
  r = results_of(workdir)
  assert out.splitlines()[-1].endswith(f'done: results in {workdir}/results.json')
  # The delivered (slimmed) network's MACs and params, dense ones beside.
  assert (r['macs'], r['params']) == (r['pruned_macs'], r['pruned_params'])
  assert r['dense_macs'] > r['macs']
  assert abs(r['pruned_macs'] / (0.5 * r['dense_macs']) - 1) < 0.005
  # Slimmed == masked, up to one of the 360 test images: the two networks
  # compute in different shapes, so float rounding may differ by CPU.
  one = 100 / 360 + 1e-6
  assert abs(r['slim_top1'] - r['top1']) <= one
  assert abs(r['slim_top5'] - r['top5']) <= one
  assert r['top1'] > 50  # 4 epochs on digits.
  lines = [json.loads(l) for l in open(os.path.join(workdir,
                                                    'metrics.jsonl'))]
  events = [l for l in lines if l['split'] == 'prune']
  assert [e['epoch'] for e in events] == [0, 1, 2]
  assert events[-1]['delta'] == 0 and events[1]['delta'] > 0
  cov = [l for l in lines if l['split'] == 'coverage']
  assert [c['epoch'] for c in cov] == [1, 2, 3, 4]
  assert all(0 < c['coverage_rate'] <= 1 for c in cov)
  # The export runs at batch 1 and at the eval batch, holds what results.json
  # counts, and gives the slimmed network's outputs.
  exp = os.path.join(workdir, 'slim')
  with open(os.path.join(exp, 'meta.json')) as f:
    meta = json.load(f)
  assert meta['batch_sizes'] == [1, r['config']['eval_batch_size']]
  assert meta['params'] == r['pruned_params'] < meta['variables']
  call, variables = slim.load_export(exp)
  x = np.random.default_rng(0).normal(size=(1, 8, 8, 1)).astype(np.float32)
  assert call(variables, x).shape == (1, 10)
  # Resuming a finished run changes nothing and reports the same.
  code, out = run_main(*args)
  assert code == 0, out[-3000:]
  again = results_of(workdir)
  assert again['widths'] == r['widths'] and again['top1'] == r['top1']
  # Killed mid-training (after its first checkpoint, before the mask events
  # of epochs 1 and 2) and rerun: the same masks, weights and results.
  killed = str(tmp_path / 'killed')
  kargs = [a if not a.startswith('--workdir=') else f'--workdir={killed}'
           for a in args]
  p = run_cli(*kargs)
  ckpt = os.path.join(killed, 'checkpoints')
  deadline = time.time() + 600
  while time.time() < deadline and p.poll() is None:
    if os.path.isdir(ckpt) and any(d.isdigit() for d in os.listdir(ckpt)):
      break
    time.sleep(0.05)
  p.send_signal(signal.SIGKILL)
  p.communicate()
  assert not os.path.exists(os.path.join(killed, 'results.json'))
  code, out = run_main(*kargs)
  assert code == 0, out[-3000:]
  assert 'Resumed from step 22' in out, out[-3000:]
  resumed = results_of(killed)
  assert resumed['widths'] == r['widths'] and resumed['top1'] == r['top1']
  _, a = checkpoint.load(workdir)
  _, b = checkpoint.load(killed)
  jax.tree.map(np.testing.assert_array_equal, a['params'], b['params'])
  jax.tree.map(np.testing.assert_array_equal, a['opt_state'], b['opt_state'])
