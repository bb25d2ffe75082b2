"""Loading a saved model: :func:`load_model` (``.keras`` / ``.h5``, uncompiled, the toolkit's layers registered).

Every command that reads a model file (``hpatches-eval --model``, ``--denoiser``, ``--init``, the joint start)
loads it here, so a missing file, a file that is no Keras model and a model using layers nobody registered all
end in one :class:`~hpatches_kit.data.errors.DataError` naming the file.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..data.errors import DataError

__all__ = ["load_model"]

_UNKNOWN_CLASS = ("could not locate", "could not be deserialized", "unknown layer", "unknown object")


def load_model(model_or_path, what: str | None = None, imports=None):
    """The Keras model saved at a path (loaded uncompiled, the toolkit's layers registered), or a model as it is.

    Args:
        model_or_path: a ``.keras``/``.h5`` path, or a model (returned unchanged).
        what: names the model in errors (``"the denoiser"``, ``"the --init model"``).
        imports: modules to import first (:func:`hpatches_kit.plugins.import_modules`): the user's modules that
            register the layers the model uses.

    Returns:
        The uncompiled ``keras.Model``.

    Raises:
        DataError: naming the file: missing, not a Keras model (with Keras' first line of the reason), or using a
            layer class that is not registered (the message says to pass ``--import MODULE``).

    Example:
        >>> load_model("models/l2net-synth-v2.keras").name  # doctest: +SKIP
        'l2net'
    """
    if not isinstance(model_or_path, (str, os.PathLike)):
        return model_or_path
    from ..plugins import import_modules, register_keras_objects

    import_modules(imports)
    import keras

    register_keras_objects()
    path = Path(model_or_path)
    prefix = f"cannot load {what}: " if what else ""
    if not path.is_file():
        raise DataError(path, prefix + "model file not found")
    try:
        return keras.saving.load_model(str(path), compile=False)
    except Exception as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        low = first.lower()
        if "not found" in low or "zip" in low or "signature" in low:
            # Keras says "File not found" for a file that exists but is no .keras zip / .h5 file
            first = f"the file exists but is not a Keras model (.keras zip archive or .h5) ({first})"
        elif any(k in low for k in _UNKNOWN_CLASS):
            first += (
                " -- the model uses a layer or function the toolkit does not know: import the module that "
                "registers it (--import MODULE, or hpatches_kit.plugins.import_modules)"
            )
        raise DataError(path, f"cannot load {what or 'Keras model'}: {first}") from None
