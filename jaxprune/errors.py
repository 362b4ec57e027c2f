"""Errors that jaxprune reports to users as one clear line."""


class JaxpruneError(ValueError):
  """Bad user input: a config value, a name, a workdir or a dataset.

  `jaxprune.main` prints the message of these errors without a traceback.
  """


def check_choice(field: str, value, allowed) -> None:
  """Raises JaxpruneError naming `field`, its bad value and the allowed ones."""
  if value not in allowed:
    raise JaxpruneError(f'{field}={value!r}; allowed: '
                        f'{", ".join(map(str, allowed))}.')


class DatasetNotPreparedError(JaxpruneError):
  """A TFDS dataset has no prepared ArrayRecord files in the data dir."""
