"""Test setup: 8 fake CPU devices and a private TFDS data dir."""
import os

os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                           ' --xla_force_host_platform_device_count=8')
os.environ.setdefault('JAX_PLATFORMS', 'cpu')

import pytest  # pylint: disable=g-import-not-at-top

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope='session')
def data_dir(tmp_path_factory):
  """A TFDS data dir shared by the tests, with the offline digits built."""
  path = str(tmp_path_factory.mktemp('tfds'))
  from jaxprune.data import offline  # pylint: disable=g-import-not-at-top
  offline.prepare('sklearn_digits', path)
  return path


@pytest.fixture(scope='module')
def compile_cache(tmp_path_factory):
  """A persistent XLA cache shared by the xdist workers, so that configs of
  one model compile once (an env dict for `test_train.run_main`)."""
  root = tmp_path_factory.getbasetemp()
  if os.environ.get('PYTEST_XDIST_WORKER'):
    root = root.parent  # Common to all workers of this session.
  path = root / 'xla_cache'
  path.mkdir(exist_ok=True)
  return {'JAX_COMPILATION_CACHE_DIR': str(path),
          'JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS': '0'}
