"""Evaluate a saved descriptor model at the end of a training run, never losing the run on failure."""

from __future__ import annotations


def evaluate_saved(model_path, dataset, summarise=None, denoiser=None, noisy: bool = False, progress: bool = False):
    """Evaluate the saved descriptor model on every sequence of ``dataset`` (the held-out test sequences) with
    the official HPatches protocol (verification, matching, retrieval; task files generated for these sequences,
    L2 distance) via :mod:`hpatches_kit.evaluation`.

    Args:
        model_path: the ``.keras`` descriptor model.
        dataset: a loaded dataset (:func:`hpatches_kit.data.load_dataset`).
        summarise: ``f(result) -> dict``, the JSON summary kept of the
            :func:`hpatches_kit.evaluation.evaluate` result; default
            :func:`hpatches_kit.evaluation.summary.summarise_evaluation` (what ``metrics.json`` holds).
        denoiser: an optional ``.keras`` denoiser applied before the descriptor.
        noisy: describe the noisy patches.
        progress: show progress bars.

    Returns:
        ``(summary, text)``: ``summarise(result)`` and :func:`~hpatches_kit.evaluation.format_summary`; on any
        failure ``({"error": ...}, message)`` (the trained model is already saved and is never lost), or
        ``({"skipped": ...}, message)`` when the evaluation package cannot be imported.
    """
    try:
        from ..evaluation import compute_descriptors, evaluate, format_summary, keras_describer
        from ..evaluation.summary import summarise_evaluation
    except ImportError as e:
        return {"skipped": f"hpatches_kit.evaluation not available ({e})"}, "evaluation skipped: package not available"
    try:
        describer = keras_describer(str(model_path), denoiser=str(denoiser) if denoiser else None)
        descs = compute_descriptors(dataset, describer, noisy=noisy, progress=progress)
        res = evaluate(descs, dataset=dataset, split="full", distance="L2", progress=progress)
        return (summarise or summarise_evaluation)(res), format_summary(res)
    except Exception as e:  # noqa: BLE001 - the run is done; report, do not lose it
        return {"error": f"{type(e).__name__}: {e}"}, f"evaluation failed: {type(e).__name__}: {e}"
