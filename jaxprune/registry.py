"""A name -> class registry filled by decorators, with package discovery.

Used by `jaxprune.methods` and `jaxprune.tasks`: each module of the package
registers its classes when imported, and the registry imports every module
of the package on first lookup, so adding a file is enough.
"""
import importlib
import pkgutil
from typing import Generic, TypeVar

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
