"""The in-memory sprite library of one compose run, loaded once from a sprite bank (forked workers share it).

In: a Bank, the class to compose, the seed and ComposeParams. Out: a Library holding, ready to paste,
    - background plates (BGR uint8, resized to the composing size, params.canvas) with their plasma colour;
    - sprites per role (centre cell of the class, RBC, PLT): premultiplied BGR + feathered alpha
      (BGRA uint8) and the plasma colour of their source image (for stain matching).
Everything per-sprite and per-plate (feathering, premultiplication, colour statistics, stain gains) is
computed here once, so composing an image only warps, recolours and blends.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import cv2
import numpy as np

from naturalize.bank import BackgroundRow, Bank, SpriteRow
from naturalize.classes import CLASSES
from naturalize.compose.params import CANVAS, ComposeParams
from naturalize.compose.stain import gain_table
from naturalize.compose.transform import Transform, sample_transform, split_warped, warp
from naturalize.compose.variety import focus_table, shape_warp, sized, tints
from naturalize.fsio import UserError
from naturalize.segment.gate import BAD_MASK_REASONS


@dataclass(frozen=True)
class Variant:
    """A sprite already transformed: premultiplied BGR with inverse alpha (255 - alpha) as 4th channel,
    mask (uint8 0/255, alpha >= 128), its area in pixels and the Transform that made it."""

    bgri: np.ndarray
    mask: np.ndarray
    area: int
    transform: Transform


@dataclass
class SpriteSet:
    """Sprites of one role: premultiplied BGRA arrays, their rows, source plasma (BGR float32 (n, 3)), mask
    areas, per sprite the transforms of its variants (drawn when the run starts; as many for every sprite)
    and the stain gain of every sprite on every plate (stain.gain_table; None without stain matching); a
    variant is warped on first use and kept (`variant`), or up front (load_library(warm=True)), so its
    pixels depend only on the sprite and its transform."""

    rows: list[SpriteRow]
    bgra: list[np.ndarray]
    plasma: np.ndarray
    areas: np.ndarray
    transforms: list[list[Transform]] = field(default_factory=list)
    gains: np.ndarray | None = None
    tints: np.ndarray | None = None  # (sprites, variants, 3) BGR factors on the gain: per-variant stain (variety.py)
    warps: np.ndarray | None = None  # (sprites, variants) int64 seeds of each variant's shape warp (variety.py)
    focus: np.ndarray | None = None  # (sprites, plates) blur-variance change px^2 to each plate's focus (variety.py)
    _warped: dict[tuple[int, int], Variant] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.rows)

    def warp_seed(self, i: int, v: int) -> int | None:
        """The seed of sprite i's v-th variant's shape warp, None without one."""
        return None if self.warps is None else int(self.warps[i, v])

    def variant(self, i: int, v: int) -> Variant:
        """Sprite i under its v-th transform (warped once, then cached)."""
        out = self._warped.get((i, v))
        if out is None:
            out = self._warped[(i, v)] = make_variant(self.bgra[i], self.transforms[i][v], self.warp_seed(i, v))
        return out


@dataclass
class Library:
    """Everything one run composes from (see module doc). `centre_kind` is WBC, or PLT for class PLT."""

    cls: str
    centre_kind: str
    plates: list[np.ndarray]
    plate_rows: list[BackgroundRow]
    plate_plasma: np.ndarray
    plate_by_centre_area: np.ndarray
    plate_centre_area_sorted: np.ndarray
    centre: SpriteSet
    rbc: SpriteSet
    plt: SpriteSet
    scene: Any = None  # the scene's own data (scenes.Donors for transplant); None for paper


def bank_fingerprint(bank: Bank) -> str:
    """sha256 of the bank's metadata and tables: a resumed run must read the same bank."""
    h = hashlib.sha256()
    for name in ("bank.json", "index.csv", "backgrounds.csv", "curation.csv"):
        p = bank.root / name
        h.update(name.encode() + b"\0" + (p.read_bytes() if p.exists() else b"") + b"\0")
    return h.hexdigest()


def centre_kind_of(cls: str) -> str:
    """The kind of the cell a class's images are centred on: platelets for PLT, a white cell otherwise."""
    return "PLT" if cls == "PLT" else "WBC"


def check_class(bank: Bank, cls: str) -> list[SpriteRow]:
    """The sprites the class's centre cell is drawn from; UserError when the class is unknown or absent."""
    if cls not in CLASSES:
        raise UserError(f"unknown class {cls!r}; use one of {', '.join(CLASSES)}")
    kind = centre_kind_of(cls)
    rows = bank.select(kind, None if kind == "PLT" else cls)
    if not rows:
        images = sum(r["label"] == cls for r in bank.curation)
        fix = (
            f"none of its {images} {cls} images gave one the quality gate kept: look at "
            f"{bank.root / 'qc' / 'index.html'} (a SAM bank: check its checkpoint and thresholds, docs/segmentation.md)"
            if images
            else f"segment images of class {cls} into it with `naturalize segment`"
        )
        raise UserError(
            f"bank {bank.root} has no {kind} sprites of class {cls} (cells cut by the border do not count); {fix}"
        )
    if not bank.backgrounds:
        raise UserError(
            f"bank {bank.root} has no background plates (backgrounds.csv); rebuild it with `naturalize segment`"
        )
    check_scale(bank)
    return rows


#: How far (as a factor, either way) a bank's source image may be from CANVAS in width or height: PBC crops
#: are 360x360 to 366x369; a crop 1000 px wide shows its cells about 2.8 times as large as compose pastes them.
SCALE_TOLERANCE = 1.15


def check_scale(bank: Bank) -> None:
    """UserError naming the bank's source images (from their plates' sizes) whose width or height is more than
    SCALE_TOLERANCE times off CANVAS: composites are made at CANVAS with every sprite at its own pixel size, so
    cells cut from them would be pasted far too large or too small among PBC-sized ones."""
    w0, h0 = CANVAS
    off = [
        b
        for b in sorted(bank.backgrounds, key=lambda b: b.source)
        if max(b.width / w0, w0 / b.width, b.height / h0, h0 / b.height) > SCALE_TOLERANCE
    ]
    if off:
        eg = ", ".join(f"{b.source} ({b.width}x{b.height})" for b in off[:3]) + (" ..." if len(off) > 3 else "")
        raise UserError(
            f"bank {bank.root}: {len(off)} source image(s) far from the PBC crop size {w0}x{h0} that compose works "
            f"at, e.g. {eg}; their cells would be pasted at the wrong scale. Resize such crops to about {w0}x{h0} "
            f"(the same field of view as a PBC crop) and segment them again, or leave them out of the bank"
        )


def feathered(rgba_bgr: np.ndarray, sigma: float) -> np.ndarray:
    """BGRA uint8 with alpha eroded then blurred by `sigma` px (edge fades inside the mask), kept only
    within sigma px of the largest alpha >= 128 part, and BGR premultiplied by alpha. sigma 0 keeps the hard mask."""
    a = rgba_bgr[:, :, 3]
    if sigma > 0:
        r = max(1, int(round(sigma)))
        pad = 2 * r + 2
        ap = cv2.copyMakeBorder(a, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
        ap = cv2.erode(ap, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)))
        ap = cv2.GaussianBlur(ap, (0, 0), sigma)
        a = np.minimum(ap[pad:-pad, pad:-pad], a)
        # no faint ghosts of thin parts or specks: alpha only near the cell's core (its largest alpha >= 128 part)
        n, lab, stats, _ = cv2.connectedComponentsWithStats((a >= 128).view(np.uint8), connectivity=8)
        if n > 1:
            core = (lab == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))).view(np.uint8)
            a = a * cv2.dilate(core, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)))
    a = np.ascontiguousarray(a)
    bgr = cv2.multiply(cv2.cvtColor(rgba_bgr, cv2.COLOR_BGRA2BGR), cv2.cvtColor(a, cv2.COLOR_GRAY2BGR), scale=1 / 255)
    out = cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA)  # colour * alpha / 255, rounded (no product is a half)
    out[:, :, 3] = a
    return out


def plasma_colour(plate: np.ndarray) -> np.ndarray:
    """BGR float32 (3,): the plate's plasma colour (per-channel median of a 4x-subsampled grid)."""
    return np.median(plate[::4, ::4].reshape(-1, 3), axis=0).astype(np.float32)


def sprite_plasma(bgra: np.ndarray) -> np.ndarray | None:
    """BGR plasma colour of a sprite's source image: the upper quartile of the crop's pixels outside the
    cell (a bank keeps their colour under alpha 0; within 1-2 levels of the plate's median on the sample);
    None when fewer than 20 such pixels carry colour."""
    out = bgra[bgra[:, :, 3] == 0][:, :3]
    out = out[out.any(axis=1)]
    return np.percentile(out, 75, axis=0).astype(np.float32) if len(out) >= 20 else None


def seeded_subset(rows: list, k: int, rng: np.random.Generator) -> list:
    """At most `k` of `rows`, drawn by `rng` without replacement and kept in their order (all when k >= len)."""
    if len(rows) <= k:
        return rows
    keep = np.sort(rng.choice(len(rows), size=k, replace=False))
    return [rows[i] for i in keep]


def read_bgra(path: Path) -> np.ndarray:
    """A sprite PNG as BGRA uint8 (grey or BGR files get an opaque alpha); UserError naming a damaged file."""
    im = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if im is None:
        raise UserError(f"cannot read sprite {path}; the bank is damaged, rebuild it with `naturalize segment`")
    if im.ndim == 2:
        im = cv2.cvtColor(im, cv2.COLOR_GRAY2BGRA)
    elif im.shape[2] == 3:
        im = cv2.cvtColor(im, cv2.COLOR_BGR2BGRA)
    return im


def read_plate(path: Path, size: tuple[int, int]) -> np.ndarray:
    """BGR plate at `size` (the composing size)."""
    im = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if im is None:
        raise UserError(f"cannot read background {path}; the bank is damaged, rebuild it with `naturalize segment`")
    if (im.shape[1], im.shape[0]) != size:
        im = cv2.resize(im, size, interpolation=cv2.INTER_AREA)
    return im


class TaskPool:
    """map() on `threads` threads (OpenCV and zlib release the GIL), or in this thread for one; a context manager
    that cancels what is left on exit. The threaded map queues every item at once, so several maps keep all
    threads busy until the last result."""

    def __init__(self, threads: int):
        self.pool = ThreadPoolExecutor(threads) if threads > 1 else None

    def map(self, fn: Callable[[Any], Any], items: Iterable[Any]) -> Iterator[Any]:
        return self.pool.map(fn, items) if self.pool else map(fn, items)

    def __enter__(self) -> TaskPool:
        return self

    def __exit__(self, *exc) -> None:
        if self.pool:
            self.pool.shutdown(cancel_futures=True)


class Loaded(NamedTuple):
    """One sprite as read: the plasma colour around it in its crop (None: its source plate's is used), its
    feathered premultiplied BGRA, the variants made up front (warm, or from a store; else []) and its mask area
    (None: counted from the BGRA)."""

    plasma: np.ndarray | None
    bgra: np.ndarray
    variants: list[Variant]
    area: int | None


@dataclass(frozen=True)
class Picks:
    """The bank rows one (class, seed) run reads: plates (one per chosen source image), the chosen sources, and
    the centre, red-cell and platelet sprites (the last two from the chosen sources only)."""

    plates: list[BackgroundRow]
    sources: set[str]
    centre: list[SpriteRow]
    rbc: list[SpriteRow]
    plt: list[SpriteRow]


def pick_rows(bank: Bank, cls: str, seed: int, params: ComposeParams) -> Picks:
    """At most `max_sources` source images (one plate each; none whose white cell the gate refused for its shape:
    part of it would stay on the inpainted plate), at most `max_wbc` centre sprites of the class, and at most
    `max_small` red cells and platelets of those sources, drawn in that order by a generator of (seed, class)
    (all of them in a small bank). UserError when the class has no centre sprites (check_class), or red cells are
    wanted and there are none."""
    centre = sorted(check_class(bank, cls), key=lambda r: r.sprite_id)
    rng = np.random.default_rng([seed, CLASSES.index(cls), 0x5EED])
    plates_by_source: dict[str, BackgroundRow] = {}
    bad = {r.source for r in bank.sprites if r.kind == "WBC" and r.reason in BAD_MASK_REASONS}
    for b in sorted(bank.backgrounds, key=lambda b: b.background_id):
        if b.source not in bad:
            plates_by_source.setdefault(b.source, b)
    sources = seeded_subset(sorted(plates_by_source), params.max_sources, rng)
    chosen = set(sources)
    centre = seeded_subset(centre, params.max_wbc, rng)

    def from_sources(kind: str) -> list[SpriteRow]:
        rows = sorted((r for r in bank.select(kind) if r.source in chosen), key=lambda r: r.sprite_id)
        return seeded_subset(rows, params.max_small, rng)

    rbc, plt = from_sources("RBC"), from_sources("PLT")
    if params.rbc > 0 and not rbc:
        raise UserError(f"bank {bank.root} has no RBC sprites; rebuild it with `naturalize segment` or use --rbc 0")
    return Picks([plates_by_source[s] for s in sources], chosen, centre, rbc, plt)


def draw_transforms(
    rows: list[SpriteRow], variants: int, cls: str, seed: int, params: ComposeParams
) -> list[list[Transform]]:
    """Per sprite of one set, its `variants` transforms, drawn from a generator of (seed, class, set size,
    variants): the same sprites and settings give the same transforms."""
    vrng = np.random.default_rng([seed, CLASSES.index(cls), 0xA11, len(rows), variants])
    return [[sample_transform(vrng, params) for _ in range(variants)] for _ in rows]


def centre_variety(
    bank: Bank, cls: str, seed: int, params: ComposeParams, rows: list[SpriteRow], transforms: list[list[Transform]]
) -> tuple[list[list[Transform]], np.ndarray | None]:
    """The centre sprites' transforms, each variant sized within the class's own range under --wbc-scale
    (variety.sized), and the (sprites, variants) seeds of their shape warps under --wbc-warp (else None)."""
    if params.wbc_scale:
        every = [r.area for r in bank.select(centre_kind_of(cls), None if cls == "PLT" else cls)]
        srng = np.random.default_rng([seed, CLASSES.index(cls), 0x5CA1E])
        transforms = sized(transforms, [r.area for r in rows], every, srng)
    warps = None
    if params.wbc_warp:
        wrng = np.random.default_rng([seed, CLASSES.index(cls), 0xBE4D])
        warps = wrng.integers(2**62, size=(len(rows), params.centre_variants))
    return transforms, warps


def load_sprite(
    path: Path, feather: float, transforms: list[Transform], warm: bool, plasma: bool, warps: np.ndarray | None
) -> Loaded:
    """One sprite file: its crop's plasma colour when `plasma` (its source plate is not loaded), its feathered
    BGRA and, when `warm`, its variants under `transforms` (with the shape-warp seeds `warps`, if any)."""
    raw = read_bgra(path)
    bgra = feathered(raw, feather)
    seeds = [None] * len(transforms) if warps is None else [int(s) for s in warps]
    made = [make_variant(bgra, t, w) for t, w in zip(transforms, seeds)] if warm else []
    return Loaded(sprite_plasma(raw) if plasma else None, bgra, made, None)


def read_files(
    bank: Bank,
    picks: Picks,
    sets: list[tuple[list[SpriteRow], list[list[Transform]], np.ndarray | None]],
    params: ComposeParams,
    threads: int,
    warm: bool,
    store: Callable[[Bank, BackgroundRow, list[SpriteRow], ComposeParams], Any] | None,
) -> tuple[list[np.ndarray], list[Any], list[list[Loaded]]]:
    """Decode on `threads` threads, every file queued at once: the plates (or, with a `store`, each chosen source's
    entry: its plate and its red cells and platelets), then the sprites of each (rows, transforms, warp seeds) set.
    Out: plates, store entries ([] without a store), per set its Loaded sprites."""
    small_of: dict[str, list[SpriteRow]] = {}  # per source: every usable red cell and platelet (the store's unit)
    for r in sorted(bank.select("RBC") + bank.select("PLT"), key=lambda r: r.sprite_id) if store else ():
        small_of.setdefault(r.source, []).append(r)

    def sprite(row: SpriteRow, ts: list[Transform], w: np.ndarray | None) -> Loaded:
        return load_sprite(bank.root / row.relpath, params.feather, ts, warm, row.source not in picks.sources, w)

    with TaskPool(threads) as tasks:
        entries_done = (
            tasks.map(lambda b: store(bank, b, small_of.get(b.source, []), params), picks.plates) if store else iter(())
        )
        plates_done = tasks.map(
            lambda r: read_plate(bank.root / r.relpath, params.canvas), [] if store else picks.plates
        )
        sprites_done = [
            tasks.map(lambda rtw: sprite(*rtw), zip(rows, ts, [None] * len(rows) if w is None else list(w)))
            for rows, ts, w in sets
        ]
        entries = list(entries_done)
        plates = [e.plate for e in entries] if store else list(plates_done)
        loaded = [list(done) for done in sprites_done]
    return plates, entries, loaded


def from_entry(entry: Any, sprite_id: str) -> Loaded:
    """A sprite of a store entry (a source_cache.SourceEntry, not imported here: source_cache imports this module;
    all its variants made; no crop plasma: its source plate is loaded)."""
    return Loaded(None, entry.bgra[sprite_id], entry.variants[sprite_id], entry.areas[sprite_id])


def _area(bgra: np.ndarray) -> int:
    """A sprite's mask area: its pixels with alpha >= 128."""
    return int(np.count_nonzero(bgra[:, :, 3] >= 128))


def sprite_set(
    rows: list[SpriteRow],
    transforms: list[list[Transform]],
    got: list[Loaded],
    warps: np.ndarray | None,
    plasma_of: dict[str, np.ndarray],
    plate_plasma: np.ndarray | None,
) -> SpriteSet:
    """The SpriteSet of one role from its rows and Loaded sprites: a sprite's source plasma is its crop's, else its
    source plate's (`plasma_of`), else the median of the plates'; with `plate_plasma` (stain matching) the gain
    table of every sprite on every plate."""
    fallback = np.median(np.stack(list(plasma_of.values())), axis=0).astype(np.float32)
    plasma = [plasma_of.get(r.source, fallback) if g.plasma is None else g.plasma for r, g in zip(rows, got)]
    areas = np.array([_area(g.bgra) if g.area is None else g.area for g in got], np.int64)
    out = SpriteSet(
        rows, [g.bgra for g in got], np.array(plasma, np.float32).reshape(-1, 3), areas, transforms, warps=warps
    )
    out._warped.update(((i, v), var) for i, g in enumerate(got) for v, var in enumerate(g.variants))
    if plate_plasma is not None:
        out.gains = gain_table(out.plasma, plate_plasma)
    return out


def load_library(
    bank: Bank,
    cls: str,
    seed: int,
    params: ComposeParams,
    threads: int = 1,
    warm: bool = False,
    store: Callable[[Bank, BackgroundRow, list[SpriteRow], ComposeParams], Any] | None = None,
) -> Library:
    """Read what a (class, seed) run composes from: the rows pick_rows draws, each sprite's transforms
    (draw_transforms, centre_variety), the files (read_files), then per role a SpriteSet (sprite_set) and per plate
    its plasma colour and the area of the white cell it had. warm: warp every sprite variant now (what a long run
    would warp one by one as it goes, done once before worker processes fork and share it). Files are decoded on
    `threads` threads; the result does not depend on it. store: plates, red cells and platelets from a per-source
    store instead (source_cache.source_entry: (bank, background row, the source's usable RBC and PLT rows, params)
    -> its plate, plasma and per sprite id BGRA, area and every variant); the centre cells are loaded as without."""
    picks = pick_rows(bank, cls, seed, params)
    roles = [(picks.centre, params.centre_variants), (picks.rbc, params.variants), (picks.plt, params.variants)]
    from_files = roles[:1] if store else roles  # a store holds its own sprites and transforms (per sprite id)
    transforms = [draw_transforms(rows, variants, cls, seed, params) for rows, variants in from_files]
    transforms[0], centre_warps = centre_variety(bank, cls, seed, params, picks.centre, transforms[0])
    warps = [centre_warps, None, None]
    plates, entries, loaded = read_files(
        bank, picks, list(zip([rows for rows, _ in from_files], transforms, warps)), params, threads, warm, store
    )
    if store:
        by_source = {r.source: e for r, e in zip(picks.plates, entries)}
        loaded += [[from_entry(by_source[r.source], r.sprite_id) for r in rows] for rows in (picks.rbc, picks.plt)]
        transforms += [[[v.transform for v in got.variants] for got in done] for done in loaded[1:]]
    plasmas = [e.plasma for e in entries] if store else [plasma_colour(p) for p in plates]
    plasma_of = {r.source: c for r, c in zip(picks.plates, plasmas)}
    plate_plasma = np.stack([plasma_of[r.source] for r in picks.plates])
    centre, rbc, plt = (
        sprite_set(rows, ts, got, w, plasma_of, plate_plasma if params.stain else None)
        for (rows, _), ts, got, w in zip(roles, transforms, loaded, warps)
    )
    if params.wbc_stain:
        trng = np.random.default_rng([seed, CLASSES.index(cls), 0x57A1])
        centre.tints = tints(centre.bgra, centre.plasma, params.centre_variants, trng)
    if params.wbc_focus:
        centre.focus = focus_to_plates(bank, centre.rows, picks.plates)
    centre_area = _centre_cell_areas(bank, picks.plates, params.canvas)
    order = np.argsort(centre_area, kind="stable")
    return Library(
        cls=cls,
        centre_kind=centre_kind_of(cls),
        plates=plates,
        plate_rows=picks.plates,
        plate_plasma=plate_plasma,
        plate_by_centre_area=order,
        plate_centre_area_sorted=centre_area[order],
        centre=centre,
        rbc=rbc,
        plt=plt,
    )


def _centre_cell_areas(bank: Bank, plates: list[BackgroundRow], size: tuple[int, int]) -> np.ndarray:
    """Per plate: the area (px, at the composing size) of the white cell nearest its source image's centre,
    which the plate has inpainted; 0 when the source had none."""
    by_source: dict[str, list[SpriteRow]] = {}
    for r in bank.sprites:
        if r.kind == "WBC":
            by_source.setdefault(r.source, []).append(r)
    out = np.zeros(len(plates), np.int64)
    for i, b in enumerate(plates):
        cells = by_source.get(b.source)
        if cells:
            c = min(cells, key=lambda r: ((r.x0 + r.x1 - b.width) / 2) ** 2 + ((r.y0 + r.y1 - b.height) / 2) ** 2)
            out[i] = round(c.area * size[0] * size[1] / max(1, b.width * b.height))
    return out


def focus_to_plates(bank: Bank, cells: list[SpriteRow], plates: list[BackgroundRow]) -> np.ndarray:
    """(cells, plates) blur-variance change (px^2) taking each cell's source image's focus to each plate
    source's (scene_stats.source_focus; a source without a measurable red cell counts as the bank's median)."""
    from naturalize.compose.scene_stats import source_focus

    sigma = source_focus(bank)
    median = float(np.median(list(sigma.values()))) if sigma else 1.0
    return focus_table([sigma.get(r.source, median) for r in cells], [sigma.get(b.source, median) for b in plates])


def make_variant(bgra: np.ndarray, t: Transform, warp_seed: int | None = None) -> Variant:
    """The premultiplied BGRA sprite under Transform t (after its shape warp, variety.shape_warp, when a
    seed is given), split for pasting."""
    if warp_seed is not None:
        bgra = shape_warp(bgra, warp_seed)
    return Variant(*split_warped(warp(bgra, t)), t)
