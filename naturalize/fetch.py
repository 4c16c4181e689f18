"""`naturalize fetch-sam`: download an official segment-anything checkpoint and verify it.

In: a model type (vit_b | vit_l | vit_h), a target directory, optionally a mirror URL and an expected
checksum. Out: DIR/sam_<type>_<hash>.pth, complete and verified, or nothing (a failed checksum
removes the download; a broken connection keeps DIR/<name>.part so the next run resumes it).

The six hex digits in the official file names are the start of each file's MD5; the full MD5s below
are the ones the segment-anything files have carried since their release (widely re-published).
A mirror that serves a different build can be checked with --sha256 or --md5 instead.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from naturalize.fsio import UserError, file_digests
from naturalize.paths import env_path

#: Mirror base URL (the file name is appended), e.g. a local copy of dl.fbaipublicfiles.com.
URL_ENV = "NATURALIZE_SAM_URL"
#: Where checkpoints go when --dir is not given.
DIR_ENV = "NATURALIZE_SAM_DIR"
OFFICIAL_BASE = "https://dl.fbaipublicfiles.com/segment_anything/"
CHUNK = 1 << 20


@dataclass(frozen=True)
class Checkpoint:
    """One official SAM checkpoint: its file name and MD5 (the name carries the first 6 hex digits)."""

    filename: str
    md5: str
    size_mb: int


CHECKPOINTS: dict[str, Checkpoint] = {
    "vit_b": Checkpoint("sam_vit_b_01ec64.pth", "01ec64d29a2fca3f0661936605ae66f8", 375),
    "vit_l": Checkpoint("sam_vit_l_0b3195.pth", "0b3195507c641ddb6910d2bb5adee89c", 1250),
    "vit_h": Checkpoint("sam_vit_h_4b8939.pth", "4b8939a88964f0f4ff5f5b2642c598a6", 2560),
}


def size_text(size_mb: int) -> str:
    """375 -> '375 MB', 1250 -> '1.2 GB' (binary gigabytes, one decimal)."""
    return f"{size_mb} MB" if size_mb < 1000 else f"{size_mb / 1024:.1f} GB"


def model_type_help(sizes: bool = False) -> str:
    """The SAM model types for a help line, from CHECKPOINTS: 'vit_b | vit_l | vit_h' (the CLI's way of listing
    choices; segment, build and fetch-sam all read it), with `sizes` each followed by its download size
    ('vit_b (375 MB) | ...')."""
    return " | ".join(f"{name} ({size_text(c.size_mb)})" if sizes else name for name, c in CHECKPOINTS.items())


def default_dir() -> Path:
    """$NATURALIZE_SAM_DIR, else $XDG_CACHE_HOME/naturalize/sam, else ~/.cache/naturalize/sam."""
    return env_path(DIR_ENV, env_path("XDG_CACHE_HOME", Path.home() / ".cache") / "naturalize" / "sam")


def checkpoint_url(model_type: str, url: str | None = None) -> str:
    """The URL to fetch: `url` as given, else $NATURALIZE_SAM_URL + file name, else the official one."""
    if url:
        return url
    base = os.environ.get(URL_ENV) or OFFICIAL_BASE
    return base.rstrip("/") + "/" + CHECKPOINTS[model_type].filename


def _expected(model_type: str, sha256: str | None, md5: str | None) -> tuple[str, str]:
    """('sha256'|'md5', lowercase hex) that the finished file must match."""
    for name, value, length in (("sha256", sha256, 64), ("md5", md5, 32)):
        if value:
            value = value.strip().lower()
            if len(value) != length or any(c not in "0123456789abcdef" for c in value):
                raise UserError(f"--{name} {value!r} is not {length} hex digits; copy the full checksum")
            return name, value
    return "md5", CHECKPOINTS[model_type].md5


def _verify(path: Path, algo: str, expected: str, url: str) -> None:
    md5, sha = file_digests(path)
    got = sha if algo == "sha256" else md5
    if got != expected:
        path.unlink(missing_ok=True)
        raise UserError(
            f"{url}: the downloaded file's {algo.upper()} is {got}, expected {expected}; it was deleted. "
            f"Rerun to download again, or pass --sha256/--md5 with the checksum your mirror publishes"
        )


def _download(url: str, part: Path, desc: str) -> None:
    """Fetch `url` into `part`, continuing a previous partial download when the server allows ranges."""
    from tqdm import tqdm

    have = part.stat().st_size if part.exists() else 0
    req = urllib.request.Request(url, headers={"User-Agent": "naturalize-fetch-sam"})
    if have:
        req.add_header("Range", f"bytes={have}-")
    try:
        resp = urllib.request.urlopen(req, timeout=60)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # range not satisfiable: the part file is already complete
            return
        raise UserError(
            f"{url}: HTTP {e.code} {e.reason}; check the URL (--url / ${URL_ENV}) or try again later"
        ) from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise UserError(
            f"{url}: cannot connect ({reason}); check your network or pass a reachable mirror with --url"
        ) from None
    with resp:
        status = getattr(resp, "status", None) or 200
        resumed = status == 206
        length = resp.headers.get("Content-Length")
        total = (int(length) + (have if resumed else 0)) if length else None
        mode = "ab" if resumed else "wb"
        with (
            part.open(mode) as f,
            tqdm(
                total=total, initial=have if resumed else 0, unit="B", unit_scale=True, unit_divisor=1024, desc=desc
            ) as bar,
        ):
            try:
                while chunk := resp.read(CHUNK):
                    f.write(chunk)
                    bar.update(len(chunk))
            except (OSError, urllib.error.URLError) as e:
                raise UserError(
                    f"{url}: download interrupted ({e}); {part} was kept, rerun the same command to resume"
                ) from None
        if total is not None and part.stat().st_size < total:
            raise UserError(
                f"{url}: connection closed after {part.stat().st_size} of {total} bytes; "
                f"{part} was kept, rerun the same command to resume"
            )


def fetch_sam(
    model_type: str,
    dest_dir: str | Path | None = None,
    url: str | None = None,
    sha256: str | None = None,
    md5: str | None = None,
    overwrite: bool = False,
) -> tuple[Path, bool]:
    """Download and verify one checkpoint. Returns (path, downloaded); downloaded is False when a
    verified copy was already there."""
    if model_type not in CHECKPOINTS:
        raise UserError(f"unknown SAM model type {model_type!r}; use one of {', '.join(CHECKPOINTS)}")
    algo, expected = _expected(model_type, sha256, md5)
    src = checkpoint_url(model_type, url)
    dest = Path(dest_dir) if dest_dir is not None else default_dir()
    target = dest / CHECKPOINTS[model_type].filename
    if target.exists() and not overwrite:
        md5_have, sha_have = file_digests(target)
        if (sha_have if algo == "sha256" else md5_have) == expected:
            return target, False
        raise UserError(
            f"{target} exists but does not match the expected {algo.upper()}; delete it or rerun with --overwrite"
        )
    created = not dest.exists()
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create {dest} ({e.strerror}); pass a writable --dir") from None
    part = target.with_name(target.name + ".part")
    if part.is_symlink():  # resuming would append to (and a bad checksum delete) a file fetch-sam did not write
        raise UserError(
            f"{part} is a link, not a partial download of fetch-sam's; nothing was written through it: "
            f"remove the link (or pass another --dir), then rerun"
        )
    try:
        _download(src, part, target.name)
        _verify(part, algo, expected, src)
    except BaseException:
        if part.exists() and part.stat().st_size == 0:
            part.unlink()
        if created and not any(dest.iterdir()):
            dest.rmdir()  # leave nothing behind but a resumable .part
        raise
    os.replace(part, target)
    return target, True
