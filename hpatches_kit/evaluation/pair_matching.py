"""Image-pair matching: embed all left and right images, match them through the cosine similarity matrix.

Accuracy three ways (pair ``i`` is correct when left ``i`` is matched to right ``i``):

* ``row``: best match by row, ``argmax_j S[i, j]`` (each left image independently);
* ``both_axes``: by both axes -- row scores plus column scores, ``softmax_j(S/t)[i, j] + softmax_i(S/t)[i, j]``
  (dual softmax, temperature ``t``), then the best by row: a right image that another left image matches
  much better is penalised;
* ``assignment``: the optimal one-to-one assignment maximising the total similarity
  (``scipy.optimize.linear_sum_assignment``).

Chance level is ``1/N`` for all three (a random permutation has one fixed point on average).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

METHODS = ("row", "both_axes", "assignment")


def cosine_matrix(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    l = np.asarray(left, np.float64)
    r = np.asarray(right, np.float64)
    l = l / np.maximum(np.linalg.norm(l, axis=1, keepdims=True), 1e-12)
    r = r / np.maximum(np.linalg.norm(r, axis=1, keepdims=True), 1e-12)
    return l @ r.T


def _softmax(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def both_axes_scores(sim: np.ndarray, temperature: float = 0.1) -> np.ndarray:
    return _softmax(sim / temperature, axis=1) + _softmax(sim / temperature, axis=0)


def match(sim: np.ndarray, method: str = "row", temperature: float = 0.1) -> np.ndarray:
    """For each left image, the index of its matched right image."""
    sim = np.asarray(sim, np.float64)
    if method == "row":
        return sim.argmax(axis=1)
    if method == "both_axes":
        return both_axes_scores(sim, temperature).argmax(axis=1)
    if method == "assignment":
        if sim.shape[0] != sim.shape[1]:
            raise ValueError("one-to-one assignment needs as many left as right images")
        rows, cols = linear_sum_assignment(-sim)
        out = np.empty(sim.shape[0], dtype=int)
        out[rows] = cols
        return out
    raise ValueError(f"unknown matching method {method!r}; expected one of {', '.join(METHODS)}")


def pair_matching_scores(left_emb, right_emb, temperature: float = 0.1) -> dict:
    """Accuracy of the three matchers, chance level, mean rank of the true match and the matrix itself."""
    sim = cosine_matrix(left_emb, right_emb)
    n = sim.shape[0]
    truth = np.arange(n)
    acc, preds = {}, {}
    for m in METHODS:
        preds[m] = match(sim, m, temperature)
        acc[m] = float(np.mean(preds[m] == truth))
    # rank (1 = best) of the true right image in each row
    ranks = 1 + (sim > sim[truth, truth][:, None]).sum(axis=1)
    return {
        "n_pairs": n,
        "accuracy": acc,
        "chance": 1.0 / n,
        "mean_rank": float(ranks.mean()),
        "top5": float(np.mean(ranks <= 5)),
        "temperature": temperature,
        "predictions": {m: p.tolist() for m, p in preds.items()},
        "similarity": sim,
    }


def embed(model, images: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """Run ``model`` (Keras model or ``.keras`` path) on ``(N, S, S, 3)`` images in ``[-1, 1]``."""
    import keras

    if not hasattr(model, "predict"):
        import hpatches_kit.models.vit  # noqa: F401  (registers the custom layers)

        model = keras.models.load_model(model)
    want = model.input_shape[1:3]
    if tuple(images.shape[1:3]) != tuple(want):
        raise ValueError(f"images are {images.shape[1]}x{images.shape[2]}, the model expects {want[0]}x{want[1]}")
    return np.asarray(model.predict(images, batch_size=batch_size, verbose=0), np.float32)


def evaluate_pairs(model, pairs, batch_size: int = 32, temperature: float = 0.1) -> dict:
    """Embed ``pairs`` (:class:`~hpatches_kit.data.stereo.StereoPairs`) and score them."""
    res = pair_matching_scores(embed(model, pairs.left, batch_size), embed(model, pairs.right, batch_size), temperature)
    res["names"] = list(pairs.names)
    return res
