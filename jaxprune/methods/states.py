"""The IMP / Refill / RSST state loop (methods.md section 3).

States 0..S-1 of `num_epochs` epochs each. State 0 trains dense. At the end
of every state the method computes the next state's masks from the trained
weights; all parameters (and batch statistics) are rewound to the initial
weights, or to those after `rewind_epoch` epochs of state 0; a fresh
optimizer with its warmup is built; and the next state trains under the new
masks:

* `imp`: global unstructured magnitude masks over the prunable kernels
  (`jaxprune.methods.imp`), hard by default (pruned weights stay 0).
* `refill`: structured masks (`jaxprune.methods.refill`): global head and
  MLP-neuron pools for transformers; per-layer channel budgets from the IMP
  survivors for CNNs. By default the model runs on W * M
  ('masked_forward'): the underlying weights keep decaying and, being
  scored unmasked, a dropped unit can come back.
* `rsst`: the next Refill structure is reached by regularisation: the
  state trains every weight, with lambda(t) w added to the gradients of the
  weights outside the structure (`jaxprune.methods.rsst`); the structure is
  applied hard at evaluation, so each state yields a pruned network. The
  next structure is scored on the trained weights before that cut.

How much is pruned: `absolute` keeps int(N (1 - rate)) of each pool from
state 1 on (seed 003); `gradual` removes int(rate n) of the n units (or
weights) that remain, per state.

Every state's accuracy is measured on the masked network: the test accuracy
at the epoch of best validation accuracy (the seed's number), and at the
last epoch.

Layout of a workdir:

  rewind/                      the rewind weights (orbax)
  state_00/checkpoints/        per-state train states (orbax); step 0 of
                               states >= 1 is the rewound, masked start
  state_01/masks.npz           the masks state 1 trains under
  state_01/result.json         written when state 1 completes
  results.json                 every completed state, rewritten after each
  metrics.jsonl                train/validation/test/state lines

A rerun with the same workdir skips completed states and resumes the
current one at its newest checkpoint.
"""
import dataclasses
import functools
import json
import os
import time
from typing import Any

from absl import logging
import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxprune import checkpoint, data, flops, optim, report, structure
from jaxprune import writers
from jaxprune import optax as optax_lib
from jaxprune import train
from jaxprune.errors import JaxpruneError, check_choice
from jaxprune.methods import imp, refill, rsst, units

METHODS = ('imp', 'refill', 'rsst')
AMOUNTS = ('absolute', 'gradual')
MASK_MODES = ('auto', 'hard', 'masked_forward')
RAMPS = ('state', 'epoch')


def kept(total: int, rate: float, state: int, amount: str) -> int:
  """How many of `total` units (or weights) state `state` keeps.

  Args:
    total: the pool's size N.
    rate: the pruning rate.
    state: the state (0 keeps everything).
    amount: 'absolute' (int(N (1 - rate)) from state 1 on) or 'gradual'
      (each state removes int(rate n) of the n that remain).
  """
  if amount not in AMOUNTS:
    raise JaxpruneError(f'states.amount={amount!r}; allowed: '
                        f'{", ".join(AMOUNTS)}.')
  if state == 0:
    return total
  if amount == 'absolute':
    return refill.keep_count(total, rate)
  n = total
  for _ in range(state):
    n -= int(rate * n)
  return n


@dataclasses.dataclass
class Plan:
  """The masks one state trains under.

  Attributes:
    channels: group -> bool keep mask (structured methods; {} keeps all).
    weights: IMP's unstructured masks: a bool pytree like the params
      (full shape on the prunable kernels, broadcastable elsewhere), or None.
  """
  channels: dict[str, np.ndarray]
  weights: Any = None

  def param_masks(self, graph: structure.ChannelGraph) -> Any:
    """Broadcastable bool masks of the 'params' collection."""
    pm = jax.tree.map(np.asarray, graph.param_masks(self.channels)['params'])
    if self.weights is None:
      return pm
    return jax.tree.map(np.logical_and, pm, self.weights)

  def save(self, path: str) -> None:
    arrays = {f'channels/{g}': np.asarray(m) for g, m in self.channels.items()}
    if self.weights is not None:
      for p, leaf in jax.tree_util.tree_flatten_with_path(self.weights)[0]:
        arrays['weights/' + '/'.join(k.key for k in p)] = np.asarray(leaf)
    with open(path + '.tmp', 'wb') as f:
      np.savez_compressed(f, **arrays)
    os.replace(path + '.tmp', path)

  @classmethod
  def load(cls, path: str, params: Any) -> 'Plan':
    with np.load(path) as z:
      channels = {k[len('channels/'):]: z[k] for k in z.files
                  if k.startswith('channels/')}
      weights = None
      if any(k.startswith('weights/') for k in z.files):
        weights = jax.tree_util.tree_map_with_path(
            lambda p, _: z['weights/' + '/'.join(k.key for k in p)], params)
    return cls(channels, weights)


class Method:
  """One state-loop method over a traced model's units.

  Args:
    name: 'imp', 'refill' or 'rsst'.
    cfg: the `config.states` ConfigDict.
    graph: the model's channel graph.
    params: the 'params' collection (arrays or shape structs).
  """

  def __init__(self, name: str, cfg: ml_collections.ConfigDict,
               graph: structure.ChannelGraph, params: Any):
    check(name, cfg)
    self.name, self.cfg, self.graph = name, cfg, graph
    self.units = units.units(graph, params, input_layer=cfg.input_layer)
    self.paths = imp.prunable_paths(graph, params)
    self.num_weights = sum(
        int(np.prod(np.shape(structure.lookup(params, p))))
        for p in self.paths)
    if name == 'rsst':
      self.mode = 'regularised'  # Trains every weight; see `wrap`.
    elif cfg.mask_mode == 'auto':
      self.mode = 'hard' if name == 'imp' else 'masked_forward'
    else:
      self.mode = cfg.mask_mode
    if name == 'imp' and not self.paths:
      raise JaxpruneError('IMP found no prunable kernel in this model.')
    if name != 'imp' and not self.units:
      raise JaxpruneError(
          f'{name} found no prunable unit (attention head, MLP neuron or '
          'block-internal channel) in this model; prunable groups: '
          f'{", ".join(g.name for g in graph.prunable) or "none"}.')
    if any(u.kind == 'channel' for u in self.units) and not self.paths:
      raise JaxpruneError('CNN Refill needs IMP survivors, but no kernel is '
                          'prunable.')

  @property
  def structured(self) -> bool:
    return self.name != 'imp'

  def dense(self) -> Plan:
    return Plan({u.group: np.ones(u.size, bool) for u in self.units}
                if self.structured else {})

  def next_plan(self, state: int, params: Any, prev: Plan,
                scorer=None) -> Plan:
    """The masks of `state` from the weights trained in state - 1.

    Args:
      state: the state about to start (>= 1).
      params: the trained (unmasked) weights of the previous state.
      prev: the previous state's plan (IMP's gradual mode prunes on).
      scorer: `(criterion, params) -> {group: scores}` for the batch
        criteria of CNN Refill ('l1', 'l2', 'saliency').
    """
    cfg = self.cfg
    params = jax.device_get(params)
    count = lambda n: kept(n, cfg.rate, state, cfg.amount)
    if not self.structured:
      if cfg.amount == 'gradual' and prev.weights is not None:
        masks = imp.magnitude_masks(params, self.paths, rate=cfg.rate,
                                    current=prev.weights)
      else:
        masks = imp.magnitude_masks(params, self.paths,
                                    keep=count(self.num_weights))
      return Plan({}, masks)
    channels = refill.refill_masks(params, self.units, keep=count)
    cnn = [u for u in self.units if u.kind == 'channel']
    if cnn:
      survivors = imp.magnitude_masks(params, self.paths,
                                      keep=count(self.num_weights))
      scores = (scorer(cfg.criterion, params)
                if cfg.criterion in refill.BATCH_CRITERIA else None)
      channels.update(refill.cnn_masks(params, cnn, survivors, cfg.criterion,
                                       cfg.fillback_rate, scores))
    return Plan(channels)

  def wrap(self, tx, masks: Any, steps_per_epoch: int, num_epochs: int):
    """The state's optimizer: `tx` under the plan's parameter masks."""
    if self.mode != 'regularised':
      return optax_lib.masked(tx, masks, mode=self.mode)
    per_epoch = self.cfg.ramp == 'epoch'
    outside = jax.tree.map(np.logical_not, masks)
    ramp = rsst.transform(
        outside, self.cfg.reg_schedule,
        total=steps_per_epoch * (1 if per_epoch else num_epochs),
        granularity=self.cfg.reg_granularity_prune,
        exponents=self.cfg.exponents,
        period=steps_per_epoch if per_epoch else None)
    return optax.chain(ramp, tx)

  def kept_counts(self, plan: Plan) -> dict[str, list[int]]:
    """kind -> [kept, total]: heads, neurons, channels or (IMP) weights."""
    out = {}
    if self.structured:
      for u in self.units:
        k, n = out.get(u.kind, (0, 0))
        m = plan.channels.get(u.group)
        out[u.kind] = [k + (u.size if m is None else int(np.sum(m))),
                       n + u.size]
      return out
    return {'weights': [self.num_weights - self._pruned_weights(plan),
                        self.num_weights]}

  def _pruned_weights(self, plan: Plan) -> int:
    if plan.weights is None:
      return 0
    return sum(int(np.sum(~np.asarray(structure.lookup(plan.weights, p))))
               for p in self.paths)

  def effective(self, plan: Plan) -> tuple[int, int]:
    """(params, MACs) of the masked network, from the graph.

    Unstructured zeros (IMP) reduce the parameter count but not the MACs
    of dense kernels.
    """
    n = self.graph.num_params(plan.channels) - self._pruned_weights(plan)
    return n, int(self.graph.macs(plan.channels))


def check(name: str, cfg: ml_collections.ConfigDict) -> None:
  """Raises JaxpruneError on a bad method or `states` field."""
  check_choice('method', name, METHODS)
  check_choice('states.amount', cfg.amount, AMOUNTS)
  check_choice('states.mask_mode', cfg.mask_mode, MASK_MODES)
  check_choice('states.criterion', cfg.criterion, refill.CRITERIA)
  check_choice('states.reg_schedule', cfg.reg_schedule, rsst.SCHEDULES)
  check_choice('states.ramp', cfg.ramp, RAMPS)
  if not 0 < cfg.rate < 1:
    raise JaxpruneError(f'states.rate={cfg.rate}; allowed: 0 < rate < 1.')
  if cfg.num_states < 1:
    raise JaxpruneError(f'states.num_states={cfg.num_states}; allowed: an '
                        'int >= 1.')
  if not 0 <= cfg.fillback_rate <= 1:
    raise JaxpruneError(f'states.fillback_rate={cfg.fillback_rate}; allowed: '
                        '0..1.')


# ---------------------------------------------------------------------------
# The loop.
# ---------------------------------------------------------------------------


@flax.struct.dataclass
class LoopState:
  """A state's train state, with its best-validation bookkeeping."""
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any
  train_seconds: jax.Array
  # [best validation top-1, test top-1 and top-5 at it, its epoch (1-based;
  # 0: none yet)].
  best: jax.Array


@jax.jit
def _apply(params, masks):
  return jax.tree.map(lambda p, m: p * jnp.asarray(m, p.dtype), params, masks)


def _state_dir(workdir: str, k: int) -> str:
  return os.path.join(workdir, f'state_{k:02d}')


def _read_json(path: str) -> Any:
  with open(path) as f:
    return json.load(f)


class _Loop:
  """The state loop of one run (`run`)."""

  def __init__(self, config, workdir):
    self.config, self.workdir = config, workdir
    self.cfg = config.states
    check(config.method, self.cfg)
    su = self.su = train.setup(config, workdir, method=config.method)
    e = config.num_epochs
    if not 0 <= self.cfg.rewind_epoch <= e:
      raise JaxpruneError(f'states.rewind_epoch={self.cfg.rewind_epoch}; '
                          f'allowed: 0..{e} (num_epochs).')
    abstract, self.graph = train.trace_model(su.model, su.shape)
    init = lambda rng: su.model.init(rng, jnp.zeros(su.shape, jnp.float32),
                                     train=False)
    self.method = Method(config.method, self.cfg, self.graph,
                         abstract['params'])
    self.init_fn = jax.jit(init, out_shardings=su.replicated)
    self.abstract = abstract
    self.dense_counts = flops.count(
        su.model.apply, abstract, jax.ShapeDtypeStruct(su.shape, jnp.float32),
        train=False)
    kinds = self.method.kept_counts(self.method.dense())
    logging.info('%s on %s: %s params, %s MACs; %s: %s; %d states x %d '
                 'epochs, rate %s (%s).', config.model, config.dataset,
                 f'{self.dense_counts.params:,}',
                 f'{self.dense_counts.macs:,}', config.method,
                 ', '.join(f'{n:,} {k}' for k, (_, n) in kinds.items()),
                 self.cfg.num_states, e, self.cfg.rate, self.cfg.amount)
    self.steps = su.steps_per_epoch * e  # Steps per state.
    os.makedirs(workdir, exist_ok=True)
    checkpoint.write_meta(workdir, su.meta)
    self.writer = writers.MetricWriter(workdir)
    self.select_ds = su.val_ds if su.val_ds is not None else su.test_ds
    if su.val_ds is None:
      logging.warning('validation_size=0: the best epoch is chosen on the '
                      'test set (optimistic); set validation_size.')

  # -- rewind weights ---------------------------------------------------------
  def _rewind_mgr(self):
    return checkpoint.manager(os.path.join(self.workdir, 'rewind'), 1)

  def save_rewind(self, params, batch_stats) -> None:
    with self._rewind_mgr() as mgr:
      checkpoint.save(mgr, self.cfg.rewind_epoch,
                      {'params': params, 'batch_stats': batch_stats})
      mgr.wait_until_finished()
    logging.info('Saved the rewind weights (epoch %d of state 0).',
                 self.cfg.rewind_epoch)

  def has_rewind(self) -> bool:
    with self._rewind_mgr() as mgr:
      return mgr.latest_step() is not None

  def load_rewind(self):
    v = self.init_fn(jax.random.key(self.config.seed))
    target = {'params': v['params'], 'batch_stats': v.get('batch_stats', {})}
    with self._rewind_mgr() as mgr:
      got = checkpoint.restore_latest(mgr, target)
    if got is None:
      raise JaxpruneError(
          f'{self.workdir}/rewind is missing although state 0 went past '
          f'epoch {self.cfg.rewind_epoch}; use another --workdir.')
    return got

  # -- masks --------------------------------------------------------------------
  def scorer(self, criterion, params, stats):
    """Batch scores of CNN Refill on the first training batch."""
    su = self.su
    batch = next(iter(data.train_batches(su.train_ds, su.spec,
                                         self.config.batch_size,
                                         self.config.seed, 0, 1)))
    batch = train.shard_batch(su, batch)
    x = data.normalize(batch['image'], su.spec, jnp.float32)
    found = [u for u in self.method.units if u.kind == 'channel']

    @jax.jit
    def scores(params, x, labels):
      v = {'params': params, 'batch_stats': stats}
      if criterion in ('l1', 'l2'):
        return refill.activation_scores(su.model.apply, v, x, found,
                                        criterion)
      def loss(p):
        logits = su.model.apply({'params': p, 'batch_stats': stats}, x,
                                train=False)
        return train.cross_entropy(logits, labels, su.spec.num_classes, 0.0)
      return refill.saliency_scores(loss, params, found)

    return jax.device_get(scores(params, x, batch['label']))

  def plan_for(self, k: int, prev_state) -> Plan:
    """State k's masks: from its masks.npz, else from state k - 1."""
    if k == 0:
      return self.method.dense()
    path = os.path.join(_state_dir(self.workdir, k), 'masks.npz')
    if os.path.exists(path):
      return Plan.load(path, self.abstract['params'])
    prev_path = os.path.join(_state_dir(self.workdir, k - 1), 'masks.npz')
    prev = (Plan.load(prev_path, self.abstract['params'])
            if k > 1 else self.method.dense())
    if prev_state is None:
      prev_state = self.restore_final(k - 1, prev)
    t0 = time.time()
    plan = self.method.next_plan(
        k, prev_state.params, prev,
        lambda c, p: self.scorer(c, p, prev_state.batch_stats))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if jax.process_index() == 0:
      plan.save(path)
    counts = self.method.kept_counts(plan)
    logging.info('State %d masks (%.1fs): %s.', k, time.time() - t0, ', '.join(
        f'{a:,}/{b:,} {kind}' for kind, (a, b) in counts.items()))
    return plan

  def restore_final(self, k: int, plan: Plan):
    """State k's last train state (to score the next masks)."""
    template = self.fresh_state(k, plan, None)[0]
    with checkpoint.manager(_state_dir(self.workdir, k),
                            self.config.keep_checkpoints) as mgr:
      got = checkpoint.restore_latest(mgr, template)
    if got is None or int(got.step) != self.steps:
      raise JaxpruneError(
          f'State {k} has a result.json but its final checkpoint is missing '
          f'in {_state_dir(self.workdir, k)}; use another --workdir.')
    return got

  # -- one state ----------------------------------------------------------------
  def fresh_state(self, k: int, plan: Plan, rewind):
    """(state at the start of k, optimizer, schedule, device masks)."""
    su, config = self.su, self.config
    tx, schedule = optim.create(config, su.steps_per_epoch)
    masks = jax.device_put(plan.param_masks(self.graph), su.replicated)
    if k:
      tx = self.method.wrap(tx, masks, su.steps_per_epoch, config.num_epochs)
    if rewind is None:  # A template for restoring.
      rewind = jax.tree.map(
          lambda a: jnp.zeros(a.shape, a.dtype),
          {'params': self.abstract['params'],
           'batch_stats': self.abstract.get('batch_stats', {})})
    hard = k > 0 and self.method.mode == 'hard'

    @functools.partial(jax.jit, out_shardings=su.replicated)
    def init(rewind, masks):
      params = _apply(rewind['params'], masks) if hard else rewind['params']
      return LoopState(jnp.zeros((), jnp.int32), params,
                       rewind['batch_stats'], tx.init(params),
                       jnp.zeros((), jnp.float32),
                       jnp.array([-1.0, 0.0, 0.0, 0.0], jnp.float32))

    return init(rewind, masks), tx, schedule, masks

  @staticmethod
  def masked(state, masks):
    """The variables of the masked network (what every state reports)."""
    return {'params': _apply(state.params, masks),
            'batch_stats': state.batch_stats}

  def evaluate(self, v, ds):
    return train.evaluate(self.su.model.apply, v, ds, self.su.spec,
                          self.config, self.su.mesh)

  def train_state(self, k: int, plan: Plan, rewind):
    """Trains state k (resuming); returns (final train state, result)."""
    su, config, cfg = self.su, self.config, self.cfg
    e, spe = config.num_epochs, su.steps_per_epoch
    state, tx, schedule, masks = self.fresh_state(k, plan, rewind)
    sdir = _state_dir(self.workdir, k)
    mgr = checkpoint.manager(sdir, config.keep_checkpoints)
    restored = checkpoint.restore_latest(mgr, state)
    if restored is not None:
      state = restored
      logging.info('State %d: resumed at step %d.', k, int(state.step))
    elif k:
      # Step 0: the rewound, masked start of the state (the "ticket").
      state = train.save_state(su, mgr, state, 0.0)
    first = train.first_epoch_of(state, spe)
    forward = (optax_lib.forward_params
               if k and self.method.mode == 'masked_forward' else None)
    step_fn = jax.jit(functools.partial(
        train.train_step, model=su.model, tx=tx, spec=su.spec, config=config,
        forward=forward), donate_argnums=0,
                      out_shardings=(su.replicated, su.replicated))
    rng = jax.random.fold_in(jax.random.key(config.seed + 1), k)
    base = k * self.steps
    prefix = f'state {k}/{cfg.num_states - 1} '
    carried, t0 = float(state.train_seconds), time.time()
    if k == 0 and cfg.rewind_epoch == 0 and first == 0 and not self.has_rewind():
      self.save_rewind(state.params, state.batch_stats)
    best = [float(b) for b in jax.device_get(state.best)]
    final = None
    for epoch in range(first, e):
      state = train.train_epoch(
          su, state, step_fn, epoch, rng=rng, writer=self.writer,
          schedule=schedule, num_epochs=e, step_base=base,
          total_steps=cfg.num_states * self.steps, prefix=prefix,
          seed=config.seed + 7919 * k)  # A new data order every state.
      if k == 0 and epoch + 1 == cfg.rewind_epoch and not self.has_rewind():
        self.save_rewind(state.params, state.batch_stats)
      last = epoch + 1 == e
      step = base + int(state.step)
      if (epoch + 1) % config.eval_every_epochs == 0 or last:
        v = self.masked(state, masks)
        ev = self.evaluate(v, self.select_ds)
        split = 'validation' if su.val_ds is not None else 'test'
        self.writer.write(step, split, state=k, epoch=epoch + 1, **ev)
        if ev['top1'] > best[0]:
          test = ev if su.val_ds is None else self.evaluate(v, su.test_ds)
          best = [ev['top1'], test['top1'], test['top5'], epoch + 1]
          final = test if last else None  # The last epoch's test result.
        logging.info('%sepoch %d %s top1 %.2f%% (best %.2f%% at epoch %d, '
                     'test %.2f%%)', prefix, epoch + 1, split, ev['top1'],
                     best[0], best[3], best[1])
      if (epoch + 1) % config.checkpoint_every_epochs == 0 or last:
        state = state.replace(best=jax.make_array_from_process_local_data(
            su.replicated, np.asarray(best, np.float32)))
        state = train.save_state(su, mgr, state,
                                 carried + time.time() - t0)
    mgr.wait_until_finished()
    mgr.close()
    seconds = float(state.train_seconds)
    if final is None:
      final = self.evaluate(self.masked(state, masks), su.test_ds)
    n_params, n_macs = self.method.effective(plan)
    pct = lambda x: round(float(x), 4)  # Same after a float32 round trip.
    result = {
        'state': k, 'top1': pct(best[1]), 'top5': pct(best[2]),
        'best_val_top1': pct(best[0]), 'best_epoch': int(best[3]),
        'selected_on': 'validation' if su.val_ds is not None else 'test',
        'final_top1': pct(final['top1']), 'final_top5': pct(final['top5']),
        'kept': self.method.kept_counts(plan), 'params': n_params,
        'macs': n_macs, 'seconds': round(seconds, 3), 'epochs': e,
    }
    self.writer.write(base + int(state.step), 'state', **{
        k_: v for k_, v in result.items() if k_ != 'kept'})
    logging.info('State %d done: test top1 %.2f%% at best epoch %d (final '
                 '%.2f%%), %s params, %s MACs, %s.', k, result['top1'],
                 result['best_epoch'], result['final_top1'], f'{n_params:,}',
                 f'{n_macs:,}', train._fmt_time(seconds))  # pylint: disable=protected-access
    return state, result

  # -- the run --------------------------------------------------------------------
  def run(self) -> dict[str, Any]:
    config, cfg = self.config, self.cfg
    results, prev_state, rewind, plan = [], None, None, None
    for k in range(cfg.num_states):
      path = os.path.join(_state_dir(self.workdir, k), 'result.json')
      if os.path.exists(path):
        results.append(_read_json(path))
        prev_state = None
        continue
      plan = self.plan_for(k, prev_state)
      if k == 0:
        v = self.init_fn(jax.random.key(config.seed))
        start = {'params': v['params'], 'batch_stats': v.get('batch_stats', {})}
      else:
        # From disk in every state, so a resumed run rewinds exactly alike.
        rewind = rewind or self.load_rewind()
        start = rewind
      prev_state, result = self.train_state(k, plan, start)
      train.write_json(_state_dir(self.workdir, k), 'result.json', result)
      results.append(result)
      self.write_results(results, partial=True)
    final = self.finish(results, prev_state, plan)
    self.writer.close()
    return final

  def results(self, states: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        'method': self.config.method, 'dataset': self.config.dataset,
        'model': self.config.model,
        'dense_params': self.dense_counts.params,
        'dense_macs': self.dense_counts.macs,
        'devices': jax.device_count(), 'states': states,
        'config': json.loads(self.config.to_json_best_effort()),
    }

  def write_results(self, states, partial: bool, **extra) -> dict[str, Any]:
    out = {**self.results(states), 'complete': not partial, **extra}
    s = report.summary(out)
    out['summary'] = {k: s[k] for k in (
        'state0', 'best', 'best_state', 'mean', 'std', 'retention',
        'params_after', 'compression')}
    train.write_json(self.workdir, 'results.json', out)
    return out

  def finish(self, states, last_state, plan) -> dict[str, Any]:
    """Slims the last state's network (structured methods); results.json."""
    extra = {}
    k = len(states) - 1
    if self.method.structured and k >= 1:
      if plan is None:
        plan = self.plan_for(k, None)
      if last_state is None:
        last_state = self.restore_final(k, plan)
      masks = jax.device_put(plan.param_masks(self.graph), self.su.replicated)
      v = self.masked(last_state, masks)
      su = self.su
      slimmed = train.slim_and_evaluate(
          su.model, self.graph, plan.channels, v, self.dense_counts,
          su.shape, su.test_ds, su.spec, self.config, su.mesh, self.workdir,
          export=self.cfg.export)
      if slimmed['pruned_params'] != states[-1]['params']:
        logging.warning('The slimmed network has %s params; the graph '
                        'predicted %s.', f'{slimmed["pruned_params"]:,}',
                        f'{states[-1]["params"]:,}')
      extra = {key: slimmed[key] for key in (
          'pruned_params', 'pruned_macs', 'slim_top1', 'slim_top5')}
    return self.write_results(states, partial=False, **extra)


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Runs (or resumes) the state loop of `config.method` in `workdir`.

  Returns:
    The results dict written to `<workdir>/results.json`: method, dataset,
    model, dense_params, dense_macs, `summary` (state0, best, best_state,
    mean and std over states 2..N, retention, params_after, compression:
    `jaxprune.report.summary`) and `states`, one dict per state with
    top1/top5 (test accuracy at the epoch of best validation accuracy),
    best_val_top1, best_epoch, final_top1/final_top5, kept (kind ->
    [kept, total]), params and macs (effective, from the graph) and
    seconds; for structured methods also the last state's slimmed
    pruned_params, pruned_macs, slim_top1 and slim_top5.
  """
  return _Loop(config, workdir).run()
