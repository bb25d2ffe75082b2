"""Downloads against a local HTTP server on 127.0.0.1 (no real network): full fetch + extraction, resume after
a dropped connection and from an existing .part, and corrupt downloads (size / sha256 / tar) leaving nothing
at the final path."""

import hashlib
import io
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from conftest import make_tracks, write_dataset

from hpatches_kit.cli.data import main
from hpatches_kit.data import TYPES, load_dataset
from hpatches_kit.data.download import SOURCES, DownloadError, download, download_file, extract_tar


class FileServer:
    """Serves ``files`` ({url path: bytes}) with HTTP Range support. ``drop_once``: paths whose first full
    (non-Range) response is cut after half the body; ``ignore_range``: paths answered 200 to Range requests."""

    def __init__(self, files):
        self.files = dict(files)
        self.drop_once: set[str] = set()
        self.ignore_range: set[str] = set()
        self.requests: list[tuple[str, str | None]] = []
        srv = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                rng = self.headers.get("Range")
                srv.requests.append((self.path, rng))
                data = srv.files.get(self.path)
                if data is None:
                    self.send_error(404)
                    return
                start = 0
                if rng and self.path not in srv.ignore_range:
                    start = int(rng.split("=")[1].split("-")[0])
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.path in srv.drop_once and not rng:
                    srv.drop_once.discard(self.path)
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def _tarball(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture
def release_tar(tmp_path):
    """A miniature hpatches-release.tar.gz (2 sequences) and the tracks it holds."""
    rng = np.random.default_rng(7)
    seqs = {"i_a": make_tracks(3, 65, rng), "v_b": make_tracks(2, 65, rng)}
    src = write_dataset(tmp_path / "src" / "hpatches-release", seqs)
    members = {f"hpatches-release/{f.relative_to(src).as_posix()}": f.read_bytes() for f in sorted(src.rglob("*.png"))}
    return _tarball(members), seqs


def _payload(n=300_000, seed=0):
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


def test_full_download_extracts_and_checks(release_tar, shared_benchmark, tmp_path):
    tar, seqs = release_tar
    files = {"/hpatches-release.tar.gz": tar}
    for rf in SOURCES["benchmark-tasks"].files:  # the official files, served byte-identical
        files["/" + rf.path] = (shared_benchmark / rf.dest.split("hpatches-benchmark/", 1)[1]).read_bytes()
    out = tmp_path / "data"
    with FileServer(files) as srv:
        res = download(["hpatches-release", "benchmark-tasks"], out, base_url=srv.url, progress=False)
    assert res["hpatches-release"] == [out / "hpatches-release"]
    ds = load_dataset(out / "hpatches-release", progress=False)
    assert ds.names == ["i_a", "v_b"]
    for n, t in seqs.items():
        np.testing.assert_array_equal(ds[n].tracks, t)
    assert (out / "hpatches-benchmark" / "splits.json").read_bytes() == (shared_benchmark / "splits.json").read_bytes()
    assert len(list((out / "hpatches-benchmark" / "tasks").glob("retr_*.csv"))) == 12
    leftovers = [
        p.name for p in out.rglob("*") if p.name.endswith((".part", ".tar.gz")) or p.name.startswith(".extract")
    ]
    assert leftovers == []
    # second run: already present, nothing fetched
    with FileServer({}) as srv:
        download(["hpatches-release"], out, base_url=srv.url, progress=False)
        assert srv.requests == []


def test_resume_after_dropped_connection(tmp_path):
    data = _payload()
    with FileServer({"/f.bin": data}) as srv:
        srv.drop_once.add("/f.bin")
        f = download_file(
            srv.url + "/f.bin", tmp_path / "f.bin", sha256=hashlib.sha256(data).hexdigest(), progress=False, backoff=0
        )
        assert srv.requests == [("/f.bin", None), ("/f.bin", f"bytes={len(data) // 2}-")]
    assert f.read_bytes() == data and not (tmp_path / "f.bin.part").exists()


def test_resume_existing_part_file(tmp_path):
    data = _payload(seed=1)
    (tmp_path / "f.bin.part").write_bytes(data[:12345])
    with FileServer({"/f.bin": data}) as srv:
        download_file(srv.url + "/f.bin", tmp_path / "f.bin", progress=False)
        assert srv.requests == [("/f.bin", "bytes=12345-")]
    assert (tmp_path / "f.bin").read_bytes() == data


def test_complete_part_file_and_server_without_range(tmp_path):
    data = _payload(seed=2)
    (tmp_path / "a.bin.part").write_bytes(data)  # already complete: server answers 416
    (tmp_path / "b.bin.part").write_bytes(b"X" * 500)  # server ignores Range: start over, not append
    with FileServer({"/a.bin": data, "/b.bin": data}) as srv:
        srv.ignore_range.add("/b.bin")
        download_file(srv.url + "/a.bin", tmp_path / "a.bin", sha256=hashlib.sha256(data).hexdigest(), progress=False)
        download_file(srv.url + "/b.bin", tmp_path / "b.bin", progress=False)
    assert (tmp_path / "a.bin").read_bytes() == data and (tmp_path / "b.bin").read_bytes() == data


def test_checksum_mismatch_leaves_nothing(tmp_path):
    data = _payload(seed=3)
    with FileServer({"/f.bin": data}) as srv:
        with pytest.raises(DownloadError, match=r"f\.bin: sha256 mismatch: got [0-9a-f]{64}, expected 0{64}"):
            download_file(srv.url + "/f.bin", tmp_path / "f.bin", sha256="0" * 64, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_size_mismatch_leaves_nothing(tmp_path):
    data = _payload(seed=4)
    with FileServer({"/f.bin": data}) as srv:
        with pytest.raises(DownloadError, match=rf"server reports {len(data)} bytes, expected {len(data) + 1}"):
            download_file(srv.url + "/f.bin", tmp_path / "f.bin", size=len(data) + 1, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_truncated_without_retries_keeps_only_part(tmp_path):
    data = _payload(seed=5)
    with FileServer({"/f.bin": data}) as srv:
        srv.drop_once.add("/f.bin")
        with pytest.raises(DownloadError, match=r"download failed after 0 retries .* run again to resume"):
            download_file(srv.url + "/f.bin", tmp_path / "f.bin", retries=0, progress=False)
    assert not (tmp_path / "f.bin").exists()
    assert (tmp_path / "f.bin.part").read_bytes() == data[: len(data) // 2]


def test_http_404_is_clear(tmp_path):
    with FileServer({}) as srv:
        with pytest.raises(DownloadError, match=r"/nope\.bin: HTTP 404"):
            download_file(srv.url + "/nope.bin", tmp_path / "x", progress=False)


def test_corrupt_tarball_leaves_nothing(tmp_path):
    bad = _tarball({"hpatches-release/i_a/ref.png": b"x" * 5000})[:-200]  # truncated gzip stream
    with FileServer({"/hpatches-release.tar.gz": bad}) as srv:
        with pytest.raises(DownloadError, match=r"hpatches-release\.tar\.gz: not a valid tar archive"):
            download(["hpatches-release"], tmp_path, base_url=srv.url, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_unsafe_tar_member_rejected(tmp_path):
    (tmp_path / "evil.tar.gz").write_bytes(_tarball({"../escape.txt": b"boo"}))
    (tmp_path / "out").mkdir()
    with pytest.raises(DownloadError, match="unsafe path in archive"):
        extract_tar(tmp_path / "evil.tar.gz", tmp_path / "out")
    assert not (tmp_path / "escape.txt").exists() and list((tmp_path / "out").iterdir()) == []


def test_cli_download_env_base_url(release_tar, tmp_path, monkeypatch, capsys):
    tar, _ = release_tar
    with FileServer({"/mirror/hpatches-release.tar.gz": tar}) as srv:
        monkeypatch.setenv("HPATCHES_DOWNLOAD_BASE_URL", srv.url + "/mirror")
        rc = main(["download", "--out", str(tmp_path / "d"), "--what", "hpatches-release", "-q"])
    assert rc == 0 and (tmp_path / "d" / "hpatches-release" / "v_b" / "t5.png").is_file()
    with FileServer({}) as srv:
        rc = main(
            ["download", "--out", str(tmp_path / "e"), "--what", "hpatches-sequences", "--base-url", srv.url, "-q"]
        )
    assert rc == 2 and "HTTP 404" in capsys.readouterr().err
    assert not (tmp_path / "e").exists()  # the folder the failed command created is gone


def _flip_inside_stored_block(tar: bytes) -> bytes:
    """Flip one byte in the middle of the deflate data (random member data -> stored blocks), so the stream
    still inflates and the tar headers still parse: only the gzip CRC-32 can tell."""
    bad = bytearray(tar)
    bad[len(bad) // 2] ^= 0xFF
    return bytes(bad)


def test_gzip_crc_corruption_is_refused(tmp_path):
    payload = _payload(200_000, seed=9)
    tar = _tarball({"hpatches-release/i_a/blob.bin": payload})
    bad = _flip_inside_stored_block(tar)
    # the reference: tarfile alone reads the corrupt member without an error (it stops before the trailer) ...
    with tarfile.open(fileobj=io.BytesIO(bad), mode="r:*") as tf:
        got = tf.extractfile("hpatches-release/i_a/blob.bin").read()
    assert got != payload and len(got) == len(payload)
    # ... and zlib's own CRC check rejects it
    import gzip

    with pytest.raises(gzip.BadGzipFile, match="CRC"):
        gzip.decompress(bad)
    with FileServer({"/hpatches-release.tar.gz": bad}) as srv:
        with pytest.raises(DownloadError, match=r"hpatches-release\.tar\.gz: not a valid tar archive \(corrupt gzip"):
            download(["hpatches-release"], tmp_path, base_url=srv.url, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_force_keeps_the_present_copy_until_the_new_one_is_verified(release_tar, tmp_path, capsys):
    tar, seqs = release_tar
    out = tmp_path / "data"
    with FileServer({"/hpatches-release.tar.gz": tar}) as srv:
        download(["hpatches-release"], out, base_url=srv.url, progress=False)
        url = srv.url
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    # mirror down (server stopped): --force fails and the dataset is still there, the message names no .part
    rc = main(
        [
            "download",
            "--out",
            str(out),
            "--what",
            "hpatches-release",
            "--base-url",
            url,
            "--force",
            "-q",
            "--retries",
            "0",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and "nothing was downloaded" in err and ".part" not in err
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
    # a corrupt archive from the mirror: also refused, the old copy stays
    with FileServer({"/hpatches-release.tar.gz": _flip_inside_stored_block(tar)}) as srv:
        with pytest.raises(DownloadError, match="not a valid tar archive"):
            download(["hpatches-release"], out, base_url=srv.url, progress=False, force=True)
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
    # a good new archive replaces it: a stale extra file of the old copy is gone, the new data is in place
    (out / "hpatches-release" / "stale.txt").write_text("old")
    new_seqs = {"i_z": make_tracks(2, 65, np.random.default_rng(3))}
    src = write_dataset(tmp_path / "src2" / "hpatches-release", new_seqs)
    tar2 = _tarball(
        {f"hpatches-release/{f.relative_to(src).as_posix()}": f.read_bytes() for f in sorted(src.rglob("*.png"))}
    )
    with FileServer({"/hpatches-release.tar.gz": tar2}) as srv:
        download(["hpatches-release"], out, base_url=srv.url, progress=False, force=True)
    ds = load_dataset(out / "hpatches-release", progress=False)
    assert ds.names == ["i_z"] and not (out / "hpatches-release" / "stale.txt").exists()
    np.testing.assert_array_equal(ds["i_z"].tracks, new_seqs["i_z"])
    assert [p.name for p in out.iterdir()] == ["hpatches-release"]


def test_benchmark_tasks_download_runs_all_three_tasks(shared_benchmark, tmp_path, monkeypatch):
    """The quickstart: `download --what benchmark-tasks` brings what the three tasks need (the verification
    pairs generated for what is missing) and splits.json where split `a` finds it for the dataset beside it."""
    import csv

    import hpatches_kit.evaluation.tasks as tasks_mod
    from hpatches_kit.data.splits import default_splits_file
    from hpatches_kit.evaluation import evaluate

    files = {
        "/" + rf.path: (shared_benchmark / rf.dest.split("hpatches-benchmark/", 1)[1]).read_bytes()
        for rf in SOURCES["benchmark-tasks"].files
    }
    out = tmp_path / "data"
    with FileServer(files) as srv:
        download(["benchmark-tasks"], out, base_url=srv.url, progress=False)
    (out / "hpatches-release").mkdir()
    assert default_splits_file(out / "hpatches-release") == out / "hpatches-benchmark" / "splits.json"
    tasks = out / "hpatches-benchmark" / "tasks"
    need = {}
    for kind in ("queries", "distractors"):
        with open(tasks / f"retr_{kind}_split-a.csv") as f:
            for row in csv.DictReader(f):
                need[row["s"]] = max(need.get(row["s"], 0), int(row["idx"]) + 1)
    rng = np.random.default_rng(0)
    descs = {s: {t: rng.normal(size=(n, 4)).astype(np.float32) for t in TYPES} for s, n in need.items()}
    monkeypatch.setattr(tasks_mod, "OFFICIAL_PAIRS", 2000)  # the rule, not the official 10^6 (minutes)
    res = evaluate(
        descs,
        None,
        split="a",
        splits_file=out / "hpatches-benchmark" / "splits.json",
        tasks_dir=tasks,
        progress=False,
        cache_dir=tmp_path / "cache",
    )
    assert {"verification", "matching", "retrieval"} <= set(res)
    assert "generated" in res["meta"]["tasks_source"]


def test_failed_download_leaves_no_empty_folder(tmp_path):
    """No network (here: a server answering 404 to everything): the error, and no empty ``hpatches-benchmark/``
    (nor the output folder the command created) left behind; a folder that existed before stays."""
    out = tmp_path / "data"
    with FileServer({}) as srv:
        with pytest.raises(DownloadError, match="HTTP 404"):
            download(["benchmark-tasks"], out, base_url=srv.url, progress=False, retries=0)
        assert not out.exists()
        (tmp_path / "mine").mkdir()
        with pytest.raises(DownloadError, match="HTTP 404"):
            download(["benchmark-tasks"], tmp_path / "mine", base_url=srv.url, progress=False, retries=0)
    assert list((tmp_path / "mine").iterdir()) == []
