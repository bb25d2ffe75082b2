"""Describers (``(N, P, P) uint8 -> (N, D) float32``), descriptor computation and descriptor CSV folders.

Baselines (:func:`get_baseline`):

* ``raw``: the patch resized to 32x32 (area interpolation), flattened, minus its mean, divided by its
  standard deviation (constant patches give zeros);
* ``sift``: OpenCV SIFT descriptor of the whole patch as one keypoint at the patch centre ``(P/2, P/2)`` with
  size ``P / 5.303``, built exactly as the official ``extract_opencv_sift.py`` builds it: ``cv2.KeyPoint()``
  with ``pt`` and ``size`` set and OpenCV's default angle (-1, which OpenCV's descriptor code reads as a
  rotation of 361 degrees, so the rows differ from an angle-0 keypoint by up to 3 units); values as OpenCV
  returns them (0..255 scale);
* ``rootsift``: SIFT, L1-normalised, square-rooted (Arandjelovic & Zisserman 2012).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

from ..data.errors import DataError
from ..data.hpatches import TYPES, resize_patches

Describer = Callable[[np.ndarray], np.ndarray]
BASELINES = ("sift", "rootsift", "raw")
RAW_SIZE = 32

__all__ = [
    "BASELINES", "get_baseline", "raw_describer", "sift_describer", "rootsift_describer", "keras_describer",
    "compute_descriptors", "read_descriptor_dir", "read_descriptor_set", "write_descriptor_dir",
]


def _check_patches(patches) -> np.ndarray:
    p = np.asarray(patches)
    if p.ndim != 3 or p.shape[1] != p.shape[2]:
        raise ValueError(f"expected (N, P, P) patches, got shape {p.shape}")
    return p


def raw_describer(size: int = RAW_SIZE) -> Describer:
    def describe(patches):
        p = _check_patches(patches)
        if p.dtype != np.uint8:
            p = np.clip(p, 0, 255).astype(np.uint8)
        x = resize_patches(p, size).reshape(p.shape[0], -1).astype(np.float64)
        x -= x.mean(axis=1, keepdims=True)
        sd = x.std(axis=1, keepdims=True)
        return np.divide(x, sd, out=np.zeros_like(x), where=sd > 0).astype(np.float32)

    describe.name = "raw"
    return describe


def official_sift_keypoint(patch_size: int):
    """The centre keypoint of the official ``extract_opencv_sift.py``: a default ``cv2.KeyPoint()`` (angle -1)
    with ``pt = (P/2, P/2)`` and ``size = 2 (P/2) / 5.303``."""
    import cv2

    c = patch_size / 2.0
    kp = cv2.KeyPoint()
    kp.pt = (c, c)
    kp.size = 2 * c / 5.303
    return kp


def sift_describer(root: bool = False) -> Describer:
    import cv2

    sift = cv2.SIFT_create()

    def describe(patches):
        p = _check_patches(patches)
        if p.dtype != np.uint8:
            p = np.clip(p, 0, 255).astype(np.uint8)
        n, s = p.shape[0], p.shape[1]
        kp = [official_sift_keypoint(s)]
        out = np.empty((n, 128), np.float32)
        for i in range(n):
            _, d = sift.compute(np.ascontiguousarray(p[i]), kp)
            if d is None or d.shape != (1, 128):
                raise RuntimeError(f"OpenCV SIFT returned no descriptor for patch {i}")
            out[i] = d[0]
        if root:
            l1 = out.sum(axis=1, keepdims=True)
            out = np.sqrt(np.divide(out, l1, out=np.zeros_like(out), where=l1 > 0))
        return out

    describe.name = "rootsift" if root else "sift"
    return describe


def rootsift_describer() -> Describer:
    return sift_describer(root=True)


def get_baseline(name: str) -> Describer:
    name = str(name).lower()
    if name == "raw":
        return raw_describer()
    if name == "sift":
        return sift_describer()
    if name == "rootsift":
        return rootsift_describer()
    raise ValueError(f"unknown baseline {name!r}; expected one of {', '.join(BASELINES)}")


def _resize_float(x: np.ndarray, size: int) -> np.ndarray:
    import cv2

    n, h = x.shape[0], x.shape[1]
    if h == size:
        return x
    interp = cv2.INTER_AREA if size < h else cv2.INTER_LINEAR
    return np.stack([cv2.resize(x[i], (size, size), interpolation=interp) for i in range(n)])


def _load_model(model_or_path):
    if isinstance(model_or_path, (str, os.PathLike)):
        import keras

        try:
            import hpatches_kit.models  # noqa: F401  (registers the project's layers)
        except Exception:
            pass
        path = Path(model_or_path)
        if not path.is_file():
            raise DataError(path, "model file not found")
        try:
            return keras.saving.load_model(str(path), compile=False)
        except Exception as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            if "not found" in first.lower() or "zip" in first.lower() or "signature" in first.lower():
                # Keras says "File not found" for a file that exists but is no .keras zip / .h5 file
                first = f"the file exists but is not a Keras model (.keras zip archive or .h5) ({first})"
            raise DataError(path, f"cannot load Keras model: {first}") from None
    return model_or_path


def _input_size(model, what: str, where=None) -> int:
    try:
        shape = tuple(model.input_shape)
    except (AttributeError, ValueError) as e:  # several inputs, or none
        raise DataError(where, f"{what} must take one input of (H, W, 1) square patches ({e})") from None
    if len(shape) != 4 or shape[-1] != 1 or shape[1] != shape[2] or shape[1] is None:
        raise DataError(where, f"{what} must take (H, W, 1) square grey patches, its input shape is {shape[1:]}")
    return int(shape[1])


def keras_describer(model_or_path, denoiser=None, batch_size: int = 1024) -> Describer:
    """A describer from a Keras model taking float patches in [0, 255] of shape ``(H, W, 1)`` (the model
    standardises itself); patches are resized to ``H``. ``denoiser`` (model or path, same input
    convention, output in [0, 255]) is applied first, at its own input size; its output is rounded to 8-bit
    grey levels, exactly what the descriptor trainer feeds a model trained on denoised patches."""
    if int(batch_size) < 1:
        raise ValueError(f"batch size must be >= 1, got {batch_size}")
    model = _load_model(model_or_path)
    den = _load_model(denoiser) if denoiser is not None else None
    where = model_or_path if isinstance(model_or_path, (str, os.PathLike)) else None
    size = _input_size(model, "descriptor model", where)
    dwhere = denoiser if isinstance(denoiser, (str, os.PathLike)) else None
    dsize = _input_size(den, "denoiser", dwhere) if den is not None else None

    def run(m, x):
        # every call sees the same (batch_size, ...) shape: the last batch is padded, so the model is traced
        # once and runs one compiled function at its full batch throughput (a new shape would retrace it)
        outs = []
        for s in range(0, x.shape[0], batch_size):
            b = x[s : s + batch_size]
            k = b.shape[0]
            if k < batch_size:
                b = np.concatenate([b, np.zeros((batch_size - k,) + b.shape[1:], b.dtype)])
            outs.append(np.asarray(m.predict_on_batch(b))[:k])
        return np.concatenate(outs) if outs else np.zeros((0,) + tuple(m.output_shape[1:]), np.float32)

    def describe(patches):
        p = _check_patches(patches)
        if den is not None:
            x = resize_patches(p.astype(np.uint8), dsize).astype(np.float32)[..., None]
            # quantised to 8 bits like the training input (``hpatches-train descriptor --denoiser``)
            x = np.clip(np.rint(run(den, x).reshape(p.shape[0], dsize, dsize)), 0, 255).astype(np.float32)
            x = _resize_float(x, size)
        else:
            x = resize_patches(p.astype(np.uint8), size).astype(np.float32)
        d = run(model, x[..., None]).reshape(p.shape[0], -1)
        return d.astype(np.float32)

    describe.name = getattr(model, "name", "keras")
    return describe


def compute_descriptors(dataset, describer: Describer, noisy: bool = False, progress: bool = True,
                        chunk_patches: int = 1 << 16) -> dict:
    """``{seq: {type: (N, D) float32}}`` for every sequence of ``dataset`` (an :class:`HPatchesDataset`, its
    images decoded once, in parallel, by :func:`~hpatches_kit.data.load_dataset`).

    Sequences are described together in calls of at least ``chunk_patches`` patches (a Keras describer
    then runs full batches across sequence boundaries instead of one short batch per sequence)."""
    from tqdm.auto import tqdm

    seqs = list(dataset)
    out = {}
    bar = tqdm(total=len(seqs), desc="describing", unit="seq", disable=not progress, leave=False)

    def flush(group):
        flats = [np.ascontiguousarray(src.transpose(1, 0, 2, 3)).reshape(len(TYPES) * src.shape[0], src.shape[2], src.shape[3])
                 for _, src in group]
        allp = flats[0] if len(flats) == 1 else np.concatenate(flats)
        d = np.asarray(describer(allp))
        if d.ndim != 2 or d.shape[0] != allp.shape[0]:
            raise ValueError(f"{group[0][0].name}: describer returned shape {d.shape} for {allp.shape[0]} patches")
        o = 0
        for seq, src in group:
            n = src.shape[0]
            ds = d[o : o + len(TYPES) * n].astype(np.float32).reshape(len(TYPES), n, -1)
            o += len(TYPES) * n
            if not np.isfinite(ds).all():
                raise DataError(seq.name, "describer produced NaN or Inf descriptors")
            out[seq.name] = {t: ds[j] for j, t in enumerate(TYPES)}
            bar.update(1)

    group, size = [], 0
    for seq in seqs:
        src = seq.noisy if noisy else seq.tracks
        if src is None:
            raise DataError(seq.path or seq.name, "sequence has no noisy (*_noise.png) images")
        group.append((seq, src))
        size += len(TYPES) * src.shape[0]
        if size >= chunk_patches:
            flush(group)
            group, size = [], 0
    if group:
        flush(group)
    bar.close()
    return out


# -- CSV folders (official layout <root>/<sequence>/<type>.csv) ----------------------------------------
def _sniff_delimiter(line: str) -> str | None:
    for d in (",", ";", "\t"):
        if d in line:
            return d
    return None  # whitespace


def _diagnose_csv(path: Path, delim: str | None, dim: int | None = None) -> None:
    """Find the first malformed line of a descriptor CSV (slow, only on the error path) and raise a
    :class:`DataError` naming the file and the line: a wrong number of values, a value that is not a number,
    NaN/Inf (also a finite value beyond float32's range, which becomes Inf)."""
    row = 0
    try:
        with open(path) as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                row += 1
                fields = line.split(delim) if delim is not None else line.split()
                if dim is None:
                    dim = len(fields)
                if len(fields) != dim:
                    raise DataError(path, f"line {lineno}: {len(fields)} values, expected {dim} (as on the first row)")
                for j, v in enumerate(fields):
                    try:
                        x = float(v)
                    except ValueError:
                        raise DataError(path, f"line {lineno}, column {j + 1}: not a number: {v.strip()!r}") from None
                    with np.errstate(over="ignore"):
                        x32 = np.float32(x)
                    if not np.isfinite(x32):
                        raise DataError(path, f"row {row} contains NaN or Inf (line {lineno}, column {j + 1}: {v.strip()!r})")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(path, f"cannot read as text: {e}") from None


def _parse_arrow(path: Path, delim: str, dim: int) -> np.ndarray | None:
    """Parse with Arrow's multi-threaded C++ CSV reader (correctly rounded ``fast_float`` conversion, the
    same float64 values as ``float(text)``), as float64 -> float32 like the official loader. ``None`` when
    anything is off (an error, a non-numeric column, an empty field): the caller then diagnoses the file."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    try:
        table = pcsv.read_csv(
            path,
            read_options=pcsv.ReadOptions(autogenerate_column_names=True, use_threads=False),
            parse_options=pcsv.ParseOptions(delimiter=delim),
            # the column count of the first line, all float64: no type inference (3x faster)
            convert_options=pcsv.ConvertOptions(column_types={f"f{j}": pa.float64() for j in range(dim)},
                                                strings_can_be_null=False, null_values=[""]))
    except (pa.ArrowInvalid, pa.ArrowException, OSError):
        return None
    n, d = table.num_rows, table.num_columns
    out = np.empty((n, d), np.float32)
    for j, col in enumerate(table.columns):
        if col.null_count or not (pa.types.is_floating(col.type) or pa.types.is_integer(col.type)):
            return None
        with np.errstate(over="ignore"):  # beyond float32's range -> inf, reported by the caller
            out[:, j] = col.to_numpy().astype(np.float64, copy=False)  # float64 -> float32 on assignment
    return out


def _have_arrow() -> bool:
    try:
        import pyarrow.csv  # noqa: F401

        return True
    except Exception:  # pragma: no cover - pyarrow is a dependency
        return False


def _read_desc_csv(path: Path) -> np.ndarray:
    """One descriptor CSV -> ``(N, D) float32``. Errors name the file and the line."""
    try:
        with open(path) as f:
            first = f.readline()
    except OSError as e:
        raise DataError(path, f"cannot read: {e}") from None
    except UnicodeDecodeError:
        raise DataError(path, "not a text CSV file") from None
    if not first.strip():
        raise DataError(path, "empty descriptor file")
    delim = _sniff_delimiter(first)
    a = _parse_arrow(path, delim, len(first.split(delim))) if delim is not None and _have_arrow() else None
    if a is None:
        try:
            a = np.loadtxt(path, delimiter=delim, dtype=np.float64, ndmin=2).astype(np.float32)
        except ValueError:
            _diagnose_csv(path, delim)
            raise DataError(path, "not a numeric descriptor CSV") from None
    if a.shape[1] < 2:
        raise DataError(path, f"descriptors have dimension {a.shape[1]}: wrong delimiter?")
    if not np.isfinite(a).all():
        _diagnose_csv(path, delim, a.shape[1])
        bad = int(np.nonzero(~np.isfinite(a).all(axis=1))[0][0])
        raise DataError(path, f"row {bad + 1} contains NaN or Inf")
    return a


def _csv_workers() -> int:
    from .kernels import kernel_threads

    return kernel_threads()


def _read_sequence_csvs(root: Path, s: str) -> list:
    d = root / s
    if not d.is_dir():
        raise DataError(d, "no descriptors for this sequence (folder missing)")
    missing = [t for t in TYPES if not (d / f"{t}.csv").is_file()]
    if missing:
        raise DataError(d, f"missing descriptor files: {', '.join(t + '.csv' for t in missing)}")
    return [d / f"{t}.csv" for t in TYPES]


def _read_all(root, sequences, progress: bool, desc: str = "reading descriptors"):
    """Yield ``(sequence, [16 arrays])`` in order; files are parsed on a thread pool (Arrow releases the
    GIL), a bounded number of sequences ahead."""
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    from tqdm.auto import tqdm

    root = Path(root)
    if not root.is_dir():
        raise DataError(root, "descriptor folder does not exist")
    names = sorted(p.name for p in root.iterdir() if p.is_dir()) if sequences is None else list(sequences)
    if not names:
        raise DataError(root, "no sequence folders with descriptor CSVs")
    files = {s: _read_sequence_csvs(root, s) for s in names}  # every folder checked before any parse
    workers = _csv_workers()
    bar = tqdm(total=len(names), desc=desc, unit="seq", disable=not progress, leave=False)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="hpatches-csv") as ex:
        pending: deque = deque()
        it = iter(names)
        ahead = max(2, 2 * workers // len(TYPES) + 1)
        try:
            for s in it:
                pending.append((s, [ex.submit(_read_desc_csv, f) for f in files[s]]))
                if len(pending) >= ahead:
                    break
            while pending:
                s, futs = pending.popleft()
                arrays = [f.result() for f in futs]
                for s2 in it:
                    pending.append((s2, [ex.submit(_read_desc_csv, f) for f in files[s2]]))
                    break
                bar.update(1)
                yield s, arrays
        finally:
            for _, futs in pending:
                for f in futs:
                    f.cancel()
            bar.close()


def _check_sequence(root: Path, s: str, arrays: list, dim: int | None) -> int:
    n = arrays[0].shape[0]
    for t, a in zip(TYPES, arrays):
        if a.shape[0] != n:
            raise DataError(root / s / f"{t}.csv", f"{a.shape[0]} descriptors but ref.csv has {n}: all types of a sequence need the same count")
        if dim is not None and a.shape[1] != dim:
            raise DataError(root / s / f"{t}.csv", f"descriptor dimension {a.shape[1]} differs from {dim} of the other files")
    return arrays[0].shape[1]


def read_descriptor_dir(root, sequences=None, progress: bool = True) -> dict:
    """Read ``<root>/<sequence>/<type>.csv`` (any of ``, ; tab whitespace`` as delimiter) into
    ``{seq: {type: (N, D) float32}}``. Files are parsed in parallel by Arrow's CSV reader; errors name the
    file and the line (a wrong number of values, a non-number, NaN/Inf)."""
    out = {}
    for s, arrays in _read_all(root, sequences, progress):
        out[s] = dict(zip(TYPES, arrays))
    return out


def _count_rows(path: Path) -> int:
    """Non-blank lines of a text file (what both parsers turn into rows), without parsing numbers."""
    with open(path, "rb") as f:
        return sum(1 for line in f if line.strip())


def read_descriptor_set(root, sequences=None, progress: bool = True):
    """Read a CSV descriptor folder straight into a :class:`~.protocol.DescriptorSet` (what the evaluation
    runs on): each sequence's 16 files are checked (equal counts, one dimension, finite values, errors
    naming the file). The rows of every ``ref.csv`` are counted first, so the set's block is allocated once
    and each sequence is copied in and freed as it arrives: the peak memory is the set plus the few
    sequences being parsed, not two copies of every descriptor."""
    from .protocol import DescriptorSet

    root = Path(root)
    names = sorted(p.name for p in root.iterdir() if p.is_dir()) if sequences is None and root.is_dir() else sequences
    dim = [None]

    def checked():
        for s, arrays in _read_all(root, names, progress):
            dim[0] = _check_sequence(root, s, arrays, dim[0])
            yield s, arrays

    try:
        counts = {s: _count_rows(root / s / "ref.csv") for s in names} if names else None
    except OSError:
        counts = None  # a missing folder or file: _read_all names it
    if counts:
        try:
            return DescriptorSet.from_stream(counts, checked(), source=str(root))
        except ValueError as e:
            if isinstance(e, DataError):
                raise
            # rows counted differently from the parse (should not happen): the two-copy path
    stacks = dict(checked())
    return DescriptorSet.from_arrays(stacks, source=str(root))


def write_descriptor_dir(root, descs: Mapping[str, Mapping[str, np.ndarray]], delimiter: str = ",") -> None:
    """Export descriptors in the official layout (each file written atomically, ``%.9g`` round-trips float32)."""
    from ..io import atomic_write_text

    for s, types in descs.items():
        for t in TYPES:
            a = np.asarray(types[t], np.float32)
            lines = [delimiter.join(f"{v:.9g}" for v in row) for row in a.tolist()]
            atomic_write_text(Path(root) / s / f"{t}.csv", "\n".join(lines) + "\n")
