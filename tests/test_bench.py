"""`python -m jaxprune.bench`: the networks it times, its table and plot,
and its errors. (Timings themselves are not asserted: they are machine
noise here; benchmarks/ report ratios.)"""
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxprune import bench, models, structure
from jaxprune.errors import JaxpruneError

from conftest import REPO


def _graph(name='resnet20'):
  model = models.create(name, 10)
  x1 = jnp.zeros((1, 32, 32, 3))
  v = model.init(jax.random.key(0), x1)
  return model, v, structure.trace(model.apply, v, x1, train=False)


@pytest.mark.parametrize('reduction,round_to', [(0.5, 1), (0.5, 8),
                                                (0.3, 4)])
def test_uniform_masks_meet_the_reduction_with_rounded_widths(reduction,
                                                              round_to):
  _, _, g = _graph()
  m = bench.uniform_masks(g, reduction, round_to)
  inner = [x for x in g.prunable if not x.residual]
  assert set(m) == {x.name for x in inner}
  dense = g.macs({})
  assert 1 - g.macs(m) / dense >= reduction
  kept = [int(m[x.name].sum()) for x in inner]
  assert all(k % round_to == 0 or k == x.size for k, x in zip(kept, inner))
  # Uniform: one kept fraction for every group (before rounding), so
  # groups of one size keep the same width.
  by_size = {}
  for k, x in zip(kept, inner):
    by_size.setdefault(x.size, set()).add(k)
  assert all(len(v) == 1 for v in by_size.values())
  # The widest such fraction: one more channel per group misses it.
  wider = {x.name: np.arange(x.size) < min(x.size, k + round_to)
           for k, x in zip(kept, inner)}
  assert 1 - g.macs(wider) / dense < reduction


def test_uniform_masks_bad_and_unreachable():
  _, _, g = _graph()
  with pytest.raises(JaxpruneError, match=r'allowed: a number in \(0, 1\)'):
    bench.uniform_masks(g, 1.2)
  with pytest.raises(JaxpruneError, match='cannot be reached'):
    bench.uniform_masks(g, 0.7, 8)  # 16-wide groups keep >= 8.


def test_model_form_writes_the_table_and_the_plot(tmp_path):
  rows = bench.run(model='resnet20', reductions=[0.5], round_to=8,
                   batches=[1, 2], rounds=1, reps=1, out=str(tmp_path))
  assert [(r['variant'], r['batch']) for r in rows] == [
      ('dense', 1), ('>= 50% fewer MACs', 1), ('dense', 2),
      ('>= 50% fewer MACs', 2)]
  _, _, g = _graph()
  assert rows[0]['macs'] == g.macs({})
  assert rows[1]['macs'] == g.macs(bench.uniform_masks(g, 0.5, 8))
  for r in rows:
    assert r['images_per_s'] == pytest.approx(r['batch'] * 1e3 /
                                              r['latency_ms'])
    assert r['speedup_over_mac_ratio'] == pytest.approx(
        r['speedup'] * r['macs'] / rows[0]['macs'])
  assert rows[0]['speedup'] == 1.0
  md = (tmp_path / 'bench.md').read_text()
  assert '| network | MACs | fewer MACs | batch |' in md
  assert f'| >= 50% fewer MACs | {rows[1]["macs"]:,} |' in md
  assert 'Backend: cpu' in md
  assert (tmp_path / 'bench.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'


def test_auto_round_to_picks_the_fastest_multiple_at_no_more_macs(
    tmp_path, monkeypatch):
  # Fake clocks: the wider the multiple the faster; 16 keeps every 16-wide
  # group whole, so it removes at most 40% of ResNet-20's MACs and is
  # skipped at 50%.
  fake = {'1': 3.0, '4': 2.0, '8': 1.0, '16': 0.5}
  real = bench.timed
  monkeypatch.setattr(bench, 'timed', lambda fns, rounds, reps: (
      {k: (fake[str(k)] * 1e-3, 0.0) for k in fns}
      if all(str(k) in fake for k in fns) else real(fns, rounds, reps)))
  logs = []
  chosen, table = bench.pick_round_to('resnet20', [0.3, 0.5], [1, 4, 8, 16],
                                      batch=2, rounds=1, reps=1,
                                      log=logs.append)
  _, _, g = _graph()
  dense = g.macs({})
  assert chosen == [16, 8]
  assert [(r['reduction'], r['round_to']) for r in table] == [
      (0.3, 1), (0.3, 4), (0.3, 8), (0.3, 16), (0.5, 1), (0.5, 4), (0.5, 8)]
  assert any('round_to 16 cannot reach 50%' in l for l in logs)
  for r in table:  # Each candidate removes at least its reduction.
    assert r['macs'] == g.macs(bench.uniform_masks(g, r['reduction'],
                                                   r['round_to']))
    assert r['macs'] <= (1 - r['reduction']) * dense
    assert r['chosen'] == (r['round_to'] == chosen[r['reduction'] == 0.5])
  rows = bench.run(model='resnet20', reductions=[0.5], round_to='auto',
                   batches=[2], rounds=1, reps=1, out=str(tmp_path),
                   candidates=[1, 8])
  assert rows[1]['variant'] == '>= 50% fewer MACs (round_to 8)'
  assert rows[1]['macs'] == g.macs(bench.uniform_masks(g, 0.5, 8))
  md = (tmp_path / 'round_to.md').read_text()
  assert '| 50% | 8 |' in md and '| yes |' in md
  with pytest.raises(JaxpruneError, match='candidates'):
    bench.pick_round_to('resnet20', [0.5], [0])


def _fake_run(workdir, widths, pruned_macs=None):
  from configs import default  # pylint: disable=g-import-not-at-top
  config = default.get_config()
  os.makedirs(workdir)
  with open(os.path.join(workdir, 'run.json'), 'w') as f:
    json.dump({'config': json.loads(config.to_json_best_effort())}, f)
  r = {'method': 'reprune', 'widths': widths}
  if pruned_macs is not None:
    r['pruned_macs'] = pruned_macs
  with open(os.path.join(workdir, 'results.json'), 'w') as f:
    json.dump(r, f)
  return config


def test_workdir_form_times_the_runs_widths(tmp_path):
  from jaxprune.engine import setup  # pylint: disable=g-import-not-at-top
  from jaxprune.tasks import base as tasks_base  # pylint: disable=g-import-not-at-top
  from configs import default  # pylint: disable=g-import-not-at-top
  config = default.get_config()
  task = tasks_base.get(config.task)(config)
  model = setup.build_model(config, task.num_outputs())
  x1 = jnp.zeros(task.input_shape())
  g = structure.trace(model.apply, model.init(jax.random.key(0), x1), x1,
                      train=False)
  inner = [x for x in g.prunable if not x.residual]
  widths = {x.name: [x.size // 2, x.size] for x in inner}
  want = g.macs({x.name: np.arange(x.size) < x.size // 2 for x in inner})
  wd = str(tmp_path / 'run')
  _fake_run(wd, widths, want)
  variants, shape = bench.workdir_variants(wd)
  assert [v.name for v in variants] == ['dense', 'slimmed']
  assert (variants[0].macs, variants[1].macs) == (g.macs({}), want)
  assert shape == tuple(task.input_shape()[1:])
  x = jnp.ones((2, *shape))
  assert variants[1].fn(variants[1].variables, x).shape == (
      2, task.num_outputs())
  bad = str(tmp_path / 'bad')
  _fake_run(bad, widths, want + 1)
  with pytest.raises(JaxpruneError, match='results.json says'):
    bench.workdir_variants(bad)
  empty = str(tmp_path / 'empty')
  _fake_run(empty, {})
  with pytest.raises(JaxpruneError, match='has no widths'):
    bench.workdir_variants(empty)
  with pytest.raises(JaxpruneError, match='does not exist'):
    bench.workdir_variants(str(tmp_path / 'nowhere'))


def test_cli_errors_are_one_line(tmp_path):
  for args, msg in ((['--model=resnet20'], 'needs --flops_reduction'),
                    ([], 'exactly one of --workdir'),
                    (['--model=resnet20', '--flops_reduction=0.5',
                      '--batches=0'], 'allowed: ints >= 1'),
                    (['--model=resnet20', '--flops_reduction=0.5',
                      '--round_to=fast'], "allowed: an int >= 1 or 'auto'")):
    p = subprocess.run([sys.executable, '-m', 'jaxprune.bench', *args,
                        f'--out={tmp_path}'], cwd=REPO, capture_output=True,
                       text=True)
    assert p.returncode != 0 and msg in p.stderr, p.stderr[-2000:]
    assert 'Traceback' not in p.stderr
