"""Errors that jaxprune reports to users as one clear line."""


class JaxpruneError(ValueError):
  """Bad user input: a config value, a name, a workdir or a dataset.

  `jaxprune.main` prints the message of these errors without a traceback.
  """


class DatasetNotPreparedError(JaxpruneError):
  """A TFDS dataset has no prepared ArrayRecord files in the data dir."""
