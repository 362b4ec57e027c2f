"""Training on the kept channels only (`config.shrink`): slim steps equal
masked steps on the kept channels, pruned ones freeze, the full-width
state round-trips exactly, and runs that shrink resume bit-identically."""
import importlib.util
import json
import os
import signal
import time

import jax
import numpy as np
import pytest

from jaxprune import checkpoint
from jaxprune import optax as optax_lib
from jaxprune import slim
from jaxprune.engine import loop, shrink, steps

from conftest import REPO, TINY, results_of, run_cli, run_main


def _tiny(data_dir, **fields):
  spec = importlib.util.spec_from_file_location('tiny', TINY)
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  c = mod.get_config()
  c.data_dir = data_dir
  c.model_overrides.stage_widths = (8, 16, 16)
  c.method = 'reprune'
  c.reprune.target_reduction = 0.5
  c.reprune.every_epochs = 1
  c.reprune.until_epoch = 2
  c.shrink = True
  for k, v in fields.items():
    c[k] = v
  return c


def _inner_moments(opt_state):
  """The momentum trace (a params-shaped tree) of the masked SGD state."""
  inner = optax_lib.find_state(opt_state).inner
  return [s for s in jax.tree.leaves(
      inner, is_leaf=lambda x: hasattr(x, 'trace')) if hasattr(s, 'trace')][
          0].trace


def _after_two_events(workdir, data_dir, **fields):
  """A REPrune run's state after the epoch-0 event (L1 masks), two
  training steps (so moments and statistics hold values) and the epoch-1
  event with regrowth; with the full-width step and five batches."""
  run = loop._Run(_tiny(data_dir, **fields), workdir)
  phase = run.method.phase(0, run.plan_for(0))
  state, tx, _, _ = run.fresh(0, phase, run.initial())
  rng = jax.random.key(5)
  state = run.event(0, 0, state, jax.random.key(1), 0)
  full_step = steps.jit_train_step(run.su, tx, phase.forward)
  su = run.su
  batches = [su.shard(b) for b in
             list(su.task.train_batches(su.train_ds, 64, 0, 0))[:5]]
  for b in batches[:2]:
    state, _ = full_step(state, b, rng)
  state = run.event(0, 1, state, jax.random.key(2), 0)
  assert run.shrinking(0)
  return run, phase, state, tx, rng, full_step, batches


def _masked_steps(state, full_step, batches, rng):
  """The masked full-width steps on `batches`, as host arrays. The masked
  step zeroes newly pruned weights only after its first forward pass, the
  slim step never runs them: start from zero."""
  masked = state.replace(params=shrink._zeroed(state.params,
                                               state.opt_state))
  for b in batches:
    masked, _ = full_step(masked, b, rng)
  return jax.device_get(masked)


def test_slim_steps_equal_masked_steps_and_pruned_channels_freeze(
    tmp_path, data_dir):
  run, phase, state, tx, rng, full_step, batches = _after_two_events(
      str(tmp_path / 'run'), data_dir)
  cm = run.method.channel_masks(0, None, state.opt_state)
  assert any(not m.all() for m in cm.values())
  slice_fn, expand_fn, slim_step = run.slim_step(0, phase, tx, state, rng, 1,
                                                 0)
  before = jax.device_get(state)
  s = slice_fn(state)
  # Exactly the slimmed network's parameters.
  assert sum(int(np.size(x)) for x in jax.tree.leaves(s.params)) == (
      run.graph.num_params(cm)) < sum(
          int(np.size(x)) for x in jax.tree.leaves(state.params))
  for b in batches[2:]:
    s, _ = slim_step(s, b, rng)
  e = jax.device_get(expand_fn(state, s))
  # Slicing the rebuilt state gives the slim state back, bit for bit.
  again = jax.device_get(slice_fn(expand_fn(state, s)))
  jax.tree.map(np.testing.assert_array_equal, again.params,
               jax.device_get(s.params))
  masked = _masked_steps(state, full_step, batches[2:], rng)
  pm = jax.device_get(optax_lib.masks_of(before.opt_state))
  keep = lambda m, x: np.broadcast_to(np.asarray(m), np.shape(x))
  # Kept weights and momenta: as the masked network's (float rounding of
  # convolutions of another width aside); pruned weights: 0 in both.
  jax.tree.map(lambda m, a, b: np.testing.assert_allclose(
      np.where(keep(m, a), a, 0), np.where(keep(m, b), b, 0), atol=2e-5),
               pm, e.params, masked.params)
  jax.tree.map(lambda m, a, b: np.testing.assert_array_equal(
      np.where(keep(m, a), 0, a), np.where(keep(m, b), 0, b)),
               pm, e.params, masked.params)
  mom_e, mom_m, mom_0 = (_inner_moments(t.opt_state)
                         for t in (e, masked, before))
  jax.tree.map(lambda m, a, b: np.testing.assert_allclose(
      np.where(keep(m, a), a, 0), np.where(keep(m, b), b, 0), atol=2e-5),
               pm, mom_e, mom_m)
  # Pruned moments are frozen at their values when pruned (the masked
  # network keeps updating those of pruned BN scales and biases).
  jax.tree.map(lambda m, a, b: np.testing.assert_array_equal(
      np.where(keep(m, a), 0, a), np.where(keep(m, b), 0, b)),
               pm, mom_e, mom_0)
  changed = jax.tree.leaves(jax.tree.map(
      lambda m, a, b: bool(np.any(np.where(keep(m, a), 0, a - b))),
      pm, mom_m, mom_0))
  assert any(changed)  # So the freeze above is a real difference.
  # The aux (channel masks, the weight and statistics stash) is untouched;
  # step counts move on.
  jax.tree.map(np.testing.assert_array_equal,
               optax_lib.find_state(e.opt_state).aux,
               optax_lib.find_state(before.opt_state).aux)
  assert int(e.step) == int(before.step) + 3 == int(masked.step)
  # The same masks again: the cached step, nothing lowered or compiled.
  again = run._shrinker.step(tx, phase.forward, cm, state, rng)
  assert again[2] is slim_step and again[-1] is None
  # Other channels at the same widths: the same program, whose compiled
  # step is reused (the slice differs); other widths compile anew.
  rolled = {g: np.roll(m, 1) for g, m in cm.items()}
  assert any((rolled[g] != cm[g]).any() for g in cm)
  same = run._shrinker.step(tx, phase.forward, rolled, state, rng)
  assert same[2] is slim_step and same[-1]['cached']
  assert same[-1]['compile_seconds'] < 0.05
  g0 = next(g for g, m in cm.items() if not np.all(m))
  wider = dict(cm)
  wider[g0] = np.array(cm[g0], bool)
  wider[g0][np.argmin(wider[g0])] = True  # One more channel kept.
  other = run._shrinker.step(tx, phase.forward, wider, state, rng)
  assert other[2] is not slim_step and not other[-1]['cached']


def test_rounded_widths_carry_pruned_channels_that_stay_zero(tmp_path,
                                                            data_dir):
  """shrink_round_to=4: the slim step runs at widths rounded up to
  multiples of 4; the extra channels are pruned ones, kept at 0 by the
  step's masks and trained (moments, statistics) as the masked network
  trains them, so the rebuilt state equals the masked one on them too."""
  run, phase, state, tx, rng, full_step, batches = _after_two_events(
      str(tmp_path / 'run'), data_dir, shrink_round_to=4)
  cm = run.method.channel_masks(0, None, state.opt_state)
  slice_fn, expand_fn, slim_step = run.slim_step(0, phase, tx, state, rng, 1,
                                                 0)
  rounded = slim.round_masks(run.graph, cm, 4)
  assert any(rounded[g].sum() > cm[g].sum() for g in cm)  # Padding exists.
  assert all(m.sum() % 4 == 0 or m.all() for m in rounded.values())
  before = jax.device_get(state)
  s = slice_fn(state)
  assert sum(int(np.size(x)) for x in jax.tree.leaves(s.params)) == (
      run.graph.num_params(rounded))
  for b in batches[2:]:
    s, _ = slim_step(s, b, rng)
  e = jax.device_get(expand_fn(state, s))
  masked = _masked_steps(state, full_step, batches[2:], rng)
  pm = jax.device_get(optax_lib.masks_of(before.opt_state))
  carried = jax.device_get(run.graph.param_masks(rounded)['params'])
  wide = lambda m, x: np.broadcast_to(np.asarray(m), np.shape(x))
  # Pruned weights, padding included: exactly 0.
  jax.tree.map(lambda m, a: np.testing.assert_array_equal(
      np.where(wide(m, a), 0, a), 0), pm, e.params)
  # Kept and padding channels' momenta: as the masked network's.
  mom_e, mom_m = (_inner_moments(t.opt_state) for t in (e, masked))
  jax.tree.map(lambda c, a, b: np.testing.assert_allclose(
      np.where(wide(c, a), a, 0), np.where(wide(c, b), b, 0), atol=2e-5),
               carried, mom_e, mom_m)
  padded = jax.tree.leaves(jax.tree.map(
      lambda c, m, a: bool(np.any(np.where(wide(c, a) & ~wide(m, a), a, 0))),
      carried, pm, mom_m))
  assert any(padded)  # The masked network moves those moments: a real check.


def test_adam_moments_are_sliced_and_restored(tmp_path, data_dir):
  run, phase, state, tx, rng, _, batches = _after_two_events(
      str(tmp_path / 'run'), data_dir, optimizer='adamw')
  adam = lambda st: [x for x in jax.tree.leaves(
      optax_lib.find_state(st.opt_state).inner,
      is_leaf=lambda x: hasattr(x, 'nu')) if hasattr(x, 'nu')][0]
  slice_fn, expand_fn, slim_step = run.slim_step(0, phase, tx, state, rng, 1,
                                                 0)
  before = jax.device_get(state)
  s = slice_fn(state)
  shapes = jax.tree.map(np.shape, s.params)
  assert jax.tree.map(np.shape, adam(s).mu) == shapes
  assert jax.tree.map(np.shape, adam(s).nu) == shapes
  assert shapes != jax.tree.map(np.shape, state.params)
  for b in batches[2:]:
    s, _ = slim_step(s, b, rng)
  e = jax.device_get(expand_fn(state, s))
  pm = jax.device_get(optax_lib.masks_of(before.opt_state))
  wide = lambda m, x: np.broadcast_to(np.asarray(m), np.shape(x))
  for name in ('mu', 'nu'):
    got, was = getattr(adam(e), name), getattr(adam(before), name)
    assert jax.tree.map(np.shape, got) == jax.tree.map(np.shape, was)
    # Pruned entries: as when pruned; kept ones moved on.
    jax.tree.map(lambda m, a, b: np.testing.assert_array_equal(
        np.where(wide(m, a), 0, a), np.where(wide(m, b), 0, b)), pm, got, was)
    assert any(jax.tree.leaves(jax.tree.map(
        lambda m, a, b: bool(np.any(np.where(wide(m, a), a - b, 0))),
        pm, got, was)))


def _kill_after_first_checkpoint(args, workdir):
  p = run_cli(*args)
  ckpt = os.path.join(workdir, 'checkpoints')
  deadline = time.time() + 600
  while time.time() < deadline and p.poll() is None:
    if os.path.isdir(ckpt) and any(d.isdigit() for d in os.listdir(ckpt)):
      break
    time.sleep(0.05)
  p.send_signal(signal.SIGKILL)
  p.communicate()


def test_reprune_shrink_run_slims_and_resumes_bit_identically(tmp_path,
                                                              data_dir):
  workdir = str(tmp_path / 'run')
  args = [f'--config={TINY}', f'--config.data_dir={data_dir}',
          '--config.method=reprune', '--config.shrink=True',
          '--config.model_overrides.stage_widths=(8, 16, 16)',
          '--config.reprune.target_reduction=0.5', '--config.export=False',
          '--config.reprune.every_epochs=1', '--config.reprune.until_epoch=2']
  code, out = run_main(*args, f'--workdir={workdir}')
  assert code == 0, out[-3000:]
  r = results_of(workdir)
  assert abs(r['pruned_macs'] / (0.5 * r['dense_macs']) - 1) < 0.005
  one = 100 / 360 + 1e-6
  assert abs(r['slim_top1'] - r['top1']) <= one
  assert r['top1'] > 50
  lines = [json.loads(l) for l in open(os.path.join(workdir,
                                                    'metrics.jsonl'))]
  shrinks = [l for l in lines if l['split'] == 'shrink']
  # One compile per new masking: the events of epochs 0, 1, 2; epoch 3
  # trains under epoch 2's frozen masks (cached).
  assert [s['epoch'] for s in shrinks] == [0, 1, 2]
  assert shrinks[-1]['macs'] == r['pruned_macs']
  assert all(s['macs'] < r['dense_macs'] for s in shrinks)
  # Killed after the first checkpoint and rerun: the same final state.
  killed = str(tmp_path / 'killed')
  _kill_after_first_checkpoint(args + [f'--workdir={killed}'], killed)
  assert not os.path.exists(os.path.join(killed, 'results.json'))
  code, out = run_main(*args, f'--workdir={killed}')
  assert code == 0, out[-3000:]
  assert 'Resumed from step 22' in out, out[-3000:]
  assert results_of(killed)['widths'] == r['widths']
  _, a = checkpoint.load(workdir)
  _, b = checkpoint.load(killed)
  jax.tree.map(np.testing.assert_array_equal, a['params'], b['params'])
  jax.tree.map(np.testing.assert_array_equal, a['opt_state'], b['opt_state'])
  jax.tree.map(np.testing.assert_array_equal, a['batch_stats'],
               b['batch_stats'])


def test_chex_shrinks_at_every_event_and_regrows_from_the_stash(tmp_path,
                                                                data_dir):
  """CHEX runs the same explore loop as REPrune (whose resume across a
  shrink is tested above) with its own selection: every event's masking
  trains slim, the slimmed network scores as the masked one."""
  workdir = str(tmp_path / 'run')
  code, out = run_main(
      f'--config={TINY}', f'--config.data_dir={data_dir}',
      '--config.method=chex', '--config.shrink=True',
      '--config.model_overrides.stage_widths=(8, 16, 16)',
      '--config.chex.target_reduction=0.5', '--config.export=False',
      '--config.chex.every_epochs=1', '--config.chex.until_epoch=2',
      f'--workdir={workdir}')
  assert code == 0, out[-3000:]
  r = results_of(workdir)
  assert abs(r['pruned_macs'] / (0.5 * r['dense_macs']) - 1) < 0.005
  assert abs(r['slim_top1'] - r['top1']) <= 100 / 360 + 1e-6
  lines = [json.loads(l) for l in open(os.path.join(workdir,
                                                    'metrics.jsonl'))]
  shrinks = [l for l in lines if l['split'] == 'shrink']
  assert [s['epoch'] for s in shrinks] == [0, 1, 2]
  # Regrowth (delta0 > 0) makes the early maskings wider than the last.
  assert shrinks[0]['macs'] > shrinks[-1]['macs'] == r['pruned_macs']


@pytest.mark.parametrize('method', ['l1', 'refill'])
def test_fixed_plan_phases_shrink_once(method, tmp_path, data_dir):
  """A one-shot fine-tune phase and every structured state train slim."""
  if method == 'l1':
    args = [f'--config={REPO}/configs/l1/default_offline.py',
            '--config.num_epochs=1', '--config.l1.finetune_epochs=2']
  else:
    args = [f'--config={REPO}/configs/states/default_offline.py',
            '--config.method=refill', '--config.states.num_states=3',
            '--config.num_epochs=2', '--config.batch_size=120',
            '--config.model_overrides.depth=2']
  args += [f'--config.data_dir={data_dir}', '--config.shrink=True',
           '--config.export=False', '--config.log_every_steps=1000']
  workdir = str(tmp_path / method)
  code, out = run_main(*args, f'--workdir={workdir}')
  assert code == 0, out[-3000:]
  r = results_of(workdir)
  lines = [json.loads(l) for l in open(os.path.join(workdir,
                                                    'metrics.jsonl'))]
  shrinks = [l for l in lines if l['split'] == 'shrink']
  last = r['states'][-1]
  # Phase 0 is dense; each later phase compiles one slim step, at its start.
  assert len(shrinks) == len(r['states']) - 1 and all(
      s['epoch'] == 0 for s in shrinks)
  assert shrinks[-1]['macs'] == last['macs'] == r['pruned_macs']
  assert abs(r['slim_top1'] - last['final_top1']) <= 100 / 360 + 1e-6
