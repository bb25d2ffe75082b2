"""The compiled CSV fast path (evaluation.csv_parse): every accepted number equals ``float(text)`` rounded to
float32, bit for bit; anything it cannot read exactly is declined (None) and read by the general readers."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest

from hpatches_kit.data.errors import DataError
from hpatches_kit.evaluation import kernels
from hpatches_kit.evaluation.csv_parse import parse_float_file
from hpatches_kit.evaluation.describers import read_descriptor_dir, read_descriptor_set
from hpatches_kit.evaluation.descriptor_csv import _read_desc_csv

pytestmark = pytest.mark.skipif(not kernels.HAVE_NUMBA, reason="the fast path needs numba")


def parse_float_rows(data: bytes, delimiter, dim, out=None):
    """The fast path on ``data``: :func:`parse_float_file` of a temporary file holding those bytes."""
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "x.csv"
        p.write_bytes(data)
        return parse_float_file(p, delimiter, dim, out=out)


def _reference(lines, delim):
    """What the official loader gets: float() of every field, float64 -> float32."""
    rows = [[float(v) for v in ln.split(delim)] for ln in lines if ln.strip()]
    return np.array(rows, np.float64).astype(np.float32)


def _same_bits(a, b):
    return a.shape == b.shape and np.array_equal(a.view(np.uint32), b.view(np.uint32))


FORMATS = ["{:.9g}", "{!r}", "{:10.5f}", "{:.3e}", "{:E}", "{:+.4f}", "{:.0f}", "{:.12g}", "{:.15g}"]
#: formats whose numbers of moderate size (|x| ~ 1e-6..1e4) the fast path must accept
ACCEPTED = ("{:.9g}", "{:10.5f}", "{:.3e}", "{:E}", "{:+.4f}", "{:.0f}", "{:.12g}")
EXTRA = ["007.50", ".5", "5.", "-.25e+1", "1E-5", "+3", "0000", "0.000000000000000000001234"]


@pytest.mark.parametrize("delim", [",", ";", "\t"])
def test_moderate_numbers_accepted_and_equal_float(delim):
    rng = np.random.default_rng(1)
    x = (
        np.concatenate(
            [
                rng.normal(size=4000),
                rng.normal(size=1000) * 10.0 ** rng.integers(-3, 4, 1000),
                rng.integers(-300, 300, 500),
                [0.0, -0.0],
            ]
        )
        .astype(np.float32)
        .astype(np.float64)
    )
    dim = 8
    for fmt in ACCEPTED:
        vals = [fmt.format(v) for v in x.tolist()] + EXTRA
        vals = vals[: len(vals) // dim * dim]
        lines = [delim.join(vals[i : i + dim]) for i in range(0, len(vals), dim)]
        got = parse_float_rows(("\n".join(lines) + "\n").encode(), delim, dim)
        assert got is not None, fmt
        assert _same_bits(got, _reference(lines, delim)), fmt


def test_any_range_accepted_lines_equal_float():
    """Numbers of every magnitude and precision, one line each: declined, or bit-equal to float()."""
    rng = np.random.default_rng(2)
    x = np.concatenate([rng.normal(size=300) * 10.0 ** rng.integers(-40, 40, 300), [1e-22, 9007199254740992.0, 5e-324]])
    accepted = 0
    for fmt in FORMATS:
        for i in range(0, x.size - 2, 3):
            line = ",".join(fmt.format(v) for v in x[i : i + 3].tolist())
            got = parse_float_rows(line.encode(), ",", 3)
            if got is not None:
                accepted += 1
                with np.errstate(over="ignore"):
                    assert _same_bits(got, _reference([line], ",")), line
    assert accepted > 100


def test_every_accepted_line_is_exact():
    """Line by line, over numbers near the fast path's bounds: accepted -> bit-equal to float()."""
    cases = [
        "9007199254740992",
        "9007199254740993",
        "1e22",
        "1e23",
        "123456789012345678",
        "1234567890123456789",
        "4.9e-324",
        "1.7976931348623157e308",
        "3.4028235e38",
        "3.5e38",
        "1e-22",
        "1.5e-23",
        "0.1",
        "0.3",
        "2.5000000000000000001",
        "1" + "0" * 17,
        "-0",
        "0e999999",
        "12345678.9e-30",
    ]
    accepted = 0
    for c in cases:
        got = parse_float_rows(f"{c},1\n".encode(), ",", 2)
        if got is not None:
            accepted += 1
            with np.errstate(over="ignore"):
                assert _same_bits(got, np.array([[float(c), 1.0]]).astype(np.float32)), c
    assert accepted >= 7


@pytest.mark.parametrize(
    "text",
    [
        "1,2\n3\n",
        "1,2,\n3,4\n",
        "1,,2\n",
        "nan,1\n",
        "inf,1\n",
        "1,a\n",
        "1,2 3\n",
        "1,2\n   \n",
        "1,2e\n",
        "1;2\n",
        "1,--2\n",
        "1,2\n3,4,5\n",
        "1,0x10\n",
        "1,1_0\n",
    ],
)
def test_declines_what_it_does_not_read_exactly(text):
    assert parse_float_rows(text.encode(), ",", 2) is None


def test_blank_lines_crlf_spaces_and_no_final_newline():
    got = parse_float_rows(b"\n 1 , 2\r\n\r\n\n3,\t4", ",", 2)
    assert _same_bits(got, np.array([[1, 2], [3, 4]], np.float32))


def test_out_parameter():
    out = np.full((3, 2), 7, np.float32)
    got = parse_float_rows(b"1,2\n3,4\n", ",", 2, out=out)
    assert got.base is out or got is out
    assert _same_bits(out[:2], np.array([[1, 2], [3, 4]], np.float32)) and out[2, 0] == 7
    assert parse_float_rows(b"1,2\n3,4\n5,6\n7,8\n", ",", 2, out=out) is None  # more rows than out holds
    with pytest.raises(ValueError):
        parse_float_rows(b"1,2\n", ",", 2, out=np.empty((2, 2)))


def test_declined_files_read_by_the_general_path(tmp_path):
    """Full float64 precision (17 digits: declined by the fast path) still gives float()'s values."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(20, 4))
    lines = [",".join(repr(v) for v in row) for row in x.tolist()]
    p = tmp_path / "ref.csv"
    p.write_text("\n".join(lines) + "\n")
    assert parse_float_rows(p.read_bytes(), ",", 4) is None
    assert _same_bits(_read_desc_csv(p), _reference(lines, ","))
    p.write_text("1,2\n3,nan\n")
    with pytest.raises(DataError, match="line 2"):
        _read_desc_csv(p)


def _write_set(root, rng, n=5, dim=4, fmt="{:.9g}"):
    from hpatches_kit.data import TYPES

    for s in ("i_a", "v_b"):
        for t in TYPES:
            x = rng.normal(size=(n, dim)).astype(np.float32)
            (root / s).mkdir(parents=True, exist_ok=True)
            (root / s / f"{t}.csv").write_text("\n".join(",".join(fmt.format(v) for v in r) for r in x.tolist()) + "\n")


def test_set_parsed_in_place_equals_the_dict_reader(tmp_path):
    rng = np.random.default_rng(4)
    _write_set(tmp_path, rng)
    # one file beyond the fast path: read by Arrow and copied into its place
    (tmp_path / "v_b" / "h3.csv").write_text(
        "\n".join(",".join(repr(float(v)) for v in r) for r in rng.normal(size=(5, 4))) + "\n"
    )
    ds = read_descriptor_set(tmp_path, progress=False)
    d = read_descriptor_dir(tmp_path, progress=False)
    for s in ("i_a", "v_b"):
        for j, t in enumerate(d[s]):
            assert _same_bits(ds.stacks[s][j], d[s][t])


def test_set_count_mismatch_names_the_file(tmp_path):
    rng = np.random.default_rng(5)
    _write_set(tmp_path, rng)
    p = tmp_path / "i_a" / "t2.csv"
    p.write_text(p.read_text() + "1,2,3,4\n")
    with pytest.raises(DataError, match="t2.csv.*6 descriptors but ref.csv has 5"):
        read_descriptor_set(tmp_path, progress=False)
    p.write_text("\n".join(p.read_text().splitlines()[:3]) + "\n")
    with pytest.raises(DataError, match="t2.csv.*3 descriptors"):
        read_descriptor_set(tmp_path, progress=False)
    p.write_text("\n".join(",".join(["1"] * 5) for _ in range(5)) + "\n")
    with pytest.raises(DataError, match="t2.csv.*dimension 5"):
        read_descriptor_set(tmp_path, progress=False)


def test_float64_values_are_correctly_rounded():
    """The kernel's float64 values themselves (before the float32 rounding, which would hide a last-bit
    error): the same compiled code writing into a float64 array gives exactly float(text)."""
    from hpatches_kit.evaluation.csv_parse import _POW10, _parse

    rng = np.random.default_rng(6)
    x = rng.normal(size=6000) * 10.0 ** rng.integers(-5, 5, 6000)
    lines = [",".join(f"{v:.12g}" for v in x[i : i + 6].tolist()) for i in range(0, x.size, 6)]
    data = ("\n".join(lines) + "\n").encode()
    buf = np.frombuffer(data + b"\0", np.uint8)
    out = np.empty((len(lines), 6), np.float64)
    assert _parse(buf, np.uint8(ord(",")), np.int64(6), out, _POW10) == len(lines)
    want = np.array([[float(v) for v in ln.split(",")] for ln in lines])
    assert np.array_equal(out.view(np.uint64), want.view(np.uint64))


def test_parse_float_file_reuses_its_buffer(tmp_path):
    from hpatches_kit.evaluation import csv_parse

    rng = np.random.default_rng(7)
    for n in (3, 40000, 5):  # small, larger than the first 1 MiB buffer (it grows), small again (kept buffer)
        x = rng.normal(size=(n, 8)).astype(np.float32)
        p = tmp_path / f"f{n}.csv"
        p.write_text("\n".join(",".join(f"{v:.9g}" for v in r) for r in x.tolist()) + "\n")
        got = csv_parse.parse_float_file(p, ",", 8)
        assert _same_bits(got, x)
        out = np.empty((n, 8), np.float32)
        assert csv_parse.parse_float_file(p, ",", 8, out=out) is out and _same_bits(out, x)
    assert csv_parse._local.buf.shape[0] > p.stat().st_size + 1  # the grown buffer stays for the next file
    (tmp_path / "bad.csv").write_text("1,2\n3,x\n")
    assert csv_parse.parse_float_file(tmp_path / "bad.csv", ",", 2) is None


def test_large_blocks_are_plain_writable_arrays(monkeypatch):
    from hpatches_kit.evaluation import descriptor_set as D

    monkeypatch.setattr(D, "_MMAP_BYTES", 1)  # every block from the mmap path
    ds = D.DescriptorSet.empty({"i_a": 3, "v_b": 2}, 4)
    assert ds.flat.flags.writeable and ds.flat.flags.c_contiguous and ds.flat.shape == (16, 5, 4)
    ds.stacks["v_b"][15] = 7.0
    assert ds.rows2d[15 * 5 + 3 :].tolist() == [[7.0] * 4] * 2
