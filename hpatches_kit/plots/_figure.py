"""Shared figure plumbing: the Agg backend, a paper-ready style and saving PNG + PDF atomically."""

from __future__ import annotations

from pathlib import Path

from ..io import atomic_savefig

#: raster resolution of every PNG (the PDF next to it is vector)
DPI = 150
#: vector formats written next to every PNG
VECTOR_FORMATS = ("pdf",)


def plt():
    """``matplotlib.pyplot`` on the non-interactive Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as pyplot

    # fonts embedded as TrueType (Type 42) in PDFs: editable text, accepted by paper submission systems
    matplotlib.rcParams["pdf.fonttype"] = 42
    return pyplot


def save(fig, path, dpi: int = DPI, vector: bool = True) -> list[Path]:
    """Write ``fig`` to ``path`` (its suffix picks the format, normally ``.png``) and, with ``vector``, the same
    figure as ``path.with_suffix(".pdf")``; each file atomically. Returns the paths written.

    Args:
        fig: a matplotlib figure.
        path: output file (``.png``).
        dpi: resolution of the raster file.
        vector: also write the vector version(s) (:data:`VECTOR_FORMATS`).
    """
    path = Path(path)
    atomic_savefig(fig, path, dpi=dpi, bbox_inches="tight")
    written = [path]
    if vector:
        for ext in VECTOR_FORMATS:
            if path.suffix.lstrip(".").lower() != ext:
                p = path.with_suffix("." + ext)
                atomic_savefig(fig, p, bbox_inches="tight")
                written.append(p)
    return written
