"""End-of-run outputs: slimming and its evaluation, export, JSON files."""
import json
import os
from typing import Any

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from jaxprune import flops, slim
from jaxprune.engine import steps
from jaxprune.engine.setup import Setup


def write_json(workdir: str, name: str, obj: Any) -> None:
  """Writes `<workdir>/<name>` from process 0, atomically (no torn file)."""
  if jax.process_index():
    return
  path = os.path.join(workdir, name)
  with open(path + '.tmp', 'w') as f:
    json.dump(obj, f, indent=1)
  os.replace(path + '.tmp', path)


def read_json(path: str) -> Any:
  with open(path) as f:
    return json.load(f)


def slim_and_evaluate(su: Setup, graph, channel_masks, variables,
                      dense_counts, workdir: str,
                      export: bool = True) -> dict[str, Any]:
  """Slims the pruned network, evaluates it and returns the results fields.

  Returns:
    dense_macs, pruned_macs, flops_reduction, dense_params, pruned_params,
    params_reduction, widths (kept/total per pruned group) and the slimmed
    network's metrics as slim_<name> (slim_top1, slim_top5).
  """
  variables = jax.device_get(variables)
  x = jax.ShapeDtypeStruct(su.shape, jnp.float32)
  slim_vars, slim_apply = slim.slim(su.model.apply, variables, graph,
                                    channel_masks, x, train=False)
  counts = flops.count(slim_apply, slim_vars, x)
  ev = steps.evaluate(su, lambda v, x, train=False: slim_apply(v, x),
                      slim_vars, su.test_ds)
  logging.info('slimmed network: %s MACs (%.2f%% removed), %s params '
               '(%.2f%% removed); test %s', f'{counts.macs:,}',
               100 * (1 - counts.macs / dense_counts.macs),
               f'{counts.params:,}',
               100 * (1 - counts.params / dense_counts.params),
               ' '.join(f'{k} {v:.2f}' for k, v in ev.items()))
  if export and jax.process_index() == 0:
    # Batch 1 (latency) and the eval batch (throughput).
    sizes = tuple(sorted({1, int(su.config.eval_batch_size)}))
    path = slim.export(slim_apply, slim_vars, jnp.zeros(su.shape, jnp.float32),
                       path=os.path.join(workdir, 'slim'), batch_sizes=sizes)
    logging.info('slimmed network exported to %s', path)
  return {
      'dense_macs': dense_counts.macs, 'pruned_macs': counts.macs,
      'flops_reduction': 1 - counts.macs / dense_counts.macs,
      'dense_params': dense_counts.params, 'pruned_params': counts.params,
      'params_reduction': 1 - counts.params / dense_counts.params,
      'widths': {g: [int(np.sum(m)), int(np.size(m))]
                 for g, m in channel_masks.items()},
      **{f'slim_{k}': v for k, v in ev.items()},
  }
