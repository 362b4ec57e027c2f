"""Pruning methods, each over the channel groups of a `ChannelGraph`.

`create(config, graph, params, num_epochs)` returns the training-time
pruner that `config.method` names (None for a dense run). A pruner offers
`wrap(tx)`, `is_event(epoch)`, `event(params, opt_state, epoch, key)`,
`channel_masks(opt_state)` and `coverage(params, opt_state)`.

The state-loop methods (imp, refill, rsst) are not per-epoch pruners: they
run `jaxprune.methods.states.run` (rewinding between states).
"""
from jaxprune.errors import JaxpruneError
from jaxprune.methods import reprune

# imp, refill and rsst run the state loop (`jaxprune.methods.states.run`).
METHODS = ('none', 'reprune', 'imp', 'refill', 'rsst')


def create(config, graph, params, num_epochs, log=print):
  """The pruner of `config.method`, or None for 'none'."""
  if config.method == 'none':
    return None
  if config.method == 'reprune':
    return reprune.Pruner(config.reprune, graph, params, num_epochs, log)
  if config.method in METHODS:
    raise JaxpruneError(f'method={config.method!r} runs the state loop '
                        '(jaxprune.methods.states.run), not a pruner.')
  raise JaxpruneError(f'method={config.method!r}; allowed: '
                      f'{", ".join(METHODS)}.')
