"""Tasks: what a model is trained and evaluated on (`config.task`).

`jaxprune.tasks.base` holds the protocol and the registry; each other
module is one task (`classification`, `detection`).
"""
