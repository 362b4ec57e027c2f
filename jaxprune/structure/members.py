"""The graph's data types: a parameter axis (`Member`) and a `Group`."""
import dataclasses
from typing import NamedTuple

import numpy as np

class Member(NamedTuple):
  """One parameter axis that carries a group's channels."""
  collection: str  # e.g. 'params' or 'batch_stats'.
  path: tuple[str, ...]  # Keys below the collection, e.g. ('conv1', 'kernel').
  axis: int


@dataclasses.dataclass
class Group:
  """A set of parameter axes whose channels are pruned together.

  Attributes:
    name: stable readable name, from the first member's parameter path.
    size: number of channels.
    members: every (collection, path, axis) that carries the channels.
    residual: the channels pass through an elementwise add of two branches.
    prunable: False where pruning cannot be done safely (see `reason`).
    reason: why the group is not prunable ('' when it is).
    touches_input: the channels are an axis of the model input (e.g. RGB).
    touches_output: the channels are an axis of the model output (logits).
    producers: kernel axes that create the channels (conv/dense outputs).
    consumers: kernel axes that read the channels (conv/dense inputs).
    index: for members whose axis is composite, an int array [size, k]:
      channel c owns indices index[member][c] along the member's axis.
      Members not listed map channel c to index c.
  """
  name: str
  size: int
  members: list[Member]
  residual: bool = False
  prunable: bool = True
  reason: str = ''
  touches_input: bool = False
  touches_output: bool = False
  producers: list[Member] = dataclasses.field(default_factory=list)
  consumers: list[Member] = dataclasses.field(default_factory=list)
  index: dict[Member, np.ndarray] = dataclasses.field(default_factory=dict)

  def __repr__(self):
    flags = ('residual ' if self.residual else '') + (
        '' if self.prunable else f'unprunable: {self.reason}')
    return (f'Group({self.name!r}, size={self.size}, '
            f'{len(self.members)} members{", " + flags if flags else ""})')

