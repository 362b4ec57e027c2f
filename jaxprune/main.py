"""Runs one experiment: `python -m jaxprune.main --config=... --workdir=...`.

Config fields can be overridden on the command line, e.g.
`--config.num_epochs=5`; a config file may take an argument,
`--config=configs/reprune/resnet50_imagenet.py:2.3g`. Bad input (an
unknown field, model or dataset, a batch size the devices cannot split, a
workdir of another run) stops with one line naming the problem.
"""
import importlib.machinery
import logging as logging_std
import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from jaxprune import engine
from jaxprune.errors import Interrupted, JaxpruneError

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
  except Interrupted as e:
    print(f'jaxprune: {e}', file=sys.stderr, flush=True)
    os._exit(128 + e.signum)  # pylint: disable=protected-access


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


def _check_config(argv) -> None:
  """Loads the --config file once to turn a missing file, a syntax error, a
  bad config argument or an unknown `--config.x` override into one line."""
  arg = next((a for a in argv[1:] if a.startswith('--config=')), None)
  if arg is None:
    return
  spec = arg[len('--config='):]
  path, _, cfg_arg = spec.partition(':')
  if not os.path.isfile(path):
    sys.exit(f'jaxprune: error: --config={spec}: no such file {path!r}.')
  try:
    module = importlib.machinery.SourceFileLoader(
        '_jaxprune_config_check', path).load_module()
    config = module.get_config(*([cfg_arg] if cfg_arg else []))
  except SyntaxError as e:
    sys.exit(f'jaxprune: error: --config={spec}: syntax error at line '
             f'{e.lineno}: {e.msg}.')
  except Exception as e:  # pylint: disable=broad-except
    sys.exit(f'jaxprune: error: --config={spec}: {type(e).__name__}: {e}')
  for a in argv[1:]:
    if not a.startswith('--config.'):
      continue
    node, walked = config, []
    for key in a[len('--config.'):].partition('=')[0].split('.'):
      if not hasattr(node, 'keys') or key not in node:
        allowed = (', '.join(sorted(node.keys())) if hasattr(node, 'keys')
                   else 'none (a value, not a group)')
        where = '.'.join(walked) or 'config'
        sys.exit(f'jaxprune: error: unknown config field in {a!r}: '
                 f'{where} has no field {key!r}; allowed: {allowed}.')
      node = node[key]
      walked.append(key)


def parse_flags(argv):
  """absl flag parsing, with one-line errors for bad config input."""
  _config_root(argv)
  _check_config(argv)
  try:
    return FLAGS(argv)
  except flags.Error as e:
    sys.exit(f'jaxprune: error: {str(e).splitlines()[0]}\nPass --help for '
             'usage.')
  except (AttributeError, KeyError, TypeError, ValueError) as e:
    bad = [a for a in argv[1:] if a.startswith('--config.')]
    sys.exit(f'jaxprune: error: bad config override in {bad}: {e}. Every '
             '--config.<field> must name a field of the config file (see '
             'jaxprune/config.py) with a value of its type.')


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
