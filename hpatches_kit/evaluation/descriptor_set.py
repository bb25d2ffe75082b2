"""The descriptors under evaluation: :class:`DescriptorSet`, validated and stacked into one float32 block.

Descriptors are ``{sequence: {type: (N, D) float32}}`` (types ``ref, e1..e5, h1..h5, t1..t5``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from collections.abc import Sequence as Seq

import numpy as np

from ..data.errors import DataError
from ..layout import TYPES

__all__ = ["DescriptorSet"]

#: blocks at least this large come from an anonymous mmap (see :func:`_alloc_block`)
_MMAP_BYTES = 64 << 20


def _alloc_block(shape, dtype=np.float32) -> np.ndarray:
    """An uninitialised array for a large block that is filled once, page by page, from several threads.
    NumPy advises transparent huge pages for large allocations; where the kernel's THP defrag setting is
    ``madvise`` (a common default) the first touch of such memory then compacts memory, which measured
    1.6-1.9x the CPU time of reading the official-size descriptor set (1.15 GiB block). An anonymous mmap
    gets ordinary pages (zero-filled by the kernel, released when the array goes)."""
    import mmap

    n = int(np.prod(shape)) * np.dtype(dtype).itemsize
    if n < _MMAP_BYTES:
        return np.empty(shape, dtype)
    return np.frombuffer(mmap.mmap(-1, n), dtype).reshape(shape)


class DescriptorSet(Mapping):
    """Validated descriptors of some sequences, stacked as ``(16, N_s, D)`` float32 per sequence.

    Also a read-only mapping ``{sequence: {type: (N, D) view}}``, the layout :func:`evaluate` and the plots
    take, so a set is passed wherever descriptors go without a copy (``set["i_demo"]["e1"]``)."""

    def __getitem__(self, name: str) -> dict:
        st = self.stacks[name]
        return {t: st[j] for j, t in enumerate(TYPES)}

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)

    def __contains__(self, name) -> bool:
        return name in self.index

    __eq__ = object.__eq__  # identity (Mapping's would compare the arrays)
    __hash__ = object.__hash__

    @property
    def nbytes(self) -> int:
        """Bytes of the descriptor block."""
        return int(self.flat.nbytes)

    def __init__(
        self,
        descs: Mapping[str, Mapping[str, np.ndarray]],
        sequences: Seq[str] | None = None,
        types: Seq[str] = TYPES,
        source: str | None = None,
    ):
        names = list(descs) if sequences is None else list(sequences)
        missing = [s for s in names if s not in descs]
        if missing:
            raise DataError(source or missing[0], f"no descriptors for sequences: {', '.join(missing[:10])}")
        if not names:
            raise DataError(source, "no sequences to evaluate")
        self.names = names
        self.index = {s: i for i, s in enumerate(names)}
        dim = None
        lengths = []
        for s in names:
            entry = descs[s]
            miss = [t for t in TYPES if t not in entry]
            if miss:
                raise DataError(s, f"descriptors missing for types: {', '.join(miss)}")
            n = None
            for t in TYPES:
                a = entry[t]
                where = f"{s}/{t}"
                shape = np.shape(a)
                if len(shape) != 2:
                    raise DataError(where, f"descriptors must be a 2-D (N, D) array, got shape {shape}")
                if n is None:
                    n = shape[0]
                elif shape[0] != n:
                    raise DataError(
                        where, f"{shape[0]} descriptors but ref has {n}: all types of a sequence need the same count"
                    )
                if dim is None:
                    dim = shape[1]
                elif shape[1] != dim:
                    raise DataError(where, f"descriptor dimension {shape[1]} differs from {dim} of the other sequences")
            if n == 0:
                raise DataError(s, "sequence has no descriptors")
            lengths.append(n)
        self.dim = int(dim)
        self.offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        self.total = int(self.offsets[-1])
        # one (16, T, D) float32 block; per-sequence stacks are views into it
        self.flat = np.empty((len(TYPES), self.total, self.dim), np.float32)
        self.stacks: dict[str, np.ndarray] = {}
        for k, s in enumerate(names):
            o0, o1 = self.offsets[k], self.offsets[k + 1]
            for j, t in enumerate(TYPES):
                a = np.asarray(descs[s][t])
                if not np.issubdtype(a.dtype, np.number):
                    raise DataError(f"{s}/{t}", f"descriptors have non-numeric dtype {a.dtype}")
                self.flat[j, o0:o1] = a
                if not np.isfinite(self.flat[j, o0:o1]).all():
                    bad = int(np.nonzero(~np.isfinite(self.flat[j, o0:o1]).all(axis=1))[0][0])
                    raise DataError(f"{s}/{t}", f"descriptor {bad} contains NaN or Inf")
            self.stacks[s] = self.flat[:, o0:o1]
        self.rows2d = self.flat.reshape(len(TYPES) * self.total, self.dim)
        self.lengths = {s: int(n) for s, n in zip(names, lengths)}

    @classmethod
    def from_arrays(cls, arrays: dict, source: str | None = None) -> DescriptorSet:
        """A set from ``{seq: [16 (N, D) float32 arrays in TYPES order]}`` already checked by the caller
        (equal counts per sequence, one dimension, finite values: :func:`.describers.read_descriptor_set`
        does it naming the files). The lists are emptied while copying, so each sequence's arrays are freed
        as soon as they are in the block."""
        self = cls.__new__(cls)
        names = list(arrays)
        if not names:
            raise DataError(source, "no sequences to evaluate")
        lengths = [int(arrays[s][0].shape[0]) for s in names]
        for s, n in zip(names, lengths):
            if n == 0:
                raise DataError(s, "sequence has no descriptors")
        self.names = names
        self.index = {s: i for i, s in enumerate(names)}
        self.dim = int(arrays[names[0]][0].shape[1])
        self.offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        self.total = int(self.offsets[-1])
        self.flat = np.empty((len(TYPES), self.total, self.dim), np.float32)
        self.stacks = {}
        for k, s in enumerate(names):
            o0, o1 = self.offsets[k], self.offsets[k + 1]
            lst = arrays[s]
            for j in range(len(TYPES)):
                self.flat[j, o0:o1] = lst[j]
                lst[j] = None
            self.stacks[s] = self.flat[:, o0:o1]
        self.rows2d = self.flat.reshape(len(TYPES) * self.total, self.dim)
        self.lengths = {s: int(n) for s, n in zip(names, lengths)}
        return self

    @classmethod
    def empty(cls, counts: dict, dim: int, source: str | None = None) -> DescriptorSet:
        """A set of ``counts`` (``{seq: N}``) patches of dimension ``dim`` whose block is allocated but not
        filled: the caller writes every ``stacks[s][j]`` (``(N, dim)`` C-contiguous views), e.g. a CSV parser
        reading straight into it (:func:`.descriptor_csv.read_descriptor_set`), and checks the values."""
        self = cls.__new__(cls)
        names = list(counts)
        if not names:
            raise DataError(source, "no sequences to evaluate")
        lengths = [int(counts[s]) for s in names]
        for s, n in zip(names, lengths):
            if n == 0:
                raise DataError(s, "sequence has no descriptors")
        self.names = names
        self.index = {s: i for i, s in enumerate(names)}
        self.dim = int(dim)
        self.offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        self.total = int(self.offsets[-1])
        self.flat = _alloc_block((len(TYPES), self.total, self.dim))
        self.stacks = {s: self.flat[:, self.offsets[k] : self.offsets[k + 1]] for k, s in enumerate(names)}
        self.rows2d = self.flat.reshape(len(TYPES) * self.total, self.dim)
        self.lengths = {s: int(n) for s, n in zip(names, lengths)}
        return self

    @classmethod
    def from_stream(cls, counts: dict, stream, source: str | None = None) -> DescriptorSet:
        """A set from ``(seq, [16 arrays])`` items arriving in the order of ``counts`` (``{seq: N}``, known
        beforehand), each copied into the preallocated block as it arrives: the peak memory is the set plus
        the sequences in flight. Checks as :meth:`from_arrays`; an item whose count differs from ``counts``
        raises ``ValueError`` (the caller knows the file)."""
        self = cls.__new__(cls)
        names = list(counts)
        if not names:
            raise DataError(source, "no sequences to evaluate")
        lengths = [int(counts[s]) for s in names]
        self.names = names
        self.index = {s: i for i, s in enumerate(names)}
        self.offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        self.total = int(self.offsets[-1])
        self.stacks = {}
        self.flat = None
        for k, (s, lst) in enumerate(stream):
            if s != names[k] or lst[0].shape[0] != lengths[k]:
                raise ValueError(f"{s}: {lst[0].shape[0]} rows, {lengths[k]} expected")
            if lengths[k] == 0:
                raise DataError(s, "sequence has no descriptors")
            if self.flat is None:
                self.dim = int(lst[0].shape[1])
                self.flat = np.empty((len(TYPES), self.total, self.dim), np.float32)
            o0, o1 = self.offsets[k], self.offsets[k + 1]
            for j in range(len(TYPES)):
                self.flat[j, o0:o1] = lst[j]
            self.stacks[s] = self.flat[:, o0:o1]
        if len(self.stacks) != len(names):
            raise ValueError("stream ended early")
        self.rows2d = self.flat.reshape(len(TYPES) * self.total, self.dim)
        self.lengths = {s: int(n) for s, n in zip(names, lengths)}
        return self

    def as_dict(self) -> dict:
        """``{seq: {type: (N, D)}}`` views into the block (for exporting)."""
        return {s: {t: self.stacks[s][j] for j, t in enumerate(TYPES)} for s in self.names}

    def subset(self, names: Seq[str]) -> DescriptorSet:
        """The set restricted to ``names`` (itself when they are its sequences, in order)."""
        names = list(names)
        if names == self.names:
            return self
        return DescriptorSet(self.as_dict(), names)

    def seq_ids(self, names: np.ndarray, where: str) -> np.ndarray:
        names = np.asarray(names, dtype=object).ravel()
        values = names.tolist()
        for u in set(values):
            if u not in self.index:
                raise DataError(where, f"unknown sequence {str(u)!r} (not among the evaluated sequences)")
        # map() over the bound dict lookup: no Python frame per row (about 3x faster than a generator)
        return np.fromiter(map(self.index.__getitem__, values), dtype=np.int64, count=len(values))

    def check_idx(self, seq_ids: np.ndarray, idx: np.ndarray, where: str) -> None:
        lens = np.diff(self.offsets)[seq_ids]
        idx = np.asarray(idx, np.int64)
        bad = np.nonzero((idx < 0) | (idx >= lens))[0]
        if bad.size:
            b = bad[0]
            raise DataError(
                where,
                f"row {b + 1}: patch index {idx[b]} out of range for {self.names[seq_ids[b]]} ({lens[b]} patches)",
            )

    def rows(self, seq_ids: np.ndarray, type_idx, idx: np.ndarray) -> np.ndarray:
        """Row numbers into :attr:`rows2d` of (sequence, type, patch) triples."""
        return np.asarray(type_idx, np.int64) * self.total + self.offsets[seq_ids] + np.asarray(idx, np.int64)

    def gather(self, seq_ids: np.ndarray, type_idx, idx: np.ndarray) -> np.ndarray:
        """Descriptors of (sequence, type, patch) triples, ``(M, D)`` float32."""
        return np.take(self.rows2d, self.rows(seq_ids, type_idx, idx), axis=0)
