"""Losses, all written with ``keras.ops`` (backend-portable).

* :mod:`.triplet` -- online triplet mining (batch-all, batch-hard, semi-hard; hinge or soft margin;
  L2 / squared-L2 / angular distances), drop-in replacements for tensorflow-addons' triplet losses,
  the HardNet loss and the classic random-triplet loss.
* :mod:`.embedding` -- cosine-embedding (PyTorch semantics), symmetric in-batch contrastive, the Image
  Retrieval Transformer contrastive loss and the KoLeo entropy regulariser.
* :mod:`.curriculum` -- the curriculum triplet loss (batch-all -> batch-hard); re-exported by ``training.mining``.
* :mod:`.registry` -- ``get(name, **kw)`` / ``names()``: every loss by its command-line name.
"""

from .triplet import *  # noqa: F401,F403
from .triplet import __all__ as _triplet_all
from .embedding import *  # noqa: F401,F403
from .embedding import __all__ as _embedding_all

from .registry import get, names  # noqa: F401

__all__ = list(_triplet_all) + list(_embedding_all) + ["get", "names"]
