"""Byte-identical composites: a cheap key of each image's bytes, kept in its journal entry as it is written
(bytes_key), and after a run the groups of images whose keys match and whose bytes, compared, are the same
(identical_groups).

Why they happen: a transplant composite is fully fixed by three discrete draws (the white-cell sprite, one of its
8 x centre_variants looks, a donor plate among those whose removed cell it covers), so a small bank gives few
distinct images and a long run repeats some (birthday odds: 3 identical pairs in 60 from a 16-image PMY bank). The
paper and matched scenes draw continuous positions and practically never repeat.
"""

from __future__ import annotations

import zlib
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

#: bytes_key reads every STRIDE-th byte: 2.4 us for a 22 kB JPEG where a full CRC32 takes 21 us (1 % of an image)
STRIDE = 64


def bytes_key(data: bytes) -> str:
    """'<length>:<CRC32 of every STRIDE-th byte, hex>': the same for the same bytes (images with equal keys are then
    compared byte for byte: identical_groups)."""
    return f"{len(data)}:{zlib.crc32(data[::STRIDE]):08x}"


def identical_groups(out: Path, entries: Iterable[dict]) -> list[list[str]]:
    """The groups (2 or more files, relative to `out`, in entry order; groups sorted) of journal entries whose image
    files hold the same bytes: entries with the same "key" (bytes_key), confirmed by reading those files. Entries
    without a key (journals of an older version) and files gone meanwhile are left out."""
    by_key: dict[str, list[str]] = defaultdict(list)
    for e in entries:
        if "key" in e:
            by_key[e["key"]].append(e["file"])
    groups: list[list[str]] = []
    for files in by_key.values():
        if len(files) < 2:
            continue
        by_bytes: dict[bytes, list[str]] = defaultdict(list)
        for f in files:
            try:
                by_bytes[(out / f).read_bytes()].append(f)
            except OSError:
                continue
        groups += [g for g in by_bytes.values() if len(g) > 1]
    return sorted(groups)


def duplicates_warning(groups: list[list[str]], total: int, cls: str, out: Path, scene: str, n: int) -> str | None:
    """One `warning:` line for the identical groups among the `total` images of `cls` in `out`, or None."""
    if not groups:
        return None
    copies = sum(len(g) - 1 for g in groups)
    a, b = (Path(f).name for f in groups[0][:2])
    return (
        f"warning: {copies} of the {total} {cls} images in {out} are byte-identical copies of another ({len(groups)} "
        f"group(s), e.g. {a} = {b}): the bank gives the {scene} scene too few distinct {cls} images for --n {n}; use a "
        f"bigger bank (more {cls} images segmented) or a smaller --n"
    )
