"""The one training loop: `run(config, workdir)` runs any method's phases.

A method (`jaxprune.methods.base.Method`) is a sequence of phases; the
loop trains each one (`Phase`: where its weights start, how the optimizer
is wrapped, which epochs run mask events) and owns everything else:
devices, data, checkpoints, resume, logging, `results.json` and slimming
at the end.

Layout of a workdir:

* one phase (dense, REPrune): `checkpoints/`, `results.json` (the final
  test metrics, MACs, params, and for pruned networks the slimmed ones),
  `slim/` (the exported slimmed network);
* several phases (IMP / Refill / RSST states, one-shot methods):
  `rewind/` (the rewind weights, when a phase rewinds),
  `state_NN/checkpoints/` (step 0 of a phase that does not start from the
  initial weights is its masked start), `state_NN/masks.npz` (the masks
  phase NN trains under), `state_NN/result.json` (its row, when done), and
  `results.json` with every completed phase, rewritten after each;
* always `run.json` (what the checkpoints hold), `metrics.jsonl` and
  `tensorboard/`.

A rerun with the same workdir resumes: completed phases are skipped and
the current one restarts at its newest checkpoint, giving the results of
an unbroken run.
"""
import contextlib
import functools
import json
import os
import signal
import threading
import time
from typing import Any

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxprune import checkpoint, flops, optim, pretrained, report, writers
from jaxprune import masks as masks_lib
from jaxprune import slim as slim_lib
from jaxprune.engine import results as results_lib
from jaxprune.engine import setup as setup_lib
from jaxprune.engine import shrink as shrink_lib
from jaxprune.engine import steps
from jaxprune.errors import JaxpruneError
from jaxprune.methods import base as methods_base


_apply = jax.jit(masks_lib.apply)  # W * M, leaf by leaf.


def first_epoch_of(state, steps_per_epoch: int) -> int:
  """The epoch a restored state resumes at; raises off an epoch boundary."""
  step = int(state.step)
  if step % steps_per_epoch:
    raise JaxpruneError(f'Checkpoint step {step} is not at an epoch '
                        f'boundary of {steps_per_epoch} steps; the batch size '
                        'or dataset changed. Use another --workdir.')
  return step // steps_per_epoch


class _Run:
  """One run of a method (`run`)."""

  def __init__(self, config: ml_collections.ConfigDict, workdir: str):
    self.config, self.workdir = config, workdir
    method_cls = methods_base.get(config.method)
    su = self.su = setup_lib.setup(config, workdir, method=config.method)
    self.abstract, self.graph = steps.trace_model(su.model, su.shape)
    x = jax.ShapeDtypeStruct(su.shape, jnp.float32)
    self.dense_counts = flops.count(su.model.apply, self.abstract, x,
                                    train=False)
    ctx = methods_base.Context(
        graph=self.graph, params=self.abstract['params'],
        batch_stats=self.abstract.get('batch_stats', {}), apply_fn=su.model.apply, num_epochs=config.num_epochs,
        steps_per_epoch=su.steps_per_epoch, log=logging.info,
        sample=self.sample, loss=self.eval_loss)
    self.method = method_cls(config, ctx)
    self.multi = self.method.num_phases > 1
    self.init_fn = jax.jit(
        lambda rng: su.model.init(rng, jnp.zeros(su.shape, jnp.float32),
                                  train=False),
        out_shardings=su.replicated)
    self.plans: dict[int, methods_base.Plan | None] = {}
    self._shrinker = None
    self._pretrained = None
    self.results_path = os.path.join(workdir, 'results.json')
    self.complete = None
    if os.path.exists(self.results_path):
      done = results_lib.read_json(self.results_path)
      if done.get('complete', True):
        self.complete = done  # Nothing to do, nothing to write.
        return
    logging.info('%s on %s: %s params, %s MACs per example; method %s, %d '
                 'phase(s) of %d epochs.', config.model, config.dataset,
                 f'{self.dense_counts.params:,}',
                 f'{self.dense_counts.macs:,}', config.method,
                 self.method.num_phases, config.num_epochs)
    if config.init_from:  # A bad source stops before anything is written.
      v = jax.device_get(self.init_fn(jax.random.key(config.seed)))
      v = {'params': v['params'], 'batch_stats': v.get('batch_stats', {})}
      self._pretrained, _, _ = pretrained.load_into(
          v, pretrained.read(config.init_from, config.init_from_format, v),
          tuple(config.init_from_map), log=logging.info)
    os.makedirs(workdir, exist_ok=True)
    checkpoint.write_meta(workdir, su.meta)
    self.writer = writers.MetricWriter(workdir)

  # -- what methods may ask for -------------------------------------------------
  def sample(self):
    """(model input, batch) of the first training batch (float32)."""
    su = self.su
    batch = next(iter(su.task.train_batches(su.train_ds,
                                            self.config.batch_size,
                                            self.config.seed, 0)))
    batch = su.shard(batch)
    return su.task.inputs(batch, jnp.float32), batch

  def eval_loss(self, variables, x, batch):
    """The task's loss of the model in eval mode (no label smoothing)."""
    outputs = self.su.model.apply(variables, x, train=False)
    return self.su.task.loss(outputs, batch, train=False)

  # -- layout -------------------------------------------------------------------
  def phase_dir(self, k: int) -> str:
    if not self.multi:
      return self.workdir
    return os.path.join(self.workdir, f'state_{k:02d}')

  def phase_epochs(self, phase: methods_base.Phase) -> int:
    return self.config.num_epochs if phase.epochs is None else phase.epochs

  # -- rewind weights -----------------------------------------------------------
  def _rewind_mgr(self):
    return checkpoint.manager(os.path.join(self.workdir, 'rewind'), 1)

  def save_rewind(self, state) -> None:
    with self._rewind_mgr() as mgr:
      checkpoint.save(mgr, self.method.rewind_epoch,
                      {'params': state.params,
                       'batch_stats': state.batch_stats})
      mgr.wait_until_finished()
    logging.info('Saved the rewind weights (epoch %d of phase 0).',
                 self.method.rewind_epoch)

  def has_rewind(self) -> bool:
    with self._rewind_mgr() as mgr:
      return mgr.latest_step() is not None

  def initial(self):
    """The initial variables: the seed's init, with `config.init_from`'s
    matching arrays loaded over it (read once per run)."""
    if self._pretrained is None:
      v = self.init_fn(jax.random.key(self.config.seed))
      return {'params': v['params'], 'batch_stats': v.get('batch_stats', {})}
    return jax.device_put(self._pretrained, self.su.replicated)

  def load_rewind(self):
    with self._rewind_mgr() as mgr:
      got = checkpoint.restore_latest(mgr, self.initial())
    if got is None:
      raise JaxpruneError(
          f'{self.workdir}/rewind is missing although phase 0 went past '
          f'epoch {self.method.rewind_epoch}; use another --workdir.')
    return got

  # -- plans --------------------------------------------------------------------
  def plan_for(self, k: int) -> methods_base.Plan | None:
    """Phase k's masks: from its masks.npz, else from phase k - 1."""
    if k in self.plans:
      return self.plans[k]
    if k == 0:
      plan = self.method.plan(0, None, None)
    else:
      path = os.path.join(self.phase_dir(k), 'masks.npz')
      if os.path.exists(path):
        plan = methods_base.Plan.load(path, self.abstract['params'])
      else:
        prev = self.plan_for(k - 1)
        trained = self.restore_final(k - 1, prev)
        t0 = time.time()
        plan = self.method.plan(k, jax.device_get(
            {'params': trained.params, 'batch_stats': trained.batch_stats}),
                                prev)
        if plan is not None:
          os.makedirs(os.path.dirname(path), exist_ok=True)
          if jax.process_index() == 0:
            plan.save(path)
          kept = self.method.describe(plan).get('kept', {})
          logging.info('State %d masks (%.1fs): %s.', k, time.time() - t0,
                       ', '.join(f'{a:,}/{b:,} {kind}'
                                 for kind, (a, b) in kept.items()))
    self.plans[k] = plan
    return plan

  def device_masks(self, plan):
    if plan is None:
      return None
    return jax.device_put(plan.param_masks(self.graph), self.su.replicated)

  # -- states -------------------------------------------------------------------
  def fresh(self, k: int, phase: methods_base.Phase, start):
    """(state at the start of phase k, optimizer, schedule, device masks).

    `start` None builds a template for restoring a checkpoint.
    """
    su, config = self.su, self.config
    tx, schedule = optim.create(config, su.steps_per_epoch,
                                num_epochs=self.phase_epochs(phase))
    masks = self.device_masks(phase.plan)
    tx = phase.wrap(tx, masks)
    if start is None:
      start = jax.tree.map(
          lambda a: jnp.zeros(a.shape, a.dtype),
          {'params': self.abstract['params'],
           'batch_stats': self.abstract.get('batch_stats', {})})
    hard = phase.mask_start and masks is not None

    @functools.partial(jax.jit, out_shardings=su.replicated)
    def init(start, masks):
      params = _apply(start['params'], masks) if hard else start['params']
      return steps.TrainState(
          jnp.zeros((), jnp.int32), params, start['batch_stats'],
          tx.init(params), jnp.zeros((), jnp.float32),
          jnp.array([-1.0, 0.0, 0.0, 0.0], jnp.float32))

    return init(start, masks), tx, schedule, masks

  def restore_final(self, k: int, plan):
    """Phase k's last train state (to plan the next phase, or to slim)."""
    phase = self.method.phase(k, plan)
    template = self.fresh(k, phase, None)[0]
    with checkpoint.manager(self.phase_dir(k),
                            self.config.keep_checkpoints) as mgr:
      got = checkpoint.restore_latest(mgr, template)
    want = self.phase_epochs(phase) * self.su.steps_per_epoch
    if got is None or int(got.step) != want:
      raise JaxpruneError(
          f'Phase {k} has finished, but its final checkpoint (step {want}) '
          f'is missing in {self.phase_dir(k)}; use another --workdir.')
    return got

  def start_of(self, k: int, phase: methods_base.Phase):
    """The variables phase k starts from."""
    if phase.start == 'init':
      return self.initial()
    if phase.start == 'rewind':
      # From disk in every phase, so a resumed run rewinds exactly alike.
      return self.load_rewind()
    prev = self.restore_final(k - 1, self.plan_for(k - 1))
    return {'params': prev.params, 'batch_stats': prev.batch_stats}

  def save_state(self, mgr, state, seconds: float):
    """Saves `state` with `train_seconds` = seconds; returns the saved state."""
    # A globally replicated scalar, so that multi-host saves accept it.
    state = state.replace(train_seconds=jax.make_array_from_process_local_data(
        self.su.replicated, np.float32(seconds)))
    checkpoint.save(mgr, int(state.step), state)
    return state

  def eval_vars(self, state, phase, masks):
    params = (_apply(state.params, masks)
              if phase.masked_eval and masks is not None else state.params)
    return {'params': params, 'batch_stats': state.batch_stats}

  def evaluate(self, variables, ds):
    return steps.evaluate(self.su, self.su.model.apply, variables, ds)

  # -- one phase ----------------------------------------------------------------
  def train_phase(self, k: int, phase: methods_base.Phase):
    """Trains phase k (resuming); returns (final state, row, final eval,
    training seconds)."""
    su, config, method = self.su, self.config, self.method
    spe = su.steps_per_epoch
    start = self.start_of(k, phase)
    state, tx, schedule, masks = self.fresh(k, phase, start)
    mgr = checkpoint.manager(self.phase_dir(k), config.keep_checkpoints)
    restored = checkpoint.restore_latest(mgr, state)
    if restored is not None:
      state = restored
      logging.info(('State %d: resumed at step %d.' if self.multi else
                    'Resumed from step %d in %s.'),
                   *((k, int(state.step)) if self.multi else
                     (int(state.step), self.workdir)))
    elif phase.start != 'init' or not self.phase_epochs(phase):
      # Step 0: the (masked) start of the phase, e.g. the rewound "ticket"
      # (and all of a phase of 0 epochs, e.g. pretrained weights pruned
      # without training).
      state = self.save_state(mgr, state, 0.0)
    first = first_epoch_of(state, spe)
    step_fn = steps.jit_train_step(su, tx, phase.forward)
    rng = jax.random.fold_in(jax.random.key(config.seed + 1), k)
    event_key = jax.random.key(config.seed + 2 + 7919 * k)
    base = self.phase_base(k)
    total = self.phase_base(method.num_phases) if self.multi else None
    # Records logged after the checkpoint we resume from go: they are
    # logged again.
    self.writer.rewind(base + int(state.step))
    if restored is None and phase.start != 'init':
      self.writer.mark(base, state=k)
    try:
      return self._train(k, phase, state, tx, schedule, masks, mgr, first,
                         step_fn, rng, event_key, base, total)
    finally:
      mgr.wait_until_finished()  # Never leave a save half written.
      mgr.close()

  def phase_base(self, k: int) -> int:
    """Run-wide steps before phase k."""
    if not self.multi:
      return 0
    return sum(self.phase_epochs(self.method.phase(j, None)) *
               self.su.steps_per_epoch for j in range(k))

  def _train(self, k, phase, state, tx, schedule, masks, mgr, first,
             step_fn, rng, event_key, base, total):
    """The epochs of phase k from `first` on; see `train_phase`."""
    su, config, method, task = self.su, self.config, self.method, self.su.task
    e = self.phase_epochs(phase)
    prefix = f'state {k}/{method.num_phases - 1} ' if self.multi else ''
    carried, t0 = float(state.train_seconds), time.time()
    rewind = (k == 0 and self.multi and method.rewind_epoch is not None)
    if rewind and method.rewind_epoch == 0 and first == 0 and (
        not self.has_rewind()):
      self.save_rewind(state)
    select_ds = su.val_ds if su.val_ds is not None else (
        su.test_ds if phase.track_best else None)
    split = 'validation' if su.val_ds is not None else 'test'
    if phase.track_best and su.val_ds is None and first < e:
      logging.warning('validation_size=0: the best epoch is chosen on the '
                      'test set (optimistic); set validation_size.')
    sel = task.selection
    best = [float(b) for b in jax.device_get(state.best)]
    final, last_loss = None, [None]
    shrinking = self.shrinking(k)
    for epoch in range(first, e):
      if phase.events(epoch):
        state = self.event(k, epoch, state, event_key, base)
      train = functools.partial(
          steps.train_epoch, su, epoch=epoch, rng=rng, writer=self.writer,
          schedule=schedule, num_epochs=e, step_base=base,
          total_steps=total, prefix=prefix, first=epoch == first,
          last_loss=last_loss,
          seed=config.seed + 7919 * k)  # A new data order every phase.
      slim = self.slim_step(k, phase, tx, state, rng, epoch, base) if (
          shrinking) else None
      if slim is None:
        state = train(state, step_fn)
      else:  # The kept channels train; the full-width state is rebuilt.
        slice_fn, expand_fn, slim_fn = slim
        state = expand_fn(state, train(slice_fn(state), slim_fn))
      if rewind and epoch + 1 == method.rewind_epoch and (
          not self.has_rewind()):
        self.save_rewind(state)
      last = epoch + 1 == e
      if last and phase.events(e):  # After the last epoch (Phase.events).
        state = self.event(k, e, state, event_key, base)
      step = base + int(state.step)
      info = method.epoch_end(k, epoch, state.params, state.opt_state)
      if info:
        logging.info('epoch %d %s', epoch + 1, ' '.join(
            f'{n} {v:.4f}' for n, v in info.items()))
        self.writer.write(step, 'coverage', epoch=epoch + 1, **info)
      if select_ds is not None and (
          (epoch + 1) % config.eval_every_epochs == 0 or last):
        v = self.eval_vars(state, phase, masks)
        ev = self.evaluate(v, select_ds)
        self.writer.write(step, split, **({'state': k} if self.multi else {}),
                          epoch=epoch + 1, **ev)
        if not phase.track_best:
          logging.info('epoch %d %s %s', epoch + 1, split, ' '.join(
              f'{n} {x:.2f}%' for n, x in ev.items()))
        else:
          if ev[sel] > best[0]:
            test = ev if su.val_ds is None else self.evaluate(v, su.test_ds)
            vals = list(test.values())
            best = [ev[sel], vals[0], vals[1] if len(vals) > 1 else 0.0,
                    epoch + 1]
            final = test if last else None  # The last epoch's test result.
          logging.info('%sepoch %d %s %s %.2f%% (best %.2f%% at epoch %d, '
                       'test %.2f%%)', prefix, epoch + 1, split, sel, ev[sel],
                       best[0], best[3], best[1])
      if (epoch + 1) % config.checkpoint_every_epochs == 0 or last:
        if phase.track_best:
          state = state.replace(best=jax.make_array_from_process_local_data(
              su.replicated, np.asarray(best, np.float32)))
        state = self.save_state(mgr, state, carried + time.time() - t0)
        self.writer.mark(base + int(state.step), state=k)
    mgr.wait_until_finished()
    train_seconds = carried + (time.time() - t0 if first < e else 0.0)
    if final is None:
      final = self.evaluate(self.eval_vars(state, phase, masks), su.test_ds)
    row = None
    if self.multi:
      row = self.row(k, phase, best if phase.track_best and e else None,
                     final, float(state.train_seconds), e, split)
      self.writer.write(base + int(state.step), 'state', **{
          n: v for n, v in row.items() if n != 'kept'})
      logging.info('State %d done: test %s %.2f%% at best epoch %d (final '
                   '%.2f%%), %s params, %s MACs, %s.', k, sel, row[
                       next(iter(final))], row['best_epoch'],
                   final[next(iter(final))],
                   *(f'{row[n]:,}' if n in row else '-'
                     for n in ('params', 'macs')),
                   steps.fmt_time(row['seconds']))
    return state, row, final, train_seconds

  def shrinking(self, k: int) -> bool:
    """Whether phase k trains on the slimmed network (`config.shrink`)."""
    if not self.config.shrink:
      return False
    why = self.method.no_shrink(k)
    if why:
      logging.info('shrink: phase %d trains the full-width network: %s.', k,
                   why)
      return False
    if self._shrinker is None:
      self._shrinker = shrink_lib.Shrinker(self.su, self.abstract)
      logging.info('shrink: traced the train step in %.1fs.',
                   self._shrinker.trace_seconds)
    return True

  def slim_step(self, k, phase, tx, state, rng, epoch, base):
    """(slice, expand, compiled slim step) for the masks of `state`; None
    when they prune nothing."""
    cm = self.method.channel_masks(k, phase.plan, state.opt_state)
    if cm and self.config.shrink_round_to > 1:
      # Extra channels are pruned ones: the step's masks keep them at 0.
      cm = slim_lib.round_masks(self._shrinker.graph, cm,
                                self.config.shrink_round_to)
    if not cm or all(np.all(m) for m in cm.values()):
      return None
    slice_fn, expand_fn, step_fn, info = self._shrinker.step(
        tx, phase.forward, cm, state, rng)
    if info is not None:
      macs = int(self.graph.macs(cm))
      logging.info(
          'shrink: epoch %d trains %s MACs per example (%.1f%% of dense%s); '
          'slim step lowered in %.1fs, %s.', epoch + 1, f'{macs:,}',
          100 * macs / self.dense_counts.macs,
          f', widths rounded up to multiples of {self.config.shrink_round_to}'
          if self.config.shrink_round_to > 1 else '', info['lower_seconds'],
          'same program as an earlier masking: compiled step reused' if
          info['cached'] else f'compiled in {info["compile_seconds"]:.1f}s')
      self.writer.write(base + int(state.step), 'shrink', epoch=epoch,
                        macs=macs, **{n: round(v, 3) if isinstance(v, float)
                                      else v for n, v in info.items()})
    return slice_fn, expand_fn, step_fn

  def event(self, k, epoch, state, event_key, base):
    """Runs the method's mask event at the start of `epoch` (or, for
    epoch == the phase's epochs, after its last epoch)."""
    su, method = self.su, self.method
    params, opt_state, info = method.event(
        k, epoch, state.params, state.opt_state,
        jax.random.fold_in(event_key, epoch))
    stats, opt_state = method.event_stats(k, epoch, state.batch_stats,
                                          opt_state)
    # Back to the replicated layout the train step was compiled for (a
    # method's own jit may leave another one).
    params, stats, opt_state = jax.device_put((params, stats, opt_state),
                                              su.replicated)
    state = state.replace(params=params, batch_stats=stats,
                          opt_state=opt_state)
    self.writer.write(base + int(state.step), 'prune', epoch=epoch, **info)
    return state

  def row(self, k, phase, best, final, seconds, epochs, split):
    """The result row of a phase that tracks its best epoch."""
    pct = lambda x: round(float(x), 4)  # Same after a float32 round trip.
    names = list(final)
    sel = self.su.task.selection
    if best is None:  # The phase does not track its best epoch.
      best = [float('nan'), final[names[0]], final[names[-1]], epochs]
      split = None
    out = {'state': k, names[0]: pct(best[1])}
    if len(names) > 1:
      out[names[1]] = pct(best[2])
    out.update({f'best_val_{sel}': None if np.isnan(best[0]) else pct(best[0]),
                'best_epoch': int(best[3]),
                'selected_on': split})
    out.update({f'final_{n}': pct(v) for n, v in final.items()})
    out.update(self.method.describe(phase.plan))
    out.update({'seconds': round(seconds, 3), 'epochs': epochs})
    return out

  # -- the run ------------------------------------------------------------------
  def run(self) -> dict[str, Any]:
    if self.complete is not None:
      logging.info('already complete: results in %s', self.results_path)
      return self.complete
    try:
      return self._run()
    finally:
      self.writer.close()

  def _run(self) -> dict[str, Any]:
    method = self.method
    rows, state, final, seconds = [], None, None, 0.0
    for k in range(method.num_phases):
      path = os.path.join(self.phase_dir(k), 'result.json')
      if self.multi and os.path.exists(path):
        rows.append(results_lib.read_json(path))
        state = None
        continue
      phase = method.phase(k, self.plan_for(k))
      state, row, final, seconds = self.train_phase(k, phase)
      if self.multi:
        results_lib.write_json(self.phase_dir(k), 'result.json', row)
        rows.append(row)
        self.write_multi(rows, partial=True)
        self.writer.mark(self.phase_base(k + 1), phase_done=k)
    out = (self.finish_multi(rows, state) if self.multi else
           self.finish_single(state, final, seconds))
    logging.info('done: results in %s', self.results_path)
    return out

  def slimmed(self, k: int, state) -> dict[str, Any]:
    """Slims the network of phase k's `state` when the method prunes
    channels; {} otherwise."""
    plan = self.plan_for(k)
    phase = self.method.phase(k, plan)
    if state is None:
      state = self.restore_final(k, plan)
    cm = self.method.channel_masks(k, plan, state.opt_state)
    if cm is None:
      return {}
    v = self.eval_vars(state, phase, self.device_masks(plan))
    return results_lib.slim_and_evaluate(
        self.su, self.graph, cm, v, self.dense_counts, self.workdir,
        export=self.config.export)

  def finish_single(self, state, final, seconds) -> dict[str, Any]:
    config = self.config
    logging.info('test %s', ' '.join(f'{n} {v:.2f}%' for n, v in
                                     final.items()))
    self.writer.write(int(state.step), 'test', **final)
    pruned = self.slimmed(0, state)
    if pruned:
      self.writer.write(int(state.step), 'slim_test', **{
          n[len('slim_'):]: v for n, v in pruned.items()
          if n.startswith('slim_')})
    dense = {'dense_macs': self.dense_counts.macs,
             'dense_params': self.dense_counts.params}
    out = {
        'method': config.method, 'dataset': config.dataset,
        'model': config.model, **final,
        # The network the run delivers: the slimmed one when pruned.
        'macs': pruned.get('pruned_macs', self.dense_counts.macs),
        'params': pruned.get('pruned_params', self.dense_counts.params),
        **dense, 'complete': True,
        'train_seconds': round(float(seconds), 3),
        'steps': int(state.step), 'epochs': config.num_epochs,
        'devices': jax.device_count(),
        'config': json.loads(config.to_json_best_effort()),
        **pruned,
    }
    results_lib.write_json(self.workdir, 'results.json', out)
    return out

  def write_multi(self, rows, partial: bool, **extra) -> dict[str, Any]:
    config = self.config
    out = {
        'method': config.method, 'dataset': config.dataset,
        'model': config.model,
        'dense_params': self.dense_counts.params,
        'dense_macs': self.dense_counts.macs,
        'devices': jax.device_count(), 'states': rows,
        'config': json.loads(config.to_json_best_effort()),
        'complete': not partial, **extra}
    s = report.summary(out)
    out['summary'] = {n: s[n] for n in (
        'state0', 'best', 'best_state', 'mean', 'std', 'retention',
        'params_after', 'compression')}
    results_lib.write_json(self.workdir, 'results.json', out)
    return out

  def finish_multi(self, rows, last_state) -> dict[str, Any]:
    """Slims the last phase's network (methods that prune channels)."""
    k = len(rows) - 1
    extra = self.slimmed(k, last_state)
    if extra and extra['pruned_params'] != rows[-1].get('params'):
      logging.warning('The slimmed network has %s params; the graph '
                      'predicted %s.', f'{extra["pruned_params"]:,}',
                      f'{rows[-1].get("params", 0):,}')
    return self.write_multi(rows, partial=False, **extra)


@contextlib.contextmanager
def _stop_on_signals():
  """SIGINT and SIGTERM (preemption) ask the loop to stop after the current
  step (`steps.STOP`); a second one stops at once."""
  if threading.current_thread() is not threading.main_thread():
    yield
    return

  def handler(signum, frame):
    if steps.STOP['signal'] is not None:
      signal.default_int_handler(signum, frame)  # The second: at once.
    steps.STOP['signal'] = signum

  old = {s: signal.signal(s, handler) for s in (signal.SIGINT,
                                                 signal.SIGTERM)}
  steps.STOP['signal'] = None
  try:
    yield
  finally:
    for s, h in old.items():
      signal.signal(s, h)
    steps.STOP['signal'] = None


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Runs (or resumes) `config.method` on `config.task` in `workdir`.

  Returns:
    The results dict written to `<workdir>/results.json`. One phase:
    method, dataset, model, the task's test metrics (top1, top5), macs,
    params, train_seconds, steps, epochs, devices, config, and for a pruned
    network the slimming fields (dense_/pruned_ macs and params, their
    reductions, widths, slim_top1, slim_top5). Several phases: method,
    dataset, model, dense_params, dense_macs, complete, `summary`
    (`jaxprune.report.summary`) and `states`, one row per phase with top1
    and top5 (test accuracy at the epoch of best validation accuracy),
    best_val_top1, best_epoch, final_top1/final_top5, kept, params and
    macs (effective, from the graph), seconds and epochs; plus the last
    phase's slimming fields.
  """
  with _stop_on_signals():
    return _Run(config, workdir).run()
