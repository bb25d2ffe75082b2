"""The model registry: every architecture the toolkit builds by name, with its input contract.

An entry (:class:`ModelEntry`) holds the builder and what a trainer or evaluator must know without building it:
the input size (fixed, or any multiple of ``size_multiple``), the output dimension (fixed, or set by ``dim``),
whether the output is L2-normalised, the input range and the input normalisation the model applies itself.
``hpatches-train descriptor --model NAME`` builds :func:`get` ``(NAME, input_size=, dim=, dropout=)``
(through :func:`build_descriptor`, which checks the contract first); ``--model MODULE:FUNCTION`` does the same
with a builder of the user's (:func:`entry` resolves it on the fly, nothing to register). timm-style, on the
toolkit's one registry shape (:class:`hpatches_kit.registry.Registry`, :data:`REGISTRY`):

* :func:`register` ``(name, builder, *, input_size, dim, normalised, ...)`` (the fields of :class:`ModelEntry`)
  -- add an architecture; a decorator too, in the model's own file: ``@register("mynet", input_size=32, dim=64)``;
* :func:`get` ``(name, **kw)`` -- build it; :func:`names` -- the registered names; :func:`entry` -- its entry;
  :func:`unregister`, :func:`entries`.

Plug-ins of installed packages join through the entry-point group ``hpatches_kit.models`` (an entry point naming
a builder function or a :class:`ModelEntry`).

Every model of the toolkit takes float grey patches ``(P, P, 1)`` in [0, 255] and normalises them itself (the
normalisation is part of the saved model), so a ``.keras`` file is all ``hpatches-eval --model`` needs.

Examples:
    >>> from hpatches_kit.models import registry
    >>> registry.names(kind="descriptor")
    ('l2net', 'hardnet', 'hardnet8', 'sosnet', 'tfeat')
    >>> registry.entry("hardnet8").input_size, registry.entry("hardnet8").dim
    (32, 128)
    >>> import keras
    >>> @register("tiny-doc", normalised=False)
    ... def tiny(input_size=32, dim=8):
    ...     x = keras.Input((input_size, input_size, 1))
    ...     return keras.Model(x, keras.layers.Dense(dim)(keras.layers.Flatten()(x)), name="tiny")
    >>> get("tiny-doc", input_size=16, dim=4).output_shape
    (None, 4)
    >>> unregister("tiny-doc")
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from dataclasses import dataclass

from ..registry import Registry

__all__ = [
    "ModelEntry",
    "REGISTRY",
    "register",
    "unregister",
    "get",
    "names",
    "entry",
    "entries",
    "build_descriptor",
    "check_built",
    "descriptor_branch",
]

KINDS = ("descriptor", "denoiser")


@dataclass(frozen=True)
class ModelEntry:
    """What the toolkit knows about an architecture before it builds it.

    Attributes:
        name: the registered name (``--model NAME``).
        builder: ``builder(**kw) -> keras.Model``; the keywords it takes among ``input_size``, ``dim``,
            ``dropout`` (and any others a caller of :func:`get` passes) are passed, the rest are not.
        input_size: the fixed patch side ``P``, or ``None`` for any side that is a multiple of ``size_multiple``.
        dim: the fixed output dimension, or ``None`` when the builder's ``dim`` sets it.
        normalised: the output is L2-normalised (unit vectors).
        input_range: the input the model expects (``(0, 255)``: grey levels as floats).
        normalisation: the input normalisation the model applies itself, in words.
        kind: ``"descriptor"`` or ``"denoiser"``.
        size_multiple: ``input_size=None`` models need a side divisible by this.
        description: one line for ``--help`` and the docs.
    """

    name: str
    builder: Callable
    input_size: int | None = None
    dim: int | None = None
    normalised: bool = True
    input_range: tuple = (0, 255)
    normalisation: str = ""
    kind: str = "descriptor"
    size_multiple: int = 1
    description: str = ""

    def accepts(self, key: str) -> bool:
        """Whether the builder takes keyword ``key`` (or ``**kwargs``)."""
        try:
            params = inspect.signature(self.builder).parameters
        except (TypeError, ValueError):
            return False
        return key in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())

    def build(self, **kw):
        """The model, built with the keywords of ``kw`` the builder accepts (``None`` values are left out).

        Raises:
            PluginError: the builder cannot be called so (a required parameter the toolkit does not pass), naming
                the builder and the contract.
        """
        from ..errors import PluginError, qualified_name

        passed = {k: v for k, v in kw.items() if v is not None and self.accepts(k)}
        try:
            inspect.signature(self.builder).bind(**passed)
        except TypeError as e:
            raise PluginError(
                f"model builder {self.name!r} ({qualified_name(self.builder)})",
                "it is called as builder(input_size=..., dim=..., [dropout=...]) with the keywords it names and "
                "returns a keras.Model",
                f"its signature {_signature(self.builder)} does not take that ({e})",
            ) from None
        except ValueError:  # no signature to inspect (a builtin): called as it is
            pass
        try:
            return self.builder(**passed)
        except ValueError as e:
            if type(e) is not ValueError:  # the toolkit's own errors (options, files) name what they are about
                raise
            raise ValueError(f"--model {self.name}: {e}") from e  # the builder's own error: which --model said so


def _signature(fn) -> str:
    try:
        return str(inspect.signature(fn))
    except (TypeError, ValueError):
        return "(?)"


def _canon(name: str) -> str:
    return str(name).replace("-", "_").lower()


def _make(name: str, builder, **fields) -> ModelEntry:
    """The :class:`ModelEntry` of ``builder`` (``fields``: the entry's other fields)."""
    if not callable(builder):
        raise ValueError(f"model {name!r}: the builder must be callable, got {type(builder).__name__}")
    e = ModelEntry(name, builder, **fields)
    if e.kind not in KINDS:
        raise ValueError(f"unknown model kind {e.kind!r}; expected one of {', '.join(KINDS)}")
    return dataclasses.replace(
        e,
        input_range=tuple(e.input_range),
        normalised=bool(e.normalised),
        size_multiple=int(e.size_multiple),
        description=e.description or (inspect.getdoc(builder) or "").split("\n")[0],
    )


def _reference(ref: str, obj) -> ModelEntry:
    if isinstance(obj, ModelEntry):
        return obj
    if callable(obj):
        return ModelEntry(ref, obj, description=f"user builder {ref}")
    raise ValueError(f"--model {ref}: not a model builder (a {type(obj).__name__})")


def get(name: str, **kw):
    """Build a model by name (``-`` and ``_`` are equivalent) or ``MODULE:FUNCTION``.

    Args:
        name: one of :func:`names`, or a builder reference.
        **kw: builder keywords (``input_size``, ``dim``, ``dropout``, ...); those the builder does not take are
            dropped.

    Returns:
        An uncompiled ``keras.Model``.

    Example:
        >>> get("l2net", input_size=16, dim=8).output_shape
        (None, 8)
    """
    return entry(name).build(**kw)


def check_built(model, name: str, input_size: int, dim: int | None = None) -> None:
    """Check a built descriptor against the run's patch size and dimension.

    Raises:
        ValueError: the model does not take one ``(input_size, input_size, 1)`` input or does not output one
            ``(dim,)`` vector; the message names ``--model``, ``--patch-size`` and ``--dim``.
    """
    outputs = getattr(model, "outputs", None)
    if isinstance(outputs, (list, tuple)) and len(outputs) > 1:
        raise ValueError(f"--model {name}: the model must have one output (a descriptor), it has {len(outputs)}")
    try:
        ishape, oshape = tuple(model.input_shape), tuple(model.output_shape)
    except (AttributeError, ValueError) as e:
        raise ValueError(f"--model {name}: the model must have one input and one output ({e})") from None
    if ishape[1:] != (input_size, input_size, 1):
        raise ValueError(
            f"--model {name} takes inputs of shape {ishape[1:]}, not ({input_size}, {input_size}, 1) "
            f"patches of --patch-size {input_size}"
        )
    if len(oshape) != 2:
        raise ValueError(
            f"--model {name} outputs shape {oshape[1:]} per patch, not a ({dim},) descriptor vector: end the "
            "model with Flatten/Dense (or global pooling) to one vector per patch"
        )
    if dim is not None and oshape[1] != dim:
        raise ValueError(
            f"--model {name} outputs descriptors of shape {oshape[1:]}, not ({dim},) as --dim {dim} "
            f"asks (set --dim {oshape[-1]})"
        )


def build_descriptor(name: str, input_size: int = 32, dim: int = 128, dropout: float | None = None, **kw):
    """Build a descriptor for a run after checking its contract: what ``hpatches-train descriptor --model``
    builds.

    Args:
        name: a registered descriptor name or ``MODULE:FUNCTION``.
        input_size: the run's patch side (``--patch-size``).
        dim: the run's descriptor dimension (``--dim``).
        dropout: passed when the builder takes ``dropout``.
        **kw: other builder keywords.

    Returns:
        The uncompiled model, checked: input ``(input_size, input_size, 1)``, output ``(dim,)``.

    Raises:
        ValueError: a size the architecture does not support (before building), or a built model that does not
            match; the message names ``--model`` and ``--patch-size`` / ``--dim``.

    Example:
        >>> build_descriptor("hardnet", input_size=32, dim=128).output_shape
        (None, 128)
        >>> build_descriptor("hardnet", input_size=64)
        Traceback (most recent call last):
        ...
        ValueError: --model hardnet takes 32x32 patches only: use --patch-size 32, not 64
    """
    e = entry(name)
    if e.kind != "descriptor":
        raise ValueError(f"--model {name} is a {e.kind}, not a descriptor")
    if e.input_size is not None and e.input_size != input_size:
        raise ValueError(
            f"--model {name} takes {e.input_size}x{e.input_size} patches only: use --patch-size "
            f"{e.input_size}, not {input_size}"
        )
    if e.input_size is None and (input_size < 1 or input_size % e.size_multiple):
        raise ValueError(
            f"--model {name} needs a --patch-size that is a positive multiple of {e.size_multiple}, got {input_size}"
        )
    if e.dim is not None and e.dim != dim:
        raise ValueError(f"--model {name} outputs {e.dim}-d descriptors: use --dim {e.dim}, not {dim}")
    model = e.build(input_size=input_size, dim=dim, dropout=dropout, **kw)
    check_built(model, name, input_size, dim)
    return model


def descriptor_branch(model):
    """The descriptor inside a training model: the shared branch of a random-triplet ``triplet_net`` (its only
    nested model), else ``model`` itself."""
    if getattr(model, "name", None) == "triplet_net":
        import keras

        nested = [layer for layer in model.layers if isinstance(layer, keras.Model)]
        if len(nested) == 1:
            return nested[0]
    return model


# -- built-ins ---------------------------------------------------------------------------------------------------


def _l2net(input_size=32, dim=128, dropout=0.3, name="l2net"):
    from .l2net import l2net

    return l2net(input_size=input_size, dim=dim, dropout=dropout, name=name)


def _port(arch):
    def build(dropout=None, name=None):
        from .torch_ports import torch_port

        return torch_port(arch, dropout=dropout, name=name or arch)

    build.__name__ = f"{arch}_port"
    return build


def _shallow_unet(input_size=32, name="shallow_unet"):
    from .unet import shallow_unet

    return shallow_unet(input_size=input_size, name=name)


def _deep_unet(input_size=32, base=16, depth=4, name="deep_unet"):
    from .unet import deep_unet

    return deep_unet(input_size=input_size, base=base, depth=depth, name=name)


_PORT_NOTE = "x / 255 (Rescaling), then "
_PORT = dict(input_size=32, dim=128)
_UNET = dict(kind="denoiser", normalised=False, size_multiple=4)

#: every architecture by name (:class:`~hpatches_kit.registry.Registry` of :class:`ModelEntry`)
REGISTRY = Registry(
    "model",
    builtin={
        name: _make(name, builder, **kw)
        for name, builder, kw in (
            (
                "l2net",
                _l2net,
                dict(
                    size_multiple=4,
                    normalisation="per-patch (x - mean) / (std + 1e-7), population std",
                    description="L2-Net/HardNet layout (Mishchuk et al. 2017), any P divisible by 4, any dim; "
                    "fused batch norm",
                ),
            ),
            (
                "hardnet",
                _port("hardnet"),
                dict(
                    _PORT,
                    normalisation=_PORT_NOTE + "per-patch (x - mean) / (std + 1e-6), unbiased std (torch.std)",
                    description="HardNet (kornia.feature.HardNet) port",
                ),
            ),
            (
                "hardnet8",
                _port("hardnet8"),
                dict(
                    _PORT,
                    normalisation=_PORT_NOTE + "per-patch (x - mean) / (std + 1e-7), unbiased std (torch.std)",
                    description="HardNet8 (kornia.feature.HardNet8) port: 512-d, fixed (non-trainable) PCA to 128, L2",
                ),
            ),
            (
                "sosnet",
                _port("sosnet"),
                dict(
                    _PORT,
                    normalisation=_PORT_NOTE + "InstanceNorm2d (population variance, eps 1e-5 in the root)",
                    description="SOSNet (kornia.feature.SOSNet) port",
                ),
            ),
            (
                "tfeat",
                _port("tfeat"),
                dict(
                    _PORT,
                    normalised=False,
                    normalisation=_PORT_NOTE + "InstanceNorm2d (population variance, eps 1e-5 in the root)",
                    description="TFeat (kornia.feature.TFeat) port; tanh output, not L2-normalised",
                ),
            ),
            ("shallow_unet", _shallow_unet, dict(_UNET, description="shallow U-Net denoiser (noisy -> clean patch)")),
            ("deep_unet", _deep_unet, dict(_UNET, description="deep U-Net denoiser (noisy -> clean patch)")),
        )
    },
    group="hpatches_kit.models",
    make=_make,
    entry_type=ModelEntry,
    canon=_canon,
    reference=_reference,
    flag="--model",
    kinds=KINDS,
)
register, unregister, entry, names, entries = REGISTRY.verbs()
