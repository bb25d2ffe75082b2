"""Old import path (kept): the ViT training pieces moved to where they belong.

``PairStack`` and ``siamese`` (model pieces) are in :mod:`hpatches_kit.models.vit.siamese`; the one-cycle
schedule ``OneCycle`` in :mod:`hpatches_kit.training.one_cycle`; the pair data loader ``PairBatches`` in
:mod:`hpatches_kit.training.pairs`. This module only re-exports them (``tests/test_package_imports.py``
lists it as the one compatibility shim allowed to import ``training`` from ``models``).
"""

from ...training.one_cycle import OneCycle
from ...training.pairs import PairBatches
from .siamese import PairStack, siamese

__all__ = ["PairStack", "siamese", "OneCycle", "PairBatches"]
