"""Real validation: HPatches-format patches cut from real photographed homography sequences, evaluated with
the official protocol next to SIFT and RootSIFT on the same patches.

A synthetic test split flatters a descriptor trained on the same generator; real photographs (real lenses,
sensors, lighting, 3-D structure) do not. :func:`build_real_patches` extracts patches from a folder of real
sequences (``hpatches-sequences-release`` or Oxford layout) at one of two geometric-noise regimes
(:data:`REGIMES`): HPatches' calibrated e/h/t jitter, and a third of it (patches nearly exact
reprojections, where SIFT's precise gradient histograms shine). Builds are cached by source, regime and seed.
:func:`compare_on_real` evaluates descriptors and the baselines on them.

Never train on these sequences or tune a generator to them: they measure generalisation.

Example::

    from hpatches_kit.evaluation.real import compare_on_real
    rows = compare_on_real("../shared/real-sequences", {"mine": "models/l2net-embedded.keras"})
    rows["hpatches"]["mine"]["matching"]   # headline matching mAP (%) at HPatches' noise levels
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from .registry import TASKS

__all__ = ["REGIMES", "build_real_patches", "compare_on_real", "beats_baselines"]

#: Geometric-noise regimes: name -> multiplier of HPatches' calibrated jitter magnitudes.
REGIMES = {"hpatches": 1.0, "small": 1.0 / 3.0}
BASELINE_NAMES = {"sift": "SIFT", "rootsift": "RootSIFT"}


def _source_key(src: Path, regime: str, seed: int, max_patches) -> str:
    from ..data.extract import GENERATOR_VERSION, find_source_sequences

    h = hashlib.sha256()
    for d in find_source_sequences(src):
        for f in sorted(d.iterdir()):
            st = f.stat()
            h.update(f"{d.name}/{f.name}:{st.st_size}:{int(st.st_mtime)}".encode())
    h.update(f"{regime}:{REGIMES[regime]}:{seed}:{max_patches}:{GENERATOR_VERSION}".encode())
    return h.hexdigest()[:16]


def build_real_patches(
    src, regime: str = "hpatches", seed: int = 0, max_patches=None, cache=None, progress: bool = True
) -> Path:
    """Extract HPatches-format patches from the real sequences under ``src`` at ``regime``'s geometric
    noise (cached under ``cache``, default ``<hpatches-kit cache>/real-validation``); returns the dataset
    folder. Raises :class:`DataError` naming ``src`` when it holds no sequences."""
    from ..data.embedded import cache_dir
    from ..data.extract import extract_dataset

    if regime not in REGIMES:
        raise ValueError(f"unknown regime {regime!r}; expected one of {', '.join(REGIMES)}")
    src = Path(src)
    cache = Path(cache) if cache else cache_dir() / "real-validation"
    out = cache / f"{regime}-{_source_key(src, regime, seed, max_patches)}"
    if not (out / "dataset.json").is_file():
        extract_dataset(
            src,
            out,
            seed=seed,
            max_patches=max_patches,
            jitter="hpatches",
            jitter_scale=REGIMES[regime],
            progress=progress,
        )
    return out


def compare_on_real(
    src,
    models: dict,
    baselines=("sift", "rootsift"),
    regimes=tuple(REGIMES),
    seed: int = 0,
    max_patches=None,
    cache=None,
    progress: bool = False,
    per_sequence: bool = False,
) -> dict:
    """``{regime: {"rows": {name: {task: headline mAP %}}, "baselines": [row names of the baselines], ...}}`` for
    each ``models`` entry (name -> ``.keras`` path or
    describer) and each baseline, on every sequence of the real patches (tasks generated, seed 42, L2).
    With ``per_sequence``, each row also holds ``"matching_per_sequence"`` ``{seq: mean over e/h/t}``."""
    from ..data import load_dataset
    from .api import evaluate
    from .describers import BASELINES, compute_descriptors, get_baseline, keras_describer

    out = {}
    for regime in regimes:
        root = build_real_patches(src, regime, seed=seed, max_patches=max_patches, cache=cache, progress=progress)
        ds = load_dataset(root, progress=False)
        rows = {}
        entries = list(models.items()) + [(BASELINE_NAMES.get(b, b), b) for b in baselines]
        for name, what in entries:
            if isinstance(what, str) and what in BASELINES:
                describer = get_baseline(what)
            elif callable(what) and not isinstance(what, (str, Path)):
                describer = what
            else:
                describer = keras_describer(str(what))
            res = evaluate(compute_descriptors(ds, describer, progress=False), dataset=ds, progress=False)
            row = {t: float(res[t]["headline"]["value"]) for t in TASKS}
            if per_sequence:
                row["matching_per_sequence"] = {
                    s: float(sum(v.values()) / len(v)) for s, v in res["matching"]["per_sequence"].items()
                }
            rows[name] = row
        out[regime] = {
            "data": str(root),
            "tracks": int(ds.num_tracks),
            "sequences": list(ds.names),
            "rows": rows,
            "baselines": [BASELINE_NAMES.get(b, b) for b in baselines],
        }
    return out


def beats_baselines(result: dict, name: str, baselines=("SIFT", "RootSIFT"), margin: float = 0.0) -> dict:
    """``{regime: {task: (ours, best baseline, ours - best > margin)}}`` for the row ``name``."""
    verdict = {}
    for regime, r in result.items():
        rows = r["rows"]
        if name not in rows:
            raise KeyError(f"no row {name!r} in the {regime} results")
        verdict[regime] = {}
        for t in TASKS:
            best = max(rows[b][t] for b in baselines if b in rows)
            verdict[regime][t] = (rows[name][t], best, rows[name][t] - best > margin)
    return verdict
