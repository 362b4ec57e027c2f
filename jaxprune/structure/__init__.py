"""The channel graph: which parameter axes must be pruned together.

`trace(apply_fn, variables, *args, **kwargs)` traces `apply_fn` to a jaxpr and
propagates channel axes through every equation with a union-find over
(variable, axis) nodes. Classes of coupled axes that hold at least one
parameter or batch-statistic axis become `Group`s.

Axes are not always coupled one-to-one:

* a `reshape` that splits or merges axes makes one axis the row-major
  *product* of others (heads x head_dim, H x W x C flattening);
* `concatenate`, `split`, `pad` and contiguous `slice`s make one axis the
  *concatenation* of others (channel concat, option-A zero-pad shortcuts);
* a grouped convolution's feature axis is the product (groups x per-group).

Such a composite axis is expanded into the atomic classes it is built from;
each atomic class is a group, and a parameter axis on a composite class is a
member of each of its atomic groups through an index map (`Group.index`):
channel c of the group owns indices `index[member][c]` of that axis.

Safety: an axis class is marked unprunable when it touches the model's
inputs or outputs, passes through an unknown primitive (one warning naming
it), through a reshape that is not a clean split or merge, through a reduction
that would see the pruned channels (max, or a sum of values that are not zero
at pruned positions), or a contraction where neither operand is zero there.
Everything that remains can be masked (`param_masks`) or physically removed
(`jaxprune.slim`) with identical outputs. Every `reason` names the primitive
and the layer (flax name stack or parameter path) it comes from.

The package: `jaxpr` (helpers over jaxpr objects), `rules` (one mixin per
primitive family), `tracer` (the union-find walk), `graph` (`ChannelGraph`)
and `tracing` (`trace`); `members` holds `Member` and `Group`.
"""
from jaxprune.structure.graph import ChannelGraph
from jaxprune.structure.graph import key_name
from jaxprune.structure.graph import LINEN_COLLECTIONS
from jaxprune.structure.graph import lookup
from jaxprune.structure.members import Group
from jaxprune.structure.members import Member
from jaxprune.structure.rules import CUMULATIVE
from jaxprune.structure.rules import ELEMENTWISE
from jaxprune.structure.rules import is_known
from jaxprune.structure.rules import REDUCTIONS
from jaxprune.structure.rules import SOURCES
from jaxprune.structure.tracing import trace

__all__ = [
    'ChannelGraph', 'CUMULATIVE', 'ELEMENTWISE', 'Group', 'is_known',
    'key_name', 'LINEN_COLLECTIONS', 'lookup', 'Member', 'REDUCTIONS',
    'SOURCES', 'trace',
]
