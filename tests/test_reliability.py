"""Runs that fail loudly, resume safely and never lose data.

Each bad input or fault is checked for its exit code, its one-line message
(no traceback) and, where a workdir exists, that no file in it changed (a
checksum of every file)."""
import hashlib
import json
import os
import shutil
import signal
import time

import jax
import numpy as np
import pytest

from jaxprune import checkpoint

from conftest import REPO, TINY, results_of, run_cli, run_main

OFFLINE = os.path.join(REPO, 'configs', 'states', 'default_offline.py')
SMALL_STATES = ['--config.states.num_states=2', '--config.num_epochs=2',
                '--config.batch_size=120', '--config.log_every_steps=1000',
                '--config.model_overrides.depth=1', '--config.export=False']


def checksums(workdir):
  out = {}
  for root, _, files in os.walk(workdir):
    for f in files:
      p = os.path.join(root, f)
      with open(p, 'rb') as fh:
        out[os.path.relpath(p, workdir)] = hashlib.sha256(fh.read()).hexdigest()
  return out


def one_line_error(code, out, message):
  assert code != 0, out[-2000:]
  assert 'Traceback' not in out, out[-3000:]
  lines = [l for l in out.splitlines() if l.startswith('jaxprune: error:')]
  assert len(lines) == 1 and message in lines[0], out[-2000:]


@pytest.fixture(scope='module')
def finished(tmp_path_factory, data_dir):
  """A finished 6-epoch tiny run (shared, read-only for the tests)."""
  wd = str(tmp_path_factory.mktemp('finished') / 'run')
  args = [f'--config={TINY}', f'--config.data_dir={data_dir}',
          '--config.num_epochs=6', '--config.keep_checkpoints=3']
  code, out = run_main(*args, f'--workdir={wd}')
  assert code == 0, out[-3000:]
  return wd, args


def test_divergence_stops_before_anything_is_written(tmp_path, data_dir):
  wd = str(tmp_path / 'w')
  code, out = run_main(f'--config={TINY}', f'--workdir={wd}',
                       f'--config.data_dir={data_dir}',
                       '--config.learning_rate=1e6', '--config.num_epochs=2')
  one_line_error(code, out, 'training diverged: non-finite loss at step')
  assert not os.path.exists(os.path.join(wd, 'results.json'))
  assert not os.path.exists(os.path.join(wd, 'slim'))
  ckpt = os.path.join(wd, 'checkpoints')
  for step in (os.listdir(ckpt) if os.path.isdir(ckpt) else []):
    if step.isdigit():  # Any checkpoint kept holds finite weights.
      _, state = checkpoint.load(wd, int(step))
      assert all(np.isfinite(a).all() for a in jax.tree.leaves(
          state['params']))


def test_rerun_of_a_finished_run_changes_nothing(finished):
  wd, args = finished
  before = checksums(wd)
  for extra in ([], ['--config.log_every_steps=3',
                     '--config.eval_batch_size=360',
                     '--config.data_threads=1']):
    code, out = run_main(*args, *extra, f'--workdir={wd}')
    assert code == 0, out[-2000:]
    assert f'already complete: results in {wd}/results.json' in out
    assert checksums(wd) == before


@pytest.mark.parametrize('extra,names', [
    (['--config.method=reprune'], "method: 'none' in the workdir, "
     "'reprune' now"),
    (['--config.batch_size=128'], 'batch_size: 64 in the workdir, 128 now'),
    (['--config.learning_rate=0.1'], 'learning_rate: 0.05 in the workdir'),
    (['--config.model=resnet32'], "model: 'resnet20' in the workdir"),
])
def test_other_settings_on_a_workdir_are_refused(finished, extra, names):
  wd, args = finished
  before = checksums(wd)
  code, out = run_main(*args, *extra, f'--workdir={wd}')
  one_line_error(code, out, names)
  assert checksums(wd) == before


def test_another_method_cannot_overwrite_a_state_loop(tmp_path, data_dir):
  wd = str(tmp_path / 'refill')
  args = [f'--config={OFFLINE}', f'--config.data_dir={data_dir}',
          *SMALL_STATES]
  code, out = run_main(*args, f'--workdir={wd}')
  assert code == 0, out[-3000:]
  before = checksums(wd)
  for extra, message in (
      (['--config.method=none'], "method: 'refill' in the workdir, 'none'"),
      (['--config.states.rate=0.3'], 'states.rate: 0.7 in the workdir, 0.3')):
    code, out = run_main(*args, *extra, f'--workdir={wd}')
    one_line_error(code, out, message)
    assert checksums(wd) == before


@pytest.mark.parametrize('extra,message', [
    (['--config.num_epochs=0'], 'num_epochs=0; allowed: an int >= 1'),
    (['--config.log_every_steps=0'], 'log_every_steps=0; allowed'),
    (['--config.checkpoint_every_epochs=0'],
     'checkpoint_every_epochs=0; allowed'),
    (['--config.keep_checkpoints=0'], 'keep_checkpoints=0; allowed'),
    (['--config.learning_rate=-0.1'], 'learning_rate=-0.1; allowed: a '
     'number > 0'),
    (['--config.learning_rate=0.0'], 'learning_rate=0.0; allowed'),
    (['--config.nosuch=1'], "config has no field 'nosuch'; allowed: "
     'adam_b1'),
    (['--config.reprune.nosuch=1'], "reprune has no field 'nosuch'; "
     'allowed: allocation'),
    (['--config.batch_size=60'], 'batch_size=60 is not divisible by the 8'),
])
def test_bad_values_give_one_line_and_write_nothing(tmp_path, data_dir,
                                                    extra, message):
  wd = str(tmp_path / 'w')
  code, out = run_main(f'--config={TINY}', f'--workdir={wd}',
                       f'--config.data_dir={data_dir}', *extra)
  one_line_error(code, out, message)
  assert not os.path.exists(wd)


def test_bad_config_files_and_workdirs(tmp_path, data_dir):
  bad = tmp_path / 'bad.py'
  bad.write_text('def get_config(:\n')
  afile = tmp_path / 'afile'
  afile.write_text('x')
  for args, message in (
      ([f'--config={tmp_path}/missing.py'], 'no such file'),
      ([f'--config={bad}'], 'syntax error at line 1'),
      ([f'--config={REPO}/configs/reprune/resnet50_imagenet.py:3g'],
       "config argument '3g'; allowed: 2.3g"),
      ([f'--config={TINY}', f'--workdir={afile}/run'], 'is a file'),
      ([f'--config={TINY}', f'--workdir={afile}'], 'is a file'),
      ([f'--config={OFFLINE}', '--config.states.rate=0.99'],
       'keeps 0 of 16 heads in state 1'),
  ):
    if not any(a.startswith('--workdir') for a in args):
      args = [*args, f'--workdir={tmp_path / "w"}']
    code, out = run_main(*args, f'--config.data_dir={data_dir}')
    one_line_error(code, out, message)
  assert not os.path.exists(tmp_path / 'w')
  assert afile.read_text() == 'x'


def test_read_only_workdir(tmp_path, data_dir):
  ro = tmp_path / 'ro'
  ro.mkdir()
  os.chmod(ro, 0o555)
  try:
    if os.access(ro, os.W_OK):
      pytest.skip('running as root: a 0o555 directory is still writable')
    code, out = run_main(f'--config={TINY}', f'--workdir={ro}/run',
                         f'--config.data_dir={data_dir}')
    one_line_error(code, out, 'cannot be written')
  finally:
    os.chmod(ro, 0o755)


def wait_for_checkpoint(p, ckpt, timeout=300):
  deadline = time.time() + timeout
  while time.time() < deadline and p.poll() is None:
    if os.path.isdir(ckpt) and any(d.isdigit() for d in os.listdir(ckpt)):
      return
    time.sleep(0.05)
  raise AssertionError('no checkpoint appeared')


@pytest.mark.parametrize('sig', [signal.SIGINT, signal.SIGTERM],
                         ids=['SIGINT', 'SIGTERM'])
def test_signal_stops_cleanly_and_the_rerun_resumes(finished, tmp_path,
                                                    data_dir, sig):
  ref, args = finished
  wd = str(tmp_path / 'w')
  p = run_cli(*args, f'--workdir={wd}')
  wait_for_checkpoint(p, os.path.join(wd, 'checkpoints'))
  t0 = time.time()
  p.send_signal(sig)
  out, _ = p.communicate(timeout=120)
  assert time.time() - t0 < 60, 'slow to stop'
  assert p.returncode == 128 + sig, out[-3000:]
  assert 'Traceback' not in out, out[-3000:]
  assert 'rerun the same command to resume' in out.splitlines()[-1]
  assert not os.path.exists(os.path.join(wd, 'results.json'))
  code, out = run_main(*args, f'--workdir={wd}')
  assert code == 0, out[-3000:]
  assert 'Resumed from step' in out
  _, a = checkpoint.load(ref)
  _, b = checkpoint.load(wd)
  jax.tree.map(np.testing.assert_array_equal, a['params'], b['params'])
  rows = [json.loads(l) for l in open(os.path.join(wd, 'metrics.jsonl'))]
  steps = [(r['split'], r['step']) for r in rows if r['split'] != 'checkpoint']
  assert len(steps) == len(set(steps)), 'duplicate metrics rows'


def corrupt_newest(ckpt_dir):
  newest = max(int(d) for d in os.listdir(ckpt_dir) if d.isdigit())
  for root, _, files in os.walk(os.path.join(ckpt_dir, str(newest))):
    for f in files:
      if os.sep + 'd' + os.sep in os.path.join(root, f) + os.sep or (
          root.endswith(os.sep + 'd')):
        with open(os.path.join(root, f), 'r+b') as fh:
          fh.truncate(10)
  return newest


def test_corrupt_newest_checkpoint_falls_back_on_the_dense_loop(
    finished, tmp_path):
  ref, args = finished
  wd = str(tmp_path / 'w')
  shutil.copytree(ref, wd)
  os.remove(os.path.join(wd, 'results.json'))
  newest = corrupt_newest(os.path.join(wd, 'checkpoints'))
  code, out = run_main(*args, f'--workdir={wd}')
  assert code == 0, out[-3000:]
  assert f'Checkpoint step {newest} in' in out and 'does not restore' in out
  assert 'Traceback' not in out, out[-3000:]
  assert os.path.isdir(os.path.join(wd, 'checkpoints.corrupt', str(newest)))
  a, b = results_of(ref), results_of(wd)
  assert (a['top1'], a['steps']) == (b['top1'], b['steps'])
  _, pa = checkpoint.load(ref)
  _, pb = checkpoint.load(wd)
  jax.tree.map(np.testing.assert_array_equal, pa['params'], pb['params'])


def test_corrupt_newest_checkpoint_falls_back_on_the_state_loop(tmp_path,
                                                                data_dir):
  args = [f'--config={OFFLINE}', f'--config.data_dir={data_dir}',
          *SMALL_STATES, '--config.keep_checkpoints=3']
  ref = str(tmp_path / 'ref')
  code, out = run_main(*args, f'--workdir={ref}')
  assert code == 0, out[-3000:]
  wd = str(tmp_path / 'w')
  shutil.copytree(ref, wd)
  os.remove(os.path.join(wd, 'results.json'))
  os.remove(os.path.join(wd, 'state_01', 'result.json'))
  newest = corrupt_newest(os.path.join(wd, 'state_01', 'checkpoints'))
  code, out = run_main(*args, f'--workdir={wd}')
  assert code == 0, out[-3000:]
  assert f'Checkpoint step {newest} in' in out and 'Traceback' not in out
  a, b = results_of(ref), results_of(wd)
  for x, y in zip(a['states'], b['states']):
    x, y = dict(x), dict(y)
    x.pop('seconds'), y.pop('seconds')
    assert x == y


def test_no_restorable_checkpoint_stops_with_one_error(tmp_path):
  from jaxprune.errors import JaxpruneError  # pylint: disable=g-import-not-at-top
  target = {'w': np.arange(4, dtype=np.float32)}
  with checkpoint.manager(str(tmp_path), 3) as mgr:
    for step in (1, 2):
      checkpoint.save(mgr, step, target)
    mgr.wait_until_finished()
  ckpt = str(tmp_path / 'checkpoints')
  corrupt_newest(ckpt)
  with checkpoint.manager(str(tmp_path), 3) as mgr:
    got = checkpoint.restore_latest(mgr, target)  # Falls back to step 1.
    np.testing.assert_array_equal(got['w'], target['w'])
  corrupt_newest(ckpt)  # Now step 1, the only one left, is unreadable too.
  with checkpoint.manager(str(tmp_path), 3) as mgr:
    with pytest.raises(JaxpruneError, match='No checkpoint in .* restores'):
      checkpoint.restore_latest(mgr, target)


def edit_run_json(wd, **config):
  path = os.path.join(wd, 'run.json')
  with open(path) as f:
    meta = json.load(f)
  meta['config'].update(config)
  meta.update({k: v for k, v in config.items() if k in meta})  # Identity.
  with open(path, 'w') as f:  # As jaxprune writes it.
    f.write(json.dumps(meta, indent=1, sort_keys=True))


@pytest.mark.parametrize('case', ['run_json_missing', 'does_not_fit',
                                  'off_epoch_boundary'])
def test_workdirs_that_cannot_resume(finished, tmp_path, case):
  """One line, nothing changed: checkpoints with no run.json; checkpoints
  of another network under a matching run.json (e.g. the model's code
  changed); a checkpoint step off this run's epoch boundaries (the dataset
  changed size)."""
  ref, args = finished
  wd = str(tmp_path / 'w')
  shutil.copytree(ref, wd)
  os.remove(os.path.join(wd, 'results.json'))
  extra = []
  if case == 'run_json_missing':
    os.remove(os.path.join(wd, 'run.json'))
    message = 'holds a run but'
  elif case == 'does_not_fit':
    extra = ['--config.model_overrides.stage_widths=(4,8,16)']
    edit_run_json(wd, model_overrides={'stage_widths': [4, 8, 16]})
    message = ('does not fit this model (params/fc/kernel is (8, 10) '
               'stored, (16, 10) now)')
  else:
    # 6 epochs of 22 steps = 132; at batch 96 an epoch is 14 steps.
    extra = ['--config.batch_size=96']
    edit_run_json(wd, batch_size=96)
    message = 'Checkpoint step 132 is not at an epoch boundary of 14 steps'
  before = checksums(wd)
  code, out = run_main(*args, *extra, f'--workdir={wd}')
  one_line_error(code, out, message)
  assert checksums(wd) == before


def test_offline_dataset_build_is_quiet(tmp_path, capfd):
  from jaxprune.data import offline  # pylint: disable=g-import-not-at-top
  offline.prepare('sklearn_digits', str(tmp_path))
  out, err = capfd.readouterr()
  text = out + err
  assert '\x1b' not in text and '%|' not in text, text[-2000:]  # No tqdm.
  assert 'dataset_info.json' not in text, text[-2000:]
  offline.prepare('sklearn_digits', str(tmp_path))  # Built: a no-op.
  out, err = capfd.readouterr()
  assert 'Building' not in out + err


def test_a_field_added_later_matches_only_at_its_default(tmp_path):
  # A run stored by an older jaxprune lacks a field a newer one added: it
  # resumes when the field holds its default (the old behaviour) and is
  # refused, naming the field, when the field is set to anything else.
  wd = str(tmp_path)
  defaults = {'seed': 0, 'sfp': {'every_epochs': 1, 'finetune_epochs': 0}}
  old = {'model': 'm', 'config': {'seed': 0, 'sfp': {'every_epochs': 1}}}
  checkpoint.write_meta(wd, old)
  now = lambda ft: {'model': 'm', 'config': {
      'seed': 0, 'sfp': {'every_epochs': 1, 'finetune_epochs': ft}}}
  checkpoint.check_workdir(wd, now(0), defaults=defaults)
  with pytest.raises(checkpoint.JaxpruneError,
                     match=r'sfp\.finetune_epochs: unset in the workdir, 5'):
    checkpoint.check_workdir(wd, now(5), defaults=defaults)
  with pytest.raises(checkpoint.JaxpruneError, match='finetune_epochs'):
    checkpoint.check_workdir(wd, now(0))  # Without defaults: strict.
  # A field the stored run has is compared as before, default or not.
  checkpoint.write_meta(wd, now(5))
  with pytest.raises(checkpoint.JaxpruneError, match='5 in the workdir, 0'):
    checkpoint.check_workdir(wd, now(0), defaults=defaults)
