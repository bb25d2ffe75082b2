"""hpatches-kit: learn and benchmark local image descriptors on the HPatches family of datasets."""

__version__ = "0.1.0"

# The toolkit's Keras layers, losses and schedules register themselves with Keras' deserialiser as soon as Keras is
# imported (at once when it already is): `keras.models.load_model("models/l2net-synth-v2.keras")` works after only
# `import hpatches_kit`, which itself stays free of TensorFlow (see hpatches_kit.plugins).
from .plugins import install_keras_hook as _install_keras_hook

_install_keras_hook()
