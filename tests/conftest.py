"""Shared fixtures.

* ``shared_benchmark``: the official split/task files in ``../shared/hpatches-benchmark`` (read, never copied);
  ``real_sequences``: the real validation scenes in ``../shared/real-sequences``. Tests using either skip with
  the missing paths named when they are absent (a user's fresh clone).
* ``tiny_dataset``: a small HPatches-format dataset written to disk (random-texture tracks), fast to make.
* The embedded default dataset is built once into ``$HPATCHES_KIT_HOME`` (default: ``<repo>/.cache/test-home``,
  git-ignored), so local re-runs reuse it and CI builds it once.
* ``assert_loss_round_trip``: the one serialisation check every loss test calls (config, ``keras.saving``
  serialise/deserialise, ``.keras`` file of a compiled model).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("HPATCHES_KIT_HOME", str(REPO / ".cache" / "test-home"))

import numpy as np
import pytest

SHARED = REPO.parent / "shared" / "hpatches-benchmark"
REAL_SEQUENCES = REPO.parent / "shared" / "real-sequences"
#: the environment of a CLI subprocess: this checkout first on the path, TensorFlow's C++ logs off
CLI_ENV = {
    **os.environ,
    "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    "TF_CPP_MIN_LOG_LEVEL": "3",
}
#: ``hpatches-train`` arguments of the smallest descriptor run (one step, no evaluation) for CLI error tests
TINY_TRAIN = [
    "descriptor",
    "--no-eval",
    "--epochs",
    "1",
    "--steps-per-epoch",
    "1",
    "--batch-size",
    "8",
    "--dim",
    "8",
    "--verbose",
    "0",
    "--mixed-precision",
    "float32",
    "--collapse",
    "off",
    "--split",
    "none",
]


@pytest.fixture(scope="session")
def shared_benchmark() -> Path:
    """The official files beside the checkout; a user's fresh clone has no ``../shared``: skip, naming them."""
    need = [SHARED / "splits.json", SHARED / "tasks"]
    missing = [str(p) for p in need if not p.exists()]
    if missing:
        pytest.skip(
            f"official benchmark files not found: {', '.join(missing)} (../shared/hpatches-benchmark is "
            "laid beside the checkout in CI, not in a fresh clone)"
        )
    return SHARED


@pytest.fixture(scope="session")
def real_sequences() -> Path:
    """The real validation scenes (``../shared/real-sequences``): skip, naming them, when absent."""
    need = [REAL_SEQUENCES / "boat" / "img1.pgm", REAL_SEQUENCES / "v_wormhole" / "1.ppm"]
    missing = [str(p) for p in need if not p.is_file()]
    if missing:
        pytest.skip(f"real validation sequences not found: {', '.join(missing)} (../shared/real-sequences)")
    return REAL_SEQUENCES


def make_tracks(n: int, p: int, rng: np.random.Generator, noise: float = 8.0) -> np.ndarray:
    """``(n, 16, p, p) uint8`` tracks: a smooth random texture per track plus per-view noise, so views of a
    track resemble each other and tracks differ."""
    import cv2

    base = rng.normal(128, 50, size=(n, p, p)).astype(np.float32)
    base = np.stack([cv2.GaussianBlur(b, (0, 0), 1.5) for b in base])
    views = base[:, None] + rng.normal(0, noise, size=(n, 16, p, p)).astype(np.float32)
    return np.clip(views, 0, 255).astype(np.uint8)


def write_dataset(root: Path, seqs: dict[str, np.ndarray], noisy: dict[str, np.ndarray] | None = None) -> Path:
    from hpatches_kit.data import TYPES, write_patch_image

    for name, tracks in seqs.items():
        d = root / name
        d.mkdir(parents=True, exist_ok=True)
        for j, t in enumerate(TYPES):
            write_patch_image(d / f"{t}.png", tracks[:, j])
            if noisy is not None:
                write_patch_image(d / f"{t}_noise.png", noisy[name][:, j])
    return root


def write_split_dataset(
    root: Path,
    counts: dict[str, int],
    patch: int,
    rng: np.random.Generator,
    num_test: int,
    noise_sigma: float | None = None,
) -> Path:
    """Sequences of ``counts[name]`` random-texture tracks (``patch`` px; with ``*_noise`` twins of Gaussian noise
    ``noise_sigma`` when given) and a ``splits.json`` whose split ``a`` holds out the last ``num_test`` names."""
    import json

    names = list(counts)
    seqs = {n: make_tracks(c, patch, rng) for n, c in counts.items()}
    noisy = None
    if noise_sigma is not None:
        noisy = {n: np.clip(t + rng.normal(0, noise_sigma, t.shape), 0, 255).astype(np.uint8) for n, t in seqs.items()}
    write_dataset(root, seqs, noisy)
    (root / "splits.json").write_text(json.dumps({"a": {"train": names[:-num_test], "test": names[-num_test:]}}))
    return root


def assert_loss_round_trip(loss, y=None, x=None, tmp_path=None, model=None, rtol=1e-6):
    """Serialisation round trip of a Keras loss; returns ``{"config", "value", "model", "loaded"}``.

    Always: ``get_config`` is JSON-ready, ``type(loss).from_config(config)`` and
    ``keras.saving.deserialize_keras_object(serialize_keras_object(loss))`` give the same class with the same config.
    With a batch ``(y, x)`` (labels / targets and ``y_pred``): both copies give the value of ``loss(y, x)``.
    With ``tmp_path`` and ``model`` (inputs ``x``; ``y`` as targets): the model compiled with ``loss`` is saved to a
    ``.keras`` file and loaded back; the loaded loss has the same class and config and ``evaluate`` gives the same
    number. ``value`` is ``model.evaluate`` before saving (or ``loss(y, x)`` without a model).
    """
    import json

    import keras

    cls = type(loss)
    config = loss.get_config()
    assert json.loads(json.dumps(config)) == config, "get_config must be JSON-ready"
    copies = [cls.from_config(config), keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))]
    for copy in copies:
        assert type(copy) is cls and copy.get_config() == config
    out = {"config": config, "value": None, "model": model, "loaded": None}
    if model is None:
        if x is not None:
            out["value"] = float(loss(y, x))
            for copy in copies:
                assert float(copy(y, x)) == pytest.approx(out["value"], rel=rtol, abs=1e-7)
        return out
    model.compile(optimizer="sgd", loss=loss)
    out["value"] = before = model.evaluate(x, y, batch_size=len(x), verbose=0)
    path = Path(tmp_path) / "loss_round_trip.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded.loss) is cls and loaded.loss.get_config() == config
    assert loaded.evaluate(x, y, batch_size=len(x), verbose=0) == pytest.approx(before, rel=rtol, abs=1e-7)
    out["loaded"] = loaded
    return out


@pytest.fixture(autouse=True)
def _toolkit_messages_on_stderr():
    """The toolkit's log messages ([data], [resume], ...) reach stderr at INFO, as a command-line user sees them
    (hpatches_kit.log.setup_cli_logging does this for the CLIs; tests also call the library and CLI modules
    directly), and a test's -q/-v does not leak into the next one."""
    from hpatches_kit.log import add_stderr_handler

    add_stderr_handler()
    yield


@pytest.fixture(autouse=True)
def _restore_float32_policy():
    """Tests that set a mixed-precision policy leave Keras's global policy as they found it (float32)."""
    yield
    keras = sys.modules.get("keras")
    if keras is not None:
        keras.mixed_precision.set_global_policy("float32")


@pytest.fixture
def tiny_dataset(tmp_path) -> Path:
    """4 sequences (2 i_, 2 v_) of 65x65 patches with 12, 9, 10, 7 tracks."""
    rng = np.random.default_rng(0)
    seqs = {
        name: make_tracks(n, 65, rng) for name, n in [("i_alpha", 12), ("i_beta", 9), ("v_gamma", 10), ("v_delta", 7)]
    }
    return write_dataset(tmp_path / "hpatches-release", seqs)
