"""The loss registry: ``get(name, **kw)`` builds a loss by its command-line name, ``names()`` lists them,
``entry(name)`` says what the trainer needs to know about it. It is the only list of losses: the CLIs' ``--loss``
choices and the trainer read it.

Each entry (:class:`LossEntry`) carries, besides its factory, the **batch** the loss needs -- ``"tracks"``
(S x K track-major batches: labels = track ids, the default), ``"triplets"`` (a model with three weight-sharing
branches, ``(B, 3, D)`` outputs) or ``"pairs"`` (the ViT image-pair batches) -- its **collapse level** (the loss
of a collapsed descriptor, for :class:`~hpatches_kit.training.callbacks.CollapseDetector`; the margin by
default, ln 2 for the soft margin) and the **callbacks** it needs during training (the curriculum's
:class:`~hpatches_kit.losses.curriculum.MiningCurriculum`). :data:`REGISTRY` (the toolkit's one registry shape,
:class:`hpatches_kit.registry.Registry`) maps a name to an entry; a plain factory becomes an entry with the
defaults (batch ``"tracks"``, collapse at the margin, no callbacks). ``get("MODULE:FUNCTION")`` takes a loss of the user's: a function ``(y_true, y_pred, **kw)``
(wrapped as :class:`~.base.FunctionLoss`), a ``keras.losses.Loss`` subclass or a factory returning one.

Adding a loss is one function plus one built-in entry of :data:`REGISTRY` below: write
``my_loss(y_true, y_pred, margin=1.0, ...) -> scalar`` in ``keras.ops`` (in its own module, registered with
``@keras.saving.register_keras_serializable(package="hpatches_kit")``) and add
``"my-loss": function_loss(my_loss, uses=("margin",))``; :func:`get` then returns a
:class:`~.base.FunctionLoss` (exact integer labels, replica scaling, ``.keras`` round trip) without a class
(see ``docs/losses.md``). At run time :func:`register` ``(name, factory, kind="descriptor"|"pair", *, batch=,
collapse=, callbacks=, composable=, description=)`` adds an entry the same way (a built-in can never be replaced);
:func:`unregister`, :func:`entries`; installed packages join through the entry-point group
``hpatches_kit.losses``. Every factory takes the same keyword arguments (``margin``, ``distance_metric``, ``views_per_track``, ``temperature``) and ignores
those that do not apply to its loss, so a caller can pass one set of settings for any name.

Examples:
    >>> from hpatches_kit import losses
    >>> losses.get("batch-hard", margin=0.5).margin
    0.5
    >>> "hardnet" in losses.names()
    True
    >>> import keras
    >>> @keras.saving.register_keras_serializable(package="doc")
    ... def mean_norm(y_true, y_pred, margin=1.0):
    ...     return keras.ops.mean(keras.ops.abs(keras.ops.sum(y_pred * y_pred, axis=-1) - margin))
    >>> _ = losses.register("mean-norm", losses.function_loss(mean_norm, uses=("margin",)))
    >>> losses.entry("mean-norm").batch, losses.get("mean-norm", margin=0.5).margin
    ('tracks', 0.5)
    >>> losses.unregister("mean-norm")
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass, field

from ..registry import Registry

BATCHES = ("tracks", "triplets", "pairs")
KINDS = ("descriptor", "pair")
SETTINGS = ("margin", "distance_metric", "views_per_track", "temperature")


@dataclass(frozen=True)
class LossEntry:
    """A registered loss and what the trainer needs to know about it.

    Attributes:
        factory: ``factory(**kw) -> keras.losses.Loss``, ignoring the settings (:data:`SETTINGS`) it does not use.
        batch: ``"tracks"`` (S x K track-major, labels = track ids), ``"triplets"`` (``(B, 3, D)`` outputs of a
            three-branch model) or ``"pairs"`` (image-pair batches of ``hpatches-train vit-adapter``).
        collapse: the loss value of a collapsed descriptor (all distances 0) as a function of the margin; ``None``:
            the margin itself.
        callbacks: ``callbacks(loss, options) -> [keras.callbacks.Callback]`` the loss needs while training
            (``loss`` is the compiled loss as built, possibly wrapped; ``options`` the run's options).
        composable: the trainer may wrap the loss (KoLeo regulariser, global-batch mining); ``"tracks"`` only.
        description: one line for the docs and ``--help``.
        extra: what else a trainer reads: ``{"negatives": True}`` -- the image-pair batches carry shuffled
            negative pairs (PyTorch ``CosineEmbeddingLoss`` semantics).
    """

    factory: Callable
    batch: str = "tracks"
    collapse: Callable | None = None
    callbacks: Callable | None = None
    composable: bool = True
    description: str = ""
    extra: dict = field(default_factory=dict)

    def __call__(self, **kw):
        return self.factory(**kw)

    @property
    def kind(self) -> str:
        """``"pair"`` for image-pair losses, else ``"descriptor"`` (the name :func:`names` filters by)."""
        return "pair" if self.batch == "pairs" else "descriptor"

    def collapse_level(self, margin: float) -> float:
        """The loss of a collapsed descriptor for this ``margin``."""
        return float(margin) if self.collapse is None else float(self.collapse(margin))

    def training_callbacks(self, loss, options=None) -> list:
        """The callbacks the loss needs during training (empty for most)."""
        return list(self.callbacks(loss, options)) if self.callbacks is not None else []


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

    return CurriculumTripletLoss(
        margin=margin, hard_weight=0.0, distance_metric=distance_metric, views_per_track=views_per_track
    )


def _embedding(cls_name: str, *, uses: tuple = ()):
    def build(**kw):
        from . import embedding

        return getattr(embedding, cls_name)(**{k: kw[k] for k in uses if k in kw})

    build.parameters = tuple(uses)
    return build


def _keywords(fn, skip: int = 0, any_keyword: bool = True) -> tuple[str, ...] | None:
    """The keyword parameters of ``fn`` after its first ``skip`` positional ones; ``None`` when it takes
    ``**kwargs`` and ``any_keyword`` (it accepts any keyword)."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return ()
    if any_keyword and any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    named = [p for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    return tuple(p.name for p in named[skip:])


def function_loss(fn, *, uses: tuple = (), **fixed):
    """The registry factory of a loss that is one function: ``factory(**kw)`` builds
    ``FunctionLoss(fn, **{k: kw[k] for k in uses if k in kw}, **fixed)``.

    Args:
        fn: ``(y_true, y_pred, **kwargs) -> scalar`` in ``keras.ops``, registered with
            ``@keras.saving.register_keras_serializable`` (so a saved model finds it again); or its
            ``"module:function"`` name, imported when the loss is built (a built-in: listing it imports no Keras).
        uses: the settings of :func:`get` the function takes (``margin``, ``distance_metric``,
            ``views_per_track``, ``temperature``); the others are ignored.
        **fixed: keyword arguments always passed (``name=...`` names the loss).

    Returns:
        A factory for :data:`REGISTRY` or :func:`register`.
    """

    def resolved():
        from ..registry import load_reference

        return load_reference(fn) if isinstance(fn, str) else fn

    def build(**kw):
        from .base import FunctionLoss

        f = resolved()
        own = _keywords(f, skip=2)  # the function's own settings: --loss-arg KEY=VALUE
        extra = {k: v for k, v in kw.items() if k not in SETTINGS and (own is None or k in own)}
        return FunctionLoss(f, **{k: kw[k] for k in uses if k in kw}, **fixed, **extra)

    def parameters():
        own = _keywords(resolved(), skip=2)
        return None if own is None else tuple(dict.fromkeys((*uses, *own)))

    build.parameters = parameters  # called when asked: a "module:function" name is imported only then
    return build


def _find_attr(loss, attr: str):
    """``loss`` or the loss it wraps (``KoLeoRegularised`` / ``GlobalBatchLoss`` hold theirs in ``.loss``) that has
    ``attr``."""
    while not hasattr(loss, attr):
        inner = getattr(loss, "loss", None)
        if inner is None or inner is loss:
            raise ValueError(f"{type(loss).__name__} has no {attr!r}")
        loss = inner
    return loss


def _curriculum_callbacks(loss, options=None):
    from .curriculum import MiningCurriculum

    return [MiningCurriculum(_find_attr(loss, "hard_weight"), warmup=getattr(options, "curriculum_warmup", 1), ramp=1)]


def _sosnet(margin: float = 1.0, views_per_track: int = 2, **_ignored):
    from .sosnet import SOSNetLoss

    return SOSNetLoss(margin=margin, views_per_track=views_per_track)


def _hynet(views_per_track: int = 2, **_ignored):  # the paper's margin 1.2, not the CLI's --margin default 1
    from .hynet import HyNetLoss

    return HyNetLoss(views_per_track=views_per_track)


# SOSNet (first order + second-order similarity regulariser) and HyNet (hybrid similarity + L2-norm term).
# Collapsed (all descriptors equal): SOSNet's squared hinge gives margin**2 (its regulariser 0); HyNet's hinge
# on equal hybrid similarities gives its own margin, 1.2.
_SOSR = LossEntry(
    _sosnet,
    collapse=lambda margin: float(margin) ** 2,
    description="SOSNet: squared-hinge HardNet triplet + second-order similarity regulariser",
)
_HYNET = LossEntry(
    _hynet,
    collapse=lambda margin: 1.2,
    description="HyNet: hybrid-similarity triplet (margin 1.2) + L2-norm regulariser",
)


def _make(
    name: str,
    factory,
    kind: str = "descriptor",
    *,
    batch=None,
    collapse=None,
    callbacks=None,
    composable=None,
    description: str = "",
) -> LossEntry:
    """The :class:`LossEntry` of ``factory`` (a :class:`LossEntry` is taken as it is)."""
    if kind not in KINDS:
        raise ValueError(f"unknown loss kind {kind!r}; expected 'descriptor' or 'pair'")
    if isinstance(factory, LossEntry):
        return factory
    b = batch or ("pairs" if kind == "pair" else "tracks")
    if b not in BATCHES:
        raise ValueError(f"unknown batch {b!r}; expected one of {', '.join(BATCHES)}")
    if kind == "pair" and b != "pairs":
        raise ValueError(f"a pair loss needs batch 'pairs', got {b!r}")
    return LossEntry(
        factory, b, collapse, callbacks, b == "tracks" if composable is None else bool(composable), description
    )


def _positional_pair(fn) -> bool:
    """Whether ``fn`` looks like a loss function ``(y_true, y_pred, ...)``: two required positional parameters."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return False
    req = [
        p
        for p in params
        if p.default is inspect.Parameter.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    return len(req) >= 2


def _accepted(fn, kw: dict, var_keyword: bool = False) -> dict:
    """The settings of ``kw`` that ``fn`` names as parameters (all of them when ``var_keyword`` and ``fn`` takes
    ``**kwargs``: a registry factory ignores what it does not use; a class passes ``**kwargs`` on to Keras)."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return {}
    if var_keyword and any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return dict(kw)
    return {k: v for k, v in kw.items() if k in params}


def _reference_entry(ref: str, obj) -> LossEntry:
    """The entry of a ``MODULE:FUNCTION`` loss: a :class:`LossEntry`, a ``keras.losses.Loss`` subclass, a loss
    function ``(y_true, y_pred, **kw)`` or a factory returning a ``keras.losses.Loss``."""
    import keras

    if isinstance(obj, LossEntry):
        return obj
    if isinstance(obj, type) and issubclass(obj, keras.losses.Loss):

        def build_class(**kw):
            return obj(**_accepted(obj.__init__, kw))

        build_class.parameters = _keywords(obj.__init__, skip=1, any_keyword=False)  # skip self
        return LossEntry(build_class, description=f"user loss class {ref}")
    if not callable(obj):
        raise ValueError(f"--loss {ref}: not a loss function, class or factory (a {type(obj).__name__})")
    if _positional_pair(obj):
        # a loss function: make sure a compiled checkpoint finds it again (--resume) under its module's name
        if keras.saving.get_registered_object(keras.saving.get_registered_name(obj)) is not obj:
            keras.saving.register_keras_serializable(package=obj.__module__)(obj)
        fn_kw = [k for k in SETTINGS if _accepted(obj, {k: 0})]
        return LossEntry(function_loss(obj, uses=tuple(fn_kw), name=obj.__name__), description=f"user loss {ref}")

    def build(**kw):
        loss = obj(**_accepted(obj, kw, var_keyword=True))
        if not isinstance(loss, keras.losses.Loss):
            raise ValueError(f"--loss {ref}: the factory returned a {type(loss).__name__}, not a keras.losses.Loss")
        return loss

    build.parameters = _keywords(obj)
    return LossEntry(build, description=f"user loss factory {ref}")


#: every loss by its command-line name (:class:`~hpatches_kit.registry.Registry` of :class:`LossEntry`; a plain
#: factory is ``LossEntry(factory)``): descriptor losses first, then the ViT image-pair losses
REGISTRY = Registry(
    "loss",
    builtin={
        "batch-hard": _triplet("BatchHardTripletLoss", views=False),
        "batch-all": _triplet("BatchAllTripletLoss"),
        "semi-hard": _triplet("TripletSemiHardLoss"),
        "soft-margin": LossEntry(
            _triplet("BatchHardTripletLoss", views=False, soft=True, name="soft_margin_triplet_loss"),
            collapse=lambda margin: math.log(2.0),
            description="batch-hard with softplus instead of the hinge (collapses to ln 2)",
        ),
        "hardnet": _triplet("HardNetLoss"),
        "curriculum": LossEntry(
            _curriculum,
            callbacks=_curriculum_callbacks,
            description="batch-all ramped to batch-hard (MiningCurriculum callback)",
        ),
        "random-triplet": LossEntry(
            _triplet("RandomTripletLoss", views=False),
            batch="triplets",
            composable=False,
            description="classic random (anchor, positive, negative) triplets, 3 branches",
        ),
        "contrastive": LossEntry(_embedding("SymmetricContrastiveLoss", uses=("margin",)), batch="pairs"),
        "cosine": LossEntry(
            _embedding("CosineEmbeddingLoss", uses=("margin",)), batch="pairs", extra={"negatives": True}
        ),
        "infonce": LossEntry(_embedding("InfoNCELoss", uses=("temperature",)), batch="pairs"),
        "irt": LossEntry(_embedding("IRTLoss"), batch="pairs"),
        "sosr": _SOSR,
        "hynet": _HYNET,
    },
    group="hpatches_kit.losses",
    make=_make,
    entry_type=LossEntry,
    reference=_reference_entry,
    flag="--loss",
    kinds=KINDS,
)
register, unregister, entry, names, entries = REGISTRY.verbs()


def parameters(name: str) -> tuple[str, ...] | None:
    """The keyword settings the loss ``name`` takes (what ``--loss-arg KEY=VALUE`` may set); ``None`` when its
    factory takes any keyword (``**kwargs``). A factory may declare them as its ``parameters`` attribute; otherwise
    they are its named parameters (the ``**_ignored`` of a registry factory is no setting).

    Example:
        >>> parameters("batch-hard")
        ('margin', 'distance_metric', 'views_per_track')
    """
    factory = entry(name).factory
    if hasattr(factory, "parameters"):
        p = factory.parameters
        return p() if callable(p) else p
    return _keywords(factory, any_keyword=False)


def parse_setting(text: str) -> tuple[str, object]:
    """``"KEY=VALUE"`` (``--loss-arg``) as ``(key, value)``: the value an int, a float, a bool (``true``/``false``),
    ``None`` (``none``) or else the string.

    Raises:
        ValueError: no ``=`` or an empty or non-identifier key.

    Example:
        >>> parse_setting("hard_ratio=0.02"), parse_setting("k=3"), parse_setting("soft=true"), parse_setting("m=L2")
        (('hard_ratio', 0.02), ('k', 3), ('soft', True), ('m', 'L2'))
    """
    key, sep, value = str(text).partition("=")
    key = key.strip()
    if not sep or not key.isidentifier():
        raise ValueError(f"expected KEY=VALUE with a Python name as KEY, got {text!r}")
    low = value.strip().lower()
    if low in ("true", "false"):
        return key, low == "true"
    if low == "none":
        return key, None
    for kind in (int, float):
        try:
            return key, kind(value)
        except ValueError:
            pass
    return key, value


def check_settings(name: str, settings: dict, flag: str = "--loss-arg") -> dict:
    """``settings`` checked against what the loss ``name`` takes (:func:`parameters`).

    Raises:
        ValueError: a key the loss does not take, naming ``flag``, the key and the loss's settings.
    """
    accepted = parameters(name)
    if accepted is None:
        return dict(settings)
    for key in settings:
        if key not in accepted:
            has = ", ".join(accepted) if accepted else "none"
            raise ValueError(f"{flag} {key}: --loss {name} takes no setting {key!r} (its settings: {has})")
    return dict(settings)


def get(name: str, **kw):
    """Build the loss registered as ``name`` (or a ``MODULE:FUNCTION`` loss of the user's).

    Args:
        name: one of :func:`names`, or ``MODULE:FUNCTION``.
        **kw: ``margin``, ``distance_metric``, ``views_per_track``, ``temperature``; those that do not apply to
            the chosen loss are ignored.

    Returns:
        A ``keras.losses.Loss``.

    Raises:
        ValueError: ``name`` is not registered (the message lists the known names).
    """
    factory = entry(name).factory
    try:
        return factory(**kw)
    except ValueError as e:
        if type(e) is not ValueError or str(e).startswith("--loss"):  # the toolkit's own errors name their subject
            raise
        raise ValueError(f"--loss {name}: {e}") from e  # the loss's own error: which --loss said so


__all__ = [
    "REGISTRY",
    "get",
    "names",
    "entry",
    "entries",
    "register",
    "unregister",
    "function_loss",
    "parameters",
    "parse_setting",
    "check_settings",
    "LossEntry",
    "BATCHES",
]
