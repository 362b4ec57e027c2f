"""The engine: one loop that runs any method on any task.

`run(config, workdir)` (`jaxprune.engine.loop`); `setup` (devices, data,
model), `steps` (train state, train and eval steps, one epoch) and
`results` (slimming at the end, JSON files) are its parts.
"""
from jaxprune.engine.loop import run
