"""Scenes: what the class's white cell is pasted into (`compose --scene`).

    paper       a cell-free background plate; red cells and platelets placed anew (core.compose_image)
    matched     the paper's layout with the class's own scene statistics (scene_stats.py: red-cell and
                platelet counts, white-cell offset, one measured image drawn per composite); red cells
                from the plate's own image and the images closest to it in plasma colour (at least
                MATCHED_POOL sprites, at most MATCHED_SOURCES images), allowed to be cut by the border (down
                to MATCHED_MIN_VISIBLE inside), to lie on each other (MATCHED_OVERLAP) and to touch the
                white cell, never centred on another cell; plates, red cells and platelets (their variants
                drawn per sprite id) come from the bank's per-source cache (source_cache.py)
    transplant  a real training image (the donor, of any class) keeps its own red cells and platelets; only
                its white cell is removed (inpainted, the hole its mask grown by HOLE_MARGIN px) and a white
                cell of the wanted class from another image takes its place, centred where the old one was

Donor plates are made once per bank and cached in BANK/scenes/transplant/ (`donor_plate`): one .npy array
(H x W x 4 uint8: the inpainted image's BGR and a label map of its kept cells, label j + 1 = j-th kept
sprite; read 8x faster than PNG) and a JSON record (the removed white cell, the kept sprites and their
boxes, the plasma colour, a hash of the bank rows and code it was made from: a changed bank remakes it).
Kept cells are the bank's RBC and PLT sprites of the donor (border-cut ones included); clumps the
segmentation did not store stay in the image unannotated.

In: Bank, Library (library.py), Generator, ComposeParams. Out: core.Composite; `scene_library` loads a run's
Library with the scene's plates.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from naturalize.bank import BackgroundRow, Bank, SpriteRow
from naturalize.classes import CLASSES, NO_WBC_CLASSES
from naturalize.codeversion import code_digest
from naturalize.compose.core import (
    UNIT_GAIN,
    Composite,
    Placed,
    compose_image,
    draw_cell,
    paint,
    scaled_box,
)
from naturalize.compose.library import (
    Library,
    SpriteSet,
    TaskPool,
    focus_to_plates,
    load_library,
    plasma_colour,
    seeded_subset,
)
from naturalize.compose.params import SCENES, ComposeParams
from naturalize.compose.scene_stats import scene_stats
from naturalize.compose.source_cache import source_entry
from naturalize.compose.stain import gain_table
from naturalize.compose.transform import Transform
from naturalize.decode import load_bgr
from naturalize.fsio import UserError, write_bytes, write_json
from naturalize.outputs import read_record
from naturalize.segment.gate import BAD_MASK_REASONS, NUCLEATED_REASONS
from naturalize.segment.inpaint import remove_cells

#: The removed white cell's mask is grown by this many pixels before inpainting (its halo goes too).
HOLE_MARGIN = 3
#: matched scene: smallest visible fraction of a border-cut cell, red-red overlap, red-cell pool per plate
MATCHED_MIN_VISIBLE = 0.3
MATCHED_OVERLAP = 0.15
MATCHED_POOL = 8
MATCHED_SOURCES = 3
MATCHED_MAX_RBC = 40
#: Version of the cached donor files (a change remakes them).
DONOR_VERSION = 2  # 2: plate and labels in one .npy (1: two PNG files)
CACHE_DIR = "scenes/transplant"
_IDENTITY = Transform(False, 0, 0.0, 1.0)
#: kept cells are not painted: no pixels of their own, an all-zero mask view of their box's size
_NO_PIXELS = np.zeros((0, 0, 4), np.uint8)
_ZERO = np.uint8(0)


@dataclass
class Donors:
    """The transplant scenes of one run: per donor its kept cells (their bank rows, as `kept.rows[j]` for
    global index j), the global indices of its kept cells in label order, its label map at the composing size (CANVAS)
    (uint8, 0 = plate or hole, j + 1 = its j-th kept cell), per kept cell the box and area of its label there
    (x, y, w, h, area) and its sprite's box there (x, y, w, h: where the sprite lies, what the manifest records;
    larger than the label's where another cell or the hole covers part of it), and the removed white cell's
    centre (x, y) at the composing size and sprite id."""

    name = "transplant"
    kept: SpriteSet
    cells: list[list[int]]
    labels: list[np.ndarray]
    boxes: list[list[tuple[int, int, int, int, int]]]
    sprite_boxes: list[list[tuple[int, int, int, int]]]
    hole_centre: np.ndarray
    removed: list[str]


def _eligible(bank: Bank) -> dict[str, tuple[BackgroundRow, SpriteRow, list[SpriteRow]]]:
    """source -> (its background row, its one white cell, its RBC and PLT sprites) for every kept source
    image with exactly one white cell, whole (not cut by the border) and passed by the quality gate (a bitten
    mask would leave part of the cell beside the pasted one), and no other cell the quality gate found nucleated
    (it would stay in the scene beside the pasted white cell)."""
    by_source: dict[str, list[SpriteRow]] = {}
    for r in bank.sprites:
        by_source.setdefault(r.source, []).append(r)
    keep = {c["source"] for c in bank.curation if c.get("keep") == "1" and c.get("n_wbc") == "1"}
    out = {}
    for b in sorted(bank.backgrounds, key=lambda b: b.background_id):
        rows = by_source.get(b.source, [])
        wbc = [r for r in rows if r.kind == "WBC"]
        second_nucleus = any(r.reason in NUCLEATED_REASONS for r in rows)
        if (
            b.source in keep
            and b.source not in out
            and len(wbc) == 1
            and not wbc[0].touches_border
            and wbc[0].reason not in BAD_MASK_REASONS
            and not second_nucleus
        ):
            out[b.source] = (b, wbc[0], sorted((r for r in rows if r.kind != "WBC"), key=lambda r: r.sprite_id))
    return out


#: The modules whose code shapes a donor plate (their digest is part of its stamp).
DONOR_CODE = ("naturalize.compose.scenes", "naturalize.segment.inpaint")


def _rows_hash(bg: BackgroundRow, wbc: SpriteRow, kept: list[SpriteRow]) -> str:
    code = [DONOR_VERSION, code_digest(*DONOR_CODE), cv2.__version__]
    text = json.dumps([*code, HOLE_MARGIN, repr(bg), repr(wbc), [repr(r) for r in kept]])
    return hashlib.sha256(text.encode()).hexdigest()


def _mask_at(bank: Bank, row: SpriteRow, shape: tuple[int, int], threshold: int) -> np.ndarray:
    """Bool mask (alpha >= threshold; Bank.load_mask) of a sprite, at its box in its source image of `shape`."""
    m = bank.load_mask(row, threshold)
    out = np.zeros(shape, bool)
    h, w = min(m.shape[0], shape[0] - row.y0), min(m.shape[1], shape[1] - row.x0)
    out[row.y0 : row.y0 + h, row.x0 : row.x0 + w] = m[:h, :w]
    return out


def make_donor(
    bank: Bank, bg: BackgroundRow, wbc: SpriteRow, kept: list[SpriteRow]
) -> tuple[np.ndarray, np.ndarray, dict]:
    """(BGR plate: the source image with its white cell inpainted, uint8 label map of its kept cells with
    the hole cleared, JSON record) of one donor (pure apart from reading the bank and the source image)."""
    root = bank.meta.get("root")
    path = Path(root) / bg.source if root else None
    try:  # the pixels as stored, as segment read them (cv2.imread would turn the image by its EXIF tag)
        image = load_bgr(path) if path is not None else None
    except UserError:
        image = None
    if image is None:
        raise UserError(
            f"--scene transplant needs the bank's source images: cannot read {path}; "
            f"make the bank with `naturalize segment` (bank.json `root`) and keep the PBC folder in place"
        )
    shape = image.shape[:2]
    hole_cell = _mask_at(bank, wbc, shape, 1)
    plate = remove_cells(image, [hole_cell], dilate=HOLE_MARGIN)
    hole = cv2.dilate(
        hole_cell.view(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * HOLE_MARGIN + 1,) * 2)
    )
    labels = np.zeros(shape, np.uint8)
    for j, r in enumerate(kept[:254], start=1):
        labels[_mask_at(bank, r, shape, 128)] = j
    labels[hole > 0] = 0
    ys, xs = np.nonzero(hole_cell)
    clean = bank.load_background(bg)[:, :, ::-1]  # the cell-free plate: its median is the plasma colour
    record = {
        "version": DONOR_VERSION,
        "hole_margin": HOLE_MARGIN,
        "rows": _rows_hash(bg, wbc, kept),
        "source": bg.source,
        "removed": wbc.sprite_id,
        "kept": [r.sprite_id for r in kept[:254]],
        "centre": [float(xs.mean()), float(ys.mean())],
        "area": int(wbc.area),
        "plasma_bgr": [round(float(v), 3) for v in plasma_colour(np.ascontiguousarray(clean))],
        "boxes": [list(b) for b in _label_boxes(labels, len(kept[:254]))],  # (x, y, w, h, area) per kept cell
    }
    return plate, labels, record


def donor_plate(
    bank: Bank, bg: BackgroundRow, wbc: SpriteRow, kept: list[SpriteRow]
) -> tuple[np.ndarray, np.ndarray, dict]:
    """make_donor's result, read from the bank's cache when it was made from the same rows, else made and
    cached (atomic writes, the JSON last; a bank that cannot be written to is used without a cache)."""
    d = bank.root / CACHE_DIR
    meta_path, data_path = d / f"{bg.background_id}.json", d / f"{bg.background_id}.npy"
    record = read_record(meta_path) or {}  # none, or damaged / not a JSON object: made again
    if record:
        if record.get("rows") == _rows_hash(bg, wbc, kept):
            try:
                both = np.load(data_path, allow_pickle=False)
            except (OSError, ValueError):
                both = None
            if both is not None and both.dtype == np.uint8 and both.ndim == 3 and both.shape[2] == 4:
                return np.ascontiguousarray(both[:, :, :3]), np.ascontiguousarray(both[:, :, 3]), record
    plate, labels, record = make_donor(bank, bg, wbc, kept)
    try:
        buf = io.BytesIO()
        np.save(buf, np.dstack([plate, labels]), allow_pickle=False)
        write_bytes(data_path, buf.getvalue())
        write_json(meta_path, record)
        for old in (f"{bg.background_id}.png", f"{bg.background_id}.labels.png"):  # DONOR_VERSION 1's files
            (d / old).unlink(missing_ok=True)
    except OSError:
        pass  # a read-only bank: composed from memory, made again next time
    return plate, labels, record


def transplant_library(
    bank: Bank, cls: str, seed: int, params: ComposeParams, threads: int = 1, warm: bool = False
) -> Library:
    """A Library whose plates are donor images (at most max_sources, drawn by seed from all eligible
    sources of any class), with the class's white cells stain-matched to each donor's plasma."""
    lib = load_library(
        bank,
        cls,
        seed,
        replace(params, rbc=0, platelets=(0, 0), max_sources=1, max_small=0),
        threads=threads,
        warm=warm,
    )
    eligible = _eligible(bank)
    sources = seeded_subset(
        sorted(eligible), params.max_sources, np.random.default_rng([seed, CLASSES.index(cls), 0xD0])
    )
    if len(sources) < 2:
        raise UserError(
            f"bank {bank.root} has {len(sources)} source images with exactly one whole white cell; "
            f"--scene transplant needs at least 2 (segment more images, or use --scene paper)"
        )
    with TaskPool(threads) as tasks:
        made = list(tasks.map(lambda s: donor_plate(bank, *eligible[s]), sources))
    W, H = params.canvas
    plates, labels, boxes, sprite_boxes, centres, areas, cells = [], [], [], [], [], [], []
    kept_rows: list[SpriteRow] = []
    for s, (plate, lab, rec) in zip(sources, made):
        h, w = plate.shape[:2]
        found = [(x, y, bw, bh, a) for x, y, bw, bh, a in rec["boxes"]]
        if (w, h) != (W, H):
            plate = cv2.resize(plate, (W, H), interpolation=cv2.INTER_AREA)
            lab = cv2.resize(lab, (W, H), interpolation=cv2.INTER_NEAREST)
            found = _label_boxes(lab, len(rec["kept"]))
        lab, box, kept_ids = _visible_only(lab, found, rec["kept"])
        plates.append(plate)
        labels.append(lab)
        boxes.append(box)
        centres.append((rec["centre"][0] * W / w, rec["centre"][1] * H / h))
        areas.append(round(rec["area"] * W * H / (w * h)))
        rows = {r.sprite_id: r for r in eligible[s][2]}
        cells.append(list(range(len(kept_rows), len(kept_rows) + len(kept_ids))))
        kept_rows += [rows[i] for i in kept_ids]
        sprite_boxes.append(
            [scaled_box(r.x0, r.y0, r.x1 - r.x0, r.y1 - r.y0, (w, h), (W, H)) for r in (rows[i] for i in kept_ids)]
        )
    lib.plates = plates
    lib.plate_rows = [eligible[s][0] for s in sources]
    lib.plate_plasma = np.array([rec["plasma_bgr"] for _, _, rec in made], np.float32)
    area = np.array(areas, np.int64)
    lib.plate_by_centre_area = np.argsort(area, kind="stable")
    lib.plate_centre_area_sorted = area[lib.plate_by_centre_area]
    if params.stain:
        lib.centre.gains = gain_table(lib.centre.plasma, lib.plate_plasma)
    if params.wbc_focus:
        lib.centre.focus = focus_to_plates(bank, lib.centre.rows, lib.plate_rows)
    kept = SpriteSet(kept_rows, [], np.zeros((len(kept_rows), 3), np.float32), np.zeros(len(kept_rows), np.int64))
    lib.scene = Donors(
        kept, cells, labels, boxes, sprite_boxes, np.array(centres), [rec["removed"] for _, _, rec in made]
    )
    return lib


def compose_transplant(lib: Library, rng: np.random.Generator, p: ComposeParams) -> Composite:
    """One transplant composite: a donor whose removed white cell was no larger than the drawn one (so the
    new cell covers the hole), not the drawn cell's own source image; the new cell centred on the hole;
    the donor's kept cells as cells (role 'kept', index into lib.scene.kept) before it in paint order."""
    donors = lib.scene
    assert isinstance(donors, Donors), "a transplant library (transplant_library) is needed"
    centre = int(rng.integers(len(lib.centre)))
    fits = max(1, int(np.searchsorted(lib.plate_centre_area_sorted, lib.centre.areas[centre], side="right")))
    j = int(rng.integers(fits))
    own = lib.centre.rows[centre].source
    order = lib.plate_by_centre_area
    for step in range(len(order)):  # the next smaller (then larger) donor when this one is the cell's own image
        k = int(order[(j - step) % len(order)] if step <= j else order[step])
        if lib.plate_rows[k].source != own:
            break
    image = lib.plates[k].copy()
    cell = draw_cell(rng, lib.centre, "centre", k, index=centre)
    h, w = cell.mask.shape
    cx, cy = donors.hole_centre[k]
    cell.x, cell.y = round(cx - w / 2), round(cy - h / 2)
    kept = donors.cells[k]
    new = paint(image, [cell])
    labels = donors.labels[k].copy()
    labels[new > 0] = len(kept) + 1
    cells = [  # each where its sprite lies (its label's box is smaller where another cell or the hole covers part)
        Placed("kept", g, x, y, _NO_PIXELS, np.broadcast_to(_ZERO, (h, w)), box[4], _IDENTITY, UNIT_GAIN)
        for g, (x, y, w, h), box in zip(kept, donors.sprite_boxes[k], donors.boxes[k])
    ] + [cell]
    return Composite(image, k, cells, labels)


def _visible_only(
    labels: np.ndarray, boxes: list[tuple[int, int, int, int, int]], ids: list[str]
) -> tuple[np.ndarray, list[tuple[int, int, int, int, int]], list[str]]:
    """Drop the kept cells with no pixel left in the donor's label map (inside the inpainted hole, or lost
    when it was resized), renumbering the rest 1..m in order, so the record lists only cells in the image."""
    seen = [j for j, b in enumerate(boxes) if b[4] > 0]
    if len(seen) == len(boxes):
        return labels, boxes, ids
    remap = np.zeros(len(boxes) + 1, np.uint8)
    remap[[j + 1 for j in seen]] = np.arange(1, len(seen) + 1)
    return remap[labels], [boxes[j] for j in seen], [ids[j] for j in seen]


def _label_boxes(labels: np.ndarray, n: int) -> list[tuple[int, int, int, int, int]]:
    """(x, y, w, h, area) of labels 1..n in a label map ((0, 0, 1, 1, 0) for a label no pixel has)."""
    ys, xs = np.nonzero(labels)
    v = labels[ys, xs].astype(np.intp)
    size = max(n, int(v.max()) if len(v) else 0) + 1
    areas = np.bincount(v, minlength=size)
    x0, y0 = np.full(size, labels.shape[1], np.intp), np.full(size, labels.shape[0], np.intp)
    x1, y1 = np.full(size, -1, np.intp), np.full(size, -1, np.intp)
    np.minimum.at(x0, v, xs)
    np.minimum.at(y0, v, ys)
    np.maximum.at(x1, v, xs)
    np.maximum.at(y1, v, ys)
    return [
        (int(x0[j]), int(y0[j]), int(x1[j] - x0[j] + 1), int(y1[j] - y0[j] + 1), int(areas[j]))
        if areas[j]
        else (0, 0, 1, 1, 0)
        for j in range(1, n + 1)
    ]


@dataclass
class Matched:
    """The matched scene of one run: per plate the red-cell sprites it draws from (indices into lib.rbc),
    and one layout (ComposeParams) per measured source image of the class."""

    name = "matched"
    free_centres = True  # core.Occupancy: no cell centred on another (a cheap refusal before the overlap test)
    batch_draws = 8  # core.compose_image: each small cell's sprite, look and first 8 candidates drawn per image
    rbc_pool: list[np.ndarray]
    layouts: list[ComposeParams]


def coherent_pools(sources: list[str], plasma: np.ndarray, rbc_sources: list[str]) -> list[np.ndarray]:
    """Per plate (source image, plasma colour BGR): indices of the red cells (by their source) of its own
    image, then of the images closest in plasma colour, until MATCHED_POOL cells or MATCHED_SOURCES images
    (pure)."""
    by_source: dict[str, list[int]] = {}
    for i, s in enumerate(rbc_sources):
        by_source.setdefault(s, []).append(i)
    pools = []
    for k in range(len(sources)):
        order = np.argsort(np.abs(plasma - plasma[k]).sum(axis=1), kind="stable")
        pool: list[int] = []
        used = 0
        for j in [k] + [int(j) for j in order if j != k]:
            cells = by_source.get(sources[j], [])
            if cells:
                pool += cells
                used += 1
            if len(pool) >= MATCHED_POOL or used >= MATCHED_SOURCES:
                break
        pools.append(np.array(pool or range(len(rbc_sources)), np.int64))
    return pools


def matched_library(
    bank: Bank, cls: str, seed: int, params: ComposeParams, threads: int = 1, warm: bool = False
) -> Library:
    """The paper library with every red cell of its plates' images (plates, red cells and platelets from the
    bank's per-source cache: source_cache.py), per-plate coherent red-cell pools and the class's
    measured layouts."""
    lib = load_library(
        bank,
        cls,
        seed,
        replace(params, max_small=max(params.max_small, 100_000), rbc=max(params.rbc, 1)),
        threads=threads,
        warm=warm,
        store=source_entry,
    )
    stats = scene_stats(bank, cls)
    pools = coherent_pools([r.source for r in lib.plate_rows], lib.plate_plasma, [r.source for r in lib.rbc.rows])
    layouts = [
        replace(
            params,
            rbc=min(int(n), MATCHED_MAX_RBC),
            platelets=(int(m), int(m)),
            centre_offset=(float(dx), float(dy)),
            centre_jitter=(0.5, 0.5),
            min_visible=MATCHED_MIN_VISIBLE,
            rbc_overlap=MATCHED_OVERLAP,
            wbc_margin=0,
        )
        for n, m, (dx, dy) in zip(stats.n_rbc, stats.n_plt, stats.offset)
    ]
    lib.scene = Matched(pools, layouts)
    return lib


def compose_matched(lib: Library, rng: np.random.Generator, p: ComposeParams) -> Composite:
    """One matched composite: a measured image of the class drawn, its layout composed (core.compose_image,
    red cells from the plate's pool)."""
    scene = lib.scene
    assert isinstance(scene, Matched), "a matched library (matched_library) is needed"
    return compose_image(lib, rng, scene.layouts[int(rng.integers(len(scene.layouts)))])


SceneCode = tuple[Callable[..., Library], Callable[[Library, np.random.Generator, ComposeParams], Composite]]
_CODE: dict[str, SceneCode] = {
    "paper": (load_library, compose_image),
    "transplant": (transplant_library, compose_transplant),
    "matched": (matched_library, compose_matched),
}
#: scene -> (load a run's Library, compose one image from it), for every scene of params.SCENES (the one list of
#: scenes, light for the CLI; a scene named there without code here fails on import, and tests check the reverse)
SCENE_REGISTRY: dict[str, SceneCode] = {name: _CODE[name] for name in SCENES}


def check_scene_class(cls: str, scene: str) -> None:
    """UserError when `scene` cannot show class `cls`: transplant puts the class's cell into the hole of a real
    image's removed white cell, and a platelet in that hole would sit on an inpainted smudge larger than itself."""
    spec = SCENES[scene]
    if spec.replaces_wbc and cls in NO_WBC_CLASSES:
        raise UserError(
            f"--scene {scene} replaces the white cell of a real image, and a {cls} image shows none (a "
            f"platelet would sit in the inpainted hole of a white cell); use --scene {spec.no_wbc_scene} for "
            f"--class {cls}"
        )


def scene_library(
    bank: Bank, cls: str, seed: int, params: ComposeParams, threads: int = 1, warm: bool = False
) -> Library:
    """The Library of a run of params.scene."""
    return SCENE_REGISTRY[params.scene][0](bank, cls, seed, params, threads=threads, warm=warm)


def compose_scene(lib: Library, rng: np.random.Generator, p: ComposeParams) -> Composite:
    """One composite of p.scene from its library."""
    return SCENE_REGISTRY[p.scene][1](lib, rng, p)
