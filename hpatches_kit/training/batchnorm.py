"""Re-estimate batch-norm moving statistics after training (BN recalibration).

Keras' batch norm keeps an exponential moving average of the batch statistics (momentum 0.99: about the last
100 steps). After a short run, or one whose inputs changed early (a joint U-Net knocked off its optimum in the
first steps), the averages still hold stale statistics and inference-mode outputs drift from training-mode ones.
:func:`reestimate_batch_norm` replaces them with the exact statistics of a pass over data, momentum-free.

Example:
    >>> stats = reestimate_batch_norm(model, [x[i:i + 256] for i in range(0, len(x), 256)])
"""

from __future__ import annotations

import logging

import numpy as np

__all__ = ["batch_norm_layers", "reestimate_batch_norm"]

logger = logging.getLogger(__name__)


def batch_norm_layers(model) -> list:
    """Every ``keras.layers.BatchNormalization`` (or subclass, e.g. ``FusedBatchNorm``) of ``model``, nested
    models included, in call order of their first appearance.

    Args:
        model: a Keras model.

    Returns:
        The layers (each once).
    """
    import keras

    out, seen = [], set()

    def walk(m):
        for layer in getattr(m, "layers", []):
            if isinstance(layer, keras.layers.BatchNormalization):
                if id(layer) not in seen:
                    seen.add(id(layer))
                    out.append(layer)
            elif hasattr(layer, "layers"):
                walk(layer)

    walk(model)
    return out


def reestimate_batch_norm(model, batches, layers=None) -> dict:
    """Set every batch norm's moving mean / variance to the statistics of its inputs over ``batches``.

    The model runs in inference mode (dropout off) except that each batch-norm layer normalises with the
    statistics of the current batch, as in training, so every layer sees the inputs it saw while training. Its
    inputs are accumulated over all batches (float64 sums per channel) and, at the end, ``moving_mean`` is their
    mean and ``moving_variance`` their biased variance (what Keras normalises with in training) over every
    sample and position of all batches: momentum-free, the exact population statistics, whatever the batch size.
    Trainable weights are not changed.

    Args:
        model: a Keras model with batch-norm layers (nested models included).
        batches: an iterable of model inputs (arrays), e.g. training patches in chunks of 256.
        layers: the batch-norm layers to re-estimate (default: all, :func:`batch_norm_layers`); the others keep
            their moving statistics and run in inference mode.

    Returns:
        ``{layer name: {"mean": (C,), "variance": (C,), "count": n}}``: the statistics set (float64).

    Shape:
        ``batches``: each ``(B, ...)``, as the model takes; statistics per channel (the layer's ``axis``).

    Raises:
        ValueError: ``batches`` is empty, or a layer's axis is not the last one.

    Example:
        >>> from hpatches_kit.training.batchnorm import reestimate_batch_norm
        >>> reestimate_batch_norm(descriptor, [patches[i:i + 256] for i in range(0, 8192, 256)])  # doctest: +SKIP
    """
    from keras import ops

    layers = batch_norm_layers(model) if layers is None else list(layers)
    if not layers:
        return {}
    acc = {id(la): [0, None, None] for la in layers}
    originals = {}

    def hooked(layer, call):
        def call_with_batch_stats(inputs, training=None, mask=None, **kw):
            x = np.asarray(ops.convert_to_numpy(inputs), np.float64)
            axis = layer.axis if isinstance(layer.axis, int) else layer.axis[0]
            if axis % x.ndim != x.ndim - 1:
                raise ValueError(
                    f"reestimate_batch_norm: {layer.name} normalises axis {axis}; only the last "
                    "(channels-last) axis is supported"
                )
            flat = x.reshape(-1, x.shape[-1])
            a = acc[id(layer)]
            a[0] += len(flat)
            a[1] = flat.sum(0) if a[1] is None else a[1] + flat.sum(0)
            a[2] = (flat**2).sum(0) if a[2] is None else a[2] + (flat**2).sum(0)
            return call(inputs, training=True, mask=mask, **kw)

        return call_with_batch_stats

    saved = [(la, la.get_weights()) for la in layers]  # training-mode calls move the averages; restored below
    n_batches = 0
    try:
        for la in layers:
            originals[id(la)] = la.__dict__.get("call")
            object.__setattr__(la, "call", hooked(la, type(la).call.__get__(la)))
        for b in batches:
            model(np.asarray(b, np.float32) if not hasattr(b, "dtype") or b.dtype != np.float32 else b, training=False)
            n_batches += 1
    finally:
        for la in layers:
            if originals[id(la)] is None:
                la.__dict__.pop("call", None)
            else:
                object.__setattr__(la, "call", originals[id(la)])
    if n_batches == 0:
        for la, w in saved:
            la.set_weights(w)
        raise ValueError("reestimate_batch_norm: no batches")
    stats = {}
    for la, _ in saved:
        n, s, s2 = acc[id(la)]
        mean = s / n
        var = np.maximum(s2 / n - mean**2, 0.0)
        la.moving_mean.assign(mean.astype(np.float32))
        la.moving_variance.assign(var.astype(np.float32))
        stats[la.name] = {"mean": mean, "variance": var, "count": int(n)}
    logger.debug("re-estimated %d batch-norm layers over %d batches", len(layers), n_batches)
    return stats
