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


class Diverged(JaxpruneError):
  """Training produced a non-finite loss; the run stops, writing nothing."""


class Interrupted(Exception):
  """SIGINT or SIGTERM arrived; the run stopped cleanly and can resume.

  Attributes:
    step: the last completed step (run-wide).
    signum: the signal's number (the exit code is 128 + signum).
  """

  def __init__(self, step: int, signum: int):
    super().__init__(f'interrupted at step {step}; rerun the same command '
                     'to resume')
    self.step, self.signum = step, signum
