"""Inspect an HPatches-format dataset without crashing on broken input (``hpatches-data info``).

:func:`inspect_dataset` walks a dataset folder, reads every PNG, and returns a :class:`DatasetReport`:
per-sequence patch counts, patch size, noisy twins, kind, the builder's ``dataset.json`` when present, and
a list of :class:`Problem` (file + what is wrong). It never raises on bad data -- it reports it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..layout import NOISE_SUFFIX, TYPES, sequence_kind
from .errors import DataError
from .fsio import read_json
from .sequences import find_sequence_dirs, read_patch_image
from .splits import load_splits

#: Files a builder may leave next to the sequence folders.
KNOWN_ROOT_FILES = {"dataset.json", "splits.json", "COMPLETE", "README.md", "LICENSE", "LICENSE.txt"}
EXPECTED_FILES = {f"{t}.png" for t in TYPES} | {f"{t}{NOISE_SUFFIX}.png" for t in TYPES}


@dataclass
class Problem:
    path: str
    problem: str

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}"


@dataclass
class SequenceInfo:
    name: str
    kind: str
    path: str
    patches: int | None = None  # tracks (patches per image type); None when unreadable
    patch_size: int | None = None
    noisy: bool = False
    ok: bool = True


@dataclass
class DatasetReport:
    root: str
    sequences: list[SequenceInfo] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    builder: dict | None = None  # contents of <root>/dataset.json
    has_splits_file: bool = False

    # -- summary ------------------------------------------------------------------------------------
    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def patch_sizes(self) -> list[int]:
        return sorted({s.patch_size for s in self.sequences if s.patch_size})

    @property
    def num_tracks(self) -> int:
        return sum(s.patches or 0 for s in self.sequences)

    def summary(self) -> dict:
        kinds = {"illum": 0, "view": 0, "unknown": 0}
        for s in self.sequences:
            kinds[s.kind] += 1
        sizes = self.patch_sizes
        return {
            "root": self.root,
            "sequences": len(self.sequences),
            "illum_sequences": kinds["illum"],
            "view_sequences": kinds["view"],
            "unknown_sequences": kinds["unknown"],
            "tracks": self.num_tracks,
            "patches": self.num_tracks * len(TYPES),
            "patch_size": sizes[0] if len(sizes) == 1 else sizes,
            "noisy_sequences": sum(s.noisy for s in self.sequences),
            "splits_file": self.has_splits_file,
            "problems": len(self.problems),
        }

    def to_dict(self) -> dict:
        return {
            "summary": self.summary(),
            "sequences": [asdict(s) for s in self.sequences],
            "problems": [asdict(p) for p in self.problems],
            "builder": self.builder,
        }

    def format(self, max_rows: int | None = None) -> str:
        """A readable table: summary, one row per sequence, the builder metadata and every problem."""
        s = self.summary()
        lines = [f"dataset: {self.root}"]
        lines.append(
            f"  {s['sequences']} sequences ({s['illum_sequences']} illum, {s['view_sequences']} view"
            + (f", {s['unknown_sequences']} other" if s["unknown_sequences"] else "")
            + f"), {s['tracks']} tracks, {s['patches']} patches, patch size {s['patch_size']}, "
            f"noisy twins in {s['noisy_sequences']}/{s['sequences']} sequences, "
            f"splits.json: {'yes' if self.has_splits_file else 'no'}"
        )
        w = max([8] + [len(q.name) for q in self.sequences])
        lines.append("")
        lines.append(f"  {'sequence':<{w}}  {'kind':<7} {'patches':>8} {'size':>5}  noisy  status")
        rows = self.sequences if max_rows is None else self.sequences[:max_rows]
        for q in rows:
            n = "?" if q.patches is None else str(q.patches)
            p = "?" if q.patch_size is None else str(q.patch_size)
            lines.append(
                f"  {q.name:<{w}}  {q.kind:<7} {n:>8} {p:>5}  {'yes' if q.noisy else 'no ':<5}  {'ok' if q.ok else 'BROKEN'}"
            )
        if max_rows is not None and len(self.sequences) > max_rows:
            lines.append(f"  ... {len(self.sequences) - max_rows} more")
        if self.builder is not None:
            lines.append("")
            lines.append("builder (dataset.json):")
            lines.extend("  " + ln for ln in _format_builder(self.builder))
        lines.append("")
        if self.problems:
            lines.append(f"{len(self.problems)} problem(s):")
            lines.extend(f"  {p}" for p in self.problems)
        else:
            lines.append("no problems found")
        return "\n".join(lines)


def _format_builder(meta: dict) -> list[str]:
    out = []
    for k, v in meta.items():
        if isinstance(v, dict) and v and all(not isinstance(x, (dict, list)) for x in v.values()):
            out.append(f"{k}: " + ", ".join(f"{a}={_short(b)}" for a, b in v.items()))
        else:
            out.append(f"{k}: {_short(v)}")
    return out


def _short(v, n: int = 100) -> str:
    s = f"{v:.4g}" if isinstance(v, float) else (json.dumps(v) if isinstance(v, (dict, list)) else str(v))
    return s if len(s) <= n else s[: n - 3] + "..."


def _inspect_sequence(d: Path, expected_p: int | None, problems: list[Problem]) -> SequenceInfo:
    info = SequenceInfo(name=d.name, kind=sequence_kind(d.name), path=str(d))
    n_before = len(problems)
    if info.kind == "unknown":
        problems.append(Problem(str(d), "sequence name should start with i_ (illumination) or v_ (viewpoint)"))
    # stray files / folders inside the sequence
    for child in sorted(d.iterdir()):
        if child.name not in EXPECTED_FILES:
            what = "folder" if child.is_dir() else "file"
            problems.append(
                Problem(
                    str(child),
                    f"stray {what} (a sequence holds only <type>.png and <type>_noise.png for types {TYPES[0]}..{TYPES[-1]})",
                )
            )
    missing = [t for t in TYPES if not (d / f"{t}.png").is_file()]
    if missing:
        problems.append(Problem(str(d), f"sequence is missing image types: {', '.join(missing)}"))
    noise_present = [t for t in TYPES if (d / f"{t}{NOISE_SUFFIX}.png").is_file()]
    if noise_present and len(noise_present) < len(TYPES):
        miss = [f"{t}{NOISE_SUFFIX}.png" for t in TYPES if t not in noise_present]
        problems.append(Problem(str(d), f"incomplete noisy twins: missing {', '.join(miss)}"))
    info.noisy = len(noise_present) == len(TYPES)

    counts: dict[str, int] = {}
    widths: dict[str, int] = {}
    files = [d / f"{t}.png" for t in TYPES if t not in missing] + [d / f"{t}{NOISE_SUFFIX}.png" for t in noise_present]
    for f in files:
        try:
            arr = read_patch_image(f, None)  # width = the file's own patch size; checked against the others below
        except DataError as e:
            problems.append(Problem(e.path, e.problem))
            continue
        counts[f.name] = arr.shape[0]
        widths[f.name] = arr.shape[-1]
    # patch size: the expected one (dataset-wide majority), else this sequence's ref.png / majority
    if widths:
        p = expected_p or widths.get("ref.png") or max(set(widths.values()), key=list(widths.values()).count)
        for name, wd in widths.items():
            if wd != p:
                problems.append(Problem(str(d / name), f"patch width is {wd} px, expected {p}"))
        info.patch_size = p
        good = {k: v for k, v in counts.items() if widths[k] == p}
        if good:
            n = good.get("ref.png") or max(set(good.values()), key=list(good.values()).count)
            info.patches = n
            for name, c in good.items():
                if c != n:
                    problems.append(
                        Problem(
                            str(d / name),
                            f"holds {c} patches but {'ref.png holds' if 'ref.png' in good else 'the other type files hold'} {n}: type files must have equal patch counts",
                        )
                    )
    info.ok = len(problems) == n_before
    return info


def png_size(path) -> tuple[int, int] | None:
    """``(width, height)`` from the PNG header, without decoding; ``None`` when it is not a readable PNG."""
    try:
        with open(path, "rb") as f:
            head = f.read(24)
    except OSError:
        return None
    if len(head) < 24 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return None
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def _png_width(path) -> int | None:
    wh = png_size(path)
    return wh[0] if wh else None


def inspect_dataset(root, patch_size: int | None = None, progress: bool = False) -> DatasetReport:
    """Check every sequence and file under ``root``; never raises on bad data (only if ``root`` itself
    cannot be listed, the report holds that single problem).

    ``patch_size``: the expected patch width; ``None`` takes the most common width of the ``ref.png`` files.
    """
    root = Path(root)
    report = DatasetReport(root=str(root))
    try:
        dirs = find_sequence_dirs(root)
    except DataError as e:
        report.problems.append(Problem(e.path, e.problem))
        return report
    single = dirs == [root]  # root is itself one sequence folder
    base = root.parent if single else dirs[0].parent  # the folder holding the sequences (and dataset.json)
    meta_dir = base
    for cand in (meta_dir / "dataset.json", root / "dataset.json"):
        if cand.is_file():
            try:
                meta = read_json(cand)
                if not isinstance(meta, dict):
                    raise DataError(cand, f"expected a JSON object of builder metadata, got {type(meta).__name__}")
                report.builder = meta
            except DataError as e:
                report.problems.append(Problem(e.path, e.problem))
            except OSError as e:
                report.problems.append(Problem(str(cand), f"cannot read: {e}"))
            break
    report.has_splits_file = (meta_dir / "splits.json").is_file() or (root / "splits.json").is_file()
    for cand in dict.fromkeys((meta_dir / "splits.json", root / "splits.json")):
        if cand.is_file():  # a malformed splits.json is a problem (--strict fails), not a silent "yes"
            try:
                load_splits(cand)
            except DataError as e:
                report.problems.append(Problem(e.path, e.problem))
            except OSError as e:
                report.problems.append(Problem(str(cand), f"cannot read: {e}"))
    if not single:
        seq_set = set(dirs)
        for child in sorted(base.iterdir()):
            if child in seq_set or child.name in KNOWN_ROOT_FILES or child.name.startswith("."):
                continue
            what = "folder" if child.is_dir() else "file"
            report.problems.append(
                Problem(str(child), f"stray {what} in the dataset folder (not a sequence folder i_*/v_*)")
            )
    if patch_size is None:
        widths = [w for w in (_png_width(d / "ref.png") for d in dirs) if w]
        patch_size = max(set(widths), key=widths.count) if widths else None
    it = dirs
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(dirs, desc="checking sequences", unit="seq", leave=False)
    for d in it:
        try:
            report.sequences.append(_inspect_sequence(d, patch_size, report.problems))
        except OSError as e:  # unreadable folder: report, keep going
            report.problems.append(Problem(str(d), f"cannot read: {e}"))
            report.sequences.append(SequenceInfo(name=d.name, kind=sequence_kind(d.name), path=str(d), ok=False))
    return report
