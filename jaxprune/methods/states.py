"""The state-loop family: IMP, Refill and RSST (`num_states` phases).

Chen et al., "Coarsening the Granularity: Towards Structurally Sparse
Lottery Tickets" (ICML 2022, arXiv:2202.04736; code VITA-Group/Structure-LTH)
for IMP-Refill, and RSST (public code zjgxwl/RSST).

States 0..S-1 of `num_epochs` epochs each are the engine's phases. State 0
trains dense. At the end of every state the method computes the next
state's masks from the trained weights (`plan`); every parameter (and
batch statistic) is rewound to the initial weights, or to those after
`rewind_epoch` epochs of state 0; a fresh optimizer with its warmup is
built; and the next state trains under the new masks (`phase`). Each
state reports the test accuracy at the epoch of best validation accuracy.

How much is pruned: `absolute` keeps int(N (1 - rate)) of each pool from
state 1 on; `gradual` removes int(rate n) of the n units (or weights) that
remain, per state (`base.kept`).

The three methods (`imp.py`, `refill.py`, `rsst.py`) share this base and
its `states` config sub-dict.
"""
from typing import Any

import jax
import ml_collections
import numpy as np

from jaxprune import structure
from jaxprune import optax as optax_lib
from jaxprune.errors import JaxpruneError, check_choice
from jaxprune.methods import base, units as units_lib

MASK_MODES = ('auto', 'hard', 'masked_forward')
RAMPS = ('state', 'epoch')
# CNN Refill channel rankings (`refill.cnn_masks`).
CRITERIA = ('remain', 'magnitude', 'l1', 'l2', 'saliency')
SCHEDULES = ('x', 'x^2', 'x^3', 'exp', 'exp_custom_exponents')


def defaults() -> ml_collections.ConfigDict:
  """The `states` sub-dict shared by imp, refill and rsst."""
  s = ml_collections.ConfigDict()
  s.num_states = 16  # States 0..S-1, num_epochs each; state 0 trains dense.
  s.rate = 0.7  # Fraction pruned (see amount).
  s.amount = 'absolute'  # absolute: keep int(N (1 - rate)) from state 1 on | gradual: remove rate of what remains, per state.
  s.rewind_epoch = 0  # Rewind to the weights after this many epochs of state 0; 0: the initial weights.
  s.mask_mode = 'auto'  # auto (imp: hard, refill: masked_forward) | hard | masked_forward.
  s.criterion = 'remain'  # CNN Refill ranking: remain | magnitude | l1 | l2 | saliency.
  s.fillback_rate = 0.0  # CNN Refill+: also keep this fraction of the channels beyond the budget.
  s.reg_schedule = 'exp_custom_exponents'  # RSST lambda: x | x^2 | x^3 | exp | exp_custom_exponents.
  s.reg_granularity_prune = 1.0  # RSST g.
  s.exponents = 4  # RSST n (exp_custom_exponents).
  s.ramp = 'state'  # RSST ramp spans the state | each epoch.
  s.input_layer = False  # Also prune units fed by the model input.
  return s


def check(cfg: ml_collections.ConfigDict) -> None:
  """Raises JaxpruneError on a bad `states` field."""
  check_choice('states.amount', cfg.amount, base.AMOUNTS)
  check_choice('states.mask_mode', cfg.mask_mode, MASK_MODES)
  check_choice('states.criterion', cfg.criterion, CRITERIA)
  check_choice('states.reg_schedule', cfg.reg_schedule, SCHEDULES)
  check_choice('states.ramp', cfg.ramp, RAMPS)
  if not 0 < cfg.rate < 1:
    raise JaxpruneError(f'states.rate={cfg.rate}; allowed: 0 < rate < 1.')
  if cfg.num_states < 1:
    raise JaxpruneError(f'states.num_states={cfg.num_states}; allowed: an '
                        'int >= 1.')
  if not 0 <= cfg.fillback_rate <= 1:
    raise JaxpruneError(f'states.fillback_rate={cfg.fillback_rate}; allowed: '
                        '0..1.')


class StateLoop(base.Method):
  """Base of the state-loop methods: S phases that rewind.

  Subclasses set `name`, `structured` and `default_mode`, and implement
  `next_plan`; RSST also overrides `wrap`.
  """

  config_name = 'states'
  structured = True  # Channel masks (else unstructured weight masks).
  default_mode = 'masked_forward'  # The mask mode of mask_mode='auto'.

  @classmethod
  def defaults(cls) -> ml_collections.ConfigDict:
    return defaults()

  def __init__(self, config, ctx: base.Context):
    super().__init__(config, ctx)
    cfg, graph, params = self.cfg, ctx.graph, ctx.params
    check(cfg)
    if not 0 <= cfg.rewind_epoch <= ctx.num_epochs:
      raise JaxpruneError(f'states.rewind_epoch={cfg.rewind_epoch}; '
                          f'allowed: 0..{ctx.num_epochs} (num_epochs).')
    self.graph = graph
    self.units = units_lib.units(graph, params, input_layer=cfg.input_layer)
    self.paths = units_lib.prunable_kernels(graph, params)
    self.num_weights = sum(
        int(np.prod(np.shape(structure.lookup(params, p))))
        for p in self.paths)
    self.mode = (self.default_mode if cfg.mask_mode == 'auto' else
                 cfg.mask_mode)

  def check_pools(self, pools: dict[str, int]) -> None:
    """Raises when some state would keep none of a pool (kind -> size)."""
    for kind, n in pools.items():
      for k in range(1, self.cfg.num_states):
        if n and self.count(n, k) < 1:
          raise JaxpruneError(
              f'states.rate={self.cfg.rate} ({self.cfg.amount}) keeps 0 of '
              f'{n:,} {kind} in state {k}; allowed: a rate (or fewer '
              'states) that keeps at least one of every pool.')

  # -- the protocol -------------------------------------------------------------
  @property
  def num_phases(self) -> int:
    return self.cfg.num_states

  @property
  def rewind_epoch(self) -> int:
    return self.cfg.rewind_epoch

  def dense(self) -> base.Plan:
    return base.Plan({u.group: np.ones(u.size, bool) for u in self.units}
                     if self.structured else {})

  def plan(self, k, trained, prev):
    if k == 0:
      return self.dense()
    return self.next_plan(k, trained, prev)

  def next_plan(self, k: int, trained: Any, prev: base.Plan) -> base.Plan:
    """The masks of state k from the variables trained in state k - 1."""
    raise NotImplementedError

  def count(self, n: int, k: int) -> int:
    """Units (or weights) of a pool of n that state k keeps."""
    return base.kept(n, self.cfg.rate, k, self.cfg.amount)

  def phase(self, k, plan):
    if k == 0:
      return base.Phase(start='init', plan=plan, masked_eval=True,
                        track_best=True)
    return base.Phase(
        start='rewind', plan=plan, wrap=self.wrap,
        mask_start=self.mode == 'hard',
        forward=(optax_lib.forward_params if self.mode == 'masked_forward'
                 else None),
        masked_eval=True, track_best=True)

  def wrap(self, tx, masks):
    """The state's optimizer: `tx` under the plan's parameter masks."""
    return optax_lib.masked(tx, masks, mode=self.mode)

  def channel_masks(self, k, plan, opt_state):
    if not self.structured or k == 0:
      return None
    return plan.channels

  # -- reporting ----------------------------------------------------------------
  def kept_counts(self, plan: base.Plan) -> dict[str, list[int]]:
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

  def _pruned_weights(self, plan: base.Plan) -> int:
    if plan.weights is None:
      return 0
    return sum(int(np.sum(~np.asarray(structure.lookup(plan.weights, p))))
               for p in self.paths)

  def effective(self, plan: base.Plan) -> tuple[int, int]:
    """(params, MACs) of the masked network, from the graph.

    Unstructured zeros (IMP) reduce the parameter count but not the MACs
    of dense kernels.
    """
    n = self.graph.num_params(plan.channels) - self._pruned_weights(plan)
    return n, int(self.graph.macs(plan.channels))

  def describe(self, plan):
    n_params, n_macs = self.effective(plan)
    return {'kept': self.kept_counts(plan), 'params': n_params,
            'macs': n_macs}

  def host(self, trained) -> Any:
    """The trained 'params' on the host."""
    return jax.device_get(trained['params'])
