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
* :mod:`.sosnet` -- SOSNet's loss: first-order squared-hinge triplet + second-order similarity regulariser
  (``"sosr"``), the regulariser alone (:class:`SOSRegularizer`) or added to any loss (:class:`SOSRegularized`).
* :mod:`.hynet` -- HyNet's hybrid-similarity triplet loss + L2-norm regulariser (``"hynet"``).
* :mod:`.xbm` -- cross-batch memory (XBM): :class:`XBMLoss` mines contrastive / batch-hard / HardNet / InfoNCE
  over the batch + a FIFO memory of past embeddings; :class:`XBMCallback` keeps validation out of it and saves it.
* :mod:`.registry` -- ``get(name, **kw)`` / ``names()`` / ``entry(name)``: every loss by its command-line name,
  with the batch it needs and what the trainer must do for it; ``register(name, function_loss(fn, uses=...))``
  adds one, ``get("MODULE:FUNCTION")`` takes one of the user's.
"""

from .base import FunctionLoss, LabelledLoss, MetricLoss  # noqa: F401
from .embedding import *  # noqa: F401,F403
from .embedding import __all__ as _embedding_all
from .hynet import HyNetLoss, hynet_loss  # noqa: F401
from .registry import LossEntry, entry, function_loss, get, names, register, unregister  # noqa: F401
from .sosnet import SOSNetLoss, SOSRegularized, SOSRegularizer, sos_regularizer, sosnet_loss  # noqa: F401
from .triplet import *  # noqa: F401,F403
from .triplet import __all__ as _triplet_all
from .xbm import CrossBatchMemory, XBMCallback, XBMLoss, restore_memory, xbm_loss  # noqa: F401

__all__ = (
    ["LabelledLoss", "MetricLoss", "FunctionLoss"]
    + list(_triplet_all)
    + list(_embedding_all)
    + [
        "SOSNetLoss",
        "SOSRegularized",
        "SOSRegularizer",
        "sos_regularizer",
        "sosnet_loss",
        "HyNetLoss",
        "hynet_loss",
        "CrossBatchMemory",
        "XBMCallback",
        "XBMLoss",
        "restore_memory",
        "xbm_loss",
    ]
    + ["get", "names", "entry", "register", "unregister", "function_loss", "LossEntry"]
)
