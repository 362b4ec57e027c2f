"""The engine end to end through `jaxprune.main`: mock data, resume, bad
input, multi-process; and its optimizers and task loss."""
import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import optax
import pytest
import tensorflow_datasets as tfds

from jaxprune import config as config_lib
from jaxprune import checkpoint, optim
from jaxprune.errors import JaxpruneError
from jaxprune.tasks import classification

from conftest import (REPO, TINY, cifar_resnet_macs, cifar_resnet_params,
                      run_cli, run_main)


def final_params(workdir):
  step, state = checkpoint.load(workdir)
  return step, state['params']


def test_two_step_main_run_on_eight_devices_under_mock_data(tmp_path):
  workdir = str(tmp_path / 'run')
  code, out = run_main(f'--config={TINY}', f'--workdir={workdir}',
                       '--config.dataset=cifar10', '--config.batch_size=16',
                       '--config.eval_batch_size=16', '--config.num_epochs=1',
                       '--config.log_every_steps=1',
                       '--config.half_precision=True', mock_examples=32)
  assert code == 0, out
  assert 'epoch 1/1 step 2/2' in out and 'steps/s' in out and 'ETA' in out
  # The first step compiles: no rate or ETA from it.
  assert 'step 1/2 loss' in out and 'ETA compiling...' in out
  with open(os.path.join(workdir, 'results.json')) as f:
    results = json.load(f)
  for key in ('dataset', 'model', 'top1', 'top5', 'macs', 'params',
              'train_seconds', 'config'):
    assert key in results
  assert results['dataset'] == 'cifar10' and results['model'] == 'resnet20'
  assert results['steps'] == 2 and results['devices'] == 8
  assert 0 <= results['top1'] <= results['top5'] <= 100
  # The dense tiny ResNet-20 at 32x32, by the hand formulas.
  assert results['macs'] == cifar_resnet_macs(20, widths=(4, 8, 8))
  assert results['params'] == cifar_resnet_params(20, widths=(4, 8, 8))
  assert results['config']['batch_size'] == 16
  lines = [json.loads(l) for l in open(os.path.join(workdir, 'metrics.jsonl'))]
  assert [l['step'] for l in lines if l['split'] == 'train'] == [1, 2]
  assert os.listdir(os.path.join(workdir, 'tensorboard'))


def test_kill_and_resume_gives_identical_params(tmp_path, data_dir):
  common = [f'--config={TINY}', f'--config.data_dir={data_dir}']
  ref = str(tmp_path / 'ref')
  code, out = run_main(*common, f'--workdir={ref}')
  assert code == 0, out

  killed = str(tmp_path / 'killed')
  p = run_cli(*common, f'--workdir={killed}')
  ckpt = os.path.join(killed, 'checkpoints')
  deadline = time.time() + 300
  while time.time() < deadline and p.poll() is None:
    done = [d for d in (os.listdir(ckpt) if os.path.isdir(ckpt) else [])
            if d.isdigit()]
    if done:
      break
    time.sleep(0.05)
  p.send_signal(signal.SIGKILL)
  p.communicate()
  assert not os.path.exists(os.path.join(killed, 'results.json'))
  code, out = run_main(*common, f'--workdir={killed}')
  assert code == 0, out
  assert 'Resumed from step' in out

  step_a, a = final_params(ref)
  step_b, b = final_params(killed)
  assert step_a == step_b == 88
  jax.tree.map(np.testing.assert_array_equal, a, b)


def test_bad_input_gives_one_clear_line(tmp_path, data_dir):
  cases = [
      (['--config.no_such_field=1'], 'no_such_field'),
      (['--config.model=resnet9'], "Unknown model 'resnet9'"),
      (['--config.dataset=mnist9'], "Unknown dataset 'mnist9'"),
      (['--config.batch_size=60'], 'batch_size=60 is not divisible by the 8'),
  ]
  for extra, message in cases:
    code, out = run_main(f'--config={TINY}', f'--workdir={tmp_path / "w"}',
                         f'--config.data_dir={data_dir}', *extra)
    assert code != 0 and message in out, out
    assert 'Traceback' not in out, out


def test_workdir_of_another_model_is_refused_and_untouched(tmp_path, data_dir):
  workdir = str(tmp_path / 'w')
  code, out = run_main(f'--config={TINY}', f'--workdir={workdir}',
                       f'--config.data_dir={data_dir}', '--config.num_epochs=1')
  assert code == 0, out
  before = {os.path.join(r, f): os.path.getmtime(os.path.join(r, f))
            for r, _, fs in os.walk(workdir) for f in fs}
  code, out = run_main(f'--config={TINY}', f'--workdir={workdir}',
                       f'--config.data_dir={data_dir}', '--config.model=resnet32')
  assert code == 1 and "model: 'resnet20' in the workdir, 'resnet32' " \
      "now" in out, out
  assert 'Traceback' not in out
  after = {os.path.join(r, f): os.path.getmtime(os.path.join(r, f))
           for r, _, fs in os.walk(workdir) for f in fs}
  assert before == after


def test_unknown_field_in_config_file_is_rejected():
  config = config_lib.base()
  config.unlock()
  config.lerning_rate = 0.1
  with pytest.raises(JaxpruneError, match="Unknown config field 'lerning_rate'"
                     ".*learning_rate"):
    config_lib.validate(config)


def test_shrink_round_to_is_checked():
  config = config_lib.base()
  config.shrink_round_to = 8
  with pytest.raises(JaxpruneError, match='shrink_round_to=8 does nothing '
                     'without shrink=True'):
    config_lib.validate(config)
  config.shrink = True
  config_lib.validate(config)
  config.shrink_round_to = 0
  with pytest.raises(JaxpruneError, match='shrink_round_to=0; allowed: an '
                     'int >= 1'):
    config_lib.validate(config)


def sgd_config(**kw):
  c = config_lib.base()
  c.num_epochs = 1
  c.update(kw)
  return c


def test_coupled_and_decoupled_weight_decay():
  p = {'w': np.array([1.0, -2.0])}
  g = {'w': np.array([0.5, 0.5])}
  lr, wd, m = 0.1, 0.01, 0.9
  for mode in ('coupled', 'decoupled'):
    tx, _ = optim.create(sgd_config(optimizer='momentum', learning_rate=lr,
                                    weight_decay=wd, momentum=m,
                                    weight_decay_mode=mode,
                                    schedule='constant'), 10)
    state = tx.init(p)
    params = p
    buf = np.zeros(2)
    ref = p['w'].copy()
    for _ in range(3):
      u, state = tx.update(g, state, params)
      params = optax.apply_updates(params, u)
      if mode == 'coupled':  # PyTorch SGD: decay enters the momentum buffer.
        buf = m * buf + g['w'] + wd * ref
        ref = ref - lr * buf
      else:
        buf = m * buf + g['w']
        ref = ref - lr * (buf + wd * ref)
    np.testing.assert_allclose(params['w'], ref, rtol=1e-6)


def test_schedules():
  c = sgd_config(learning_rate=1.0, num_epochs=10, warmup_epochs=2,
                 schedule='cosine')
  s = optim.learning_rate_schedule(c, 10)
  assert float(s(0)) == 0.0 and abs(float(s(10)) - 0.5) < 1e-6
  assert abs(float(s(20)) - 1.0) < 1e-6
  assert abs(float(s(60)) - 0.5) < 1e-6 and float(s(100)) < 1e-6
  c = sgd_config(learning_rate=1.0, num_epochs=10, schedule='multistep',
                 lr_milestones=(5, 8), lr_gamma=0.1)
  s = optim.learning_rate_schedule(c, 10)
  assert [round(float(s(t)), 6) for t in (49, 50, 79, 80)] == [1.0, 0.1, 0.1,
                                                               0.01]
  with pytest.raises(JaxpruneError, match="schedule='linear'; allowed"):
    optim.learning_rate_schedule(sgd_config(schedule='linear'), 10)
  with pytest.raises(JaxpruneError, match="optimizer='adam'; allowed"):
    optim.create(sgd_config(optimizer='adam'), 10)


def test_label_smoothing_cross_entropy():
  logits = np.log(np.array([[0.7, 0.2, 0.1]]))
  got = float(classification.cross_entropy(logits, np.array([0]), 3, 0.3))
  target = np.array([0.8, 0.1, 0.1])
  np.testing.assert_allclose(got, -(target * logits[0]).sum(), rtol=1e-6)


@pytest.mark.parametrize('method', ['none', 'reprune', 'reprune+shrink'])
def test_two_processes_match_one(tmp_path, data_dir, method):
  """Host-sharded loading: 2 processes x 1 device == 1 process x 2 devices,
  dense and pruning while training (mask events on gathered weights), and
  training the kept channels only (host-side slicing of each process's
  replicated copy)."""
  method, _, shrink = method.partition('+')
  common = [f'--config={TINY}', f'--config.data_dir={data_dir}',
            '--config.num_epochs=1', '--config.batch_size=64',
            '--config.eval_batch_size=120', f'--config.method={method}',
            f'--config.shrink={bool(shrink)}']
  # One epoch: Alg. 1 at epoch 0 (its last event), then soft-masked
  # training. The two layouts reduce gradients in another order, so losses
  # differ in the last bit from step 1 on and the gap grows while training
  # (over more epochs, until later events pick other channels); equal
  # weights give equal masks, which is what this checks.
  if method == 'reprune':
    common += ['--config.reprune.target_reduction=0.5',
               '--config.log_every_steps=1',
               '--config.model_overrides.stage_widths=(8, 16, 16)']
  env = {**os.environ, 'JAX_PLATFORMS': 'cpu', 'XLA_FLAGS': ''}
  one = str(tmp_path / 'one')
  p = subprocess.run(
      [sys.executable, '-m', 'jaxprune.main', *common, f'--workdir={one}'],
      cwd=REPO, capture_output=True, text=True, timeout=600,
      env={**env, 'XLA_FLAGS': '--xla_force_host_platform_device_count=2'})
  assert p.returncode == 0, p.stderr
  two = str(tmp_path / 'two')
  p = subprocess.run(['bash', 'launch/local_multiprocess.sh', '2', TINY, two,
                      *common[1:]], cwd=REPO, capture_output=True, text=True,
                     timeout=600, env={**env, 'PORT': '12391'})
  assert p.returncode == 0, p.stderr[-3000:]
  r1 = json.load(open(os.path.join(one, 'results.json')))
  r2 = json.load(open(os.path.join(two, 'results.json')))
  assert r1['devices'] == r2['devices'] == 2
  _, a = final_params(one)
  _, b = final_params(two)
  if method == 'none':
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, atol=2e-5), a,
                 b)
    return
  assert r1['widths'] == r2['widths'] and r1['pruned_macs'] == r2[
      'pruned_macs'] < r1['dense_macs']
  # The same channels are pruned: zero in both runs at the same places.
  jax.tree.map(lambda x, y: np.testing.assert_array_equal(x == 0, y == 0),
               a, b)
  losses = [[l['loss'] for l in map(json.loads, open(os.path.join(
      w, 'metrics.jsonl'))) if l['split'] == 'train'] for w in (one, two)]
  assert len(losses[0]) == len(losses[1]) == 22
  np.testing.assert_allclose(losses[0][0], losses[1][0], rtol=1e-6)
  np.testing.assert_allclose(losses[0], losses[1], rtol=5e-3)
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, atol=2e-2), a, b)


def test_tpu_vm_launch_runs_the_same_command_on_every_worker():
  """launch/tpu_vm.sh (DRY_RUN=1 prints the gcloud command): all workers,
  the zone, distributed on, and every argument intact through two shells."""
  import shlex  # pylint: disable=g-import-not-at-top
  args = ['my-tpu', 'us-central2-b', 'configs/default.py', '/mnt/runs/a b',
          '--config.model_overrides.stage_widths=(8, 16)']
  p = subprocess.run(['bash', 'launch/tpu_vm.sh', *args], cwd=REPO,
                     capture_output=True, text=True,
                     env={**os.environ, 'DRY_RUN': '1', 'PROJECT': 'proj'})
  assert p.returncode == 0, p.stderr
  argv = shlex.split(p.stdout)
  assert argv[:6] == ['gcloud', 'compute', 'tpus', 'tpu-vm', 'ssh', 'my-tpu']
  assert '--zone=us-central2-b' in argv and '--worker=all' in argv
  assert '--project=proj' in argv
  remote = shlex.split([a for a in argv if a.startswith('--command=')][0][
      len('--command='):])
  assert remote[:3] == ['cd', '~/jaxprune', '&&']
  assert remote[3:] == ['python3', '-m', 'jaxprune.main',
                        '--config=configs/default.py',
                        '--workdir=/mnt/runs/a b', '--config.distributed=True',
                        '--config.model_overrides.stage_widths=(8, 16)']
  p = subprocess.run(['bash', 'launch/tpu_vm.sh', 'only-one'], cwd=REPO,
                     capture_output=True, text=True)
  assert p.returncode != 0 and 'usage: bash launch/tpu_vm.sh' in p.stderr
