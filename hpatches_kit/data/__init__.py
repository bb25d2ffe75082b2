"""HPatches data layer: read, validate, build (synth / extract), pack and download datasets."""

from . import formats  # noqa: F401,E402  (installs the format registry's load_dataset hook)
from .embedded import default_data_dir, ensure_default
from .errors import DataError
from .hpatches import (
    HPATCHES_PATCH_SIZE,
    NHPATCHES_PATCH_SIZE,
    TYPES,
    VARIANTS,
    DatasetIndex,
    HPatchesDataset,
    Sequence,
    find_sequence_dirs,
    index_dataset,
    iter_load_sequences,
    load_dataset,
    load_sequence,
    read_patch_image,
    resize_patches,
    type_index,
    write_patch_image,
)
from .splits import SPLIT_NAMES, load_splits, split_sequences

__all__ = [
    "DataError",
    "HPATCHES_PATCH_SIZE",
    "NHPATCHES_PATCH_SIZE",
    "TYPES",
    "VARIANTS",
    "HPatchesDataset",
    "DatasetIndex",
    "index_dataset",
    "Sequence",
    "find_sequence_dirs",
    "iter_load_sequences",
    "load_dataset",
    "load_sequence",
    "read_patch_image",
    "resize_patches",
    "type_index",
    "write_patch_image",
    "SPLIT_NAMES",
    "load_splits",
    "split_sequences",
    "default_data_dir",
    "ensure_default",
]
