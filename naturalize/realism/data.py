"""The images of a folder for the realism test.

In: a directory (any depth; image files by naturalize.paths.is_image_name), optional classes and a per-class cap.
Out: Images (paths, class per image, sha256) with byte-identical copies dropped (the PBC sample holds
identical pairs: the same crop on both sides of a test would look like a perfect synthetic), sorted by path.
Across the two sides: `apart` refuses a synthetic folder that is, holds or lies inside the real one,
`refuse_composites` refuses a real side holding composites (*_syn_* files), and `drop_shared` drops synthetic files
byte-identical to a real one (the real side, which also feeds the real-vs-real baseline, stays whole).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from naturalize.classes import CLASS_NAMES, CLASSES, RELEASE_FOLDERS, class_of_prefix, normalize_class
from naturalize.fsio import UserError
from naturalize.outputs import overlap
from naturalize.paths import is_composite_name, is_image_name, visible_files


@dataclass(frozen=True)
class Images:
    """Image files with their class (file-name prefix, else the parent folder's name) and sha256."""

    paths: tuple[Path, ...]
    classes: tuple[str, ...]
    duplicates: int = 0
    digests: tuple[str, ...] = ()
    shared: int = 0  # files left out as byte-identical to one of the other side (drop_shared)
    unclassed: tuple[Path, ...] = ()  # image files left out: no class from their name or folder

    def of(self, cls: str) -> list[int]:
        """Indices of the class's images."""
        return [i for i, c in enumerate(self.classes) if c == cls]


#: Folder names that name one class: the class's hematology name (promyelocyte, band_neutrophil, band-neutrophil)
#: and the release's folders of one class (lymphocyte, platelet).
_FOLDER_CLASS: dict[str, str] = {name.replace(" ", sep): c for c, name in CLASS_NAMES.items() for sep in " _-"} | {
    folder: one[0] for folder, one in RELEASE_FOLDERS.items() if len(one) == 1
}


def _class_of(path: Path) -> str | None:
    """The file-name prefix's class, else the parent folder's: a class code (PMY/, pmy/, platelet/ as PLATELET), a
    class's name (promyelocyte/) or a release folder of one class (lymphocyte/); None for none of them (ig/ and
    neutrophil/ hold several classes)."""
    cls = class_of_prefix(path.name)
    if cls is None:
        folder = path.parent.name
        cls = normalize_class(folder)
        if cls not in CLASSES:
            cls = _FOLDER_CLASS.get(folder.lower())
    return cls


def gather(folder: Path, option: str, classes: tuple[str, ...] = ()) -> Images:
    """Every image under `folder` whose class is known (and among `classes`, when given), one per distinct
    content (sha256). UserError naming `option` (the command-line option) when there is none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(
            f"{option} {folder} is not a folder; give a folder of PBC images (classes from the "
            f"file-name prefix, e.g. PMY_123.jpg, or from <CLASS>/ folders)"
        )
    seen: set[str] = set()
    paths, labels, digests, dups, unclassed = [], [], [], 0, []
    for p in (q for q in visible_files(folder) if is_image_name(q) and q.is_file()):
        cls = _class_of(p)
        if cls is None:
            unclassed.append(p)
            continue
        if classes and cls not in classes:
            continue
        digest = hashlib.sha256(p.read_bytes()).hexdigest()
        if digest in seen:
            dups += 1
            continue
        seen.add(digest)
        paths.append(p)
        labels.append(cls)
        digests.append(digest)
    if not paths:
        want = f" of classes {','.join(classes)}" if classes else ""
        some = f" ({len(unclassed)} images without one, e.g. {unclassed[0]})" if unclassed else ""
        raise UserError(
            f"{option} {folder} holds no images{want} with a known class{some}; name the files by class "
            f"(PMY_1.png) or put them in class folders (PMY/, promyelocyte/, or a release folder of one class: "
            f"lymphocyte/)"
        )
    return Images(tuple(paths), tuple(labels), dups, tuple(digests), unclassed=tuple(unclassed))


def apart(real: Path, synthetic: Path) -> None:
    """UserError when the --synthetic folder is, lies inside or holds the --real one: every real image would
    sit on both sides, and the test would call any copy of a real image perfectly realistic."""
    how = overlap(synthetic, real)
    if how is not None:
        raise UserError(
            f"--synthetic {synthetic} {how} the --real folder {real}; the test compares two separate sets: "
            f"point --synthetic at the synthetic images alone (e.g. a compose --out) and --real outside it"
        )


def refuse_composites(real: Images, folder: Path) -> None:
    """UserError when the --real side holds Naturalize composites (a dataset's train folder, or val/test of a
    paper-protocol build, holds them beside real images): they would be taken for real images."""
    found = [p for p in real.paths if is_composite_name(p)]
    if found:
        raise UserError(
            f"--real {folder} holds {len(found)} Naturalize composites (*_syn_* files, e.g. {found[0]}), which would "
            f"count as real; point --real at real images only (the PBC download, or a clean build's val or test folder)"
        )


def drop_shared(synthetic: Images, real: Images, folder: Path) -> Images:
    """`synthetic` less every file byte-identical to one in `real` (a copy of a real image is no synthetic image,
    and would make the synthetic side look real), the count in `.shared`. UserError when none is left."""
    known = set(real.digests)
    keep = [i for i, d in enumerate(synthetic.digests) if d not in known]
    if not keep:
        raise UserError(
            f"--synthetic {folder}: every image is byte-identical to one in --real; point --synthetic at "
            f"synthetic images (e.g. a compose --out)"
        )
    return Images(
        tuple(synthetic.paths[i] for i in keep),
        tuple(synthetic.classes[i] for i in keep),
        synthetic.duplicates,
        tuple(synthetic.digests[i] for i in keep),
        len(synthetic.paths) - len(keep),
        synthetic.unclassed,
    )


def subset(images: Images, keep: list[int]) -> Images:
    """`images` with only the images at `keep` (the counts of what was left out before carried over)."""
    return Images(
        tuple(images.paths[i] for i in keep),
        tuple(images.classes[i] for i in keep),
        images.duplicates,
        tuple(images.digests[i] for i in keep),
        images.shared,
        images.unclassed,
    )


def balanced(a: Images, b: Images, cap: int, rng: np.random.Generator) -> tuple[list[int], list[int], list[str]]:
    """Indices into a and b: per class both sides get min(len a, len b, cap) images, drawn by rng, for
    every class both hold; and those classes (in CLASSES order)."""
    shared = [c for c in CLASSES if a.of(c) and b.of(c)]
    ia, ib = [], []
    for c in shared:
        xa, xb = a.of(c), b.of(c)
        k = min(len(xa), len(xb), cap) if cap > 0 else min(len(xa), len(xb))
        ia += sorted(rng.choice(xa, k, replace=False).tolist())
        ib += sorted(rng.choice(xb, k, replace=False).tolist())
    return ia, ib, shared


def unmatched(
    asked: tuple[str, ...], shared: list[str], real: Images, syn: Images, real_dir: Path, syn_dir: Path
) -> None:
    """UserError when a class asked for with --classes is missing on one side (it would vanish from the table)."""
    missing = [c for c in asked if c not in shared]
    if missing:
        sides = [(n, d, set(im.classes)) for n, d, im in (("--real", real_dir, real), ("--synthetic", syn_dir, syn))]
        lacking = "; ".join(
            f"{n} {d} has no {','.join(c for c in missing if c not in held)} (it holds {','.join(sorted(held))})"
            for n, d, held in sides
            if any(c not in held for c in missing)
        )
        raise UserError(f"--classes {','.join(asked)}: {lacking}; drop the class from --classes or add its images")
