"""Masks in optax state: hard, soft and masked-forward modes."""
import jax
from jax import flatten_util
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxprune import models, structure
from jaxprune import masks as masks_lib
from jaxprune import optax as jp_optax


@pytest.fixture(scope='module')
def setup():
  model = models.create('resnet20', 10, stage_widths=(4, 8, 8))
  x = jnp.zeros((1, 8, 8, 3))
  variables = model.init(jax.random.key(0), x)
  graph = structure.trace(model.apply, variables, x)
  cm = masks_lib.random(graph, jax.random.key(1), keep=0.5)
  pm = graph.param_masks(cm)['params']
  return variables['params'], pm


OPTIMIZERS = {
    'sgd_momentum_coupled_wd': optax.chain(
        optax.add_decayed_weights(1e-2), optax.sgd(0.05, momentum=0.9)),
    'nesterov': optax.sgd(0.05, momentum=0.9, nesterov=True),
    'adam': optax.adam(1e-2),
    'adamw': optax.adamw(1e-2, weight_decay=1e-2),
}


def _moments_where(name, inner_state, where):
  """Optimizer moments (momentum, mu, nu) at entries where `where` holds,
  others zeroed; non-parameter state (counts) dropped."""
  return optax.tree_utils.tree_map_params(
      OPTIMIZERS[name], lambda v, m: jnp.where(jnp.broadcast_to(m, v.shape),
                                               v, 0.0), inner_state, where,
      transform_non_params=lambda v: jnp.zeros(()))


def _max_abs(tree):
  return max(float(jnp.abs(x).max()) for x in jax.tree.leaves(tree))


@pytest.mark.parametrize('name', sorted(OPTIMIZERS))
def test_hard_masks_stay_exactly_zero_for_1000_steps(setup, name):
  """500 steps under one mask, then `set_masks` prunes more and 500 more
  steps run: every pruned weight and its moments are exactly zero, and the
  newly pruned entries had non-zero weights and moments before the swap."""
  params, pm = setup
  tx = jp_optax.masked(OPTIMIZERS[name], pm, mode='hard')
  flat, unravel = flatten_util.ravel_pytree(params)

  @jax.jit
  def run(params, state, key):
    def step(carry, k):
      p, s = carry
      grads = unravel(jax.random.normal(k, flat.shape))  # One draw: fast.
      u, s = tx.update(grads, s, p)
      return (optax.apply_updates(p, u), s), None
    return jax.lax.scan(step, (params, state), jax.random.split(key, 500))[0]

  broadcast = lambda m, x: jnp.broadcast_to(m, x.shape)
  pm = jax.tree.map(broadcast, pm, params)
  # The second mask prunes about half of the surviving entries more.
  coin = jax.tree.map(
      lambda m: jax.random.bernoulli(jax.random.key(m.size), 0.5, m.shape), pm)
  pm2 = jax.tree.map(jnp.logical_and, pm, coin)
  newly = jax.tree.map(lambda a, b: a & ~b, pm, pm2)
  assert sum(int(x.sum()) for x in jax.tree.leaves(newly)) > 100
  assert sum(int((~x).sum()) for x in jax.tree.leaves(pm)) > 100

  p, s = run(params, tx.init(params), jax.random.key(2))
  # Before the swap the entries about to be pruned are live: weights and
  # moments are non-zero (else zeroing them would prove nothing).
  assert _max_abs(jax.tree.map(lambda x, m: jnp.where(m, x, 0.0), p,
                               newly)) > 0
  assert _max_abs(_moments_where(name, jp_optax.find_state(s).inner,
                                 newly)) > 0
  s = jp_optax.set_masks(s, pm2)
  p, s = run(p, s, jax.random.key(3))

  pruned = jax.tree.map(lambda x, m: jnp.where(m, 0.0, x), p, pm2)
  assert _max_abs(pruned) == 0.0
  kept = jax.tree.map(lambda x, m: jnp.where(m, x, 0.0), p, pm2)
  assert sum(float(jnp.abs(x).sum()) for x in jax.tree.leaves(kept)) > 0
  # Moments of every pruned entry, the newly pruned included, are zero;
  # those of kept entries are not.
  inner = jp_optax.find_state(s).inner
  assert _max_abs(_moments_where(
      name, inner, jax.tree.map(jnp.logical_not, pm2))) == 0.0
  assert _max_abs(_moments_where(name, inner, pm2)) > 0


@pytest.mark.parametrize('name', sorted(OPTIMIZERS))
def test_hard_mode_zeroes_newly_pruned_moments_at_the_next_step(name):
  """One step after `set_masks`: the newly pruned weight lands on 0 and its
  moments are 0, though its gradient is not."""
  params = {'w': jnp.array([1.0, -2.0, 3.0])}
  tx = jp_optax.masked(OPTIMIZERS[name], {'w': jnp.ones(3, bool)},
                       mode='hard')
  s = tx.init(params)
  g = {'w': jnp.array([0.5, 0.25, -1.0])}
  p = params
  for _ in range(3):
    u, s = tx.update(g, s, p)
    p = optax.apply_updates(p, u)
  moments = _moments_where(name, jp_optax.find_state(s).inner,
                           {'w': jnp.array([False, True, False])})
  assert _max_abs(moments) > 0
  s = jp_optax.set_masks(s, {'w': jnp.array([True, False, True])})
  u, s = tx.update(g, s, p)
  p = optax.apply_updates(p, u)
  assert float(p['w'][1]) == 0.0 and float(p['w'][0]) != 0.0
  moments = _moments_where(name, jp_optax.find_state(s).inner,
                           {'w': jnp.array([False, True, False])})
  assert _max_abs(moments) == 0.0


def test_soft_mode_zeroes_at_events_and_regrows():
  params = {'w': jnp.ones((4,))}
  mask = {'w': jnp.array([True, False, True, False])}
  tx = jp_optax.masked(optax.sgd(0.1), mask, mode='soft')
  s = tx.init(params)
  g = {'w': jnp.ones((4,))}
  u, s = tx.update(g, s, params)  # First step: masks are fresh -> zero.
  p = optax.apply_updates(params, u)
  np.testing.assert_allclose(p['w'], [0.9, 0.0, 0.9, 0.0])
  u, s = tx.update(g, s, p)  # No event: pruned weights get gradients.
  p = optax.apply_updates(p, u)
  np.testing.assert_allclose(p['w'], [0.8, -0.1, 0.8, -0.1], atol=1e-7)
  s = jp_optax.set_masks(s, {'w': jnp.array([True, True, True, False])})
  u, s = tx.update(g, s, p)
  p = optax.apply_updates(p, u)
  np.testing.assert_allclose(p['w'], [0.7, -0.2, 0.7, 0.0], atol=1e-7)


def test_soft_reapply_every_step_keeps_moments():
  params = {'w': jnp.ones((2,))}
  tx = jp_optax.masked(optax.sgd(0.1, momentum=0.9),
                       {'w': jnp.array([True, False])}, mode='soft',
                       reapply='step')
  s = tx.init(params)
  p = params
  for _ in range(3):
    u, s = tx.update({'w': jnp.ones((2,))}, s, p)
    p = optax.apply_updates(p, u)
    assert float(p['w'][1]) == 0.0
  trace = jp_optax.find_state(s).inner[0].trace['w']
  assert float(trace[1]) == pytest.approx(1 + 0.9 + 0.81)


def test_masked_forward_keeps_and_decays_weights():
  params = {'w': jnp.array([1.0, 2.0])}
  mask = {'w': jnp.array([True, False])}
  tx = jp_optax.masked(optax.chain(optax.add_decayed_weights(0.5),
                                   optax.sgd(0.1)), mask,
                       mode='masked_forward')
  s = tx.init(params)
  loss = lambda p, s: jnp.sum(jp_optax.forward_params(p, s)['w'] ** 2)
  g = jax.grad(loss)(params, s)
  np.testing.assert_allclose(g['w'], [2.0, 0.0])
  u, s = tx.update(g, s, params)
  p = optax.apply_updates(params, u)
  # Kept: 1 - 0.1 * (2 + 0.5); pruned: decays only, 2 - 0.1 * 0.5 * 2.
  np.testing.assert_allclose(p['w'], [0.75, 1.9], rtol=1e-6)


def test_prune_fn_runs_inside_jit_on_schedule():
  params = {'w': jnp.arange(1.0, 5.0)}

  def prune_fn(p, m, aux, count):
    # Drop the smallest surviving weight at each event.
    w = jnp.where(m['w'], jnp.abs(p['w']), jnp.inf)
    return {'w': m['w'].at[jnp.argmin(w)].set(False)}, aux + 1

  tx = jp_optax.masked(optax.sgd(0.0), {'w': jnp.ones(4, bool)},
                       mode='hard', prune_fn=prune_fn, every=2, start=1,
                       until=6, aux=jnp.zeros([], jnp.int32))
  s = tx.init(params)
  step = jax.jit(tx.update)
  p = params
  for _ in range(8):
    u, s = step(jax.tree.map(jnp.zeros_like, p), s, p)
    p = optax.apply_updates(p, u)
  # Events at steps 1, 3, 5.
  assert int(jp_optax.find_state(s).aux) == 3
  np.testing.assert_array_equal(p['w'], [0.0, 0.0, 0.0, 4.0])


def test_bad_mode():
  with pytest.raises(ValueError, match="mode='sfp'; allowed: hard, soft"):
    jp_optax.masked(optax.sgd(0.1), {}, mode='sfp')


def events_of(**kwargs):
  """Steps at which prune_fn runs, over 10 steps."""

  def prune_fn(p, m, aux, count):
    return m, aux.at[count].set(1)

  tx = jp_optax.masked(optax.sgd(0.0), {'w': jnp.ones(2, bool)}, mode='hard',
                       prune_fn=prune_fn, aux=jnp.zeros(10, jnp.int32),
                       **kwargs)
  params = {'w': jnp.ones(2)}
  s = tx.init(params)
  for _ in range(10):
    _, s = tx.update({'w': jnp.zeros(2)}, s, params)
  seen = np.flatnonzero(np.asarray(jp_optax.find_state(s).aux)).tolist()
  return seen


def test_event_schedule_by_hand():
  assert events_of(every=2) == [0, 2, 4, 6, 8]  # start defaults to 0.
  assert events_of(every=1, start=7) == [7, 8, 9]
  assert events_of(every=3, start=1) == [1, 4, 7]
  assert events_of(every=2, until=4) == [0, 2]  # until is excluded.
  for every in (0, -1, 2.5, None):
    with pytest.raises(ValueError, match=f'every={every!r}; with prune_fn'):
      events_of(every=every)


def test_hard_mode_hides_pruned_gradients_from_the_inner_optimizer():
  # Global-norm clipping sees only the kept gradient (0.5), so it does not
  # clip: the kept weight moves by the full 0.5.
  tx = jp_optax.masked(optax.chain(optax.clip_by_global_norm(1.0),
                                   optax.sgd(1.0)),
                       {'w': jnp.array([True, False])}, mode='hard')
  params = {'w': jnp.array([1.0, 1.0])}
  u, _ = tx.update({'w': jnp.array([0.5, 100.0])}, tx.init(params), params)
  np.testing.assert_allclose(optax.apply_updates(params, u)['w'], [0.5, 0.0])


def test_set_masks_keeps_or_replaces_aux():
  tx = jp_optax.masked(optax.sgd(0.1), {'w': jnp.ones(2, bool)},
                       aux=jnp.array(3))
  s = tx.init({'w': jnp.ones(2)})
  new = {'w': jnp.array([True, False])}
  kept = jp_optax.set_masks(s, new)
  assert int(jp_optax.find_state(kept).aux) == 3
  np.testing.assert_array_equal(jp_optax.masks_of(kept)['w'], [True, False])
  assert bool(jp_optax.find_state(kept).fresh)
  assert int(jp_optax.find_state(jp_optax.set_masks(s, new, aux=jnp.array(
      7))).aux) == 7
