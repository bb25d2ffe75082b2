"""Full-image matching (MMA, D2-Net protocol; homography accuracy) on sequences synthesised with known
homographies, against brute-force references; the CLI end to end; and a run on the real validation scenes."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from hpatches_kit.cli import eval as eval_cli
from hpatches_kit.evaluation import get_baseline
from hpatches_kit.evaluation.image_matching import (
    corner_error,
    detect_keypoints,
    evaluate_sequences,
    mutual_nn,
    pair_accuracy,
    read_sequences,
)

H_, W_ = 240, 320


def texture(rng) -> np.ndarray:
    img = cv2.GaussianBlur(rng.normal(128, 60, (H_, W_)).astype(np.float32), (0, 0), 2.0)
    for _ in range(40):  # corners and blobs for the detectors
        x, y = int(rng.integers(10, W_ - 30)), int(rng.integers(10, H_ - 30))
        cv2.rectangle(
            img, (x, y), (x + int(rng.integers(6, 25)), y + int(rng.integers(6, 25))), float(rng.integers(0, 255)), -1
        )
    return np.clip(img, 0, 255).astype(np.uint8)


def homographies(rng, n=5):
    c = np.array([[1, 0, W_ / 2], [0, 1, H_ / 2], [0, 0, 1.0]])
    out = []
    for k in range(1, n + 1):
        a, s = np.deg2rad(4 * k * rng.choice([-1, 1])), 1 + 0.04 * k
        A = np.array(
            [[s * np.cos(a), -s * np.sin(a), 3 * k], [s * np.sin(a), s * np.cos(a), -2 * k], [1e-5 * k, -1e-5 * k, 1]]
        )
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
            cv2.imwrite(
                str(d / (f"img{i}.pgm" if oxford else f"{i}.ppm")),
                cv2.cvtColor(im, cv2.COLOR_GRAY2BGR) if not oxford else im,
            )
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
    rc = eval_cli.main(
        [
            "--benchmark",
            "sequences",
            "--data",
            str(root / "v_synth"),
            "--baseline",
            "rootsift",
            "--max-keypoints",
            "200",
            "--method",
            "usac",
            "--json",
            str(out),
            "--plots",
            str(tmp_path / "pl"),
            "--no-progress",
        ]
    )
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
    res = evaluate_sequences(
        [(n, ims[:3], Hs[:2]) for n, ims, Hs in seqs], get_baseline("sift"), max_keypoints=300, progress=False
    )
    assert res["viewpoint"]["pairs"] == 2 and res["viewpoint"]["mma"][4] > 0.3


# -- issue 30: matcher options, scores, scene kinds, 2-image sequences --------------------------------------
from hpatches_kit.evaluation.image_matching import (  # noqa: E402
    beats,
    format_sequences,
    keypoint_patches,
    match_descriptors,
    read_scene_kinds,
)


def _loop_match(a, b, mutual, ratio):
    """NumPy loop reference: nearest neighbour of each a in b, Lowe's ratio, cross check."""
    out = []
    for i in range(len(a)):
        d = np.sqrt(((b - a[i]) ** 2).sum(1))
        order = np.argsort(d, kind="stable")
        j = int(order[0])
        if ratio is not None and len(b) > 1 and not d[j] < ratio * d[order[1]]:
            continue
        if mutual and int(np.argmin(np.sqrt(((a - b[j]) ** 2).sum(1)))) != i:
            continue
        out.append((i, j))
    return out


@pytest.mark.parametrize("mutual,ratio", [(True, None), (False, 0.8), (True, 0.8), (True, 0.95), (False, None)])
def test_match_descriptors_vs_numpy_loop(mutual, ratio):
    rng = np.random.default_rng(7)
    a = rng.normal(size=(80, 16)).astype(np.float32)
    b = np.concatenate([a[:40] + 0.3 * rng.normal(size=(40, 16)), rng.normal(size=(30, 16))]).astype(np.float32)
    got = [tuple(m) for m in match_descriptors(a, b, mutual=mutual, ratio=ratio).tolist()]
    ref = _loop_match(a.astype(np.float64), b.astype(np.float64), mutual, ratio)
    assert got == ref and len(ref) > 10
    # the ratio test only removes matches
    if ratio is not None:
        assert set(got) <= set(_loop_match(a.astype(np.float64), b.astype(np.float64), mutual, None))


def test_pair_scores_counts_and_matching_score_by_hand():
    # 4 reference keypoints; the target holds 3 exact projections (identity H) and one 2 px off
    kp_a = np.array([[10.0, 10], [30, 30], [50, 50], [70, 70]])
    kp_b = kp_a + np.array([[0, 0], [0, 0], [0, 0], [2, 0]])
    d = np.eye(4, dtype=np.float32)
    r = pair_accuracy(kp_a, kp_b, d, d, np.eye(3), (100, 100))
    assert r["matches"] == 4 and r["correct"][0] == 3 and r["correct"][2] == 4  # 1 px: 3, 3 px: 4
    assert r["covisible"] == 4.0 and r["matching_score"][0] == pytest.approx(0.75)
    # a keypoint of the target outside the reference view does not count as co-visible
    r = pair_accuracy(kp_a, np.vstack([kp_b[:3], [[150.0, 10]]]), d, d, np.eye(3), (100, 100), shape_b=(100, 200))
    assert r["covisible"] == 3.5


def test_scene_kinds_file_flag_and_errors(synth, tmp_path):
    root, _, _ = synth
    assert read_scene_kinds("leuven=i, bikes=viewpoint") == {"leuven": "illumination", "bikes": "viewpoint"}
    f = tmp_path / "kinds.txt"
    f.write_text("# scene kind\nboatlike illumination\nsynth viewpoint  # i_synth renamed\n")
    assert read_scene_kinds(f) == {"boatlike": "illumination", "synth": "viewpoint"}
    names = [s[0] for s in read_sequences(root, f)]
    assert names == ["i_boatlike", "v_synth", "v_synth"]  # i_synth named viewpoint
    f.write_text("boatlike blur\n")
    with pytest.raises(ValueError, match="kinds.txt.*boatlike.*blur"):
        read_scene_kinds(f)
    f.write_text("boatlike\n")
    with pytest.raises(ValueError, match="kinds.txt:1"):
        read_scene_kinds(f)
    # a scene-kinds.txt beside the data is read without a flag, and the split follows it
    (root / "scene-kinds.txt").write_text("boatlike i\n")
    try:
        res = evaluate_sequences(
            [s for s in read_sequences(root) if "boatlike" in s[0]],
            get_baseline("sift"),
            max_keypoints=100,
            progress=False,
        )
        assert res["illumination"]["pairs"] == 5 and res["viewpoint"]["pairs"] == 0
        assert list(res["scenes"]) == ["i_boatlike"] and res["scenes"]["i_boatlike"]["pairs"] == 5
        assert "i_boatlike" in format_sequences(res, scenes=True)
    finally:
        (root / "scene-kinds.txt").unlink()


def test_two_image_sequence_counts_and_extracts(synth, tmp_path):
    from hpatches_kit.data.extract import extract_dataset, read_source_sequence

    _, ref, Hs = synth
    pair = tmp_path / "pairs" / "facade"
    pair.mkdir(parents=True)
    warped = cv2.warpPerspective(ref, Hs[1], (W_, H_), flags=cv2.INTER_LINEAR)
    cv2.imwrite(str(pair / "img1.png"), ref)
    cv2.imwrite(str(pair / "img2.png"), warped)
    np.savetxt(pair / "H1to2p", Hs[1])
    name, ims, hs = read_source_sequence(pair)
    assert name == "v_facade" and len(ims) == 2 and len(hs) == 1 and np.allclose(hs[0], Hs[1] / Hs[1][2, 2])
    res = evaluate_sequences(tmp_path / "pairs", get_baseline("sift"), max_keypoints=150, progress=False)
    assert res["overall"]["pairs"] == 1 and res["pairs"][0]["target"] == 2 and res["overall"]["mma"][4] > 0.5
    # 2 .. 6 images: a 3-image sequence gives 2 pairs; a lone image is an error naming the missing file
    cv2.imwrite(str(pair / "img3.png"), warped)
    np.savetxt(pair / "H1to3p", Hs[1])
    assert len(read_source_sequence(pair)[1]) == 3
    lone = tmp_path / "lone"
    lone.mkdir()
    cv2.imwrite(str(lone / "img1.png"), ref)
    with pytest.raises(Exception, match="img2"):
        read_source_sequence(lone)
    # hpatches-data extract reads the pair too: every target slot comes from image 2 (cycled)
    (pair / "img3.png").unlink()
    (pair / "H1to3p").unlink()
    out = extract_dataset(tmp_path / "pairs", tmp_path / "ext", seed=0, max_patches=20, progress=False)
    from hpatches_kit.data.sequences import load_sequence

    seq = load_sequence(out / "v_facade")
    assert seq.tracks.shape[1:] == (16, 65, 65) and 0 < len(seq.tracks) <= 20


def test_orientation_options_rotate_patches():
    rng = np.random.default_rng(5)
    img = cv2.GaussianBlur(rng.normal(128, 60, (121, 121)).astype(np.float32), (0, 0), 2.0)
    img = np.clip(img, 0, 255).astype(np.uint8)
    kp = np.array([[60.0, 60.0, 3.0, np.pi / 2]])
    up = keypoint_patches(img, kp, 33, "upright")[0].astype(np.float64)
    det = keypoint_patches(img, kp, 33, "detector")[0].astype(np.float64)
    # the frame rotated by +90 degrees (y down): the patch is the upright one rotated
    assert np.abs(det - np.rot90(up, 1)).mean() < 0.5  # 90 degrees about an integer centre: exact
    assert np.abs(det - up).mean() > 4  # and differs from the upright patch
    # magnification 2.5 samples half the region: the centre of the x5 patch, enlarged
    half = keypoint_patches(img, kp[:, :3], 65, "upright", magnification=2.5)[0].astype(np.float64)
    full = keypoint_patches(img, kp[:, :3], 65, "upright")[0].astype(np.float64)
    centre = cv2.resize(full[16:49, 16:49], (65, 65), interpolation=cv2.INTER_LINEAR)
    assert np.abs(half - centre).mean() < 6


def test_beats_needs_every_criterion():
    def res(name, mma, h):
        return {
            "meta": {"descriptor": name, "thresholds": list(range(1, 11))},
            "overall": {"mma": mma, "homography": {"1": 0, "3": h[0], "5": h[1]}},
        }

    base = res("rootsift", [0.3] * 10, (0.6, 0.7))
    ok, rows = beats([base, res("m", [0.31] * 10, (0.7, 0.8))], "m")
    assert ok and [r[0] for r in rows] == ["MMA@1", "MMA@3", "MMA@5", "MMA@10", "H@3", "H@5"]
    assert not beats([base, res("m", [0.31] * 10, (0.6, 0.8))], "m")[0]  # a tie at H@3 is not a win
