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
