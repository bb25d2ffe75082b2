"""Options shared by the patch benchmarks: where the descriptors come from (``--model``, ``--baseline``,
``--descriptors``, ``--batch-size``) and the describer they select."""

from __future__ import annotations

from pathlib import Path

from ..evaluation.describers import BASELINES, DESCRIBE_BATCH
from ..models.precision import PRECISIONS


def add_describer_arguments(p, descriptors_help: str | None = None, batch_size: int = DESCRIBE_BATCH) -> None:
    """Add ``--model`` / ``--baseline`` (one of them, default sift) [/ ``--descriptors``] and ``--batch-size``.

    Args:
        p: the parser.
        descriptors_help: help of ``--descriptors`` (``None``: the benchmark takes no precomputed descriptors).
        batch_size: default of ``--batch-size``.
    """
    src = p.add_mutually_exclusive_group()
    if descriptors_help:
        src.add_argument("--descriptors", metavar="PATH", help=descriptors_help)
    src.add_argument("--model", metavar="FILE.keras", help="Keras descriptor model")
    src.add_argument("--baseline", choices=BASELINES.choices(), help="baseline descriptor (default: sift)")
    p.add_argument("--batch-size", type=int, default=batch_size, help=f"batch size for --model (default: {batch_size})")
    p.add_argument(
        "--precision",
        default="auto",
        choices=PRECISIONS,
        help="precision --model runs in (default auto: the device's best, as training resolves it; "
        "float32 forces full precision)",
    )


def model_label(path) -> str:
    """The name results and figures give a model file: its run folder for a training run's ``model.keras``
    (``runs/sosnet-short/model.keras`` -> ``sosnet-short``), else the file's stem, which is its model card's name
    (``models/l2net-embedded.keras`` -> ``l2net-embedded``).

    Example:
        >>> model_label("runs/sosnet-short/model.keras"), model_label("models/l2net-embedded.keras")
        ('sosnet-short', 'l2net-embedded')
    """
    p = Path(path)
    return p.parent.name if p.name == "model.keras" and p.parent.name not in ("", ".") else p.stem


def not_held_out(model_path, data_root) -> str | None:
    """Why the model was trained on the photos of the test set at ``data_root``, or ``None``: its model card
    (``<model>.md`` beside the ``.keras``) has a row ``| not held out | DATASET ... |`` naming a folder of
    ``data_root`` (the embedded default is ``embedded-v2``), or its training run (``run_args.json`` beside a
    ``model.keras``) trained on the same data with ``--split none``.

    Example:
        >>> not_held_out("models/l2net-synth-v2.keras", "/cache/embedded-v2/hpatches")  # doctest: +SKIP
        'models/l2net-synth-v2.md: embedded-v2 ...'
    """
    import json
    import re

    if data_root is None:
        return None
    model, root = Path(model_path), Path(data_root).resolve()
    card = model.with_suffix(".md")
    if card.is_file():
        for line in card.read_text(errors="replace").splitlines():
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) >= 2 and cells[0].lower() == "not held out":
                names = re.findall(r"`([^`]+)`", cells[1]) or cells[1].split()[:1]
                if any(n in root.parts for n in names):
                    return f"{card}: {cells[1]}"
    args = model.parent / "run_args.json"
    if model.name == "model.keras" and args.is_file():
        try:
            a = json.loads(args.read_text())
        except (OSError, ValueError):
            return None
        a = a.get("arguments", a) if isinstance(a, dict) else {}
        if isinstance(a, dict) and str(a.get("split")) == "none":
            from ..data.embedded import default_root

            data = Path(a["data"]).resolve() if a.get("data") else default_root().resolve()
            if root == data or data in root.parents or root in data.parents:
                return f"{args}: trained with --split none on {data}"
    return None


def describer_from_options(o):
    """``(describer, label)`` for ``--model`` (label: :func:`model_label`) or ``--baseline`` (default sift).

    Raises:
        OptionError: ``batch_size`` below 1 (:func:`hpatches_kit.checks.check_options`, run by the CLI first too).
    """
    from ..evaluation import get_baseline, keras_describer

    if getattr(o, "model", None):
        return keras_describer(
            o.model,
            denoiser=getattr(o, "denoiser", None),
            batch_size=o.batch_size,
            precision=getattr(o, "precision", "auto"),
        ), model_label(o.model)
    name = getattr(o, "baseline", None) or "sift"
    return get_baseline(name), name
