"""The task protocol: inputs, loss, metrics and their reduction, data.

The engine's loop is task-free: it asks the task for batches, for the
model input of a batch, for the loss and the summed training metrics of a
step, and for evaluation metrics that it combines batch by batch and then
finalises. A classification task sums correct counts on the device; a
detection task can return per-batch detections from `eval_metrics`,
collect them in `combine` and compute mAP in `finalize`, with no engine
change.
"""
from typing import Any, ClassVar, Iterator

import jax
import jax.numpy as jnp
import ml_collections

from jaxprune import registry


class Task:
  """Base of every task.

  Args:
    config: the experiment config.
  """

  name: ClassVar[str] = ''
  # The metric (a key of `finalize`) whose best validation value selects
  # the reported epoch of a phase; higher is better.
  selection: ClassVar[str] = ''
  # Its sub-dict of the config (e.g. `detection`), None when it has no
  # settings; `defaults()` gives the sub-dict's fields.
  config_name: ClassVar[str | None] = None

  @classmethod
  def defaults(cls) -> ml_collections.ConfigDict | None:
    """The task's settings with their defaults (`config.<config_name>`)."""
    return None

  def __init__(self, config: ml_collections.ConfigDict):
    self.config = config

  # -- data -----------------------------------------------------------------
  def splits(self) -> tuple[Any, Any, Any]:
    """(train, validation or None, test) random-access sources."""
    raise NotImplementedError

  def input_shape(self) -> tuple[int, ...]:
    """The shape of one model input, batch 1."""
    raise NotImplementedError

  def num_outputs(self) -> int:
    """The model's output size (classes)."""
    raise NotImplementedError

  def train_batches(self, source, batch_size: int, seed: int,
                    epoch: int) -> Iterator[dict[str, Any]]:
    """This process's share of every global training batch of an epoch."""
    raise NotImplementedError

  def eval_batches(self, source,
                   batch_size: int) -> Iterator[dict[str, Any]]:
    """Padded evaluation batches with a bool `mask` (False on padding)."""
    raise NotImplementedError

  # -- on device ------------------------------------------------------------
  def inputs(self, batch: dict[str, Any], dtype) -> jax.Array:
    """The model input of a batch (e.g. normalised images)."""
    raise NotImplementedError

  def loss(self, outputs, batch, train: bool = True) -> jax.Array:
    """Scalar loss; `train=False` drops training-only terms (smoothing)."""
    raise NotImplementedError

  def mix(self, x: jax.Array, batch: dict[str, Any], rng: jax.Array
          ) -> tuple[jax.Array, dict[str, Any]]:
    """Training-time input mixing (e.g. mixup) of one batch, before the
    forward pass; the loss sees the returned batch. Default: none."""
    del rng
    return x, batch

  def train_metrics(self, outputs, batch) -> dict[str, jax.Array]:
    """Per-step sums logged with the loss (e.g. correct predictions)."""
    del outputs, batch
    return {}

  def train_log(self, sums: dict[str, Any], examples: int
                ) -> dict[str, float]:
    """Readable training metrics from `train_metrics` sums over `examples`."""
    del sums, examples
    return {}

  def eval_metrics(self, outputs, batch) -> Any:
    """Per-batch evaluation results (masked by `batch['mask']`)."""
    raise NotImplementedError

  def combine(self, a: Any, b: Any) -> Any:
    """Combines two `eval_metrics` results (default: sum)."""
    return jax.tree.map(jnp.add, a, b)

  def finalize(self, total: Any) -> dict[str, float]:
    """The metrics of a whole evaluation from the combined results."""
    raise NotImplementedError


REGISTRY = registry.Registry[Task]('task', 'jaxprune.tasks')
register = REGISTRY.register
get = REGISTRY.get
names = REGISTRY.names


def config_dicts() -> dict[str, ml_collections.ConfigDict]:
  """Every task's config sub-dict with defaults, by sub-dict name."""
  return REGISTRY.config_dicts()
