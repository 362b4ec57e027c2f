"""The IMP / Refill / RSST state loop: amounts, plans, batch criteria,
rewinding, resume, every config under mock data, and the report."""
import json
import os
import shutil

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxprune import checkpoint, models, report, structure
from jaxprune.errors import JaxpruneError
from jaxprune.methods import base, criteria, refill, units
from conftest import (ONE_DEVICE, REPO, config_rows, make_method, row_id,
                      run_main)

OFFLINE = os.path.join(REPO, 'configs', 'states', 'default_offline.py')
ROWS = config_rows('states', one_per_method=True)


def test_kept_absolute_and_gradual_by_hand():
  assert [base.kept(72, 0.7, k, 'absolute') for k in range(3)] == [72, 21,
                                                                     21]
  assert base.kept(18432, 0.7, 5, 'absolute') == 5529
  # 100 -> 80 -> 64 -> 52 (64 - int(12.8)) -> 42 (52 - int(10.4)).
  assert [base.kept(100, 0.2, k, 'gradual') for k in range(5)] == [
      100, 80, 64, 52, 42]
  with pytest.raises(JaxpruneError, match="amount='linear'.*absolute"):
    base.kept(10, 0.5, 1, 'linear')


def traced(name, size, **kw):
  model = models.create(name, 10, **kw)
  x = jnp.zeros((1, size, size, 3))
  v = model.init(jax.random.key(0), x, train=False)
  return model, v, structure.trace(model.apply, v, x, train=False)


def test_imp_plans_absolute_and_gradual():
  _, v, g = traced('vit_micro', 8)
  params = jax.tree.map(np.asarray, v['params'])
  paths = units.prunable_kernels(g, params)
  n = sum(np.size(structure.lookup(params, p)) for p in paths)
  m = make_method('imp', g, params, rate=0.3, amount='gradual')
  assert m.num_weights == n and m.mode == 'hard'
  p1 = m.plan(1, {"params": params}, m.dense())
  assert m.kept_counts(p1) == {'weights': [n - int(0.3 * n), n]}
  # Gradual: state 2 prunes 30% of state 1's survivors, within them.
  p2 = m.plan(2, {"params": params}, p1)
  k1 = n - int(0.3 * n)
  assert m.kept_counts(p2) == {'weights': [k1 - int(0.3 * k1), n]}
  for p in paths:
    a, b = structure.lookup(p1.weights, p), structure.lookup(p2.weights, p)
    assert not np.any(b & ~a)
  # Absolute: int(N (1 - rate)) by global |w|, wherever they are.
  ab = make_method('imp', g, params, rate=0.3)
  p = ab.plan(4, {"params": params}, p1)
  assert ab.kept_counts(p)['weights'][0] == int(n * 0.7)
  w = np.concatenate([np.abs(structure.lookup(params, q)).ravel()
                      for q in paths])
  kept = np.concatenate([structure.lookup(p.weights, q).ravel()
                         for q in paths])
  assert w[kept].min() >= w[~kept].max()
  params_eff, macs = ab.effective(p)
  assert params_eff == g.num_params({}) - (n - int(n * 0.7))
  assert macs == g.macs({})


def test_refill_and_rsst_plans_keep_global_pools(tmp_path):
  _, v, g = traced('vit_micro', 8, depth=3)
  params = jax.tree.map(np.asarray, v['params'])
  for name in ('refill', 'rsst'):
    m = make_method(name, g, params, rate=0.6)
    plan = m.plan(1, {"params": params}, m.dense())
    want = refill.refill_masks(params, m.units, 0.6)
    assert plan.channels.keys() == want.keys()
    for k in want:
      np.testing.assert_array_equal(plan.channels[k], want[k])
    assert m.kept_counts(plan) == {'head': [int(12 * 0.4), 12],
                                   'neuron': [int(192 * 0.4), 192]}
    assert m.effective(plan) == (g.num_params(plan.channels),
                                 g.macs(plan.channels))
  # Plans round-trip through masks.npz.
  path = str(tmp_path / 'masks.npz')
  plan.save(path)
  back = base.Plan.load(path, params)
  assert back.weights is None and all(
      np.array_equal(back.channels[k], plan.channels[k]) for k in want)
  imp_plan = make_method('imp', g, params).plan(
      1, {'params': params}, None)
  imp_plan.save(path)
  back = base.Plan.load(path, params)
  for a, b in zip(jax.tree.leaves(imp_plan.weights),
                  jax.tree.leaves(back.weights)):
    np.testing.assert_array_equal(a, b)


class TinyCNN(nn.Module):
  """stem 1x1 -> relu -> mid 1x1 (a prunable unit) -> relu -> out 1x1."""

  @nn.compact
  def __call__(self, x, train=False):
    del train
    x = nn.relu(nn.Conv(4, (1, 1), name='stem')(x))
    x = nn.relu(nn.Conv(6, (1, 1), name='mid')(x))
    x = nn.Conv(5, (1, 1), name='out')(x)
    return nn.Dense(3, name='head')(jnp.mean(x, axis=(1, 2)))


def test_cnn_batch_criteria_match_a_numpy_reference():
  model = TinyCNN()
  x = jax.random.normal(jax.random.key(1), (4, 3, 3, 2))
  v = model.init(jax.random.key(0), x)
  g = structure.trace(model.apply, v, x[:1])
  found = units.units(g, v['params'])
  assert [(u.group, u.kind, u.size) for u in found] == [
      ('mid', 'channel', 6), ('out', 'channel', 5)]
  found = found[:1]
  p = jax.tree.map(np.asarray, v['params'])
  h = np.maximum(np.asarray(x) @ p['stem']['kernel'][0, 0] +
                 p['stem']['bias'], 0)
  y = h @ p['mid']['kernel'][0, 0] + p['mid']['bias']  # [4, 3, 3, 6]
  l1 = criteria.activation(model.apply, v, x, found, 'l1')['mid']
  l2 = criteria.activation(model.apply, v, x, found, 'l2')['mid']
  np.testing.assert_allclose(l1, np.abs(y).sum((0, 1, 2)), rtol=1e-5)
  np.testing.assert_allclose(l2, np.sqrt((y ** 2).sum((0, 1, 2))), rtol=1e-5)
  labels = jnp.array([0, 1, 2, 0])

  def loss(params):
    logits = model.apply({'params': params}, x)
    return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(4), labels])

  grad = np.asarray(jax.grad(loss)(v['params'])['mid']['kernel'])
  want = np.abs(grad * p['mid']['kernel']).sum((0, 1, 2))
  got = criteria.saliency(loss, v['params'], found)['mid']
  np.testing.assert_allclose(got, want, rtol=1e-5)
  # Refill keeps the channels these scores rank highest, within the budget
  # that IMP survivors fill (here 3 of 6 channels' worth).
  survivors = jax.tree.map(lambda a: np.ones(a.shape, bool), p)
  survivors['mid']['kernel'][..., :] = np.arange(4)[:, None] < 2
  cm = refill.cnn_masks(p, found, survivors, 'l2', scores={'mid': l2})
  np.testing.assert_array_equal(
      cm['mid'], np.isin(np.arange(6), np.argsort(-np.asarray(l2))[:3]))
  with pytest.raises(ValueError, match='needs scores'):
    refill.cnn_masks(p, found, survivors, 'saliency')


def test_bad_state_settings_name_the_allowed_values():
  _, v, g = traced('vit_micro', 8)
  for field, value, match in (
      ('amount', 'linear', 'absolute, gradual'),
      ('criterion', 'taylor', 'remain, magnitude, l1, l2, saliency'),
      ('reg_schedule', 'x^4', 'exp_custom_exponents'),
      ('ramp', 'step', 'state, epoch'), ('rate', 1.0, '0 < rate < 1'),
      ('mask_mode', 'soft', 'auto, hard, masked_forward')):
    with pytest.raises(JaxpruneError, match=match):
      make_method('refill', g, v['params'], **{field: value})
  # A linear classifier: nothing between the input and the output.
  lin = nn.Dense(3)
  x = jnp.zeros((1, 4))
  lv = lin.init(jax.random.key(0), x)
  lg = structure.trace(lin.apply, lv, x)
  with pytest.raises(JaxpruneError, match='no prunable unit'):
    make_method('refill', lg, lv['params'])
  with pytest.raises(JaxpruneError, match='no prunable kernel'):
    make_method('imp', lg, lv['params'])


# ---------------------------------------------------------------------------
# End to end on the offline dataset.
# ---------------------------------------------------------------------------

SMALL = ['--config.states.num_states=3', '--config.num_epochs=2',
         '--config.batch_size=120', '--config.log_every_steps=1000',
         '--config.model_overrides.depth=2']


def results(workdir):
  with open(os.path.join(workdir, 'results.json')) as f:
    return json.load(f)


def test_rewinding_restores_the_initial_params_exactly(tmp_path, data_dir):
  wd = str(tmp_path / 'imp')
  code, out = run_main(f'--config={OFFLINE}', f'--workdir={wd}',
                       f'--config.data_dir={data_dir}', *SMALL,
                       '--config.states.num_states=2',
                       '--config.method=imp', '--config.keep_checkpoints=9')
  assert code == 0, out[-3000:]
  model = models.create('vit_micro', 10, depth=2, hidden_size=64,
                        num_heads=4, mlp_dim=128)
  init = model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 1)))['params']
  _, rewind = checkpoint.load(os.path.join(wd, 'rewind'))
  _, start = checkpoint.load(os.path.join(wd, 'state_01'), step=0)
  _, trained = checkpoint.load(os.path.join(wd, 'state_00'))
  plan = base.Plan.load(os.path.join(wd, 'state_01', 'masks.npz'), init)
  for a, b, c, m, t in zip(*(jax.tree.leaves(x) for x in (
      init, rewind['params'], start['params'], plan.weights, trained['params']))):
    np.testing.assert_array_equal(a, b)  # The saved rewind point is init.
    np.testing.assert_array_equal(c, a * m)  # Hard IMP: init under masks.
    assert not np.array_equal(t, a)  # State 0 did train.
  r = results(wd)
  n = r['states'][1]['kept']['weights']
  assert n[0] == int(n[1] * 0.3)
  assert r['states'][1]['params'] == r['dense_params'] - (n[1] - n[0])


def test_rewind_epoch_restores_the_state0_weights_at_that_epoch(tmp_path,
                                                                data_dir):
  wd = str(tmp_path / 'refill')
  code, out = run_main(f'--config={OFFLINE}', f'--workdir={wd}',
                       f'--config.data_dir={data_dir}', *SMALL,
                       '--config.states.num_states=2',
                       '--config.states.rewind_epoch=1',
                       '--config.keep_checkpoints=9')
  assert code == 0, out[-3000:]
  spe = 1200 // 120
  _, epoch1 = checkpoint.load(os.path.join(wd, 'state_00'), step=spe)
  _, start = checkpoint.load(os.path.join(wd, 'state_01'), step=0)
  # Masked-forward Refill keeps the underlying weights: an exact copy.
  for a, b in zip(jax.tree.leaves(epoch1['params']),
                  jax.tree.leaves(start['params'])):
    np.testing.assert_array_equal(a, b)
  for a, b in zip(jax.tree.leaves(epoch1['batch_stats']),
                  jax.tree.leaves(start['batch_stats'])):
    np.testing.assert_array_equal(a, b)


def test_state_loop_resumes_at_the_right_state_and_epoch(tmp_path, data_dir):
  args = [f'--config={OFFLINE}', f'--config.data_dir={data_dir}', *SMALL,
          '--config.method=rsst', '--config.keep_checkpoints=9']
  wd = str(tmp_path / 'full')
  code, out = run_main(*args, f'--workdir={wd}')
  assert code == 0, out[-3000:]
  full = results(wd)
  assert full['complete'] and [s['state'] for s in full['states']] == [0, 1,
                                                                      2]
  s1 = full['states'][1]
  assert s1['kept'] == {'head': [2, 8], 'neuron': [76, 256]}
  assert s1['params'] == full['pruned_params']  # Slimmed = graph.
  # The stored summary, against the states by hand (state 2 alone is the
  # tail of states 2..N).
  acc = [s['top1'] for s in full['states']]
  summ = full['summary']
  assert summ['state0'] == acc[0]
  assert summ['best'] == max(acc) and acc[summ['best_state']] == max(acc)
  assert summ['mean'] == pytest.approx(acc[2]) and summ['std'] == 0.0
  assert summ['retention'] == pytest.approx(100 * max(acc) / acc[0])
  assert summ['params_after'] == full['states'][2]['params']
  assert summ['compression'] == pytest.approx(
      full['dense_params'] / full['states'][2]['params'])
  # Slimmed == masked up to one of the 360 test images (float rounding of
  # two differently shaped computations may differ by CPU).
  assert abs(full['slim_top1'] - full['states'][2]['final_top1']) <= (
      100 / 360 + 1e-6)
  # RSST drove the weights outside the structure toward zero.
  _, start = checkpoint.load(os.path.join(wd, 'state_01'), step=0)
  _, end = checkpoint.load(os.path.join(wd, 'state_01'))
  plan = base.Plan.load(os.path.join(wd, 'state_01', 'masks.npz'),
                          start['params'])
  outside, inside = [], []
  for b in range(2):
    keep = plan.channels[f'block{b}/attn/query']
    q0, q1 = (np.abs(np.asarray(t['params'][f'block{b}']['attn']['query'][
        'kernel'])) for t in (start, end))
    outside.append((q1[:, ~keep].sum(), q0[:, ~keep].sum()))
    inside.append((q1[:, keep].sum(), q0[:, keep].sum()))
  shrink = lambda pairs: sum(a for a, _ in pairs) / sum(b for _, b in pairs)
  assert shrink(outside) < 0.3 < 0.9 < shrink(inside), (outside, inside)

  def cut(dst, state, *, drop_checkpoint):
    d = os.path.join(dst, f'state_{state:02d}')
    os.remove(os.path.join(d, 'result.json'))
    if drop_checkpoint:
      last = max(int(s) for s in os.listdir(os.path.join(d, 'checkpoints'))
                 if s.isdigit())
      shutil.rmtree(os.path.join(d, 'checkpoints', str(last)))
    os.remove(os.path.join(dst, 'results.json'))

  # Killed in state 2 after its first epoch; then killed before state 2.
  for name, drop in (('mid', True), ('between', False)):
    wd2 = str(tmp_path / name)
    shutil.copytree(wd, wd2)
    cut(wd2, 2, drop_checkpoint=drop)
    if name == 'between':
      shutil.rmtree(os.path.join(wd2, 'state_02'))
    code, out = run_main(*args, f'--workdir={wd2}')
    assert code == 0, out[-3000:]
    if name == 'mid':
      assert 'State 2: resumed at step 10' in out
    again = results(wd2)
    assert len(again['states']) == len(full['states'])
    for a, b in zip(full['states'], again['states']):
      a, b = dict(a), dict(b)
      a.pop('seconds'), b.pop('seconds')
      assert a == b
    assert again['summary'] == full['summary']
    assert again['slim_top1'] == full['slim_top1']


@pytest.mark.parametrize('row', ROWS, ids=[row_id(r) for r in ROWS])
def test_state_config_runs_under_mock_data(row, tmp_path, compile_cache):
  """Two states of one epoch, on one CPU device (sharding over 8 fake
  devices is covered by the offline runs above)."""
  path, arg = row
  wd = str(tmp_path / 'run')
  code, out = run_main(f'--config={path}' + (f':{arg}' if arg else ''),
                       f'--workdir={wd}', '--config.states.num_states=2', '--config.num_epochs=1',
                       '--config.batch_size=8', '--config.eval_batch_size=8',
                       '--config.validation_size=8',
                       '--config.data_threads=2', '--config.export=False',
                       mock_examples=24,
                       env={**compile_cache, 'XLA_FLAGS': ONE_DEVICE})
  assert code == 0, out[-3000:]
  r = results(wd)
  assert r['complete'] and len(r['states']) == 2
  s0, s1 = r['states']
  assert s0['params'] == r['dense_params'] and s1['params'] < s0['params']
  assert s1['seconds'] > 0 and 0 <= s1['top1'] <= 100
  if r['method'] != 'imp':
    assert r['pruned_params'] == s1['params']


# ---------------------------------------------------------------------------
# The report.
# ---------------------------------------------------------------------------

# Seed 003's CIFAR-10 Refill row.
SEED_ROW = [80.34, 79.96, 80.76, 81.56, 81.70, 81.46, 81.30, 80.87, 81.22,
            81.10, 81.26, 80.70, 80.78, 81.28, 81.52, 81.50]


def fake_run(workdir, method, accs, params=6396643):
  os.makedirs(workdir)
  st = [{'state': i, 'top1': a, 'params': 21342346 if i == 0 else params,
         'macs': 1, 'seconds': 60.0 * (i + 1),
         'kept': {'head': [21, 72], 'neuron': [5529, 18432]}}
        for i, a in enumerate(accs)]
  with open(os.path.join(workdir, 'results.json'), 'w') as f:
    json.dump({'method': method, 'dataset': 'cifar10', 'model': 'vit_small',
               'dense_params': 21342346, 'dense_macs': 1, 'states': st,
               'complete': True}, f)


def test_report_statistics_and_files(tmp_path):
  a, b = str(tmp_path / 'refill'), str(tmp_path / 'rsst')
  fake_run(a, 'refill', SEED_ROW)
  fake_run(b, 'rsst', [80.10, 79.74, 80.20, 80.18])
  s = report.summary(report.load(a))
  tail = np.array(SEED_ROW[2:])
  # The seed prints mean 81.12 and std 0.24 for this row; its "std" is over
  # the last 5 epochs of a state (not in the rows); across states 2..15
  # the rows give 81.215 and 0.316 (population; 0.328 sample).
  assert s['mean'] == pytest.approx(81.215)
  assert s['std'] == pytest.approx(tail.std()) == pytest.approx(0.3157, abs=1e-4)
  assert s['std_sample'] == pytest.approx(tail.std(ddof=1))
  assert (s['best'], s['best_state']) == (81.70, 4)
  assert s['retention'] == pytest.approx(100 * 81.70 / 80.34)
  assert s['compression'] == pytest.approx(21342346 / 6396643)
  out = str(tmp_path / 'out')
  code, text = run_main_report(f'--workdir={a}', f'--workdir={b}',
                               f'--out={out}')
  assert code == 0, text
  md = open(os.path.join(out, 'report.md')).read()
  assert 'State:      0      1      2' in md
  assert 'Acc:    80.34  79.96  80.76' in md
  assert '| best | 81.70% (state 4) |' in md
  assert '| mean over states 2..15 | 81.22% |' in md
  assert '| refill | rsst |' in md
  assert '21,342,346 → 6,396,643 (3.34×)' in md
  for png in ('accuracy.png', 'time.png'):
    with open(os.path.join(out, png), 'rb') as f:
      assert f.read(8) == b'\x89PNG\r\n\x1a\n'
  code, text = run_main_report(f'--workdir={tmp_path / "nothing"}')
  assert code != 0 and 'no results.json' in text


def run_main_report(*args):
  import subprocess, sys  # pylint: disable=g-import-not-at-top,multiple-imports
  p = subprocess.run([sys.executable, '-m', 'jaxprune.report', *args],
                     capture_output=True, text=True, cwd=REPO)
  return p.returncode, p.stdout + p.stderr


def test_report_last_five_epoch_std_from_metrics(tmp_path):
  """Seed 003's std: over the last 5 epochs of a state (metrics.jsonl),
  reported beside the across-state std."""
  wd = str(tmp_path / 'run')
  fake_run(wd, 'refill', [70.0, 71.0, 72.0])
  # State 1: 7 validation epochs; the last 5 are 1, 2, 3, 4, 5 (std
  # sqrt(2)). State 0 has 4 epochs (< 5: no value). Test records and a
  # torn last line are ignored.
  rec = [{'split': 'validation', 'state': 1, 'epoch': e + 1,
          'validation/top1': v} for e, v in enumerate([9, 9, 1, 2, 3, 4, 5])]
  rec += [{'split': 'validation', 'state': 0, 'epoch': e + 1,
           'validation/top1': 50.0} for e in range(4)]
  rec += [{'split': 'test', 'state': 1, 'epoch': 7, 'test/top1': 99.0}]
  with open(os.path.join(wd, 'metrics.jsonl'), 'w') as f:
    f.write('\n'.join(json.dumps(r) for r in rec) + '\n{"split": "valid')
  s = report.summary(report.load(wd))
  assert s['last5_std'][0] is None
  assert s['last5_std'][1] == pytest.approx(np.sqrt(2.0))
  assert s['last5_std'][2] is None  # No records for state 2.
  assert s['best_state'] == 2 and s['best_last5_std'] is None
  md = report.markdown([(report.load(wd), wd)])
  assert 'Std5:' in md and '1.41' in md and 'across-state std' in md


def _fake_metrics(workdir, rows):
  with open(os.path.join(workdir, 'metrics.jsonl'), 'w') as f:
    for r in rows:
      f.write(json.dumps(r) + '\n')
    f.write('{"split": "train", "st')  # A torn last line.


def test_report_on_a_pruned_run_and_a_dense_run(tmp_path):
  """Any run: the size table, training curves, MACs from the prune
  events, the coverage rate and the widths; two runs add the Pareto."""
  from jaxprune import curves  # pylint: disable=g-import-not-at-top
  pr, dn = tmp_path / 'reprune', tmp_path / 'dense'
  pr.mkdir()
  dn.mkdir()
  common = {'dataset': 'digits', 'model': 'resnet20', 'complete': True,
            'dense_macs': 1000, 'dense_params': 500, 'steps': 40,
            'epochs': 4, 'train_seconds': 10.0}
  (pr / 'results.json').write_text(json.dumps({
      **common, 'method': 'reprune', 'top1': 90.0, 'slim_top1': 89.5,
      'pruned_macs': 400, 'pruned_params': 200,
      'widths': {'layer1/conv1': [4, 16], 'layer2/conv1': [10, 32]},
      'config': {'seed': 0}}))
  (dn / 'results.json').write_text(json.dumps({
      **common, 'method': 'none', 'top1': 95.0, 'macs': 1000,
      'params': 500, 'config': {'seed': 0}}))
  train = [{'split': 'train', 'step': 10 * e, 'epoch': e, 'loss': 2.0 / e,
            'accuracy': 20.0 * e} for e in (1, 2, 3, 4)]
  _fake_metrics(str(pr), [
      train[0], {'split': 'prune', 'step': 10, 'epoch': 1, 'macs': 600,
                 'flops_reduction': 0.4, 'coverage_rate': 0.7},
      {'split': 'shrink', 'step': 10, 'epoch': 1, 'macs': 640,
       'lower_seconds': 1.0, 'compile_seconds': 2.0, 'cached': False},
      train[1], {'split': 'prune', 'step': 20, 'epoch': 2, 'macs': 400,
                 'flops_reduction': 0.6, 'coverage_rate': 0.8},
      # A resume logged step 20 again: the last record wins.
      {**train[1], 'loss': 0.9},
      {'split': 'coverage', 'step': 30, 'epoch': 3, 'coverage_rate': 0.85},
      train[2], train[3], {'split': 'test', 'step': 40, 'top1': 90.0},
      {'split': 'slim_test', 'step': 40, 'top1': 89.5}])
  _fake_metrics(str(dn), train + [{'split': 'test', 'step': 40,
                                   'top1': 95.0}])
  rows = curves.read_metrics(str(pr))
  assert curves.steps_per_epoch(rows) == 10.0
  s = curves.series(rows)
  assert [t[:2] for t in s['train']] == [(1.0, 2.0), (2.0, 0.9),
                                         (3.0, 2 / 3), (4.0, 0.5)]
  assert s['prune'] == [(1.0, 600, 0.4), (2.0, 400, 0.6)]
  assert s['coverage'] == [(1.0, 0.7), (2.0, 0.8), (3.0, 0.85)]
  assert s['shrink'] == [(1.0, 640)]
  assert curves.final_test(rows, {}) == (4.0, 89.5)
  table = curves.size_table(json.loads((pr / 'results.json').read_text()))
  assert '| parameters | 500 | 200 | 60.00% |' in table
  assert '| MACs per example | 1,000 | 400 | 60.00% |' in table
  out = tmp_path / 'out'
  code, text = run_main_report(f'--workdir={pr}', f'--workdir={dn}',
                               f'--out={out}')
  assert code == 0, text
  md = (out / 'report.md').read_text()
  assert 'State-loop report' not in md  # Neither run has states.
  assert 'Top-1 of the delivered network: 89.50%' in md
  assert '| MACs per example | 1,000 | 1,000 | 0.00% |' in md  # Dense.
  assert '| reprune | 1 | 400 | 60.0% | 200 | 89.50 | 10 |' in md
  made = sorted(p.name for p in out.glob('*.png'))
  assert made == ['dense_curves.png', 'pareto.png', 'reprune_coverage.png',
                  'reprune_curves.png', 'reprune_macs.png',
                  'reprune_widths.png']
  for p in made:
    assert (out / p).read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    assert f'({p})' in md
  # One run: figures without a prefix, in the workdir by default.
  code, text = run_main_report(f'--workdir={dn}')
  assert code == 0, text
  assert (dn / 'curves.png').exists() and (dn / 'report.md').exists()
