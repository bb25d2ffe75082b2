"""Sequence kinds that synthesis was missing: large zoom + rotation, and image blur.

Measured on real photographs (``benchmarks/real_validation.py``), descriptors trained on the lighting and
plane-viewpoint sequences of :mod:`hpatches_kit.data.synth` fall short under **image blur** and **large
zoom + rotation**: in both, corresponding patches differ in resolution (one sharp, one a few pixels of the
scene upsampled), which those sequences barely show (zoom within 0.7-1.4x, blur sigma < 0.7 px). Two kinds:

* :func:`zoom_sequence` (named ``v_zoom-*``): the camera zooms out by up to ``zoom_max`` (1.6x-4x) while
  rolling by up to 90 degrees, with a small tilt; views are rendered by :func:`render_view`, which models
  the camera properly (the scene is low-pass filtered by the target camera's pixel footprint before
  sampling), so a zoomed-out view holds less detail instead of aliasing.
* :func:`blur_sequence` (named ``i_blur-*``, identity homographies): defocus (disk kernel), Gaussian or
  linear motion blur growing with the image index, with a mild lighting change and camera noise.

Both return ``(6 grey uint8 images, 5 homographies ref -> target)`` like the other sequence builders.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from .photometric import camera_pipeline, illumination_change, to_grey

__all__ = ["render_view", "zoom_homography", "zoom_sequence", "blur_sequence", "blur_kernel"]

#: Camera point-spread function sigma, in the camera's own pixels.
CAMERA_PSF = 0.5


def render_view(img: np.ndarray, H: np.ndarray, size, psf: float = CAMERA_PSF) -> np.ndarray:
    """The view ``out(x) = img(H^-1 x)`` of an image (float, grey or RGB) through the homography ``H``
    (reference -> view), ``size = (w, h)``, anti-aliased: where the view minifies the reference by ``m``
    (reference pixels per view pixel, from the Jacobian of ``H^-1`` at the view's centre), the reference is
    first blurred by a Gaussian of ``sqrt((psf m)^2 - psf^2)`` reference pixels, so the view sees the scene
    through its own pixel footprint."""
    w, h = int(size[0]), int(size[1])
    Hi = np.linalg.inv(np.asarray(H, np.float64))
    c = np.array([(w - 1) / 2.0, (h - 1) / 2.0, 1.0])
    p = Hi @ c
    # Jacobian of x -> Hi x (dehomogenised) at the centre
    J = (Hi[:2, :2] * p[2] - np.outer(p[:2], Hi[2, :2])) / p[2] ** 2
    m = math.sqrt(abs(np.linalg.det(J)))
    src = img.astype(np.float32)
    extra = (psf * m) ** 2 - psf**2
    if extra > 0.01:
        src = cv2.GaussianBlur(src, (0, 0), math.sqrt(extra))
    return cv2.warpPerspective(
        src, np.asarray(H, np.float64), (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101
    )


def zoom_homography(w: int, h: int, zoom: float, roll_deg: float, tilt=(0.0, 0.0), shift=(0.0, 0.0)) -> np.ndarray:
    """Reference -> view homography of a camera that zooms out by ``zoom`` (view = reference scaled by
    ``1/zoom``) and rolls by ``roll_deg`` about the image centre, with a small projective ``tilt`` (the
    last-row coefficients, per pixel) and a ``shift`` in pixels."""
    r = math.radians(roll_deg)
    C = np.array([[1, 0, (w - 1) / 2.0], [0, 1, (h - 1) / 2.0], [0, 0, 1]])
    S = np.array(
        [
            [math.cos(r) / zoom, -math.sin(r) / zoom, shift[0]],
            [math.sin(r) / zoom, math.cos(r) / zoom, shift[1]],
            [tilt[0], tilt[1], 1.0],
        ]
    )
    H = C @ S @ np.linalg.inv(C)
    return H / H[2, 2]


def zoom_sequence(photo: np.ndarray, rng: np.random.Generator):
    """6 greyscale uint8 images of the photo seen by a camera zooming out (up to 1.6-4x) and rolling (up to
    +-90 degrees), growing with the image index; and the 5 homographies ref -> target."""
    h, w = photo.shape[:2]
    zoom_max = math.exp(rng.uniform(math.log(1.6), math.log(4.0)))
    roll_max = rng.uniform(-90.0, 90.0)
    tilt_max = rng.normal(0.0, 0.15, 2) / max(w, h)
    shift_max = rng.uniform(-0.05, 0.05, 2) * np.array([w, h])
    images = [camera_pipeline(photo, rng, blur=0.0, noise=1.0, jpeg=96)]
    Hs = []
    for k in range(1, 6):
        s = k / 5.0
        H = zoom_homography(w, h, zoom_max**s, roll_max * s * rng.uniform(0.85, 1.15), tilt_max * s, shift_max * s)
        view = render_view(photo, H, (w, h))
        lit = illumination_change(view, 0.15 * s, rng)
        images.append(
            camera_pipeline(
                lit, rng, blur=rng.uniform(0.0, 0.3), noise=1.0 + rng.uniform(0, 1.5), jpeg=int(rng.integers(80, 97))
            )
        )
        Hs.append(H)
    return images, Hs


def blur_kernel(kind: str, strength: float, angle: float = 0.0) -> np.ndarray:
    """A normalised blur kernel: ``"defocus"`` (a disk of radius ``strength`` px, anti-aliased edge),
    ``"gaussian"`` (sigma ``strength``) or ``"motion"`` (a line of length ``strength`` px at ``angle``)."""
    r = max(float(strength), 0.0)
    half = int(math.ceil(r * (3.0 if kind == "gaussian" else 1.0))) + 1
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1].astype(np.float64)
    if kind == "defocus":
        k = np.clip(r + 0.5 - np.hypot(xx, yy), 0.0, 1.0)
    elif kind == "gaussian":
        k = np.exp(-(xx**2 + yy**2) / (2 * max(r, 1e-3) ** 2))
    elif kind == "motion":
        d = np.abs(-math.sin(angle) * xx + math.cos(angle) * yy)  # distance to the line
        along = np.abs(math.cos(angle) * xx + math.sin(angle) * yy)
        k = np.clip(1.0 - d, 0.0, 1.0) * np.clip(r / 2.0 + 0.5 - along, 0.0, 1.0)
    else:
        raise ValueError(f"unknown blur kind {kind!r}; expected defocus, gaussian or motion")
    if k.sum() <= 0:
        k = np.zeros_like(k)
        k[half, half] = 1.0
    return (k / k.sum()).astype(np.float32)


def blur_sequence(photo: np.ndarray, rng: np.random.Generator):
    """6 greyscale uint8 images: the reference, then growing defocus / Gaussian / motion blur (one kind per
    sequence; up to radius 2-6 px, sigma 1.2-3.5 px or length 4-16 px) with a mild lighting change; identity
    homographies."""
    kind = ("defocus", "gaussian", "motion")[int(rng.integers(0, 3))]
    top = {"defocus": rng.uniform(2.0, 6.0), "gaussian": rng.uniform(1.2, 3.5), "motion": rng.uniform(4.0, 16.0)}[kind]
    angle = rng.uniform(0, math.pi)
    images = [camera_pipeline(photo, rng, blur=0.0, noise=1.0, jpeg=96)]
    grey = to_grey(photo).astype(np.float32)
    for k in range(1, 6):
        s = k / 5.0
        blurred = cv2.filter2D(
            grey,
            -1,
            blur_kernel(kind, top * s * rng.uniform(0.9, 1.1), angle + rng.normal(0, 0.05)),
            borderType=cv2.BORDER_REFLECT_101,
        )
        lit = illumination_change(blurred, 0.15 * s, rng)
        images.append(
            camera_pipeline(lit, rng, blur=0.0, noise=1.0 + rng.uniform(0, 1.5), jpeg=int(rng.integers(80, 97)))
        )
    return images, [np.eye(3) for _ in range(5)]
