"""What a detector does to a patch: the error of its orientation and scale, measured, and drawn as training noise.

A descriptor matched through a detector never sees two views cut in the same frame: each keypoint's scale and
dominant orientation are *estimated* in its own image, so two views of one point differ by the error of two
estimates. :func:`hpatches_kit.data.keypoints.measure_keypoint_errors` measures that error on homography sequences (ground truth known):
DoG keypoints are detected in both images independently, a reference keypoint corresponds to the target
keypoint nearest to its reprojection (mutual, within ``tol`` px and an octave of the expected scale), and

- the **orientation error** is the target keypoint's dominant orientation minus the reference orientation
  carried through the homography's local affine map (degrees, wrapped to (-180, 180]);
- the **scale error** is ``log2(target scale / (reference scale x the homography's local scale))``.

The orientation is computed exactly as the image-matching benchmark cuts its patches
(:func:`hpatches_kit.data.keypoints.keypoint_orientations`), so the measured error is the one the benchmark's
descriptors face.

:class:`ViewNoise` is that error as a distribution to train with: a table of quantiles of the orientation and
scale errors, drawn by inverse-CDF sampling (heavy tails included, nothing assumed about its shape).
:data:`PRESETS` holds the table measured on synthetic sequences (``dog``), made by
``python benchmarks/orientation_error.py`` (docs/orientation-noise.md); ``none`` is no noise. The training
pipelines (:func:`hpatches_kit.training.pipelines.make_sk_batch`) rotate and rescale every view but the first
of a track by an independent draw: with ``K = 2`` views the pair differs by exactly the measured relative error.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["PRESETS", "ViewNoise", "error_quantiles", "resolve_view_noise"]

#: Probabilities at which :class:`ViewNoise` tables hold the error's quantiles: every 0.25%, and denser in the tails.
QUANTILE_PROBS = tuple(float(p) for p in np.unique(np.round(np.r_[np.linspace(0, 1, 401), 0.001, 0.999], 6)))


def error_quantiles(values, probs=QUANTILE_PROBS) -> list[float]:
    """Quantiles of ``values`` at ``probs`` (linear interpolation), as a plain list (for a :class:`ViewNoise`)."""
    v = np.asarray(values, np.float64)
    if v.size == 0:
        raise ValueError("error_quantiles: no values")
    return [float(q) for q in np.quantile(v, probs)]


@dataclass(frozen=True)
class ViewNoise:
    """Per-view rotation and scale noise as quantile tables (inverse-CDF sampling).

    ``angle_quantiles`` (degrees) and ``log2_scale_quantiles`` hold the error's quantiles at ``probs``
    (increasing, 0 and 1 included); a draw interpolates the table at a uniform ``u``. ``strength`` multiplies
    both (0 = off). An empty table means no noise of that kind.
    """

    name: str = "none"
    probs: tuple = QUANTILE_PROBS
    angle_quantiles: tuple = ()
    log2_scale_quantiles: tuple = ()
    strength: float = 1.0
    source: dict = field(default_factory=dict, compare=False)

    def __post_init__(self):
        p = np.asarray(self.probs, np.float64)
        if p.ndim != 1 or len(p) < 2 or p[0] != 0.0 or p[-1] != 1.0 or np.any(np.diff(p) <= 0):
            raise ValueError("view noise: probs must increase strictly from 0 to 1")
        for what in ("angle_quantiles", "log2_scale_quantiles"):
            q = np.asarray(getattr(self, what), np.float64)
            if q.size and (q.shape != p.shape or np.any(np.diff(q) < 0) or not np.isfinite(q).all()):
                raise ValueError(f"view noise {self.name!r}: {what} must be {len(p)} finite non-decreasing values")
        if not (math.isfinite(self.strength) and self.strength >= 0):
            raise ValueError(f"view noise strength must be a finite number >= 0, got {self.strength}")

    @property
    def active(self) -> bool:
        return self.strength > 0 and bool(len(self.angle_quantiles) or len(self.log2_scale_quantiles))

    def sample_numpy(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``n`` draws ``(angle degrees, log2 scale)`` (NumPy; the reference of :meth:`sample_tf`)."""
        u = rng.random((2, n))
        return self._interp(u[0], self.angle_quantiles), self._interp(u[1], self.log2_scale_quantiles)

    def _interp(self, u, table):
        if not len(table):
            return u * 0.0
        return np.interp(u, self.probs, table) * self.strength

    def sample_tf(self, shape, seed):
        """Stateless draws ``(angle radians, scale factor r)`` of static ``shape`` keyed on ``seed`` (a shape-(2,)
        int tensor): pure TensorFlow (XLA/TPU-ready). ``r`` = detected / true keypoint scale."""
        import tensorflow as tf

        def draw(table, k):
            if not len(table) or self.strength == 0:
                return tf.zeros(shape, tf.float32)
            u = tf.random.stateless_uniform(shape, tf.random.experimental.stateless_fold_in(seed, k), dtype=tf.float32)
            probs = tf.constant(self.probs, tf.float32)
            q = tf.constant(table, tf.float32)
            n = len(self.probs)
            i = tf.clip_by_value(tf.searchsorted(probs, tf.reshape(u, [-1]), side="right") - 1, 0, n - 2)
            p0, p1 = tf.gather(probs, i), tf.gather(probs, i + 1)
            q0, q1 = tf.gather(q, i), tf.gather(q, i + 1)
            t = (tf.reshape(u, [-1]) - p0) / tf.maximum(p1 - p0, 1e-12)
            return tf.reshape(q0 + t * (q1 - q0), shape) * self.strength

        angle = draw(self.angle_quantiles, 11) * (math.pi / 180.0)
        scale = tf.pow(2.0, draw(self.log2_scale_quantiles, 12))
        return angle, scale

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "probs": list(self.probs),
            "angle_quantiles": list(self.angle_quantiles),
            "log2_scale_quantiles": list(self.log2_scale_quantiles),
            "strength": self.strength,
            "source": self.source,
        }

    @classmethod
    def from_json(cls, d: dict) -> ViewNoise:
        return cls(
            name=str(d.get("name", "custom")),
            probs=tuple(float(x) for x in d.get("probs", QUANTILE_PROBS)),
            angle_quantiles=tuple(float(x) for x in d.get("angle_quantiles", ())),
            log2_scale_quantiles=tuple(float(x) for x in d.get("log2_scale_quantiles", ())),
            strength=float(d.get("strength", 1.0)),
            source=dict(d.get("source", {})),
        )


_PRESET_DIR = Path(__file__).with_name("view_noise")


def _load_preset(name: str) -> ViewNoise:
    return ViewNoise.from_json(json.loads((_PRESET_DIR / f"{name}.json").read_text()))


def preset_names() -> tuple[str, ...]:
    return ("none",) + tuple(sorted(p.stem for p in _PRESET_DIR.glob("*.json")))


PRESETS = preset_names()


def resolve_view_noise(spec, strength: float | None = None) -> ViewNoise:
    """A :class:`ViewNoise` from a preset name (:data:`PRESETS`), a JSON file written by
    :meth:`ViewNoise.to_json`, ``None``/``"none"`` (no noise) or a :class:`ViewNoise`; ``strength`` overrides
    the table's multiplier."""
    if isinstance(spec, ViewNoise):
        vn = spec
    elif spec is None or spec == "none":
        vn = ViewNoise()
    elif isinstance(spec, str) and spec in PRESETS:
        vn = _load_preset(spec)
    elif isinstance(spec, (str, Path)) and Path(spec).suffix == ".json":
        p = Path(spec)
        try:
            vn = ViewNoise.from_json(json.loads(p.read_text()))
        except FileNotFoundError as e:
            raise ValueError(f"{p}: view-noise table not found") from e
        except (json.JSONDecodeError, TypeError, AttributeError) as e:
            raise ValueError(f"{p}: not a view-noise table ({e})") from e
    else:
        raise ValueError(f"view noise must be one of {', '.join(PRESETS)} or a .json table, got {spec!r}")
    if strength is not None:
        vn = ViewNoise(vn.name, vn.probs, vn.angle_quantiles, vn.log2_scale_quantiles, float(strength), vn.source)
    return vn
