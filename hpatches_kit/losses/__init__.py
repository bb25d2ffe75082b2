"""Losses, all written with ``keras.ops`` (backend-portable).

* :mod:`.base` -- :class:`LabelledLoss` (exact integer labels, replica scaling), :class:`MetricLoss` (a loss
  function plus its keyword arguments, serialised once: the base of every loss class) and
  :class:`FunctionLoss` (a loss from a function alone).
* :mod:`.triplet` -- online triplet mining (batch-all, batch-hard, semi-hard; hinge or soft margin;
  L2 / squared-L2 / angular distances), drop-in replacements for tensorflow-addons' triplet losses,
  the HardNet loss and the classic random-triplet loss.
* :mod:`.embedding` -- cosine-embedding (PyTorch semantics), symmetric in-batch contrastive, the Image
  Retrieval Transformer contrastive loss and the KoLeo entropy regulariser.
* :mod:`.curriculum` -- the curriculum triplet loss (batch-all -> batch-hard); re-exported by ``training.mining``.
* :mod:`.registry` -- ``get(name, **kw)`` / ``names()`` / ``entry(name)``: every loss by its command-line name,
  with the batch it needs and what the trainer must do for it; ``register(name, function_loss(fn, uses=...))``
  adds one, ``get("MODULE:FUNCTION")`` takes one of the user's.
"""

from .base import FunctionLoss, LabelledLoss, MetricLoss  # noqa: F401
from .triplet import *  # noqa: F401,F403
from .triplet import __all__ as _triplet_all
from .embedding import *  # noqa: F401,F403
from .embedding import __all__ as _embedding_all

from .registry import LossEntry, entry, function_loss, get, names, register, unregister  # noqa: F401

__all__ = (["LabelledLoss", "MetricLoss", "FunctionLoss"] + list(_triplet_all) + list(_embedding_all)
           + ["get", "names", "entry", "register", "unregister", "function_loss", "LossEntry"])
