"""Brown / UBC PhotoTour: reader of the real layout, FPR95 and revisited mAP against brute force, CLI, training.

Every test writes its own tiny Brown-format subset: ``patches*.bmp`` sheets (16x16 grid of 64x64 patches),
``info.txt`` (3-D point id, unused), ``interest.txt`` (reference image id, ...) and ``m50_*.txt`` pair files.
"""

from __future__ import annotations

import argparse
import json

import cv2
import numpy as np
import pytest

from hpatches_kit.cli import eval as eval_cli
from hpatches_kit.data.brown import brown_tracks, open_brown, read_matches, read_patches
from hpatches_kit.data.errors import DataError
from hpatches_kit.evaluation.brown import fpr_at_recall, revisited_map

PAIRS = "m50_100000_100000_0.txt"


def coded_patches(n: int) -> np.ndarray:
    """Patch i: grey level i % 251 everywhere, i // 251 at pixel (0, 0): every patch is identifiable."""
    p = np.empty((n, 64, 64), np.uint8)
    p[:] = (np.arange(n) % 251)[:, None, None]
    p[:, 0, 0] = np.arange(n) // 251
    return p


def patch_id(p: np.ndarray) -> np.ndarray:
    return p[..., 0, 0].astype(np.int64) * 251 + p[..., 1, 1]


def write_brown(root, patches, point_ids, image_ids=None, pairs=None):
    root.mkdir(parents=True, exist_ok=True)
    n = len(patches)
    for k in range(-(-n // 256)):
        sheet = np.zeros((1024, 1024), np.uint8)
        for c, p in enumerate(patches[256 * k : 256 * (k + 1)]):
            sheet[64 * (c // 16) : 64 * (c // 16) + 64, 64 * (c % 16) : 64 * (c % 16) + 64] = p
        cv2.imwrite(str(root / f"patches{k:04d}.bmp"), sheet)
    (root / "info.txt").write_text("".join(f"{q} 0\n" for q in point_ids))
    if image_ids is not None:
        (root / "interest.txt").write_text("".join(f"{i} 10.5 20.5 0.1 2.0\n" for i in image_ids))
    if pairs is not None:
        (root / PAIRS).write_text("".join(f"{a} {point_ids[a]} 0 {b} {point_ids[b]} 0 0\n" for a, b in pairs))
    return root


def brute_fpr95(d, y):
    """Reference: the smallest threshold t with recall(d <= t) >= 0.95; FPR = negatives with d <= t / negatives."""
    for t in np.sort(d):
        if np.sum((d <= t) & (y == 1)) >= 0.95 * np.sum(y == 1):
            return np.sum((d <= t) & (y == 0)) / np.sum(y == 0)


def test_fpr95_hand_worked_and_brute_force():
    # 20 positives, 10 negatives; 19 positives (95%) are reached at the 23rd item, 4 negatives precede it
    lab = [1] * 5 + [0] + [1] * 5 + [0, 0] + [1] * 8 + [0] + [1] + [0] * 6 + [1]
    d = np.arange(len(lab)) / 10.0
    assert fpr_at_recall(d, lab) == pytest.approx(4 / 10)
    rng = np.random.default_rng(0)
    for _ in range(20):
        m = int(rng.integers(20, 300))
        y = (rng.random(m) < 0.5).astype(int)
        y[:2] = [0, 1]
        dist = rng.permutation(m) + rng.random() * 0.5 + np.where(y == 1, 0, rng.integers(0, 40)) * 1.0
        dist = dist + rng.random(m) * 1e-3  # distinct values
        assert fpr_at_recall(dist, y) == pytest.approx(brute_fpr95(dist, y))


def test_read_patches_sheets_and_order(tmp_path):
    n = 300  # two sheets, the second padded
    root = write_brown(tmp_path / "liberty", coded_patches(n), np.arange(n) // 3)
    allp = read_patches(root)
    assert allp.shape == (n, 64, 64)
    np.testing.assert_array_equal(patch_id(allp), np.arange(n))
    idx = np.array([299, 0, 257, 255, 256, 5, 5])
    np.testing.assert_array_equal(patch_id(read_patches(root, idx)), idx)
    small = read_patches(root, [1, 290], size=32)
    assert small.shape == (2, 32, 32) and small[1, 5, 5] == 290 % 251


def test_bad_input_names_the_file(tmp_path, capsys):
    n = 300
    ids = np.arange(n) // 3
    root = write_brown(tmp_path / "b" / "liberty", coded_patches(n), ids, pairs=[(0, 1), (0, 3)])
    (root / "patches0001.bmp").unlink()
    rc = eval_cli.main(["--benchmark", "brown", "--data", str(tmp_path / "b"), "--subset", "liberty", "--no-progress"])
    assert rc == 2 and "patches0001.bmp" in capsys.readouterr().err
    root = write_brown(tmp_path / "c" / "liberty", coded_patches(n), ids, pairs=[(0, 1), (0, 3)])
    (root / PAIRS).write_text("0 0 0 1 0 0 0\n0 0 0 3 1\n")
    rc = eval_cli.main(["--benchmark", "brown", "--data", str(tmp_path / "c"), "--subset", "liberty", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and PAIRS in err and "line 2" in err and "7 columns" in err
    (root / PAIRS).write_text("0 5 0 1 0 0 0\n")  # point id disagrees with info.txt
    with pytest.raises(DataError, match="point id"):
        read_matches(root / PAIRS, ids)
    (root / "info.txt").unlink()
    with pytest.raises(DataError, match="info.txt"):
        open_brown(root)


def _brute_revisited(desc, pid, iid, quirks):
    """Reference written from the protocol text: per image, every ordered same-point pair (a, p) is a query;
    negative = nearest other-point patch of the image (or patch 0 under the reference quirks for <= 1000
    patches); AP of the queries ranked by 1 - SNN ratio."""
    aps = []
    for img in np.unique(iid):
        s = np.nonzero(iid == img)[0]
        x, lab = desc[s].astype(np.float64), pid[s]
        D = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))
        q = []
        for a in range(len(s)):
            if quirks:
                n = 0
            else:
                n = min((j for j in range(len(s)) if lab[j] != lab[a]), key=lambda j: D[a, j])
            for p in range(len(s)):
                if p != a and lab[p] == lab[a]:
                    dp, dn = D[a, p], D[a, n]
                    q.append((1 - min(dp, dn) / max(dp, dn), dp <= dn))
        if not q:
            continue
        sc, ok = np.array([t[0] for t in q]), np.array([t[1] for t in q])
        # step-wise AP over distinct score thresholds (ties form one step): sum of (R_k - R_k-1) P_k
        ap, prev_r = 0.0, 0.0
        for thr in sorted(set(sc), reverse=True):
            sel = sc >= thr
            r = ok[sel].sum() / max(ok.sum(), 1)
            ap += (r - prev_r) * ok[sel].sum() / sel.sum()
            prev_r = r
        aps.append(ap)
    return float(np.mean(aps))


@pytest.mark.parametrize("quirks", [False, True])
def test_revisited_map_matches_brute_force(quirks):
    rng = np.random.default_rng(1)
    pid = np.repeat(np.arange(40), rng.integers(1, 5, 40))
    iid = (np.arange(40) % 3)[pid]  # all patches of a point share its reference image
    centres = rng.normal(size=(40, 8))
    desc = centres[pid] + rng.normal(scale=0.6, size=(len(pid), 8))
    assert revisited_map(desc, pid, iid, reference_quirks=quirks) == pytest.approx(
        _brute_revisited(desc, pid, iid, quirks), abs=1e-12
    )


def test_brown_cli_fpr95_and_revisited_on_written_set(tmp_path, capsys):
    rng = np.random.default_rng(2)
    n = 280
    pid = np.arange(n) // 4
    iid = pid % 5
    pairs = [(i, i + 1) for i in range(0, n, 4)] + [(i, i + 6) for i in range(0, n - 6, 4)]
    root = write_brown(tmp_path / "brown" / "liberty", coded_patches(n), pid, iid, pairs)
    desc = rng.normal(size=(n, 1)).astype(np.float32)  # hand-made 1-D descriptors: distance = |x_a - x_b|
    np.save(tmp_path / "d.npy", desc)
    out = tmp_path / "r.json"
    rc = eval_cli.main(
        [
            "--benchmark",
            "brown",
            "--data",
            str(tmp_path / "brown"),
            "--subset",
            "liberty",
            "--descriptors",
            str(tmp_path / "d.npy"),
            "--json",
            str(out),
            "--plots",
            str(tmp_path / "pl"),
            "--no-progress",
        ]
    )
    assert rc == 0
    r = json.loads(out.read_text())["results"][0]
    a, b = np.array(pairs).T
    y = (pid[a] == pid[b]).astype(int)
    assert r["num_pairs"] == len(pairs) and r["fpr95"] == pytest.approx(brute_fpr95(np.abs(desc[a, 0] - desc[b, 0]), y))
    assert r["revisited_map"] == pytest.approx(_brute_revisited(desc, pid, iid, True))
    assert "FPR95" in capsys.readouterr().out and (tmp_path / "pl" / "brown_roc.png").stat().st_size > 1000
    # the same descriptors as a CSV (one row per patch, info.txt order)
    np.savetxt(tmp_path / "d.csv", np.column_stack([desc, np.zeros_like(desc)]), delimiter=",")
    rc = eval_cli.main(
        [
            "--benchmark",
            "brown",
            "--data",
            str(root),
            "--subset",
            "liberty",
            "--descriptors",
            str(tmp_path / "d.csv"),
            "--no-revisited",
            "--json",
            str(out),
            "--no-progress",
        ]
    )
    assert rc == 0 and json.loads(out.read_text())["results"][0]["fpr95"] == pytest.approx(r["fpr95"])
    capsys.readouterr()
    # SIFT on the coded (flat) patches runs end to end, describing only the paired patches
    rc = eval_cli.main(
        [
            "--benchmark",
            "brown",
            "--data",
            str(root),
            "--baseline",
            "sift",
            "--no-revisited",
            "--subset",
            "liberty",
            "--no-progress",
        ]
    )
    assert rc == 0 and "sift" in capsys.readouterr().out


def test_brown_tracks_layout(tmp_path):
    counts = [1, 2, 3, 16, 20, 5]
    pid = np.repeat(np.arange(len(counts)) * 10, counts)
    order = np.random.default_rng(3).permutation(len(pid))  # points interleaved across the sheets
    pid = pid[order]
    root = write_brown(tmp_path / "yosemite", coded_patches(len(pid)), pid)
    tracks, held = brown_tracks(root, size=64, seed=0)
    assert held is None and tracks.shape == (5, 16, 64, 64) and tracks.dtype == np.uint8
    ids = patch_id(tracks)
    members = {q: set(np.nonzero(pid == q)[0]) for q in np.unique(pid)}
    seen = []
    for t in ids:
        q = pid[t[0]]
        seen.append(q)
        assert set(t) <= members[q]  # one point per track
        n = len(members[q])
        if n < 16:  # every patch used, cyclically: 16 // n or 16 // n + 1 times each
            assert set(t) == members[q] and set(np.bincount(t, minlength=max(t) + 1)[list(members[q])]) <= {
                16 // n,
                16 // n + 1,
            }
        else:
            assert len(set(t)) == 16
    assert sorted(seen) == [10, 20, 30, 40, 50]  # the 1-patch point is dropped
    tr, held = brown_tracks(root, size=32, seed=0, holdout=0.2)
    assert tr.shape == (4, 16, 32, 32) and held.shape == (1, 16, 32, 32)


def test_train_descriptor_reads_brown_tracks(tmp_path):
    """``hpatches-train descriptor --format brown``: the arguments reach :func:`brown_tracks` and give the
    ``(T, 16, P, P) uint8`` tracks the S x K pipeline takes (5% of the points held out; none with --split none).
    The model.fit path after this point is the HPatches one (tests/test_cli_train.py)."""
    from hpatches_kit.cli import train_descriptor
    from hpatches_kit.training.descriptor import DescriptorOptions, load_tracks

    pid = np.repeat(np.arange(40), 3)
    root = write_brown(tmp_path / "notredame", coded_patches(len(pid)), pid)
    p = argparse.ArgumentParser()
    train_descriptor.configure(p)
    base = ["--data", str(root), "--format", "brown", "--patch-size", "32", "--verbose", "0"]

    def brown_training_tracks(args):
        d = load_tracks(DescriptorOptions.from_namespace(args))
        return d.root, d.train, d.test, d.how

    got_root, tracks, held, how = brown_training_tracks(p.parse_args(base))
    assert got_root == root and tracks.shape == (38, 16, 32, 32) and held.shape == (2, 16, 32, 32)
    assert tracks.dtype == np.uint8 and "38 train / 2 held-out" in how
    # each track holds the 3 patches of one point (grey level = patch id), each on 5 or 6 of the 16 slots
    for t in tracks:
        grey = t[:, 5, 5].astype(int)
        assert len(set(grey)) == 3 and len(set(pid[grey])) == 1 and set(np.bincount(grey)[grey]) <= {5, 6}
    _, tracks, held, _ = brown_training_tracks(p.parse_args(base + ["--split", "none"]))
    assert tracks.shape == (40, 16, 32, 32) and held is None
    with pytest.raises(DataError, match="info.txt"):
        brown_training_tracks(p.parse_args(["--data", str(tmp_path), "--format", "brown"]))


def test_same_label_pairs_vs_mask():
    lab = np.random.default_rng(5).integers(0, 12, 90)
    same = lab[:, None] == lab[None]
    np.fill_diagonal(same, False)
    from hpatches_kit.evaluation.brown import same_label_pairs

    a, p = same_label_pairs(lab)
    ra, rp = np.nonzero(same)
    np.testing.assert_array_equal(a, ra)
    np.testing.assert_array_equal(p, rp)
