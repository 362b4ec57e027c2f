"""Runs one experiment: `python -m jaxprune.main --config=... --workdir=...`.

Config fields can be overridden on the command line, e.g.
`--config.num_epochs=5`; a config file may take an argument,
`--config=configs/reprune/resnet50_imagenet.py:2.3g`. Bad input (an
unknown field, model or dataset, a batch size the devices cannot split, a
workdir of another run) stops with one line naming the problem.
"""
import logging as logging_std
import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from jaxprune import engine
from jaxprune.errors import JaxpruneError

FLAGS = flags.FLAGS
flags.DEFINE_string('workdir', None, 'Directory for checkpoints and logs.')
config_flags.DEFINE_config_file('config', None, 'Experiment config file.',
                                lock_config=True)
flags.mark_flags_as_required(['config', 'workdir'])


class _OwnInfoOnly(logging_std.Filter):
  """Keeps jaxprune's INFO lines and everyone's warnings (orbax is chatty)."""

  def filter(self, record):
    return (record.levelno >= logging_std.WARNING
            or f'{os.sep}jaxprune{os.sep}' in record.pathname)


def main(argv):
  logging.get_absl_handler().addFilter(_OwnInfoOnly())
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  try:
    engine.run(FLAGS.config, FLAGS.workdir)
  except JaxpruneError as e:
    sys.exit(f'jaxprune: error: {e}')


def _config_root(argv) -> None:
  """Puts the directory above a config's `configs/` on sys.path, so that
  configs can `from configs import common` wherever the run starts."""
  for a in argv[1:]:
    if a.startswith('--config='):
      path = os.path.abspath(a[len('--config='):].split(':', 1)[0])
      d = os.path.dirname(path)
      while d != os.path.dirname(d):
        if os.path.basename(d) == 'configs':
          sys.path.insert(0, os.path.dirname(d))
          return
        d = os.path.dirname(d)


def parse_flags(argv):
  """absl flag parsing, with a one-line error for a bad `--config.x` override."""
  _config_root(argv)
  try:
    return FLAGS(argv)
  except flags.Error as e:
    sys.exit(f'jaxprune: error: {e}\nPass --help for usage.')
  except (AttributeError, KeyError, TypeError, ValueError) as e:
    bad = [a for a in argv[1:] if a.startswith('--config.')]
    sys.exit(f'jaxprune: error: bad config override in {bad}: {e}. Every '
             '--config.<field> must name a field of the config file (see '
             'jaxprune/config.py) with a value of its type.')


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
