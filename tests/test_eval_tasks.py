"""Task files: the official generator reproduced draw for draw (checked against the official query file),
CSV round trips, caching and clear errors for bad files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from hpatches_kit.data import DataError
from hpatches_kit.evaluation import tasks as T


def test_generator_reproduces_official_query_draws(shared_benchmark):
    """The official retr_queries_split-a.csv is the subsequence of the 4 x 10^4 candidate draws
    (np.random.seed(42); choice(test)) that survived the std filter and de-duplication; a random sequence
    of ~40 names would almost surely not contain 10^4 given names as a subsequence of 4 x 10^4 draws."""
    splits = json.loads((shared_benchmark / "splits.json").read_text())
    test = splits["a"]["test"]
    q = T.read_retrieval(shared_benchmark / "tasks", "a").queries
    assert len(q["s"]) == T.OFFICIAL_QUERIES
    rs = np.random.RandomState(T.SEED)
    cand = np.array(test, dtype=object)[rs.choice(len(test), T.OFFICIAL_QUERIES * 4)]
    assert list(q["s"][:4]) == list(cand[:4]) == ["v_birdwoman", "v_strand", "i_salon", "i_zion"]
    j = 0
    for name in q["s"]:
        while j < len(cand) and cand[j] != name:
            j += 1
        assert j < len(cand), "official queries are not a subsequence of the seeded candidate draws"
        j += 1
    # and a different seed does not explain the file
    cand_other = np.array(test, dtype=object)[np.random.RandomState(7).choice(len(test), T.OFFICIAL_QUERIES * 4)]
    j, ok = 0, True
    for name in q["s"]:
        while j < len(cand_other) and cand_other[j] != name:
            j += 1
        if j >= len(cand_other):
            ok = False
            break
        j += 1
    assert not ok


def test_official_retrieval_files_read(shared_benchmark):
    r = T.read_retrieval(shared_benchmark / "tasks", "full")
    assert len(r.queries["s"]) == 10_000 and len(r.distractors["s"]) == 20_000
    qs = set(zip(r.queries["s"], r.queries["idx"].tolist()))
    ds = set(zip(r.distractors["s"], r.distractors["idx"].tolist()))
    assert len(qs) == 10_000 and len(ds) == 20_000 and not (qs & ds)


def test_csv_round_trip(tmp_path):
    lengths = {"i_a": 9, "v_b": 7}
    pairs = T.generate_verification(lengths, list(lengths), 50)
    T.write_verification(tmp_path, "x", pairs)
    back = T.read_verification(tmp_path, "x")
    for k in T.VERIF_KINDS:
        for c in T.VERIF_HEADER:
            assert list(back.table(k)[c]) == list(pairs.table(k)[c])
    assert (tmp_path / "verif_pos_split-x.csv").read_text().splitlines()[0] == "s1,t1,idx1,s2,t2,idx2"
    refs = {s: np.random.default_rng(0).integers(0, 255, (n, 6, 6)).astype(np.uint8) for s, n in lengths.items()}
    r = T.generate_retrieval(refs, list(lengths), 3, 8)
    T.write_retrieval(tmp_path, "x", r)
    rb = T.read_retrieval(tmp_path, "x")
    assert list(rb.queries["s"]) == list(r.queries["s"]) and list(rb.distractors["idx"]) == list(r.distractors["idx"])
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]  # no temp files left


def test_generation_is_deterministic_and_legacy_seeded():
    lengths = {"i_a": 40, "v_b": 33, "v_c": 21}
    a = T.generate_verification(lengths, list(lengths), 200)
    b = T.generate_verification(lengths, list(lengths), 200)
    assert all(np.array_equal(a.pos[c], b.pos[c]) for c in T.VERIF_HEADER)
    # first pair by hand with the legacy generator, in the official order of draws
    rs = np.random.RandomState(42)
    names = list(lengths)
    s = [names[i] for i in rs.choice(3, 200)]
    first = rs.choice(np.arange(lengths[s[0]]), 2, replace=False)
    assert a.pos["s1"][0] == s[0] and a.pos["idx1"][0] == first[0] and a.neg_intra["idx2"][0] == first[1]


def test_bad_task_files(tmp_path):
    p = tmp_path / "retr_queries_split-z.csv"
    (tmp_path / "retr_distractors_split-z.csv").write_text("s,idx\ni_a,1\n")
    p.write_text("seq,idx\ni_a,1\n")
    with pytest.raises(DataError, match=r"retr_queries_split-z.csv: bad header"):
        T.read_retrieval(tmp_path, "z")
    p.write_text("s,idx\ni_a,1\ni_a,x\n")
    with pytest.raises(DataError, match=r"retr_queries_split-z.csv: line 3: column 'idx' is not an integer"):
        T.read_retrieval(tmp_path, "z")
    for k in T.VERIF_KINDS:
        (tmp_path / T.verif_file(k, "z")).write_text("s1,t1,idx1,s2,t2,idx2\ni_a,0,1,i_a,6,1\n")
    with pytest.raises(DataError, match=r"verif_pos_split-z.csv: line 2: image id t2=6 not in 0..5"):
        T.read_verification(tmp_path, "z")
    with pytest.raises(DataError, match=r"verif_pos_split-q.csv: task file not found"):
        T.read_verification(tmp_path, "q")


def test_scaled_counts_and_cache(tmp_path):
    assert T.scaled_counts(10**7) == {"pairs": 10**6, "queries": 10**4, "distractors": 2 * 10**4}
    assert T.scaled_counts(100) == {"pairs": 500, "queries": 25, "distractors": 75}
    refs = {
        s: np.random.default_rng(1).integers(0, 255, (n, 6, 6)).astype(np.uint8)
        for s, n in {"i_a": 20, "v_b": 16}.items()
    }
    ts = T.tasks_for_dataset(refs, list(refs), "full", ("verification", "retrieval"), cache_dir=tmp_path)
    f = tmp_path / os.path.basename(ts.source) / "verif_pos_split-full.csv"
    m = f.stat().st_mtime_ns
    ts2 = T.tasks_for_dataset(refs, list(refs), "full", ("verification", "retrieval"), cache_dir=tmp_path)
    assert ts2.source == ts.source and f.stat().st_mtime_ns == m
    assert len(ts.verification.pos["s1"]) == 5 * 36
    refs["i_a"] = refs["i_a"].copy()
    refs["i_a"][0, 0, 0] ^= 1  # different data -> different cache entry
    assert T.tasks_for_dataset(refs, list(refs), "full", ("retrieval",), cache_dir=tmp_path).source != ts.source


def test_fast_task_reader_equals_line_reader(shared_benchmark, tmp_path):
    """Arrow's reader gives the columns of the line-by-line reader (official files), and hands every file
    it cannot take cleanly to it (errors naming the line)."""
    for f in sorted((shared_benchmark / "tasks").glob("retr_*_split-a.csv")):
        a, b = T._read_csv_arrow(f, T.RETR_HEADER), T._read_csv_lines(f, T.RETR_HEADER)
        assert a is not None and all(a[c].dtype == b[c].dtype and np.array_equal(a[c], b[c]) for c in T.RETR_HEADER)
    p = tmp_path / "x.csv"
    for body in ("s,idx\ni_a,1\n i_b ,2\n", "s,idx\ni_a,1\ni_b\n", "s,idx\ni_a,x\n", "s,idx\n\ni_a,3\n\n", "s,idx\n"):
        p.write_text(body)
        try:
            ref = T._read_csv_lines(p, T.RETR_HEADER)
        except DataError as e:
            with pytest.raises(DataError, match="line"):
                T._read_csv(p, T.RETR_HEADER)
            assert "line" in str(e)
            continue
        got = T._read_csv(p, T.RETR_HEADER)
        assert all(np.array_equal(got[c], ref[c]) and got[c].dtype == ref[c].dtype for c in T.RETR_HEADER), body


def _legacy_verif_draws(test, lengths, n):
    """The official rule for verification pairs, written out draw by draw with the *global* legacy generator
    (as the benchmark's utils/tasks.py uses it): sequences, two distinct indices, two distinct image ids of
    0..4 per pair; then the inter-sequence negatives' sequences and one index each."""
    np.random.seed(42)
    seqs = [test[i] for i in np.random.randint(0, len(test), n)]
    idx = [np.random.permutation(lengths[q])[:2] for q in seqs]
    typ = [np.random.permutation(5)[:2] for _ in seqs]
    inter = [test[i] for i in np.random.randint(0, len(test), n)]
    idx_inter = [np.random.randint(lengths[q]) for q in inter]
    return seqs, np.array(idx), np.array(typ), inter, np.array(idx_inter)


def test_generated_verification_equals_the_official_rule_and_fills_missing_files(shared_benchmark, tmp_path):
    """generate_verification against the global-generator reference on the official split order, and a tasks
    folder without verif files (what download brings) gets the official-size pairs generated for it."""
    import json
    import shutil

    from hpatches_kit.evaluation.tasks import generate_verification, load_tasks, official_order

    splits = json.loads((shared_benchmark / "splits.json").read_text())
    test = splits["a"]["test"]
    rng = np.random.default_rng(0)
    lengths = {s: int(rng.integers(300, 3000)) for s in test}
    got = generate_verification(lengths, test, 2000)
    seqs, idx, typ, inter, idx_inter = _legacy_verif_draws(test, lengths, 2000)
    assert list(got.pos["s1"]) == seqs and list(got.neg_inter["s2"]) == inter
    assert np.array_equal(got.pos["idx1"], idx[:, 0]) and np.array_equal(got.neg_intra["idx2"], idx[:, 1])
    assert np.array_equal(got.pos["t1"], typ[:, 0]) and np.array_equal(got.pos["t2"], typ[:, 1])
    assert np.array_equal(got.neg_inter["idx2"], idx_inter)
    # a downloaded task folder: splits.json beside tasks/, retrieval files only
    bench = tmp_path / "hpatches-benchmark"
    shutil.copytree(shared_benchmark / "tasks", bench / "tasks")
    shutil.copy(shared_benchmark / "splits.json", bench / "splits.json")
    assert official_order(bench / "tasks", "a", sorted(test)) == test  # the generator draws in the official order
    import hpatches_kit.evaluation.tasks as tasks_mod

    monkey_pairs = 3000
    orig = tasks_mod.OFFICIAL_PAIRS
    tasks_mod.OFFICIAL_PAIRS = monkey_pairs  # the official 10^6 take minutes; the rule is the same
    try:
        ts = load_tasks(
            bench / "tasks",
            "a",
            ["verification", "retrieval"],
            lengths=lengths,
            test=sorted(test),
            cache_dir=tmp_path / "cache",
        )
    finally:
        tasks_mod.OFFICIAL_PAIRS = orig
    ref = generate_verification(lengths, test, monkey_pairs)
    assert list(ts.verification.pos["s1"]) == list(ref.pos["s1"])
    assert np.array_equal(ts.verification.neg_inter["idx2"], ref.neg_inter["idx2"])
    assert "generated" in ts.source and len(ts.retrieval.queries["s"]) == 10_000


def test_task_files_come_from_the_native_refs_whatever_size_is_described(tiny_dataset, tmp_path):
    """A dataset read through its packed cache at 16x16 (a model's input size) gets the task files of its
    native 65x65 ref patches: the same digest, sizes and retrieval picks as the decoded dataset; the summaries
    read from ref.png are remembered and read back equal (a second run decodes nothing)."""
    from hpatches_kit.data import load_dataset
    from hpatches_kit.evaluation.tasks import ref_summaries, summarise_refs

    native = load_dataset(tiny_dataset, cache="off", progress=False)
    small = load_dataset(tiny_dataset, cache="auto", size=16, progress=False)
    assert small.patch_size == 16 and native.patch_size == 65
    names = native.names
    want = {n: summarise_refs(native[n].tracks[:, 0]) for n in names}
    memo = tmp_path / "tasks"
    got = ref_summaries(small, names, cache_dir=memo)
    for n in names:  # from ref.png at 65x65, not the cache's 16x16 patches
        assert got[n].shape == (want[n].shape[0], 65, 65) and got[n].sha1 == want[n].sha1
        np.testing.assert_array_equal(got[n].std, native[n].tracks[:, 0].reshape(len(got[n]), -1).std(axis=1))
    assert len(list((memo / "refs").glob("*.npz"))) == 1
    again = ref_summaries(small, names, cache_dir=memo)
    assert all(again[n].sha1 == want[n].sha1 and np.array_equal(again[n].std, want[n].std) for n in names)
    a = T.tasks_for_dataset(got, names, "full", ("verification", "retrieval"), cache_dir=tmp_path / "a")
    b = T.tasks_for_dataset(
        native.ref_patches(), names, "full", ("verification", "retrieval"), cache_dir=tmp_path / "b"
    )
    assert a.digest() == b.digest() and Path(a.source).name == Path(b.source).name
