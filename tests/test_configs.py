"""Every experiment config (every row of those with an argument) loads,
validates and builds its model."""
import importlib.util
import os

import jax
import jax.numpy as jnp
import pytest

from jaxprune import config as config_lib
from jaxprune import data, models

from conftest import REPO, config_rows, row_id

BASELINES = ('l1', 'sfp', 'fpgm', 'chex', 'cup', 'bn_slimming')
ROWS = (config_rows('') + config_rows('reprune') + config_rows('states') +
        sum((config_rows(m) for m in BASELINES), []))
CONFIGS = sorted({p for p, _ in ROWS})


def load(path, arg=None):
  spec = importlib.util.spec_from_file_location('cfg', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  assert module.__doc__ and 'python -m jaxprune.main' in module.__doc__
  if hasattr(module, 'ROWS'):
    # Rows: documented in the docstring's table, default first.
    for r in module.ROWS:
      assert f'| {r}' in module.__doc__, r
    return module.get_config(arg)
  return module.get_config()


def test_dense_baselines_exist():
  names = {os.path.relpath(p, os.path.join(REPO, 'configs')) for p in CONFIGS}
  assert {'default.py', 'resnet56_cifar10.py', 'resnet18_imagenet.py',
          'resnet50_imagenet.py', 'mobilenet_v2_imagenet.py',
          'vit_small_cifar10.py'} <= names


@pytest.mark.parametrize('row', ROWS, ids=[row_id(r) for r in ROWS])
def test_config_is_valid(row):
  config = load(*row)
  config_lib.validate(config)
  spec = data.get_spec(config.dataset)
  assert config.batch_size % 8 == 0 and config.eval_batch_size % 8 == 0
  model = models.create(config.model, spec.num_classes,
                        **dict(config.model_overrides))
  shape = (1, spec.image_size, spec.image_size, spec.channels)
  jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(shape)))


def test_seed003_vit_recipe():
  c = load(os.path.join(REPO, 'configs', 'vit_small_cifar10.py'))
  assert (c.learning_rate, c.momentum, c.weight_decay, c.warmup_epochs,
          c.batch_size, c.validation_size) == (0.01, 0.9, 1e-4, 20.0, 128, 5000)


def test_config_argument_is_checked():
  path = os.path.join(REPO, 'configs', 'reprune', 'resnet50_imagenet.py')
  assert load(path).reprune.target_macs == 2.3e9  # The default row.
  assert load(path, '1.0g').reprune.target_macs == 1.0e9
  assert load(path, '56').reprune.target_reduction == 0.5609
  with pytest.raises(ValueError, match="'3g'; allowed: 2.3g, 1.8g"):
    load(path, '3g')


def test_every_baseline_has_offline_and_seed_table_configs():
  for m in BASELINES:
    for f in ('default_offline.py', 'resnet56_cifar10.py'):
      c = load(os.path.join(REPO, 'configs', m, f))
      assert c.method == m
  for m in ('sfp', 'fpgm'):
    c = load(os.path.join(REPO, 'configs', m, 'resnet18_imagenet.py'))
    assert c[m].target_macs == 1.05e9 and c.num_epochs == 200
    assert c.init_from  # From pretrained: a run without one stops.
  for m in BASELINES:
    c = load(os.path.join(REPO, 'configs', m, 'resnet56_cifar10.py'))
    assert 0.5 <= c[m].target_reduction <= 0.55
