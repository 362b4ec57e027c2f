"""The method protocol: a method is a sequence of phases, plus a registry.

The engine (`jaxprune.engine`) runs every method through one loop. A
method says, per phase `k`:

* which masks the phase trains under (`plan`: channel masks and/or
  unstructured weight masks, computed host-side from the weights the
  previous phase trained, and saved with the run);
* how the phase starts and trains (`phase`): from the initial weights, the
  rewind point, or the previous phase's trained weights; how the optimizer
  is wrapped (hard / soft / masked-forward masks, an added regulariser);
  which epochs run a mask `event` inside the phase;
* what the phase reports (`describe`) and what slimming removes at the
  end (`channel_masks`).

| family | phases | start | wrap | events |
|---|---|---|---|---|
| dense | 1 | init | none | none |
| REPrune | 1 | init | soft masks | every Delta T epochs until T_prune |
| one-shot (random, L1, ...) | 2 | init, then trained | hard masks | none |
| IMP, Refill, RSST | S | init, then rewind | hard / masked-forward / regulariser | none |

A method is one file in `jaxprune/methods/` whose class is decorated with
`@register`; the registry imports every module of the package on first
use, so dropping a file in is enough. A method declares its own config
sub-dict (`config_name`, `defaults()`); `jaxprune.config.base()` gathers
them, so neither the engine nor `config.py` names any method. Methods see
channel groups (`jaxprune.methods.units`), never model names.
"""
import dataclasses
import os
from typing import Any, Callable, ClassVar

import jax
import ml_collections
import numpy as np

from jaxprune import optax as optax_lib
from jaxprune import registry, structure
from jaxprune.errors import check_choice

AMOUNTS = ('absolute', 'gradual')
STARTS = ('init', 'rewind', 'trained')


def kept(total: int, rate: float, phase: int, amount: str) -> int:
  """How many of `total` units (or weights) phase `phase` keeps.

  Args:
    total: the pool's size N.
    rate: the pruning rate.
    phase: the phase (0 keeps everything).
    amount: 'absolute' (int(N (1 - rate)) from phase 1 on) or 'gradual'
      (each phase removes int(rate n) of the n that remain).
  """
  check_choice('amount', amount, AMOUNTS)
  if phase == 0:
    return total
  if amount == 'absolute':
    return int(total * (1 - rate))
  n = total
  for _ in range(phase):
    n -= int(rate * n)
  return n


@dataclasses.dataclass
class Plan:
  """The masks one phase trains under.

  Attributes:
    channels: group -> bool keep mask (structured methods; {} keeps all).
    weights: unstructured masks: a bool pytree like the params (full shape
      on pruned kernels, broadcastable elsewhere), or None.
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
    """Writes the plan to `path` (.npz) atomically."""
    arrays = {f'channels/{g}': np.asarray(m) for g, m in self.channels.items()}
    if self.weights is not None:
      for p, leaf in jax.tree_util.tree_flatten_with_path(self.weights)[0]:
        arrays['weights/' + '/'.join(k.key for k in p)] = np.asarray(leaf)
    with open(path + '.tmp', 'wb') as f:
      np.savez_compressed(f, **arrays)
    os.replace(path + '.tmp', path)

  @classmethod
  def load(cls, path: str, params: Any) -> 'Plan':
    """Reads a plan written by `save`; `params` gives the tree structure."""
    with np.load(path) as z:
      channels = {k[len('channels/'):]: z[k] for k in z.files
                  if k.startswith('channels/')}
      weights = None
      if any(k.startswith('weights/') for k in z.files):
        weights = jax.tree_util.tree_map_with_path(
            lambda p, _: z['weights/' + '/'.join(k.key for k in p)], params)
    return cls(channels, weights)


def _never(epoch: int) -> bool:
  del epoch
  return False


@dataclasses.dataclass
class Phase:
  """How one phase trains.

  Attributes:
    start: 'init' (the initial weights), 'rewind' (the weights saved after
      `Method.rewind_epoch` epochs of phase 0) or 'trained' (the previous
      phase's final weights).
    plan: the masks of the phase (None: no masks).
    wrap: `tx -> tx`, e.g. `jaxprune.optax.masked(tx, masks, 'hard')`; it
      receives the device masks of the plan as `wrap(tx, masks)`.
    mask_start: zero the pruned weights of the start point (hard masks).
    forward: `(params, opt_state) -> params` the model runs on in training
      (e.g. W * M for masked-forward training), or None.
    masked_eval: evaluate (and slim) the network with the plan's masks
      applied (W * M).
    events: epoch -> whether `Method.event` runs at the start of it;
      `events(epochs)` (one past the last epoch) runs one after the last
      epoch, before the final evaluation and checkpoint.
    track_best: report the test accuracy at the epoch of best validation
      accuracy (and keep that bookkeeping in checkpoints).
    epochs: epochs of the phase (None: `config.num_epochs`; 0: the start
      point is the phase's result, e.g. pretrained weights pruned once).
  """
  start: str = 'init'
  plan: Plan | None = None
  wrap: Callable[..., Any] = lambda tx, masks: tx
  mask_start: bool = False
  forward: Callable[[Any, Any], Any] | None = None
  masked_eval: bool = False
  events: Callable[[int], bool] = _never
  track_best: bool = False
  epochs: int | None = None

  def __post_init__(self):
    check_choice('phase start', self.start, STARTS)


@dataclasses.dataclass
class Context:
  """What the engine gives a method.

  Attributes:
    graph: the model's channel graph (`jaxprune.structure.trace`).
    params: the 'params' collection as shape structs.
    apply_fn: the model's `apply`.
    num_epochs: `config.num_epochs`.
    steps_per_epoch: optimizer steps per epoch.
    log: a printf-style logger for progress lines.
    sample: `() -> (x, batch)`: the model input and the raw batch of the
      first training batch (for activation and saliency scores).
    loss: `(variables, x, batch) -> scalar`: the task's loss in eval mode.
    batch_stats: the 'batch_stats' collection as shape structs ({} when
      the model has none).
  """
  graph: structure.ChannelGraph
  params: Any
  apply_fn: Callable[..., Any]
  num_epochs: int
  steps_per_epoch: int
  log: Callable[..., None] = print
  sample: Callable[[], Any] | None = None
  loss: Callable[..., Any] | None = None
  batch_stats: Any = dataclasses.field(default_factory=dict)


class Method:
  """Base of every method; a dense run is this class with no override.

  Subclasses set `name` (the `config.method` value) and, if they have
  settings, `config_name` and `defaults()`, and override the hooks below.

  Args:
    config: the whole experiment config.
    ctx: the engine's `Context`.
  """

  name: ClassVar[str] = ''
  config_name: ClassVar[str | None] = None  # Its sub-dict of the config.

  def __init__(self, config: ml_collections.ConfigDict, ctx: Context):
    self.config, self.ctx = config, ctx
    self.cfg = config[self.config_name] if self.config_name else None

  @classmethod
  def defaults(cls) -> ml_collections.ConfigDict | None:
    """The method's config sub-dict with defaults, one comment per field."""
    return None

  @property
  def num_phases(self) -> int:
    return 1

  @property
  def rewind_epoch(self) -> int | None:
    """Epoch of phase 0 whose weights phases starting at 'rewind' get."""
    return None

  def plan(self, k: int, trained: Any, prev: Plan | None) -> Plan | None:
    """The masks of phase k (host side, between phases).

    Args:
      k: the phase about to start.
      trained: variables ({'params', 'batch_stats'}) at the end of phase
        k - 1 (None for k = 0).
      prev: the plan of phase k - 1 (None for k = 0).
    """
    del k, trained, prev
    return None

  def phase(self, k: int, plan: Plan | None) -> Phase:
    """How phase k trains under `plan`."""
    del k
    return Phase(plan=plan)

  def event(self, k: int, epoch: int, params, opt_state, key):
    """A mask event at the start of `epoch` (when `Phase.events(epoch)`).

    Returns:
      (params, opt_state, info): new weights and optimizer state, and host
      scalars for the log (`metrics.jsonl` split 'prune').
    """
    del k, epoch, key
    return params, opt_state, {}

  def event_stats(self, k: int, epoch: int, batch_stats, opt_state):
    """Runs right after `event`, on the batch statistics and the new
    optimizer state (e.g. to restore the running statistics of regrown
    channels).

    Returns:
      (batch_stats, opt_state).
    """
    del k, epoch
    return batch_stats, opt_state

  def epoch_end(self, k: int, epoch: int, params, opt_state
                ) -> dict[str, float]:
    """Host scalars logged after `epoch` (split 'coverage'); {} for none."""
    del k, epoch, params, opt_state
    return {}

  def no_shrink(self, k: int) -> str | None:
    """Why phase k cannot train on the slimmed network (`config.shrink`),
    e.g. because its pruned weights train too; None: it can."""
    del k
    return None

  def channel_masks(self, k: int, plan: Plan | None,
                    opt_state) -> dict[str, np.ndarray] | None:
    """Channel masks that slimming removes after phase k; None: no slim."""
    del k, opt_state
    if plan is None or not plan.channels:
      return None
    return plan.channels

  def describe(self, plan: Plan | None) -> dict[str, Any]:
    """Row fields of a phase trained under `plan`: kept, params, macs."""
    channels = {} if plan is None else plan.channels
    g = self.ctx.graph
    out = {'kept': {'channels': [
        int(sum(int(np.sum(m)) for m in channels.values())),
        int(sum(np.size(m) for m in channels.values()))]}} if channels else {
            'kept': {}}
    out['params'] = g.num_params(channels)
    out['macs'] = int(g.macs(channels))
    return out


class MasksInOptState:
  """Mixin of one-phase methods whose channel masks live in the masked
  optimizer state's aux (`aux['channels']`): slimming reads them there."""

  def current_masks(self, opt_state) -> dict[str, np.ndarray]:
    """The channel masks in the optimizer state."""
    aux = optax_lib.find_state(opt_state).aux
    return {k: np.asarray(jax.device_get(v)) for k, v in
            aux['channels'].items()}

  def channel_masks(self, k, plan, opt_state):
    del k, plan
    return self.current_masks(opt_state)

  def describe(self, plan):
    del plan
    return {}


# ---------------------------------------------------------------------------
# The registry.
# ---------------------------------------------------------------------------

REGISTRY = registry.Registry[Method]('method', 'jaxprune.methods')
register = REGISTRY.register
get = REGISTRY.get
names = REGISTRY.names


def config_dicts() -> dict[str, ml_collections.ConfigDict]:
  """Every method's config sub-dict with defaults, by sub-dict name
  (`jaxprune.registry.Registry.config_dicts`)."""
  return REGISTRY.config_dicts()
