"""Test setup (8 fake CPU devices, a private TFDS data dir) and the helpers
that several test modules share (test modules never import each other)."""
import os
import subprocess
import sys

os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                           ' --xla_force_host_platform_device_count=8')
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
# One persistent XLA cache for the whole session, in this process, in the
# xdist workers and in every CLI subprocess (they inherit os.environ): the
# many end-to-end runs of one tiny model compile its steps once. Entries are
# keyed by the program, the flags and the jaxlib version, so a cache left by
# an earlier local run is safe to reuse.
os.environ.setdefault('JAX_COMPILATION_CACHE_DIR', os.path.join(
    os.environ.get('TMPDIR', '/tmp'), f'jaxprune-test-xla-cache-{os.getuid()}'))
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0.2')

import pytest  # pylint: disable=g-import-not-at-top
from hypothesis import settings  # pylint: disable=g-import-not-at-top

# CI is deterministic (the same examples every run); local runs explore.
settings.register_profile('ci', derandomize=True, print_blob=True,
                          deadline=None)
settings.register_profile('dev', deadline=None)
settings.load_profile('ci' if os.environ.get('CI') else
                      os.environ.get('HYPOTHESIS_PROFILE', 'dev'))

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
  sys.path.insert(0, REPO)  # `from configs import common` in configs.
TINY = os.path.join(REPO, 'tests', 'configs', 'tiny.py')
# Smoke runs use one CPU device: sharding over 8 fake devices is covered by
# the offline runs and tests/test_engine.py.
ONE_DEVICE = '--xla_force_host_platform_device_count=1'

# `python -m jaxprune.main` inside tfds.testing.mock_data.
MOCKED_MAIN = """
import sys
import tensorflow_datasets as tfds
from absl import app
from jaxprune import main
with tfds.testing.mock_data(num_examples=int(sys.argv.pop(1))):
  app.run(main.main, flags_parser=main.parse_flags)
"""


def run_cli(*args, mock_examples=None, env=None):
  """Starts `python -m jaxprune.main *args` on 8 fake CPU devices."""
  env = {**os.environ, 'XLA_FLAGS': '--xla_force_host_platform_device_count=8',
         'JAX_PLATFORMS': 'cpu', **(env or {})}
  cmd = ([sys.executable, '-m', 'jaxprune.main'] if mock_examples is None else
         [sys.executable, '-c', MOCKED_MAIN, str(mock_examples)])
  return subprocess.Popen(cmd + list(args), cwd=REPO, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True)


def run_main(*args, mock_examples=None, env=None):
  """Runs the CLI to the end; returns (exit code, output)."""
  p = run_cli(*args, mock_examples=mock_examples, env=env)
  out, _ = p.communicate(timeout=900)
  return p.returncode, out


def results_of(workdir):
  import json  # pylint: disable=g-import-not-at-top
  with open(os.path.join(workdir, 'results.json')) as f:
    return json.load(f)


def config_rows(subdir, one_per_method=False):
  """(path, argument) of every config in configs/<subdir>, one per row of
  configs that take an argument (`ROWS`).

  With `one_per_method`, a config's rows are cut to the first row of each
  method (rows that differ only in a target or a dataset run the same
  code; every row is still loaded and checked by test_configs.py).
  """
  import glob  # pylint: disable=g-import-not-at-top
  import importlib.util  # pylint: disable=g-import-not-at-top
  out = []
  for path in sorted(glob.glob(os.path.join(REPO, 'configs', subdir,
                                            '*.py'))):
    if os.path.basename(path) in ('__init__.py', 'common.py'):
      continue
    spec = importlib.util.spec_from_file_location('cfg', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    seen = set()
    for arg in getattr(module, 'ROWS', (None,)):
      if one_per_method:
        method = (module.get_config(arg) if arg else module.get_config()).method
        if method in seen:
          continue
        seen.add(method)
      out.append((path, arg))
  return out


def row_id(row):
  path, arg = row
  return os.path.basename(path) + (f':{arg}' if arg else '')


def make_method(name, graph, params, num_epochs=10, steps_per_epoch=10,
                **fields):
  """A registered method built on `graph`, with its sub-dict fields set."""
  from jaxprune import config as config_lib  # pylint: disable=g-import-not-at-top
  from jaxprune.methods import base  # pylint: disable=g-import-not-at-top
  cls = base.get(name)
  config = config_lib.base()
  config.method = name
  config.num_epochs = num_epochs
  if fields:
    config[cls.config_name].update(fields)
  ctx = base.Context(graph=graph, params=params, apply_fn=None,
                     num_epochs=num_epochs, steps_per_epoch=steps_per_epoch,
                     log=lambda *a: None)
  return cls(config, ctx)


def layer(group, size, kernel, gammas=()):
  """A channel unit produced by the kernel at `kernel` (last axis)."""
  from jaxprune.methods import units  # pylint: disable=g-import-not-at-top
  return units.Unit(group, size, 'channel', ((tuple(kernel), -1),),
                    kernel=tuple(kernel), gammas=tuple(gammas))


@pytest.fixture(scope='session')
def data_dir(tmp_path_factory):
  """A TFDS data dir shared by the tests, with the offline digits built."""
  path = str(tmp_path_factory.mktemp('tfds'))
  from jaxprune.data import offline  # pylint: disable=g-import-not-at-top
  offline.prepare('sklearn_digits', path)
  return path


@pytest.fixture(scope='module')
def compile_cache():
  """The session's persistent XLA cache (set at the top of this file), as an
  env dict for `run_main`."""
  return {k: os.environ[k] for k in ('JAX_COMPILATION_CACHE_DIR',
                                     'JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS')}


def cifar_resnet_params(depth, num_classes=10, widths=(16, 32, 64)):
  """Hand formula: 3x3 convs without bias, 2 BN params per channel."""
  n = (depth - 2) // 6
  total = 27 * widths[0] + 2 * widths[0]  # Stem conv + BN.
  c_in = widths[0]
  for w in widths:
    for _ in range(n):
      total += 9 * c_in * w + 9 * w * w + 4 * w
      c_in = w
  return total + widths[-1] * num_classes + num_classes


def cifar_resnet_macs(depth, num_classes=10, widths=(16, 32, 64)):
  """Hand formula: 3x3 convs at 32, 16, 8 pixels, plus the classifier."""
  n = (depth - 2) // 6
  total, c_in, hw = 32 * 32 * 27 * widths[0], widths[0], 32
  for stage, w in enumerate(widths):
    for b in range(n):
      hw //= 2 if stage and not b else 1
      total += hw * hw * 9 * (c_in * w + w * w)
      c_in = w
  return total + widths[-1] * num_classes


# Tests left out of CI (`-m "not slow"`) because another test runs the same
# code path on a smaller model or a sibling parameter; `pytest -m slow` runs
# them. Matched against the test id.
SLOW = {
    'test_config_runs_two_steps_under_mock_data[resnet34_imagenet.py':
        'resnet18_imagenet runs the same ImageNet config code',
    'test_config_runs_two_steps_under_mock_data[resnet50_imagenet.py':
        'resnet18_imagenet; ResNet-50 slims in test_slim.py',
    'test_config_runs_two_steps_under_mock_data[mobilenet_v2_imagenet.py':
        'resnet18_imagenet; MobileNetV2 slims in test_slim.py',
    'test_two_processes_match_one[none]':
        'the reprune cases also check dense host-sharded loading',
    'test_two_processes_match_one[reprune]':
        '[reprune+shrink] runs the same mask events on gathered weights',
    'test_zoo_module_with_slim_widths[resnet50]':
        'resnet18 and resnet20_b cover the same zoo_overrides path',
    'test_slim_train_mode_batch_stats[mobilenet_v2]':
        'resnet20_b and vit_micro cover train-mode slimming',
    'test_signal_stops_cleanly_and_the_rerun_resumes[SIGINT]':
        'SIGTERM runs the same handler',
    'test_config_runs_two_steps_under_mock_data[default_offline.py]':
        'test_offline_run_slimmed_equals_masked_and_logs_coverage runs it',
    'test_state_config_runs_under_mock_data[vit_small_seed003.py:cifar10_refill]':
        'the cifar10_rsst row runs the same config; resnet18_cifar10:refill '
        'runs refill',
    'test_state_config_runs_under_mock_data[resnet18_cifar10.py:rsst]':
        'vit_small_seed003:cifar10_rsst runs rsst; the imp row this config',
    'test_cifar_config_runs_under_mock_data[sfp]':
        'the l1 row runs the shared CIFAR config code; '
        'test_each_baseline_end_to_end runs every baseline',
    'test_cifar_config_runs_under_mock_data[fpgm]': 'as [sfp]',
    'test_cifar_config_runs_under_mock_data[chex]': 'as [sfp]',
    'test_cifar_config_runs_under_mock_data[cup]': 'as [sfp]',
    'test_cifar_config_runs_under_mock_data[bn_slimming]': 'as [sfp]',
    'test_coco_config_runs_two_steps_under_mock_data[ssd300_resnet50_coco.py]':
        'the REPrune row runs the same recipe and evaluation; the dense '
        'counts are asserted in test_ssd300_resnet50_shapes_and_parameter_count',
}


def pytest_collection_modifyitems(items):
  for item in items:
    if any(item.nodeid.split('::')[-1].startswith(k) for k in SLOW):
      item.add_marker(pytest.mark.slow)
