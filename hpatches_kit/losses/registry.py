"""The loss registry: ``get(name, **kw)`` builds a loss by its command-line name, ``names()`` lists them.

Adding a loss is one module (the loss class) plus one entry in :data:`_REGISTRY` below. Every factory takes
the same keyword arguments (``margin``, ``distance_metric``, ``views_per_track``, ``temperature``) and ignores
those that do not apply to its loss, so a caller can pass one set of settings for any name.

Examples:
    >>> from hpatches_kit import losses
    >>> losses.get("batch-hard", margin=0.5).margin
    0.5
    >>> "hardnet" in losses.names()
    True
"""

from __future__ import annotations


def _triplet(cls_name: str, *, views: bool = True, **fixed):
    def build(margin: float = 1.0, distance_metric: str = "L2", views_per_track: int = 2, **_ignored):
        from . import triplet

        kw = dict(margin=margin, distance_metric=distance_metric, **fixed)
        if views:
            kw["views_per_track"] = views_per_track
        return getattr(triplet, cls_name)(**kw)
    return build


def _curriculum(margin: float = 1.0, distance_metric: str = "L2", views_per_track: int = 2, **_ignored):
    from .curriculum import CurriculumTripletLoss

    return CurriculumTripletLoss(margin=margin, hard_weight=0.0, distance_metric=distance_metric,
                                 views_per_track=views_per_track)


def _embedding(cls_name: str, *, uses: tuple = ()):
    def build(**kw):
        from . import embedding

        return getattr(embedding, cls_name)(**{k: kw[k] for k in uses if k in kw})
    return build


# name -> factory(**kw). Descriptor (triplet-family) losses first, then the ViT image-pair losses.
_REGISTRY = {
    "batch-hard": _triplet("BatchHardTripletLoss", views=False),
    "batch-all": _triplet("BatchAllTripletLoss"),
    "semi-hard": _triplet("TripletSemiHardLoss"),
    "soft-margin": _triplet("BatchHardTripletLoss", views=False, soft=True, name="soft_margin_triplet_loss"),
    "hardnet": _triplet("HardNetLoss"),
    "curriculum": _curriculum,
    "random-triplet": _triplet("RandomTripletLoss", views=False),
    "contrastive": _embedding("SymmetricContrastiveLoss", uses=("margin",)),
    "cosine": _embedding("CosineEmbeddingLoss", uses=("margin",)),
    "infonce": _embedding("InfoNCELoss", uses=("temperature",)),
    "irt": _embedding("IRTLoss"),
}


# The ViT image-pair losses (embedding.py); the rest are descriptor losses on S x K track-major batches.
_PAIR = ("contrastive", "cosine", "infonce", "irt")


def names(kind: str | None = None) -> tuple[str, ...]:
    """Registered loss names, in registry order.

    Args:
        kind: ``None`` for all, ``"descriptor"`` for the triplet family (track-labelled batches) or ``"pair"``
            for the image-pair losses of ``hpatches-train vit-adapter``.

    Returns:
        A tuple of names accepted by :func:`get`.

    Raises:
        ValueError: an unknown ``kind``.
    """
    if kind is None:
        return tuple(_REGISTRY)
    if kind not in ("descriptor", "pair"):
        raise ValueError(f"unknown loss kind {kind!r}; expected 'descriptor' or 'pair'")
    return tuple(n for n in _REGISTRY if (n in _PAIR) == (kind == "pair"))


def get(name: str, **kw):
    """Build the loss registered as ``name``.

    Args:
        name: one of :func:`names`.
        **kw: ``margin``, ``distance_metric``, ``views_per_track``, ``temperature``; those that do not apply to
            the chosen loss are ignored.

    Returns:
        A ``keras.losses.Loss``.

    Raises:
        ValueError: ``name`` is not registered (the message lists the known names).
    """
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown loss {name!r}; expected one of {', '.join(_REGISTRY)}") from None
    return factory(**kw)


__all__ = ["get", "names"]
