"""The loss registry: ``get(name, **kw)`` builds a loss by its command-line name, ``names()`` lists them.

Adding a loss is one function plus one entry in :data:`_REGISTRY` below: write
``my_loss(y_true, y_pred, margin=1.0, ...) -> scalar`` in ``keras.ops`` (in its own module, registered with
``@keras.saving.register_keras_serializable(package="hpatches_kit")``) and add
``"my-loss": function_loss(my_loss, uses=("margin",))``; :func:`get` then returns a
:class:`~.base.FunctionLoss` (exact integer labels, replica scaling, ``.keras`` round trip) without a class
(see ``docs/losses.md``). At run time :func:`register` adds an entry the same way. Every factory takes the
same keyword arguments (``margin``, ``distance_metric``, ``views_per_track``, ``temperature``) and ignores
those that do not apply to its loss, so a caller can pass one set of settings for any name.

Examples:
    >>> from hpatches_kit import losses
    >>> losses.get("batch-hard", margin=0.5).margin
    0.5
    >>> "hardnet" in losses.names()
    True
"""

from __future__ import annotations

from .base import FunctionLoss


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


def function_loss(fn, *, uses: tuple = (), **fixed):
    """The registry factory of a loss that is one function: ``factory(**kw)`` builds
    ``FunctionLoss(fn, **{k: kw[k] for k in uses if k in kw}, **fixed)``.

    Args:
        fn: ``(y_true, y_pred, **kwargs) -> scalar`` in ``keras.ops``, registered with
            ``@keras.saving.register_keras_serializable`` (so a saved model finds it again).
        uses: the settings of :func:`get` the function takes (``margin``, ``distance_metric``,
            ``views_per_track``, ``temperature``); the others are ignored.
        **fixed: keyword arguments always passed (``name=...`` names the loss).

    Returns:
        A factory for :data:`_REGISTRY` or :func:`register`.
    """
    def build(**kw):
        return FunctionLoss(fn, **{k: kw[k] for k in uses if k in kw}, **fixed)
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


def _sosnet(margin: float = 1.0, views_per_track: int = 2, **_ignored):
    from .sosnet import SOSNetLoss

    return SOSNetLoss(margin=margin, views_per_track=views_per_track)


def _hynet(views_per_track: int = 2, **_ignored):  # the paper's margin 1.2, not the CLI's --margin default 1
    from .hynet import HyNetLoss

    return HyNetLoss(views_per_track=views_per_track)


# SOSNet (first order + second-order similarity regulariser) and HyNet (hybrid similarity + L2-norm term)
_REGISTRY["sosr"] = _sosnet
_REGISTRY["hynet"] = _hynet


# The ViT image-pair losses (embedding.py); the rest are descriptor losses on S x K track-major batches.
_PAIR = {"contrastive", "cosine", "infonce", "irt"}
_BUILTIN = tuple(_REGISTRY)


def register(name: str, factory, kind: str = "descriptor", replace: bool = False):
    """Add a loss at run time (after the built-ins): ``get(name, **kw)`` then calls ``factory(**kw)``.

    Args:
        name: the new name.
        factory: ``factory(**kw) -> keras.losses.Loss`` accepting (and ignoring what it does not use)
            ``margin``, ``distance_metric``, ``views_per_track``, ``temperature``; e.g. :func:`function_loss`.
        kind: ``"descriptor"`` (track-labelled batches) or ``"pair"`` (image-pair batches).
        replace: overwrite an existing run-time entry.

    Returns:
        ``factory``.

    Raises:
        ValueError: ``name`` is taken (a built-in can never be replaced) or ``kind`` is unknown.
    """
    if kind not in ("descriptor", "pair"):
        raise ValueError(f"unknown loss kind {kind!r}; expected 'descriptor' or 'pair'")
    if name in _BUILTIN or (name in _REGISTRY and not replace):
        raise ValueError(f"loss {name!r} is already registered")
    _REGISTRY[name] = factory
    _PAIR.discard(name)
    if kind == "pair":
        _PAIR.add(name)
    return factory


def unregister(name: str) -> None:
    """Remove a loss added with :func:`register` (built-ins stay)."""
    if name in _BUILTIN:
        raise ValueError(f"{name!r} is a built-in loss and cannot be removed")
    if name not in _REGISTRY:
        raise ValueError(f"unknown loss {name!r}; expected one of {', '.join(_REGISTRY)}")
    del _REGISTRY[name]
    _PAIR.discard(name)


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


__all__ = ["get", "names", "register", "unregister", "function_loss"]
