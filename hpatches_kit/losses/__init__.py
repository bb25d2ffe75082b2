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

The registry is importable without Keras (``--help`` and ``names()`` stay fast); the loss classes and functions
load on first use (PEP 562 module ``__getattr__``) and register with Keras' deserialiser as soon as Keras is
imported (``import hpatches_kit`` arranges it, :data:`hpatches_kit.plugins.KERAS_MODULES`).
"""

import importlib

from . import registry  # noqa: F401
from .registry import REGISTRY, LossEntry, entries, entry, function_loss, get, names, register, unregister  # noqa: F401

#: the modules holding the loss classes and functions, in the order a name is looked up
MODULES = (".base", ".triplet", ".embedding", ".sosnet", ".hynet", ".xbm")
_OWN = {
    ".base": ["LabelledLoss", "MetricLoss", "FunctionLoss"],
    ".sosnet": ["SOSNetLoss", "SOSRegularized", "SOSRegularizer", "sos_regularizer", "sosnet_loss"],
    ".hynet": ["HyNetLoss", "hynet_loss"],
    ".xbm": ["CrossBatchMemory", "XBMCallback", "XBMLoss", "restore_memory", "xbm_loss"],
}
_REGISTRY_NAMES = [
    "REGISTRY",
    "get",
    "names",
    "entry",
    "entries",
    "register",
    "unregister",
    "function_loss",
    "LossEntry",
]


def _exports(mod: str) -> list:
    return _OWN.get(mod) or list(importlib.import_module(mod, __name__).__all__)


def __getattr__(name):
    if name == "__all__":
        value = [n for m in MODULES for n in _exports(m)] + _REGISTRY_NAMES
    else:
        for mod in MODULES:
            if name in _exports(mod):
                value = getattr(importlib.import_module(mod, __name__), name)
                break
        else:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__getattr__("__all__")))
