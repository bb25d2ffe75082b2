"""Writing an HPatches-format dataset folder: stacked-patch PNGs per sequence, ``dataset.json``,
``splits.json``, built in a temporary folder and swapped into place (:func:`build_dataset_folder`).

The one writer of :mod:`.extract` and :mod:`.synth`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..io import atomic_write_json, atomic_write_png
from ..layout import TYPES, VARIANTS
from .fsio import build_then_swap

GENERATOR_VERSION = 1
NUM_TARGETS = 5


def make_splits(names, seed: int = 0, test_fraction: float = 40 / 116) -> dict:
    """a/b/c random train/test splits (stratified by i_/v_, ~40/116 test as in HPatches) + illum/view/full,
    in the official ``splits.json`` format."""
    names = sorted(names)
    illum = [n for n in names if n.startswith("i_")]
    view = [n for n in names if n.startswith("v_")]
    other = [n for n in names if n not in illum and n not in view]
    out = {}
    for j, split in enumerate("abc"):
        rng = np.random.default_rng([seed, 1000 + j])
        test = []
        for group in (illum, view, other):
            if not group:
                continue
            k = int(round(len(group) * test_fraction))
            if len(group) > 1:
                k = min(max(k, 1), len(group) - 1)
            test += [group[i] for i in sorted(rng.permutation(len(group))[:k])]
        test = sorted(test)
        out[split] = {"name": split, "train": [n for n in names if n not in set(test)], "test": test}
    out["illum"] = {"name": "illum", "test": illum}
    out["view"] = {"name": "view", "test": view}
    out["full"] = {"name": "full", "test": names}
    return out


def overlap_summary(per_seq_overlaps: list[dict]) -> dict:
    """Median overlap per variant and per image type over all tracks."""
    med = {}
    for v in VARIANTS:
        arrs = [o[v] for o in per_seq_overlaps if len(o[v])]
        allv = np.concatenate(arrs) if arrs else np.zeros((0, NUM_TARGETS))
        med[v] = float(np.median(allv)) if allv.size else None
        for k in range(NUM_TARGETS):
            med[f"{v}{k + 1}"] = float(np.median(allv[:, k])) if allv.size else None
    return med


def write_stack_png(path, patches: np.ndarray) -> None:
    """``(N, P, P) uint8`` patches as one vertically stacked PNG, atomically (zlib level 1: the stacks are
    written by the thousand and level 1 is ~2x faster than 3 for ~4% larger files; output is byte-stable)."""
    patches = np.ascontiguousarray(patches)
    atomic_write_png(path, patches.reshape(-1, patches.shape[-1]), compression=1)


def write_sequence(out_dir: Path, name: str, tracks: np.ndarray, suffix: str = "") -> None:
    d = Path(out_dir) / name
    d.mkdir(parents=True, exist_ok=True)
    for j, t in enumerate(TYPES):
        write_stack_png(d / f"{t}{suffix}.png", tracks[:, j])


def write_dataset_meta(
    out_dir: Path,
    generator: str,
    seed: int,
    parameters: dict,
    per_seq: dict,
    overlaps: list[dict],
    extra: dict | None = None,
    test_fraction: float = 40 / 116,
) -> None:
    names = sorted(per_seq)
    meta = {
        "generator": generator,
        "generator_version": GENERATOR_VERSION,
        "seed": int(seed),
        "parameters": parameters,
        "overlap_median": overlap_summary(overlaps),
        "counts": {
            "sequences": len(names),
            "illum_sequences": sum(n.startswith("i_") for n in names),
            "view_sequences": sum(n.startswith("v_") for n in names),
            "tracks": int(sum(per_seq.values())),
            "per_sequence": {n: int(per_seq[n]) for n in names},
        },
    }
    if extra:
        meta.update(extra)
    atomic_write_json(Path(out_dir) / "dataset.json", meta)
    atomic_write_json(Path(out_dir) / "splits.json", make_splits(names, seed, test_fraction))


def build_dataset_folder(out_dir, inputs=None):
    """Context manager yielding a temporary folder to write a dataset in; on success it replaces ``out_dir``
    (only an empty folder or a dataset this toolkit completed -- its ``.hpatches-kit.json`` marker present and
    nothing foreign beside it -- is ever replaced; anything else raises :class:`DataError` before any work).
    The one publish step of :func:`extract_dataset` and :mod:`.synth` (see :func:`.fsio.build_then_swap`;
    ``inputs``: ``{flag: paths}`` read by the build, which ``out_dir`` may not overlap)."""
    return build_then_swap(out_dir, "dataset", DATASET_REFUSAL, inputs=inputs)


DATASET_REFUSAL = "output folder exists and is not a dataset built by hpatches-kit; refusing to overwrite"
