"""Import a PyTorch descriptor checkpoint into its Keras twin (:mod:`.torch_ports`).

PyTorch is needed only to read a checkpoint *file*; a state dict whose values are NumPy arrays (or tensors
already in memory) converts without it. It is imported here, lazily, and never by the rest of the package.

Layout conversions (each checked by ``tests/test_models_torch_import.py`` against PyTorch's own output):

* ``Conv2d.weight`` ``(O, I, kh, kw)`` -> Keras kernel ``(kh, kw, I, O)``;
* ``Linear.weight`` ``(O, I)`` -> ``(I, O)``; when the ``Linear`` follows a flatten of a ``(C, H, W)`` map, its
  input columns are reordered from PyTorch's ``(C, H, W)`` order to Keras' ``(H, W, C)``;
* ``BatchNorm2d`` ``running_mean`` / ``running_var`` (and ``weight`` / ``bias`` when affine) -> moving
  statistics (and gamma / beta); ``num_batches_tracked`` is dropped;
* HardNet8's PCA buffers ``mean`` ``(512,)`` and ``components`` ``(512, 128)`` -> a ``Dense`` with kernel
  ``components`` and bias ``-mean @ components`` (computed in float64).

Every entry of the state dict must be used and every weight of the port filled, with the same shape;
otherwise :class:`~hpatches_kit.data.errors.DataError` names the checkpoint and the offending keys.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ..data.errors import DataError
from .torch_ports import ARCHS, torch_port

__all__ = ["from_torch", "load_torch_state_dict"]

_WRAPPERS = ("state_dict", "model_state_dict", "model")


def _import_torch():
    try:
        import torch
    except ImportError as e:
        raise ImportError(
            "reading a PyTorch checkpoint file needs PyTorch (pip install torch, CPU is enough; "
            "it is not a dependency of hpatches-kit), or pass a state dict of NumPy arrays"
        ) from e
    return torch


def load_torch_state_dict(state_dict_or_path) -> tuple[dict[str, np.ndarray], str]:
    """Read a checkpoint into ``{key: float array}``.

    Args:
        state_dict_or_path: a path to a ``torch.save`` file, or a mapping of names to tensors / arrays. A
            checkpoint that wraps the weights (``{"state_dict": ...}``, as HardNet's do) is unwrapped and
            ``DataParallel``'s ``module.`` prefixes are removed.

    Returns:
        ``(weights, where)``: float NumPy arrays without ``num_batches_tracked``, and the name used in
        errors (the file, or ``"<state_dict>"``).
    """
    if isinstance(state_dict_or_path, (str, os.PathLike)):
        path = Path(state_dict_or_path)
        where = str(path)
        if not path.is_file():
            raise DataError(path, "PyTorch checkpoint not found")
        torch = _import_torch()
        try:
            sd = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001  (pickled modules, corrupt files, ...)
            raise DataError(path, f"cannot read as a PyTorch state dict (torch.load weights_only): {e}") from None
    elif isinstance(state_dict_or_path, Mapping):
        sd, where = state_dict_or_path, "<state_dict>"
    else:
        raise TypeError(
            f"from_torch: expected a checkpoint path or a state dict, got {type(state_dict_or_path).__name__}"
        )
    for k in _WRAPPERS:
        if isinstance(sd, Mapping) and isinstance(sd.get(k), Mapping):
            sd = sd[k]
            break
    if not isinstance(sd, Mapping) or not sd:
        raise DataError(where, "holds no state dict (a mapping of parameter names to tensors)")
    out = {}
    for k, v in sd.items():
        k = str(k)
        if k.startswith("module."):
            k = k[len("module.") :]
        if k.endswith("num_batches_tracked"):
            continue
        if hasattr(v, "detach"):
            v = v.detach().cpu().numpy()
        try:
            out[k] = np.asarray(v, dtype=np.float64)
        except (TypeError, ValueError):
            raise DataError(where, f"entry {k!r} is not a numeric tensor ({type(v).__name__})") from None
    return out, where


def _flatten_source(model, layer):
    """``(H, W, C)`` of the map flattened right before ``layer``, or None."""
    import keras

    idx = model.layers.index(layer)
    prev = model.layers[idx - 1] if idx else None
    if isinstance(prev, keras.layers.Flatten):
        shape = tuple(prev.input.shape[1:])
        if len(shape) == 3:
            return shape
    return None


def _take(sd, used, where, key, shape):
    if key not in sd:
        have = ", ".join(repr(k) for k in list(sd)[:3])
        raise DataError(
            where,
            f"missing key {key!r} (the {tuple(shape)} weight of the Keras port; wrong arch? "
            f"the checkpoint's keys begin {have})",
        )
    a = sd[key]
    used.add(key)
    if tuple(a.shape) != tuple(shape):
        raise DataError(
            where, f"{key!r} has shape {tuple(a.shape)}, the architecture needs {tuple(shape)} (wrong arch?)"
        )
    return a


def from_torch(state_dict_or_path, arch: str = "tfeat", input_scale: float = 1.0 / 255.0, name: str | None = None):
    """Build the Keras port of a PyTorch descriptor and load its weights.

    Args:
        state_dict_or_path: a ``torch.save`` checkpoint path or a state dict (tensors or NumPy arrays, keyed
            like the PyTorch module: ``features.0.weight``, ...).
        arch: one of :data:`~hpatches_kit.models.torch_ports.ARCHS` (``tfeat``, ``hardnet``, ``l2net``,
            ``hardnet8``, ``sosnet``).
        input_scale: factor from the project's [0, 255] patches to the PyTorch model's input range (1/255
            for models fed ``ToTensor`` patches in [0, 1]).
        name: model name (default: ``arch``).

    Returns:
        A ``keras.Model`` (``(32, 32, 1)`` in [0, 255] -> ``(128,)``) whose output equals the PyTorch
        model's (in ``eval()`` mode) on ``patches * input_scale``. Saved as ``.keras`` it works with
        ``hpatches-eval --model``.

    Shape:
        - Input: :math:`(B, 32, 32, 1)`
        - Output: :math:`(B, 128)`

    Examples:
        >>> m = from_torch("../shared/pretrained/tfeat/tfeat-liberty.params", arch="tfeat")  # doctest: +SKIP
        >>> m.save("tfeat-liberty.keras")  # doctest: +SKIP
    """
    import keras

    key = str(arch).replace("-", "_").lower()
    if key not in ARCHS:
        raise ValueError(f"unknown architecture {arch!r}; expected one of {', '.join(ARCHS)}")
    sd, where = load_torch_state_dict(state_dict_or_path)
    model = torch_port(key, input_scale=input_scale, name=name)
    used: set[str] = set()
    for layer in model.layers:
        if not layer.weights:
            continue
        if layer.name == "pca":  # HardNet8's PCA buffers
            comp = _take(sd, used, where, "components", layer.kernel.shape)
            mean = _take(sd, used, where, "mean", (layer.kernel.shape[0],))
            layer.kernel.assign(comp.astype(np.float32))
            layer.bias.assign((-(mean @ comp)).astype(np.float32))
            continue
        prefix = layer.name.rsplit("_", 1)
        prefix = f"{prefix[0]}.{prefix[1]}"
        if isinstance(layer, keras.layers.Conv2D):
            kh, kw, cin, cout = layer.kernel.shape
            w = _take(sd, used, where, f"{prefix}.weight", (cout, cin, kh, kw))
            layer.kernel.assign(w.transpose(2, 3, 1, 0).astype(np.float32))
            if layer.use_bias:
                layer.bias.assign(_take(sd, used, where, f"{prefix}.bias", (cout,)).astype(np.float32))
        elif isinstance(layer, keras.layers.Dense):
            cin, cout = layer.kernel.shape
            w = _take(sd, used, where, f"{prefix}.weight", (cout, cin))
            src = _flatten_source(model, layer)
            if src is not None:  # PyTorch flattened (C, H, W); Keras flattened (H, W, C)
                h, wd, c = src
                w = w.reshape(cout, c, h, wd).transpose(0, 2, 3, 1).reshape(cout, cin)
            layer.kernel.assign(w.T.astype(np.float32))
            if layer.use_bias:
                layer.bias.assign(_take(sd, used, where, f"{prefix}.bias", (cout,)).astype(np.float32))
        elif isinstance(layer, keras.layers.BatchNormalization):
            c = layer.moving_mean.shape[0]
            layer.moving_mean.assign(_take(sd, used, where, f"{prefix}.running_mean", (c,)).astype(np.float32))
            layer.moving_variance.assign(_take(sd, used, where, f"{prefix}.running_var", (c,)).astype(np.float32))
            if layer.scale:
                layer.gamma.assign(_take(sd, used, where, f"{prefix}.weight", (c,)).astype(np.float32))
            if layer.center:
                layer.beta.assign(_take(sd, used, where, f"{prefix}.bias", (c,)).astype(np.float32))
        else:  # pragma: no cover - every port layer with weights is handled above
            raise TypeError(f"from_torch: no conversion for layer {layer.name} ({type(layer).__name__})")
    extra = sorted(set(sd) - used)
    if extra:
        shown = ", ".join(repr(k) for k in extra[:6]) + (f" and {len(extra) - 6} more" if len(extra) > 6 else "")
        raise DataError(
            where,
            f"unexpected keys for arch {key!r}: {shown} (wrong arch, or an affine "
            "BatchNorm / extra layer the port does not have)",
        )
    return model
