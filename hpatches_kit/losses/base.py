"""The one loss base of the package: a loss is a function plus its keyword arguments, stored once.

* :class:`LabelledLoss` -- ``keras.losses.Loss`` for batch losses on ``(labels, embeddings)``: integer labels
  stay exact (never cast to float) and the scalar is divided by the number of replicas under
  ``tf.distribute``.
* :class:`MetricLoss` -- a :class:`LabelledLoss` holding ``fn`` and ``fn_kwargs``: ``call`` is
  ``fn(y_true, y_pred, **fn_kwargs)``, every keyword argument reads as an attribute (``loss.margin``), and
  ``get_config`` / ``from_config`` serialise the keyword arguments (plain values as they are, a scalar
  ``keras.Variable`` as its current value, anything else -- a callable distance, a wrapped loss -- with
  ``keras.saving.serialize_keras_object``). A concrete loss is a thin subclass whose ``__init__`` keeps its
  public signature and passes the function and the checked arguments up; it writes no ``get_config``.
* :class:`FunctionLoss` -- a :class:`MetricLoss` built from any registered function, with the function in
  its config: a new loss needs no class at all (``losses.registry.function_loss``).

The shape follows TensorFlow Similarity's ``MetricLoss`` (function + keyword arguments, ``get_config`` from
those) on top of this package's exact-label, replica-scaled ``__call__``.

Examples:
    >>> import numpy as np
    >>> from hpatches_kit.losses import BatchHardTripletLoss
    >>> loss = BatchHardTripletLoss(margin=0.5)
    >>> loss.fn.__name__, loss.fn_kwargs["margin"], loss.margin
    ('batch_hard_triplet_loss', 0.5, 0.5)
    >>> sorted(loss.get_config())
    ['distance_metric', 'margin', 'name', 'reduction', 'soft']
    >>> type(BatchHardTripletLoss.from_config(loss.get_config())).__name__
    'BatchHardTripletLoss'
"""

from __future__ import annotations

import keras
from keras import ops

__all__ = ["LabelledLoss", "MetricLoss", "FunctionLoss"]

#: constructor arguments of ``keras.losses.Loss`` (and ``fn``): never keyword arguments of the function
_RESERVED = ("name", "reduction", "dtype", "fn", "fn_kwargs")


class LabelledLoss(keras.losses.Loss):
    """Base for batch losses on ``(labels, embeddings)``: returns a scalar and, unlike
    ``keras.losses.Loss.__call__``, does *not* cast ``y_true`` to float, so integer track ids of any size
    compare exactly. ``y_pred`` is converted to the loss dtype (float32 by default), as Keras does. Under
    ``tf.distribute`` the value is divided by the number of replicas, as Keras' own losses are."""

    def __call__(self, y_true, y_pred, sample_weight=None):
        if sample_weight is not None:
            raise ValueError(f"{type(self).__name__}: per-sample weights are not supported (the loss mines the batch)")
        with keras.name_scope(self.name):
            y_pred = ops.convert_to_tensor(y_pred, dtype=self.dtype)
            y_true = ops.convert_to_tensor(y_true)
            return _scale_for_distribution(ops.cast(self.call(y_true, y_pred), self.dtype))


def _scale_for_distribution(value):
    """Divide by the number of replicas under ``tf.distribute`` like Keras' built-in losses do (Keras skips
    this for losses that already return a scalar, which would make gradients and the reported loss
    ``num_replicas`` times too large). Each replica mines its own slice of the global batch."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        n = tf.distribute.get_strategy().num_replicas_in_sync
        if n > 1:
            value = value * ops.cast(1.0 / n, value.dtype)
    return value


def _to_config(value):
    """A keyword argument as it goes into ``get_config``."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, keras.Variable):  # state moved by a callback (the curriculum weight): its value now
        return ops.convert_to_numpy(value).tolist()
    return keras.saving.serialize_keras_object(value)


def _from_config(value):
    """Inverse of :func:`_to_config` (a variable comes back as the number its owner's ``__init__`` takes)."""
    if isinstance(value, dict) and "class_name" in value:
        return keras.saving.deserialize_keras_object(value)
    return value


class MetricLoss(LabelledLoss):
    """A :class:`LabelledLoss` that is ``fn(y_true, y_pred, **fn_kwargs)``.

    Args:
        fn: the loss function ``(labels, embeddings, **fn_kwargs) -> scalar``.
        fn_kwargs: its keyword arguments (checked and converted by the subclass). Each one reads (and
            assigns) as an attribute of the loss and is one entry of ``get_config``.
        name, reduction, dtype: as ``keras.losses.Loss`` (``reduction`` is stored; the value is a scalar).

    Returns:
        ``loss(y_true, y_pred)``: a scalar in the loss dtype, divided by the number of replicas under
        ``tf.distribute``; ``loss.call(y_true, y_pred)`` is the unscaled value.

    Shape:
        ``y_true`` ``(B,)`` integer labels (any dtype; never cast), ``y_pred`` ``(B, D)`` (or what ``fn`` takes).

    Subclasses keep their own ``__init__`` signature and pass ``fn`` and the arguments up;
    ``from_config`` calls ``cls(**config)``, so the keyword names are the subclass's constructor arguments.
    """

    def __init__(self, fn, fn_kwargs=None, name=None, reduction="sum_over_batch_size", dtype=None):
        fn_kwargs = dict(fn_kwargs or {})
        clash = sorted(set(fn_kwargs) & set(_RESERVED))
        if clash:
            raise ValueError(f"{type(self).__name__}: keyword arguments {clash} are reserved by keras.losses.Loss")
        if not callable(fn):
            raise TypeError(f"{type(self).__name__}: fn must be callable, got {fn!r}")
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.fn = fn
        self.fn_kwargs = fn_kwargs

    def __getattr__(self, key):  # only for names not found the normal way: the function's keyword arguments
        kwargs = self.__dict__.get("fn_kwargs")
        if kwargs is not None and key in kwargs:
            return kwargs[key]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {key!r}")

    def __setattr__(self, key, value):  # ``loss.margin = 0.3`` changes the one stored copy
        kwargs = self.__dict__.get("fn_kwargs")
        if kwargs is not None and key in kwargs:
            kwargs[key] = value
        else:
            super().__setattr__(key, value)

    def __copy__(self):  # a shallow copy gets its own keyword arguments, as it had its own attributes
        new = type(self).__new__(type(self))
        new.__dict__.update({**self.__dict__, "fn_kwargs": dict(self.fn_kwargs)})
        return new

    def call(self, y_true, y_pred):
        return self.fn(y_true, y_pred, **self.fn_kwargs)

    def get_config(self):
        return {**super().get_config(), **{k: _to_config(v) for k, v in self.fn_kwargs.items()}}

    @classmethod
    def from_config(cls, config):
        return cls(**{k: _from_config(v) for k, v in config.items()})


@keras.saving.register_keras_serializable(package="hpatches_kit")
class FunctionLoss(MetricLoss):
    """A loss from a function alone: ``FunctionLoss(fn, margin=0.5)`` is ``fn(y_true, y_pred, margin=0.5)``
    with :class:`LabelledLoss`'s exact labels and replica scaling.

    Args:
        fn: ``(labels, embeddings, **fn_kwargs) -> scalar``, registered with
            ``@keras.saving.register_keras_serializable`` so that a saved model can find it again (its module
            must be imported before ``keras.saving.load_model``, as for any custom object).
        name: default ``fn.__name__``.
        reduction, dtype: as ``keras.losses.Loss``.
        **fn_kwargs: the function's keyword arguments (JSON values or Keras-serialisable objects).

    Returns:
        ``loss(y_true, y_pred)``: ``fn``'s scalar in the loss dtype, divided by the number of replicas under
        ``tf.distribute``.

    Shape:
        - y_true: :math:`(B,)` integer labels (never cast to float)
        - y_pred: :math:`(B, D)` embeddings (or what ``fn`` takes)

    The config holds ``fn`` (``keras.saving.serialize_keras_object``) next to the keyword arguments.

    Examples:
        >>> from hpatches_kit.losses import FunctionLoss, batch_hard_triplet_loss
        >>> loss = FunctionLoss(batch_hard_triplet_loss, margin=0.3)
        >>> loss.name, loss.margin
        ('batch_hard_triplet_loss', 0.3)
    """

    def __init__(self, fn, name=None, reduction="sum_over_batch_size", dtype=None, **fn_kwargs):
        super().__init__(fn, fn_kwargs, name=name or getattr(fn, "__name__", None), reduction=reduction, dtype=dtype)

    def call(self, y_true, y_pred):
        value = super().call(y_true, y_pred)
        # the plug-in contract of a loss function: a floating tensor (else Keras says "No gradients provided")
        dtype = str(getattr(value, "dtype", ""))
        if not hasattr(value, "shape") or "float" not in dtype:
            from ..errors import PluginError, qualified_name

            raise PluginError(
                f"loss {self.name!r} ({qualified_name(self.fn)})",
                "fn(y_true, y_pred) must return a floating-point scalar computed from y_pred with keras.ops",
                f"it returned {type(value).__name__} {str(value)[:40]!r}",
            )
        return value

    def get_config(self):
        return {**super().get_config(), "fn": keras.saving.serialize_keras_object(self.fn)}
