"""HPatches task definition files: read, write and generate them with the official sampling rules.

Official files (``hpatches-benchmark/tasks``), per split ``X``:

* ``verif_pos_split-X.csv``, ``verif_neg_intra_split-X.csv``, ``verif_neg_inter_split-X.csv`` with header
  ``s1,t1,idx1,s2,t2,idx2``: sequence, image id (0 = ``ref``, k = target k of the variant under
  evaluation) and patch index of both patches of a pair;
* ``retr_queries_split-X.csv``, ``retr_distractors_split-X.csv`` with header ``s,idx`` (``ref`` patches).

Generation reproduces ``utils/tasks.py`` of the official benchmark draw for draw (legacy
``numpy.random`` seeded with 42; see ``docs/evaluation.md``), with counts scaled to the dataset.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from collections.abc import Sequence as Seq
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.errors import DataError
from ..io import atomic_write_text

log = logging.getLogger(__name__)

VERIF_KINDS = ("pos", "neg_intra", "neg_inter")
VERIF_HEADER = ("s1", "t1", "idx1", "s2", "t2", "idx2")
RETR_HEADER = ("s", "idx")
OFFICIAL_PAIRS = 1_000_000
OFFICIAL_QUERIES = 10_000
OFFICIAL_DISTRACTORS = 20_000
SEED = 42
#: a query/distractor patch must have a pixel standard deviation above this (official rule)
MIN_PATCH_STD = 10.0

__all__ = [
    "VerificationPairs",
    "RetrievalTask",
    "TaskSet",
    "verif_file",
    "retr_file",
    "read_verification",
    "read_retrieval",
    "write_verification",
    "write_retrieval",
    "generate_verification",
    "generate_retrieval",
    "scaled_counts",
    "load_tasks",
    "tasks_for_dataset",
    "RefSummary",
    "summarise_refs",
    "ref_summaries",
    "official_verification",
]


def verif_file(kind: str, split: str) -> str:
    return f"verif_{kind}_split-{split}.csv"


def retr_file(kind: str, split: str) -> str:
    return f"retr_{kind}_split-{split}.csv"


@dataclass
class VerificationPairs:
    """Three pair tables (``pos``, ``neg_intra``, ``neg_inter``); each a dict of columns
    ``s1, t1, idx1, s2, t2, idx2`` (``s*``: object arrays of sequence names, others int64)."""

    pos: dict
    neg_intra: dict
    neg_inter: dict

    def table(self, kind: str) -> dict:
        return getattr(self, kind)


@dataclass
class RetrievalTask:
    """Query and distractor ``ref`` patches: ``{"s": names, "idx": int64}`` each."""

    queries: dict
    distractors: dict


@dataclass(frozen=True)
class RefSummary:
    """What task generation reads of one sequence's ``ref`` patches at their native size: their count and
    shape, a SHA-1 of their bytes (the task cache's key) and each patch's pixel standard deviation (the
    retrieval rule). :func:`summarise_refs` makes one from the patches; keeping only this, a dataset's refs
    are read one sequence at a time (:func:`ref_summaries`) instead of all held at once."""

    shape: tuple
    sha1: bytes
    std: np.ndarray  # (N,) float64

    def __len__(self) -> int:
        return int(self.shape[0])


def summarise_refs(patches) -> RefSummary:
    """The :class:`RefSummary` of ``(N, P, P)`` uint8 ``ref`` patches (a summary is returned as it is).

    Example:
        >>> r = summarise_refs(np.zeros((3, 4, 4), np.uint8))
        >>> len(r), r.std.tolist()
        (3, [0.0, 0.0, 0.0])
    """
    if isinstance(patches, RefSummary):
        return patches
    a = np.ascontiguousarray(patches)
    n = a.shape[0]
    return RefSummary(tuple(a.shape), hashlib.sha1(a.tobytes()).digest(), a.reshape(n, -1).std(axis=1))


def ref_summaries(dataset, names: Seq[str], workers: int | None = None, cache_dir=None) -> dict[str, RefSummary]:
    """``{name: RefSummary}`` of the ``ref`` patches of ``dataset``'s sequences ``names``, at their native size
    and one sequence in memory per worker thread:

    * a dataset read through its packed cache (memory-mapped, possibly at another patch size, e.g. a model's
      32x32) whose source folder holds ``<name>/ref.png``: each ``ref.png`` is decoded, summarised and dropped,
      so the task files are those of the native patches whatever size the descriptors were computed at, and
      the cache's pages are never touched;
    * any other dataset: its ``ref_patches`` (a memory-mapped one releases its pages after each sequence).

    With ``cache_dir``, summaries read from ``ref.png`` files are remembered in ``<cache_dir>/refs/`` under the
    folders' fingerprint, so evaluating the same data again decodes nothing.
    """
    from concurrent.futures import ThreadPoolExecutor

    from ..data.cache import is_mapped, release_pages
    from ..data.hpatches import default_workers
    from ..data.sequences import read_patch_image

    names = list(names)
    root = getattr(dataset, "root", None)
    dirs = getattr(dataset, "dirs", None)  # a DatasetIndex knows its sequence folders
    if dirs is None and root is not None:
        from ..data.hpatches import find_sequence_dirs

        try:
            dirs = {d.name: d for d in find_sequence_dirs(root)}
        except (DataError, OSError):
            dirs = {}

    def native_png(name):
        f = Path(dirs[name]) / "ref.png" if dirs and name in dirs else None
        if f is None or not f.is_file():
            return None
        if not hasattr(dataset, "__getitem__") or name not in dataset:
            return f
        return f if is_mapped(dataset[name].tracks) else None  # decoded in memory: its own refs are at hand

    pngs = {n: native_png(n) for n in names}

    def one(name):
        f = pngs[name]
        if f is not None:
            return summarise_refs(read_patch_image(f))
        refs = dataset.ref_patches([name])[name]
        out = summarise_refs(refs)
        release_pages(refs)
        return out

    workers = default_workers() if workers is None else max(1, int(workers))
    memo = None
    if cache_dir is not None and names and all(pngs.values()):
        # every summary comes from a ref.png: remembered under the folders' fingerprint (names, sizes and mtimes
        # of their PNGs, the packed cache's key), so a later evaluation of the same data decodes nothing
        from ..data.packed import source_fingerprint

        memo = Path(cache_dir) / "refs" / f"{source_fingerprint([pngs[n].parent for n in names])[:24]}.npz"
        got = _read_ref_memo(memo, names)
        if got is not None:
            return got
    with ThreadPoolExecutor(max_workers=workers) as ex:
        out = dict(zip(names, ex.map(one, names)))
    if memo is not None:
        _write_ref_memo(memo, out)
    return out


def _read_ref_memo(path: Path, names: list[str]) -> dict[str, RefSummary] | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            if list(z["names"]) != names:
                return None
            ends = np.cumsum(z["counts"])
            stds = np.split(z["std"], ends[:-1])
            return {
                n: RefSummary(tuple(int(v) for v in shp), bytes(h), sd)
                for n, shp, h, sd in zip(names, z["shapes"], z["sha1"], stds)
            }
    except (OSError, ValueError, KeyError):
        return None


def _write_ref_memo(path: Path, refs: dict[str, RefSummary]) -> None:
    import io

    from ..io import atomic_write_bytes

    names = list(refs)
    buf = io.BytesIO()
    np.savez(
        buf,
        names=np.array(names),
        shapes=np.array([refs[n].shape for n in names], np.int64),
        sha1=np.array([np.frombuffer(refs[n].sha1, np.uint8) for n in names]),
        counts=np.array([len(refs[n]) for n in names], np.int64),
        std=np.concatenate([refs[n].std for n in names]),
    )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, buf.getvalue())
    except OSError as e:  # a read-only cache folder: the summaries are recomputed next time
        log.debug("ref summaries not remembered in %s: %s", path, e)


@dataclass
class TaskSet:
    split: str
    verification: VerificationPairs | None = None
    retrieval: RetrievalTask | None = None
    source: str = ""

    def digest(self) -> str | None:
        """A hash of the task tables' content (pairs, queries, distractors): the task set's identity, whatever
        folder or split label its files carry (``meta.tasks_digest``, what ``compare`` checks); ``None`` when
        no table was loaded."""
        tables = []
        if self.verification is not None:
            tables += [(k, self.verification.table(k)) for k in VERIF_KINDS]
        if self.retrieval is not None:
            tables += [("queries", self.retrieval.queries), ("distractors", self.retrieval.distractors)]
        if not tables:
            return None
        h = hashlib.sha1()
        for kind, table in tables:
            h.update(kind.encode())
            for col in sorted(table):
                a = np.asarray(table[col])
                h.update(col.encode())
                h.update("\n".join(map(str, a)).encode() if a.dtype == object else a.astype(np.int64).tobytes())
        return h.hexdigest()[:16]


# -- CSV ---------------------------------------------------------------------------------------------
def _read_csv(path: Path, header: Seq[str]) -> dict:
    """A task file as columns (``s*``: object arrays of names, others int64). Arrow's C++ CSV reader
    parses it; anything it does not take as clean (a bad header, a short row, a non-integer, a padded
    name, ...) goes to the line-by-line reader, whose errors name the line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "task file not found")
    fast = _read_csv_arrow(path, header)
    return fast if fast is not None else _read_csv_lines(path, header)


def _read_csv_arrow(path: Path, header: Seq[str]) -> dict | None:
    try:
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.csv as pcsv
    except Exception:  # pragma: no cover - pyarrow is a dependency
        return None
    try:
        with open(path, "rb") as f:
            first = f.readline().decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    if tuple(c.strip() for c in first.split(",")) != tuple(header):
        return None
    types = {h: (pa.string() if h.startswith("s") else pa.int64()) for h in header}
    try:
        t = pcsv.read_csv(
            path,
            read_options=pcsv.ReadOptions(column_names=list(header), skip_rows=1),
            convert_options=pcsv.ConvertOptions(column_types=types, strings_can_be_null=False, null_values=[""]),
        )
    except (pa.ArrowException, OSError):
        return None
    out = {}
    for h in header:
        col = t.column(h)
        if col.null_count:
            return None
        if h.startswith("s"):
            enc = pc.dictionary_encode(col).combine_chunks()  # a few distinct names: map them once
            names = enc.dictionary.to_pylist()
            if any(n != n.strip() for n in names):
                return None
            lookup = np.empty(len(names), dtype=object)
            lookup[:] = names
            out[h] = lookup[_int_values(enc.indices)]
        else:
            out[h] = (
                np.concatenate([_int_values(c) for c in col.chunks]).astype(np.int64, copy=False)
                if col.num_chunks
                else np.zeros(0, np.int64)
            )
    return out


def _int_values(arr) -> np.ndarray:
    """The values of an Arrow integer array without nulls, straight from its data buffer (Arrow's
    ``to_numpy`` imports pandas on its way, 0.25 s of a command's start-up)."""
    width = arr.type.bit_width // 8
    return np.frombuffer(arr.buffers()[1], dtype=f"<i{width}", count=len(arr) + arr.offset)[arr.offset :]


def _read_csv_lines(path: Path, header: Seq[str]) -> dict:
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise DataError(path, "not a text CSV file") from None
    lines = text.splitlines()
    if not lines or tuple(c.strip() for c in lines[0].split(",")) != tuple(header):
        got = lines[0] if lines else "<empty file>"
        raise DataError(path, f"bad header {got!r}; expected {','.join(header)!r}")
    rows = [ln.split(",") for ln in lines[1:] if ln.strip()]
    ncol = len(header)
    for i, r in enumerate(rows):
        if len(r) != ncol:
            raise DataError(path, f"line {i + 2}: expected {ncol} columns, got {len(r)}")
    cols = list(zip(*rows)) if rows else [()] * ncol
    out = {}
    for name, col in zip(header, cols):
        if name.startswith("s"):
            out[name] = np.array([c.strip() for c in col], dtype=object)
        else:
            try:
                out[name] = np.array(col, dtype=np.int64) if col else np.zeros(0, np.int64)
            except ValueError:
                bad = next(j for j, c in enumerate(col) if not c.strip().lstrip("-").isdigit())
                raise DataError(path, f"line {bad + 2}: column {name!r} is not an integer: {col[bad]!r}") from None
    return out


def _write_csv(path: Path, header: Seq[str], table: dict) -> None:
    cols = [table[h] for h in header]
    body = "\n".join(",".join(str(v) for v in row) for row in zip(*cols))
    atomic_write_text(path, ",".join(header) + "\n" + (body + "\n" if body else ""))


def read_verification(tasks_dir, split: str) -> VerificationPairs:
    d = Path(tasks_dir)
    tabs = {k: _read_csv(d / verif_file(k, split), VERIF_HEADER) for k in VERIF_KINDS}
    for k, t in tabs.items():
        for c in ("t1", "t2"):
            bad = np.nonzero((t[c] < 0) | (t[c] > 5))[0]
            if bad.size:
                raise DataError(d / verif_file(k, split), f"line {bad[0] + 2}: image id {c}={t[c][bad[0]]} not in 0..5")
    return VerificationPairs(**tabs)


def read_retrieval(tasks_dir, split: str) -> RetrievalTask:
    d = Path(tasks_dir)
    return RetrievalTask(
        queries=_read_csv(d / retr_file("queries", split), RETR_HEADER),
        distractors=_read_csv(d / retr_file("distractors", split), RETR_HEADER),
    )


def write_verification(tasks_dir, split: str, pairs: VerificationPairs) -> None:
    for k in VERIF_KINDS:
        _write_csv(Path(tasks_dir) / verif_file(k, split), VERIF_HEADER, pairs.table(k))


def write_retrieval(tasks_dir, split: str, task: RetrievalTask) -> None:
    _write_csv(Path(tasks_dir) / retr_file("queries", split), RETR_HEADER, task.queries)
    _write_csv(Path(tasks_dir) / retr_file("distractors", split), RETR_HEADER, task.distractors)


# -- generation (official rules) -----------------------------------------------------------------------
def scaled_counts(num_tracks: int) -> dict:
    """Task sizes for a split holding ``num_tracks`` tracks: the official sizes (10^6 pairs of each kind,
    10^4 queries, 2*10^4 distractors), reduced for small datasets to ``min(10^6, 5 T)`` pairs,
    ``min(10^4, T // 4)`` queries and ``min(2*10^4, T - queries)`` distractors."""
    t = int(num_tracks)
    q = max(1, min(OFFICIAL_QUERIES, t // 4))
    return {
        "pairs": max(1, min(OFFICIAL_PAIRS, 5 * t)),
        "queries": q,
        "distractors": max(1, min(OFFICIAL_DISTRACTORS, t - q)),
    }


def generate_verification(
    lengths: Mapping[str, int], test: Seq[str], n_pairs: int = OFFICIAL_PAIRS
) -> VerificationPairs:
    """``gen_verif`` of the official benchmark, draw for draw (``np.random.seed(42)``):

    positives: a sequence uniformly from ``test`` per pair; two distinct patch indices (the first is the
    patch of the positive pair and of the intra negative, the second the other patch of the intra negative);
    two distinct image ids from ``0..4`` (``np.arange(5)``, so as in the official files target 5 is never
    drawn); inter negatives: a second sequence drawn uniformly from ``test`` (it may equal the first, as in
    the official code) and a uniform patch index in it, with the same image ids as the positive.
    """
    test = list(test)
    for s in test:
        if s not in lengths:
            raise DataError(s, "sequence of the split is not in the dataset")
        if lengths[s] < 2:
            raise DataError(s, f"sequence has {lengths[s]} patches; verification pairs need at least 2")
    n = int(n_pairs)
    rs = np.random.RandomState(SEED)
    names = np.array(test, dtype=object)
    s = names[rs.choice(len(test), n)]
    # ``RandomState.choice(k, 2, replace=False)`` returns a 2-element view of a fresh permutation of ``k``:
    # kept in a list (as the official code does) a million of them hold every permutation, ~8 GB at full size.
    # Each draw is copied into its row at once instead (the same draws in the same order)
    s_idx = np.empty((n, 2), np.int64)
    for i, k in enumerate(s):
        s_idx[i] = rs.choice(lengths[k], 2, replace=False)
    s_type = np.empty((n, 2), np.int64)
    for i in range(n):
        s_type[i] = rs.choice(5, 2, replace=False)
    s_inter = names[rs.choice(len(test), n)]
    s_idx_inter = np.array([rs.randint(lengths[k]) for k in s_inter], dtype=np.int64)
    t1, t2 = s_type[:, 0], s_type[:, 1]
    pos = dict(s1=s, t1=t1, idx1=s_idx[:, 0], s2=s, t2=t2, idx2=s_idx[:, 0])
    intra = dict(s1=s, t1=t1, idx1=s_idx[:, 0], s2=s, t2=t2, idx2=s_idx[:, 1])
    inter = dict(s1=s, t1=t1, idx1=s_idx[:, 0], s2=s_inter, t2=t2, idx2=s_idx_inter)
    return VerificationPairs(pos=pos, neg_intra=intra, neg_inter=inter)


def generate_retrieval(
    ref_patches: Mapping[str, np.ndarray],
    test: Seq[str],
    n_queries: int = OFFICIAL_QUERIES,
    n_distractors: int = OFFICIAL_DISTRACTORS,
) -> RetrievalTask:
    """``gen_retrieval`` of the official benchmark, draw for draw (``np.random.seed(42)``):

    ``ref_patches``: ``{seq: (N, P, P) uint8}`` or ``{seq: RefSummary}`` (:func:`summarise_refs`).

    ``4 * n_queries`` candidate queries and ``10 * n_distractors`` candidate distractors, each a uniform
    sequence of ``test`` then a uniform ``ref`` patch index in it; candidates whose patch has a pixel
    standard deviation <= 10 are dropped; duplicates are dropped (first kept); the first ``n_queries``
    queries are kept; distractors equal to a kept query are dropped; the first ``n_distractors`` are kept.
    """
    test = list(test)
    for s in test:
        if s not in ref_patches:
            raise DataError(s, "sequence of the split is not in the dataset")
    lengths = {s: int(ref_patches[s].shape[0]) for s in test}
    rs = np.random.RandomState(SEED)
    names = np.array(test, dtype=object)
    s_q = names[rs.choice(len(test), int(n_queries * 4))]
    s_q_idx = np.array([rs.randint(lengths[k]) for k in s_q], dtype=np.int64)
    s_d = names[rs.choice(len(test), int(n_distractors * 10))]
    s_d_idx = np.array([rs.randint(lengths[k]) for k in s_d], dtype=np.int64)

    stds = {s: summarise_refs(ref_patches[s]).std for s in test}

    def keep(ss, ii):
        ok = np.array([stds[a][b] > MIN_PATCH_STD for a, b in zip(ss, ii)], dtype=bool)
        seen, out_s, out_i = set(), [], []
        for a, b in zip(ss[ok], ii[ok]):
            if (a, b) not in seen:
                seen.add((a, b))
                out_s.append(a)
                out_i.append(int(b))
        return out_s, out_i

    qs, qi = keep(s_q, s_q_idx)
    qs, qi = qs[: int(n_queries)], qi[: int(n_queries)]
    qset = set(zip(qs, qi))
    ds, di = keep(s_d, s_d_idx)
    pairs = [(a, b) for a, b in zip(ds, di) if (a, b) not in qset][: int(n_distractors)]
    return RetrievalTask(
        queries={"s": np.array(qs, dtype=object), "idx": np.array(qi, dtype=np.int64)},
        distractors={
            "s": np.array([a for a, _ in pairs], dtype=object),
            "idx": np.array([b for _, b in pairs], dtype=np.int64),
        },
    )


# -- loading for a dataset ---------------------------------------------------------------------------
def official_verification(
    tasks_dir, split: str, lengths: Mapping[str, int], test: Seq[str], cache_dir=None, progress: bool = False
) -> Path:
    """The folder holding ``verif_*_split-<split>.csv``: ``tasks_dir`` when it has them, else the official-size
    pairs (10^6 of each kind) generated by :func:`generate_verification` -- the official ``gen_verif``'s
    draws for the same sequences, lengths and seed 42 -- cached under ``cache_dir/official-<hash>/``.

    Args:
        tasks_dir: the official task folder (e.g. ``hpatches-benchmark/tasks`` from ``hpatches-data download``).
        split: the split name.
        lengths: patch count of every test sequence.
        test: the split's test sequences, in the order of ``splits.json``.
        cache_dir: where generated files go (default ``<cache_dir>/tasks``).
        progress: say when generating.

    Returns:
        The folder to read the verification files of ``split`` from.
    """
    d = Path(tasks_dir)
    if all((d / verif_file(k, split)).is_file() for k in VERIF_KINDS):
        return d
    test = official_order(d, split, test)
    if cache_dir is None:
        from ..data.embedded import cache_dir as home

        cache_dir = home() / "tasks"
    h = hashlib.sha1(
        json.dumps(
            {
                "split": split,
                "test": list(test),
                "lengths": [int(lengths[s]) for s in test],
                "pairs": OFFICIAL_PAIRS,
                "v": 1,
            }
        ).encode()
    ).hexdigest()[:16]
    out = Path(cache_dir) / f"official-{h}"
    if not all((out / verif_file(k, split)).is_file() for k in VERIF_KINDS):
        import logging

        logging.getLogger(__name__).warning(
            "%s has no verif_*_split-%s.csv: generating the official %d pairs of each kind (the official "
            "gen_verif draws, seed 42) into %s",
            d,
            split,
            OFFICIAL_PAIRS,
            out,
        )
        write_verification(out, split, generate_verification(lengths, test, OFFICIAL_PAIRS))
    return out


def official_order(tasks_dir, split: str, test: Seq[str]) -> list[str]:
    """``test`` in the order of the official ``splits.json`` beside ``tasks_dir`` (``tasks_dir/..`` or
    ``tasks_dir``), which the official generator draws from; ``test`` as given when there is none or it lists
    other sequences (then the draws are the official rule's, not the official files')."""
    for f in (Path(tasks_dir).parent / "splits.json", Path(tasks_dir) / "splits.json"):
        if f.is_file():
            try:
                order = list(json.loads(f.read_text())[split]["test"])
            except (ValueError, KeyError, TypeError):
                continue
            if sorted(order) == sorted(test):
                return order
    return list(test)


def load_tasks(
    tasks_dir,
    split: str,
    tasks: Seq[str],
    lengths: Mapping[str, int] | None = None,
    test: Seq[str] | None = None,
    cache_dir=None,
) -> TaskSet:
    """Read the official task files of ``split`` from ``tasks_dir`` (only those the tasks need). Given the
    test sequences' ``lengths`` and ``test`` (in ``splits.json`` order), missing verification files are
    generated at the official size (:func:`official_verification`)."""
    ts = TaskSet(split=split, source=str(tasks_dir))
    if "verification" in tasks:
        vdir = tasks_dir
        if lengths is not None and test is not None:
            vdir = official_verification(tasks_dir, split, lengths, test, cache_dir=cache_dir)
            if Path(vdir) != Path(tasks_dir):
                ts.source = f"{tasks_dir} (verification pairs generated: {vdir})"
        ts.verification = read_verification(vdir, split)
    if "retrieval" in tasks:
        ts.retrieval = read_retrieval(tasks_dir, split)
    return ts


def _fingerprint(refs: Mapping[str, RefSummary], test: Seq[str], counts: dict, split: str) -> str:
    h = hashlib.sha1()
    h.update(json.dumps({"split": split, "test": list(test), "counts": counts, "v": 1}).encode())
    for s in test:
        h.update(s.encode() + str(refs[s].shape).encode())
        h.update(refs[s].sha1)
    return h.hexdigest()[:16]


def task_cache_dir(cache_dir=None) -> Path:
    """Where generated task files (and remembered ref summaries) live: ``cache_dir``, else
    ``<toolkit cache>/tasks``."""
    if cache_dir is not None:
        return Path(cache_dir)
    from ..data.embedded import cache_dir as home

    return home() / "tasks"


def tasks_for_dataset(
    ref_patches: Mapping[str, np.ndarray],
    test: Seq[str],
    split: str,
    tasks: Seq[str],
    cache_dir=None,
    counts: dict | None = None,
    progress: bool = False,
) -> TaskSet:
    """Task files generated for a dataset by the official rules with :func:`scaled_counts`, cached in
    ``cache_dir/<fingerprint>/`` in the official CSV format (written atomically). ``ref_patches``:
    ``{seq: (N, P, P) uint8}`` or their :class:`RefSummary` (:func:`ref_summaries`)."""
    ref_patches = {s: summarise_refs(ref_patches[s]) for s in test if s in ref_patches}
    cache_dir = task_cache_dir(cache_dir)
    counts = counts or scaled_counts(sum(int(ref_patches[s].shape[0]) for s in test))
    d = Path(cache_dir) / _fingerprint(ref_patches, test, counts, split)
    ts = TaskSet(split=split, source=str(d))
    if "verification" in tasks:
        if not all((d / verif_file(k, split)).is_file() for k in VERIF_KINDS):
            if progress:
                log.info(f"generating verification pairs ({counts['pairs']} of each kind) -> {d}")
            lengths = {s: int(ref_patches[s].shape[0]) for s in test}
            write_verification(d, split, generate_verification(lengths, test, counts["pairs"]))
        ts.verification = read_verification(d, split)
    if "retrieval" in tasks:
        if not all((d / retr_file(k, split)).is_file() for k in ("queries", "distractors")):
            if progress:
                log.info(f"generating retrieval queries/distractors -> {d}")
            write_retrieval(d, split, generate_retrieval(ref_patches, test, counts["queries"], counts["distractors"]))
        ts.retrieval = read_retrieval(d, split)
    return ts
