"""Descriptor CSV folders in the official layout ``<root>/<sequence>/<type>.csv``: read (checked, errors
naming the file and line, streamed into a :class:`~.descriptor_set.DescriptorSet`) and written atomically."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ..data.errors import DataError
from ..data.hpatches import TYPES
from .descriptor_set import DescriptorSet

__all__ = ["read_descriptor_dir", "read_descriptor_set", "write_descriptor_dir"]


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
                        raise DataError(
                            path, f"row {row} contains NaN or Inf (line {lineno}, column {j + 1}: {v.strip()!r})"
                        )
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
            convert_options=pcsv.ConvertOptions(
                column_types={f"f{j}": pa.float64() for j in range(dim)}, strings_can_be_null=False, null_values=[""]
            ),
        )
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


def _read_desc_csv(path: Path, out: np.ndarray | None = None) -> np.ndarray:
    """One descriptor CSV -> ``(N, D) float32``: plain decimal numbers by the compiled fast path
    (:func:`.csv_parse.parse_float_file`), other files by Arrow's CSV reader or ``np.loadtxt``. Errors name
    the file and the line. With ``out`` (``(N, D)`` float32, C-contiguous) a file of that shape is read into
    it and ``out`` is returned; a file of another shape is returned as its own array (the caller reports
    the mismatch)."""
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
    a = None
    if delim is not None:  # plain decimals: the compiled fast path; anything else: Arrow's reader
        from .csv_parse import parse_float_file

        dim = len(first.split(delim))
        into = out if out is not None and out.shape[1] == dim else None
        try:
            a = parse_float_file(path, delim, dim, out=into)
        except OSError as e:
            raise DataError(path, f"cannot read: {e}") from None
        if a is None and _have_arrow():
            a = _parse_arrow(path, delim, dim)
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
    if out is not None and a.shape == out.shape and a is not out:
        out[...] = a
        a = out
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
            raise DataError(
                root / s / f"{t}.csv",
                f"{a.shape[0]} descriptors but ref.csv has {n}: all types of a sequence need the same count",
            )
        if dim is not None and a.shape[1] != dim:
            raise DataError(
                root / s / f"{t}.csv", f"descriptor dimension {a.shape[1]} differs from {dim} of the other files"
            )
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


def _first_line_dim(path: Path) -> int | None:
    """The number of values on the first line of a descriptor CSV (``None`` if it cannot be read)."""
    try:
        with open(path) as f:
            first = f.readline()
    except (OSError, UnicodeDecodeError):
        return None
    delim = _sniff_delimiter(first)
    return len(first.split(delim) if delim is not None else first.split())


class _Recount(Exception):
    """A file parsed to another row count than its line count (the general path then reads it)."""


def _read_into(root: Path, names, ds: DescriptorSet, progress: bool) -> None:
    """Parse every ``<root>/<s>/<type>.csv`` straight into its ``ds.stacks[s][j]`` view on a thread pool
    (the fast parser and Arrow release the GIL); sequences are checked in order, the first problem raised."""
    from concurrent.futures import ThreadPoolExecutor

    from tqdm.auto import tqdm

    files = {s: _read_sequence_csvs(root, s) for s in names}  # every folder checked before any parse
    bar = tqdm(total=len(names), desc="reading descriptors", unit="seq", disable=not progress, leave=False)
    with ThreadPoolExecutor(max_workers=_csv_workers(), thread_name_prefix="hpatches-csv") as ex:
        futs = {s: [ex.submit(_read_desc_csv, f, ds.stacks[s][j]) for j, f in enumerate(files[s])] for s in names}
        try:
            for s in names:
                arrays = [f.result() for f in futs[s]]
                _check_sequence(root, s, arrays, ds.dim)
                if arrays[0].shape[0] != ds.lengths[s]:
                    raise _Recount(s)
                bar.update(1)
        finally:
            for fl in futs.values():
                for f in fl:
                    f.cancel()
            bar.close()


def read_descriptor_set(root, sequences=None, progress: bool = True):
    """Read a CSV descriptor folder straight into a :class:`~.descriptor_set.DescriptorSet` (what the evaluation
    runs on): each sequence's 16 files are checked (equal counts, one dimension, finite values, errors
    naming the file). The rows of every ``ref.csv`` are counted first, so the set's block is allocated once
    and every file is parsed straight into its place in it: the peak memory is the set plus the files being
    read, not two copies of every descriptor."""
    root = Path(root)
    names = sorted(p.name for p in root.iterdir() if p.is_dir()) if sequences is None and root.is_dir() else sequences
    try:
        counts = {s: _count_rows(root / s / "ref.csv") for s in names} if names else None
    except OSError:
        counts = None  # a missing folder or file: _read_all names it
    dim = _first_line_dim(root / names[0] / "ref.csv") if counts else None
    if counts and all(counts.values()) and dim is not None and dim >= 2:
        ds = DescriptorSet.empty(counts, dim, source=str(root))
        try:
            _read_into(root, names, ds, progress)
            return ds
        except _Recount:
            del ds  # rows counted differently from the parse (e.g. comment lines): the general path
    dims = [None]

    def checked():
        for s, arrays in _read_all(root, names, progress):
            dims[0] = _check_sequence(root, s, arrays, dims[0])
            yield s, arrays

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
    """Export descriptors in the official layout (``%.9g`` round-trips float32). The folder is built aside and
    swapped into place (:func:`~hpatches_kit.data.fsio.build_then_swap`): it replaces only an empty folder or an
    earlier export (never merges with other descriptors; anything else is refused before writing)."""
    from ..data.fsio import build_then_swap
    from ..io import atomic_write_text

    with build_then_swap(root, "descriptors", flag="--export-csv") as tmp:
        for s, types in descs.items():
            for t in TYPES:
                a = np.asarray(types[t], np.float32)
                lines = [delimiter.join(f"{v:.9g}" for v in row) for row in a.tolist()]
                atomic_write_text(tmp / s / f"{t}.csv", "\n".join(lines) + "\n")


def read_descriptor_rows(path) -> np.ndarray:
    """One ``(N, D) float32`` descriptor matrix from a ``.npy`` file or an official-layout CSV (e.g. the
    descriptors of a Brown subset's patches, in patch order).

    Raises:
        DataError: the file is missing, unreadable, not 2-D or not finite (naming the file).
    """
    from ..data.errors import DataError

    path = Path(path)
    if not path.is_file():
        raise DataError(path, "descriptor file not found")
    if path.suffix == ".npy":
        try:
            a = np.load(path)
        except ValueError as e:
            raise DataError(path, f"cannot read .npy: {e}") from None
        if a.ndim != 2:
            raise DataError(path, f"expected an (N, D) array of descriptors, got shape {a.shape}")
        bad = ~np.isfinite(a).all(axis=1) if a.dtype.kind in "fc" else np.zeros(len(a), bool)
        if bad.any():  # the shape is right: say what is wrong
            raise DataError(
                path, f"{int(bad.sum())} of {len(a)} descriptor rows hold NaN or Inf (first: row {int(bad.argmax())})"
            )
        return a.astype(np.float32)
    return _read_desc_csv(path)
