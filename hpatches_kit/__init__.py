"""hpatches-kit: learn and benchmark local image descriptors on the HPatches family of datasets."""

__version__ = "0.1.0"
