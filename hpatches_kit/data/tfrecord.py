"""The track TFRecord codec: one ``tf.train.Example`` per correspondence track.

The one writer (:func:`track_example`) and the one parser (:func:`parse_track_example`) of the format in
docs/ARCHITECTURE.md: ``patches`` bytes of 16*P*P uint8, optional ``noisy`` (same size), ``track`` (row in the
packed ``tracks.npy``), ``seq`` (sequence index) and ``patch_size``. TensorFlow is imported only when used.
"""

from __future__ import annotations

import numpy as np

from ..layout import TYPES

NT = len(TYPES)


def _bytes_feature(b: bytes):
    import tensorflow as tf

    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[b]))


def _int_feature(v: int):
    import tensorflow as tf

    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v)]))


def track_example(patches: np.ndarray, track: int, seq: int, noisy: np.ndarray | None = None) -> bytes:
    """Serialise one track ``(16, P, P) uint8`` as a ``tf.train.Example``."""
    import tensorflow as tf

    feats = {
        "patches": _bytes_feature(np.ascontiguousarray(patches, np.uint8).tobytes()),
        "track": _int_feature(track),
        "seq": _int_feature(seq),
        "patch_size": _int_feature(patches.shape[-1]),
    }
    if noisy is not None:
        feats["noisy"] = _bytes_feature(np.ascontiguousarray(noisy, np.uint8).tobytes())
    return tf.train.Example(features=tf.train.Features(feature=feats)).SerializeToString()


def parse_track_example(serialized, patch_size: int, noisy: bool = False) -> dict:
    """Parse serialised track Examples for ``tf.data`` (graph-mode ops only, static shapes).

    A scalar string gives ``{"patches": (16, P, P) uint8, "track": int64, "seq": int64}`` (+ ``"noisy"``);
    a batch (rank-1 string tensor, e.g. after ``.batch()``) gives the same with a leading batch axis.
    ``track`` is the row of the track in the packed ``tracks.npy``; ``seq`` its sequence index.
    """
    import tensorflow as tf

    p = int(patch_size)
    spec = {
        "patches": tf.io.FixedLenFeature([], tf.string),
        "track": tf.io.FixedLenFeature([], tf.int64),
        "seq": tf.io.FixedLenFeature([], tf.int64),
    }
    if noisy:
        spec["noisy"] = tf.io.FixedLenFeature([], tf.string)
    serialized = tf.convert_to_tensor(serialized)
    batched = serialized.shape.rank == 1
    ex = tf.io.parse_example(serialized, spec) if batched else tf.io.parse_single_example(serialized, spec)
    shape = [-1, NT, p, p] if batched else [NT, p, p]

    def dec(x):
        # ensure_shape makes a record of the wrong patch size fail loudly instead of reshaping garbage
        flat = tf.io.decode_raw(x, tf.uint8)
        flat = tf.ensure_shape(flat, [None, NT * p * p] if batched else [NT * p * p])
        return tf.reshape(flat, shape)

    out = {"patches": dec(ex["patches"]), "track": ex["track"], "seq": ex["seq"]}
    if noisy:
        out["noisy"] = dec(ex["noisy"])
    return out
