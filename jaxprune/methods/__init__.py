"""Pruning methods, one file each, registered under their config name.

`jaxprune.methods.base` holds the protocol (`Method`, `Phase`, `Plan`) and
the registry (`register`, `get`, `names`); `units`, `criteria` and
`allocation` are the pieces every method shares. The engine runs any
registered method: `--config.method=<name>`.
"""
