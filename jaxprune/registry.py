"""A name -> class registry filled by decorators, with package discovery.

Used by `jaxprune.methods` and `jaxprune.tasks`: each module of the package
registers its classes when imported, and the registry imports every module
of the package on first lookup, so adding a file is enough.
"""
import importlib
import pkgutil
from typing import Generic, TypeVar

import ml_collections

from jaxprune.errors import JaxpruneError

T = TypeVar('T')


class Registry(Generic[T]):
  """Classes by name.

  Args:
    what: the config field that names an entry (for error messages).
    package: the package whose modules register entries (imported on first
      lookup).
  """

  def __init__(self, what: str, package: str):
    self.what, self.package = what, package
    self._entries: dict[str, type[T]] = {}
    self._discovered = False

  def register(self, cls: type[T]) -> type[T]:
    """Class decorator: registers `cls` under `cls.name`."""
    name = getattr(cls, 'name', '')
    if not name:
      raise ValueError(f'{cls.__name__} has no name.')
    old = self._entries.get(name)
    if old is not None and old.__qualname__ != cls.__qualname__:
      raise ValueError(f'{self.what} name {name!r} is taken by '
                       f'{old.__module__}.{old.__qualname__}.')
    self._entries[name] = cls
    return cls

  def _discover(self) -> None:
    if self._discovered:
      return
    self._discovered = True
    package = importlib.import_module(self.package)
    for info in pkgutil.iter_modules(package.__path__):
      importlib.import_module(f'{self.package}.{info.name}')

  def names(self) -> tuple[str, ...]:
    """Registered names, sorted."""
    self._discover()
    return tuple(sorted(self._entries))

  def get(self, name: str) -> type[T]:
    """The class registered as `name`; raises naming the allowed ones."""
    self._discover()
    if name not in self._entries:
      raise JaxpruneError(f'{self.what}={name!r}; allowed: '
                          f'{", ".join(self.names())}.')
    return self._entries[name]

  def items(self) -> list[tuple[str, type[T]]]:
    self._discover()
    return sorted(self._entries.items())

  def config_dicts(self) -> dict[str, ml_collections.ConfigDict]:
    """Every entry's config sub-dict with defaults, by sub-dict name.

    An entry with settings names its sub-dict (`config_name`) and returns
    its defaults from the classmethod `defaults()`. Entries of one family
    may share a sub-dict (IMP, Refill and RSST share `states`); they must
    then declare the same defaults.
    """
    out: dict[str, ml_collections.ConfigDict] = {}
    owner: dict[str, str] = {}
    for name, cls in self.items():
      sub = getattr(cls, 'config_name', None)
      if not sub:
        continue
      d = cls.defaults()
      if sub in out:
        if out[sub].to_dict() != d.to_dict():
          raise ValueError(f'{self.what}s {owner[sub]!r} and {name!r} '
                           f'declare different {sub!r} defaults.')
        continue
      out[sub], owner[sub] = d, name
    return out
