"""Real validation (hpatches_kit.evaluation.real): patches from the real scenes in ../shared/real-sequences at
both noise regimes, the cache, and the PASS rule on hand-made numbers."""

import json

import numpy as np
import pytest

from hpatches_kit.data import load_dataset
from hpatches_kit.evaluation.real import REGIMES, beats_baselines, build_real_patches, compare_on_real


def test_beats_baselines_rule_hand_worked():
    res = {
        "hpatches": {
            "rows": {
                "mine": {"verification": 80, "matching": 45, "retrieval": 60},
                "SIFT": {"verification": 75, "matching": 41, "retrieval": 57},
                "RootSIFT": {"verification": 71, "matching": 46, "retrieval": 58},
            }
        }
    }
    v = beats_baselines(res, "mine")["hpatches"]
    assert v["verification"] == (80, 75, True)
    assert v["matching"] == (45, 46, False)  # RootSIFT is the better baseline here
    assert v["retrieval"] == (60, 58, True)
    assert beats_baselines(res, "mine", ("SIFT",))["hpatches"]["matching"][2]
    assert not beats_baselines(res, "mine", margin=3.0)["hpatches"]["retrieval"][2]  # +2 is not > 3
    with pytest.raises(KeyError, match="no row 'other'"):
        beats_baselines(res, "other")


def test_real_patches_both_regimes_cached(real_sequences, tmp_path):
    roots = {r: build_real_patches(real_sequences, r, max_patches=25, cache=tmp_path, progress=False) for r in REGIMES}
    assert roots["hpatches"] != roots["small"]
    meta = {r: json.loads((p / "dataset.json").read_text()) for r, p in roots.items()}
    assert meta["small"]["parameters"]["jitter_scale"] == pytest.approx(1 / 3)
    for v in "eht":  # a third of the jitter leaves the patches much closer to exact reprojections
        assert meta["small"]["overlap_median"][v] > meta["hpatches"]["overlap_median"][v]
    ds = load_dataset(roots["hpatches"], progress=False)
    assert sorted(ds.names) == ["v_boat", "v_wormhole"] and all(len(s.tracks) == 25 for s in ds)
    stamp = (roots["small"] / "dataset.json").stat().st_mtime_ns
    assert build_real_patches(real_sequences, "small", max_patches=25, cache=tmp_path, progress=False) == roots["small"]
    assert (roots["small"] / "dataset.json").stat().st_mtime_ns == stamp  # reused, not rebuilt
    with pytest.raises(ValueError, match="unknown regime"):
        build_real_patches(real_sequences, "huge", cache=tmp_path)


def test_compare_on_real_rows(real_sequences, tmp_path):
    raw = compare_on_real(
        real_sequences,
        {},
        baselines=("sift", "raw"),
        regimes=("small",),
        max_patches=25,
        cache=tmp_path,
        per_sequence=True,
    )
    rows = raw["small"]["rows"]
    assert set(rows) == {"SIFT", "raw"}
    assert raw["small"]["baselines"] == ["SIFT", "raw"]  # what the plot hatches
    assert all(0 <= rows[n][t] <= 100 for n in rows for t in ("verification", "matching", "retrieval"))
    assert rows["SIFT"]["matching"] > rows["raw"]["matching"]  # real scenes: SIFT beats raw pixels
    assert set(rows["SIFT"]["matching_per_sequence"]) == {"v_boat", "v_wormhole"}
    assert np.isclose(np.mean(list(rows["SIFT"]["matching_per_sequence"].values())), rows["SIFT"]["matching"])
