"""`naturalize fetch-sam` against a local HTTP server on 127.0.0.1 serving a file the test makes:
checksums pass or fail cleanly, a partial download resumes, the mirror variable is honoured."""

from __future__ import annotations

import hashlib
import http.server
import threading
from functools import partial
from pathlib import Path

import pytest

from naturalize import fetch
from naturalize.testing.cli import run_cli

NAME = fetch.CHECKPOINTS["vit_b"].filename


class RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Static files with `Range: bytes=N-` support (like the real CDN), quiet."""

    ranges: list[str] = []

    def log_message(self, *args) -> None:
        pass

    def send_head(self):
        rng = self.headers.get("Range")
        if not rng:
            return super().send_head()
        RangeHandler.ranges.append(rng)
        path = Path(self.translate_path(self.path))
        data = path.read_bytes()
        start = int(rng.split("=")[1].rstrip("-"))
        if start >= len(data):
            self.send_error(416)
            return None
        self.send_response(206)
        self.send_header("Content-Length", str(len(data) - start))
        self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        import io

        return io.BytesIO(data[start:])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    """(base URL, served folder holding NAME: 3 MiB of seeded bytes, its sha256, its md5)."""
    root = tmp_path_factory.mktemp("www")
    data = hashlib.sha256(b"seed").digest() * (3 * 1024 * 1024 // 32)
    (root / NAME).write_bytes(data)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(RangeHandler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield (
        f"http://127.0.0.1:{httpd.server_address[1]}",
        root,
        hashlib.sha256(data).hexdigest(),
        hashlib.md5(data).hexdigest(),
    )
    httpd.shutdown()
    httpd.server_close()


cli = partial(run_cli, "naturalize")


def test_good_checksum_downloads_and_bad_one_leaves_nothing(server, tmp_path: Path) -> None:
    base, root, sha, _ = server
    dest = tmp_path / "ckpt"
    proc = cli("fetch-sam", "vit_b", "--dir", str(dest), "--url", f"{base}/{NAME}", "--sha256", sha)
    assert proc.returncode == 0, proc.stderr
    assert (dest / NAME).read_bytes() == (root / NAME).read_bytes()
    assert [p.name for p in dest.iterdir()] == [NAME]
    assert "--checkpoint" in proc.stdout
    # a second run finds the verified file and downloads nothing
    again = cli("fetch-sam", "vit_b", "--dir", str(dest), "--url", f"{base}/missing.pth", "--sha256", sha)
    assert again.returncode == 0 and "already there" in again.stdout

    bad = tmp_path / "bad"
    proc = cli("fetch-sam", "vit_b", "--dir", str(bad), "--url", f"{base}/{NAME}", "--sha256", "0" * 64)
    assert proc.returncode == 2
    assert "SHA256" in proc.stderr and "deleted" in proc.stderr
    assert not bad.exists()
    # without an explicit checksum the official MD5 applies: a mirror serving another file fails
    proc = cli("fetch-sam", "vit_b", "--dir", str(bad), "--url", f"{base}/{NAME}")
    assert proc.returncode == 2 and fetch.CHECKPOINTS["vit_b"].md5 in proc.stderr
    assert not bad.exists()


def test_mirror_variable_missing_file_and_bad_checksum_text(server, tmp_path: Path) -> None:
    base, root, _, md5 = server
    dest = tmp_path / "m"
    proc = cli("fetch-sam", "vit_b", "--dir", str(dest), "--md5", md5, env={fetch.URL_ENV: base + "/"})
    assert proc.returncode == 0, proc.stderr
    assert (dest / NAME).is_file()
    proc = cli("fetch-sam", "vit_l", "--dir", str(dest), "--md5", md5, env={fetch.URL_ENV: base})
    assert proc.returncode == 2 and "HTTP 404" in proc.stderr
    assert sorted(p.name for p in dest.iterdir()) == [NAME]
    proc = cli("fetch-sam", "vit_b", "--dir", str(dest), "--sha256", "abc")
    assert proc.returncode == 2 and "64 hex digits" in proc.stderr
    proc = cli("fetch-sam", "vit_x", "--dir", str(dest))
    assert proc.returncode == 2 and "vit_b, vit_l, vit_h" in proc.stderr


def test_partial_download_resumes(server, tmp_path: Path) -> None:
    base, root, sha, _ = server
    data = (root / NAME).read_bytes()
    dest = tmp_path / "r"
    dest.mkdir()
    (dest / (NAME + ".part")).write_bytes(data[:1_000_000])  # what a broken connection leaves
    RangeHandler.ranges.clear()
    path, downloaded = fetch.fetch_sam("vit_b", dest, url=f"{base}/{NAME}", sha256=sha)
    assert downloaded and path.read_bytes() == data
    assert RangeHandler.ranges == ["bytes=1000000-"]
    assert [p.name for p in dest.iterdir()] == [NAME]


def test_a_link_in_place_of_the_partial_download_is_never_written_through(server, tmp_path: Path) -> None:
    """A `.part` that is a link to a file elsewhere: the resume used to append the download to that file (and a
    bad checksum deleted the link's name); now one error line, and nothing is written or removed."""
    base, root, sha, _ = server
    dest = tmp_path / "l"
    dest.mkdir()
    outside = tmp_path / "mine.bin"
    outside.write_bytes(b"my own file")
    (dest / (NAME + ".part")).symlink_to(outside)
    proc = cli("fetch-sam", "vit_b", "--dir", str(dest), "--url", f"{base}/{NAME}", "--sha256", sha)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "is a link" in proc.stderr, proc.stderr
    assert outside.read_bytes() == b"my own file" and (dest / (NAME + ".part")).is_symlink()
    assert sorted(p.name for p in dest.iterdir()) == [NAME + ".part"]


def test_unreachable_server_is_one_clear_error(tmp_path: Path) -> None:
    from naturalize.fsio import UserError

    with pytest.raises(UserError, match="cannot connect"):
        fetch.fetch_sam("vit_b", tmp_path / "x", url="http://127.0.0.1:9/none.pth", sha256="0" * 64)
    assert not (tmp_path / "x").exists()
