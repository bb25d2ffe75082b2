"""Full-image matching (MMA, D2-Net protocol; homography accuracy) on sequences synthesised with known
homographies, against brute-force references; the CLI end to end; and a run on the real validation scenes."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from hpatches_kit.cli import eval as eval_cli
from hpatches_kit.evaluation import get_baseline
from hpatches_kit.evaluation.image_matching import (corner_error, detect_keypoints, evaluate_sequences, mutual_nn,
                                                    pair_accuracy, read_sequences)

H_, W_ = 240, 320


def texture(rng) -> np.ndarray:
    img = cv2.GaussianBlur(rng.normal(128, 60, (H_, W_)).astype(np.float32), (0, 0), 2.0)
    for _ in range(40):  # corners and blobs for the detectors
        x, y = int(rng.integers(10, W_ - 30)), int(rng.integers(10, H_ - 30))
        cv2.rectangle(img, (x, y), (x + int(rng.integers(6, 25)), y + int(rng.integers(6, 25))), float(rng.integers(0, 255)), -1)
    return np.clip(img, 0, 255).astype(np.uint8)


def homographies(rng, n=5):
    c = np.array([[1, 0, W_ / 2], [0, 1, H_ / 2], [0, 0, 1.0]])
    out = []
    for k in range(1, n + 1):
        a, s = np.deg2rad(4 * k * rng.choice([-1, 1])), 1 + 0.04 * k
        A = np.array([[s * np.cos(a), -s * np.sin(a), 3 * k], [s * np.sin(a), s * np.cos(a), -2 * k],
                      [1e-5 * k, -1e-5 * k, 1]])
        out.append(c @ A @ np.linalg.inv(c))
    return out


def write_sequences(root, rng):
    """``v_synth`` (HPatches layout, 5 warps), ``i_synth`` (identity, brightness/contrast changes) and
    ``boatlike`` (Oxford layout, the same warps as v_synth)."""
    ref = texture(rng)
    Hs = homographies(rng)
    warped = [cv2.warpPerspective(ref, H, (W_, H_), flags=cv2.INTER_LINEAR) for H in Hs]
    for name, oxford in (("v_synth", False), ("boatlike", True)):
        d = root / name
        d.mkdir(parents=True)
        for i, im in enumerate([ref] + warped, 1):
            cv2.imwrite(str(d / (f"img{i}.pgm" if oxford else f"{i}.ppm")), cv2.cvtColor(im, cv2.COLOR_GRAY2BGR) if not oxford else im)
            if i > 1:
                np.savetxt(d / (f"H1to{i}p" if oxford else f"H_1_{i}"), Hs[i - 2])
    d = root / "i_synth"
    d.mkdir()
    for i in range(1, 7):
        im = np.clip(ref.astype(np.float32) * (1 - 0.08 * (i - 1)) + 6 * (i - 1), 0, 255).astype(np.uint8)
        cv2.imwrite(str(d / f"{i}.ppm"), cv2.cvtColor(im, cv2.COLOR_GRAY2BGR))
        if i > 1:
            np.savetxt(d / f"H_1_{i}", np.eye(3))
    return root, ref, Hs


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return write_sequences(tmp_path_factory.mktemp("seq") / "sequences", np.random.default_rng(0))


def _project(H, p):
    q = np.column_stack([p, np.ones(len(p))]) @ H.T
    return q[:, :2] / q[:, 2:]


def test_mutual_nn_and_corner_error_vs_brute_force():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(60, 16)).astype(np.float32), rng.normal(size=(50, 16)).astype(np.float32)
    D = ((a[:, None] - b[None]) ** 2).sum(-1)
    ref = sorted((i, int(D[i].argmin())) for i in range(60) if D[:, D[i].argmin()].argmin() == i)
    assert [tuple(m) for m in mutual_nn(a, b).tolist()] == ref
    T = np.array([[1, 0, 3], [0, 1, 4], [0, 0, 1.0]])  # every corner moves by (3, 4): error 5
    assert corner_error(T, np.eye(3), (100, 200)) == pytest.approx(5.0)
    assert corner_error(None, np.eye(3), (100, 200)) == float("inf")


def test_exact_correspondences_give_mma_one_and_shuffled_descriptors_chance(synth):
    _, ref, Hs = synth
    rng = np.random.default_rng(2)
    kp_a = np.column_stack([rng.uniform(20, W_ - 20, 400), rng.uniform(20, H_ - 20, 400)])
    kp_b = _project(Hs[2], kp_a)  # exact correspondences
    desc = rng.normal(size=(400, 32)).astype(np.float32)
    r = pair_accuracy(kp_a, kp_b, desc, desc, Hs[2], ref.shape)
    assert r["matches"] == 400 and r["accuracy"] == [1.0] * 10 and r["corner_error"] < 1e-3
    perm = rng.permutation(400)
    r = pair_accuracy(kp_a, kp_b[perm], desc, desc[perm], Hs[2], ref.shape)  # still exact: same pairs
    assert r["accuracy"][0] == 1.0
    shuffled = desc[rng.permutation(400)]
    r = pair_accuracy(kp_a, kp_b, desc, shuffled, Hs[2], ref.shape)
    # chance: a random target keypoint lies within t px of the projection (brute force over all pairs)
    dist = np.linalg.norm(_project(Hs[2], kp_a)[:, None] - kp_b[None], axis=-1)
    for t in (1, 5, 10):
        chance = float(np.mean(dist <= t))
        assert abs(r["accuracy"][t - 1] - chance) < 0.02
    assert r["corner_error"] > 5


def test_detector_pipeline_on_synthetic_sequences(synth):
    root, _, _ = synth
    seqs = read_sequences(root)
    assert [s[0] for s in seqs] == ["v_boatlike", "i_synth", "v_synth"]
    sift = get_baseline("sift")

    raw = get_baseline("raw")

    def shuffled(p, _r=np.random.default_rng(3)):  # descriptors handed to the wrong keypoints
        d = raw(p)
        return d[_r.permutation(len(d))]

    res, bad = evaluate_sequences(seqs, {"sift": sift, "shuffled": shuffled}, max_keypoints=200, progress=False)
    assert res["meta"]["descriptor"] == "sift" and bad["meta"]["descriptor"] == "shuffled"
    assert res["overall"]["pairs"] == 15 and res["illumination"]["pairs"] == 5 and res["viewpoint"]["pairs"] == 10
    mma = np.array(res["overall"]["mma"])
    assert np.all(np.diff(mma) >= 0) and mma[2] > 0.6
    assert res["illumination"]["mma"][0] > 0.8 and res["viewpoint"]["homography"]["3"] >= 0.8
    by = {(p["sequence"], p["target"]): p for p in res["pairs"]}
    for k in range(2, 7):  # Oxford and HPatches layouts of the same images give the same numbers
        assert by[("v_boatlike", k)]["accuracy"] == by[("v_synth", k)]["accuracy"]
    # same keypoints, descriptors shuffled: (about) chance, no homography
    assert bad["overall"]["mean_features"] == res["overall"]["mean_features"]
    assert bad["overall"]["mma"][9] < 0.1 and bad["overall"]["homography"]["5"] == 0.0


def test_sequences_cli_json_plot_and_errors(synth, tmp_path, capsys):
    root, _, _ = synth
    out = tmp_path / "r.json"
    rc = eval_cli.main(["--benchmark", "sequences", "--data", str(root / "v_synth"), "--baseline", "rootsift",
                        "--max-keypoints", "200", "--method", "usac", "--json", str(out), "--plots",
                        str(tmp_path / "pl"), "--no-progress"])
    assert rc == 0
    r = json.loads(out.read_text())
    assert r["meta"]["descriptor"] == "rootsift" and len(r["overall"]["mma"]) == 10 and len(r["pairs"]) == 5
    assert "MMA@3" in capsys.readouterr().out and (tmp_path / "pl" / "mma_vs_threshold.png").stat().st_size > 1000
    bad = tmp_path / "bad" / "v_x"
    bad.mkdir(parents=True)
    for f in (root / "v_synth").iterdir():
        (bad / f.name).write_bytes(f.read_bytes())
    (bad / "H_1_4").write_text("1 0 0\n0 1\n")
    rc = eval_cli.main(["--benchmark", "sequences", "--data", str(bad), "--no-progress"])
    assert rc == 2 and "H_1_4" in capsys.readouterr().err


def test_real_sequences_sift_matches(real_sequences):
    seqs = [s for s in read_sequences(real_sequences) if s[0] == "v_wormhole"]
    kp = detect_keypoints(seqs[0][1][0], "dog", 300)
    assert kp.shape == (300, 3)
    res = evaluate_sequences([(n, ims[:3], Hs[:2]) for n, ims, Hs in seqs], get_baseline("sift"),
                             max_keypoints=300, progress=False)
    assert res["viewpoint"]["pairs"] == 2 and res["viewpoint"]["mma"][4] > 0.3
