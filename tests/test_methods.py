"""The method protocol: registry, config sub-dicts, the engine's neutrality,
and methods that plug in as one file (the README's random example, and a
method registered from user code)."""
import glob
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxprune import config as config_lib
from jaxprune import engine, models, optax as jp_optax, structure
from jaxprune.errors import JaxpruneError
from jaxprune.methods import base, units

from conftest import REPO, TINY, results_of, run_main


def test_registry_lists_every_method_and_rejects_unknown_names():
  assert {'none', 'reprune', 'imp', 'refill', 'rsst', 'random'} <= set(
      base.names())
  with pytest.raises(JaxpruneError, match="method='sfp9'; allowed: .*imp"):
    base.get('sfp9')


def test_config_gathers_method_sub_dicts_and_rejects_unknown_fields():
  c = config_lib.base()
  assert c.reprune.linkage == 'ward' and c.states.num_states == 16
  assert c.random.sparsity == 0.5
  c.random.unlock()
  c.random.sparsty = 0.3
  with pytest.raises(JaxpruneError, match="'random.sparsty'; allowed: "
                     'finetune_epochs, seed, sparsity'):
    config_lib.validate(c)


def test_engine_names_no_method():
  """Neither the engine nor the config schema names a method: methods
  plug in through the registry."""
  engine_src = ''.join(open(p).read() for p in glob.glob(
      os.path.join(REPO, 'jaxprune', 'engine', '*.py')))
  for name in base.names():
    for quoted in (f"'{name}'", f'"{name}"'):
      assert quoted not in engine_src, name
  config_src = open(os.path.join(REPO, 'jaxprune', 'config.py')).read()
  for src in (engine_src, config_src):
    for word in ('reprune', 'refill', 'rsst', 'imp.', 'c.states', 'Pruner'):
      assert word not in src, word


def test_kept_absolute_and_gradual_by_hand():
  assert [base.kept(72, 0.7, k, 'absolute') for k in range(3)] == [72, 21, 21]
  # 100 -> 80 -> 64 -> 52 (64 - int(12.8)) -> 42 (52 - int(10.4)).
  assert [base.kept(100, 0.2, k, 'gradual') for k in range(5)] == [
      100, 80, 64, 52, 42]


def test_random_example_end_to_end(tmp_path, data_dir):
  """The README's "Adding a method" example: train, prune at random once,
  fine-tune; the slimmed network has the params the graph predicts."""
  wd = str(tmp_path / 'random')
  code, out = run_main(f'--config={TINY}', f'--workdir={wd}',
                       f'--config.data_dir={data_dir}',
                       '--config.model_overrides.stage_widths=(8, 16, 16)',
                       '--config.method=random', '--config.num_epochs=2',
                       '--config.random.sparsity=0.5',
                       '--config.random.finetune_epochs=1')
  assert code == 0, out[-3000:]
  r = results_of(wd)
  assert r['complete'] and [s['state'] for s in r['states']] == [0, 1]
  s0, s1 = r['states']
  assert (s0['epochs'], s1['epochs']) == (2, 1)
  assert s0['params'] == r['dense_params'] and s1['params'] < s0['params']
  assert r['pruned_params'] == s1['params'] and r['pruned_macs'] == s1['macs']
  # Every block-internal group keeps ceil(n / 2) of its n channels.
  assert r['widths'] and all(k == -(-n // 2) for k, n in r['widths'].values())
  assert s1['kept'] == {'channels': [sum(k for k, _ in r['widths'].values()),
                                     sum(n for _, n in r['widths'].values())]}
  assert s0['top1'] > 50  # Two epochs on digits.
  # The slimmed network equals the masked one (one image of 360 may flip).
  assert abs(r['slim_top1'] - s1['final_top1']) <= 100 / 360 + 1e-6


@base.register
class KeepFirst(base.Method):
  """A user's method, registered from outside jaxprune/methods: keeps the
  first `keep` channels of every unit, hard-masked from the start."""

  name = 'keep_first_test'
  config_name = 'keep_first_test'

  @classmethod
  def defaults(cls):
    c = ml_collections.ConfigDict()
    c.keep = 2  # Channels kept per unit.
    return c

  def plan(self, k, trained, prev):
    found = units.units(self.ctx.graph, self.ctx.params)
    return base.Plan({u.group: np.arange(u.size) < self.cfg.keep
                      for u in found})

  def phase(self, k, plan):
    return base.Phase(
        plan=plan, mask_start=True, masked_eval=True,
        wrap=lambda tx, masks: jp_optax.masked(tx, masks, mode='hard'))


def test_a_method_from_user_code_runs_through_the_engine(tmp_path, data_dir):
  c = config_lib.base()  # Now holds the keep_first_test sub-dict.
  c.update(dict(model='resnet20', dataset='digits', data_dir=data_dir,
                batch_size=64, eval_batch_size=120, num_epochs=1,
                log_every_steps=100, data_threads=2, export=False,
                method='keep_first_test'))
  c.model_overrides.stage_widths = (4, 8, 8)
  c.keep_first_test.keep = 3
  r = engine.run(c, str(tmp_path / 'w'))
  assert r['method'] == 'keep_first_test' and r['steps'] == 1437 // 64
  assert set(n for _, n in r['widths'].values()) == {4, 8}
  assert all(k == 3 for k, _ in r['widths'].values())
  assert r['pruned_params'] < r['dense_params']
  # The masked weights stayed zero through training.
  from jaxprune import checkpoint  # pylint: disable=g-import-not-at-top
  _, state = checkpoint.load(str(tmp_path / 'w'))
  model = models.create('resnet20', 10, stage_widths=(4, 8, 8))
  x = jnp.zeros((1, 8, 8, 1))
  g = structure.trace(model.apply, jax.eval_shape(
      lambda: model.init(jax.random.key(0), x)), x)
  found = units.units(g, state['params'])
  k = structure.lookup(state['params'], found[0].kernel)
  assert np.all(np.asarray(k)[..., 3:] == 0) and np.any(np.asarray(k)[..., :3])
