"""Procedurally drawn PBC-like smear images: the demo's embedded data set (NOT real blood).

The project ships no PBC images, so `naturalize demo` draws a small stand-in set: stained-looking
red cells (central pallor, darker rim), one white cell of the class at the centre (lymphocyte round
nucleus, segmented/band neutrophil nuclei, bilobed eosinophil with orange granules, kidney-shaped
monocyte nucleus in grey-blue cytoplasm, basophil dark granules, large granular promyelocyte, ...),
platelets and a textured pale background, at the PBC size 360x363.

Pure core: `draw_image(cls, rng) -> HxWx3 uint8` (numpy/OpenCV only, explicit Generator).
I/O: `write_drawn_release(out, n_per_class, seed)` lays the images out like the PBC release
(`OUT/lymphocyte/LY_drawn_0001.jpg`, `OUT/ig/PMY_drawn_0001.jpg`, ...) with a README.txt and a
manifest.csv saying they are drawn, so `naturalize prepare/segment` read them unchanged.
Image i of class c depends only on (seed, c, i): same seed -> byte-identical files.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from naturalize.classes import CLASS_NAMES, CLASSES, RELEASE_FOLDERS
from naturalize.codeversion import code_digest
from naturalize.fsio import UserError, temp_target, write_bytes, write_json, write_text
from naturalize.outputs import claim_settled
from naturalize.procs import die_with_parent, pool_context, started, watched

GENERATOR_VERSION = 1
DRAWN_DIRNAME = "drawn-pbc"
HEIGHT, WIDTH = 363, 360
JPEG_QUALITY = 75  # as the PBC release's files (4:4:4)

#: Colours measured on the shared PBC sample (median RGB): background, red-cell centre and rim.
BACKGROUND_RGB = (253.0, 228.0, 203.0)
RBC_CENTRE_RGB = (229.0, 201.0, 191.0)
RBC_RIM_RGB = (203.0, 165.0, 168.0)
NUCLEUS_RGB = (86.0, 40.0, 136.0)
PLATELET_RGB = (150.0, 95.0, 170.0)

_FOLDER_OF: dict[str, str] = {c: folder for folder, cs in RELEASE_FOLDERS.items() for c in cs}
_PREFIX_OF: dict[str, str] = {c: ("PLATELET" if c == "PLT" else c) for c in CLASSES}

README_TEXT = """\
DRAWN, NOT REAL. Every image in this folder was drawn procedurally by `naturalize.drawn`
(numpy/OpenCV shapes and noise), not photographed. They imitate the layout of the PBC release
(Acevedo et al. 2020, doi:10.17632/snkd93bnjr.1): 360x363 JPEG crops, one folder per release group,
file names prefixed by the class code (LY_drawn_0001.jpg, PLATELET_drawn_0001.jpg, ...), the white
cell at the centre, red cells and platelets around it on a pale background.

They exist so that `naturalize demo` can run the whole pipeline with no download. A classifier
trained on them says nothing about real blood cells. manifest.csv lists every file with the seed,
class and index it was drawn from; drawn.json records the generator's parameters.
"""


# ----------------------------------------------------------------------------------------------
# Pure drawing core
# ----------------------------------------------------------------------------------------------


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    """Zero-mean, unit-ish smooth noise (h, w) float32: a coarse random grid upsampled bicubically."""
    grid = rng.standard_normal((max(2, cells), max(2, cells))).astype(np.float32)
    return cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)


def draw_background(rng: np.random.Generator, h: int = HEIGHT, w: int = WIDTH) -> np.ndarray:
    """Pale, slightly mottled smear background: float32 (h, w, 3) in 0..255."""
    tint = np.asarray(BACKGROUND_RGB, np.float32) + rng.normal(0, 2.0, 3).astype(np.float32)
    low = _smooth_noise(rng, h, w, 5)[..., None] * np.float32(2.5)
    fine = _smooth_noise(rng, h, w, 60)[..., None] * np.float32(1.2)
    bg = tint[None, None, :] + low + fine * np.asarray([0.6, 1.0, 1.0], np.float32)
    return np.clip(bg, 0, 255)


def _blob_polygon(
    rng: np.random.Generator, cx: float, cy: float, rx: float, ry: float, angle: float, wobble: float, n: int = 48
) -> np.ndarray:
    """Vertices (n, 2) of a wobbly ellipse: radius modulated by a few low harmonics."""
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    r = np.ones_like(t)
    for k in (2, 3, 4, 5):
        r += rng.normal(0, wobble / k) * np.cos(k * t + rng.uniform(0, 2 * np.pi))
    x, y = rx * r * np.cos(t), ry * r * np.sin(t)
    ca, sa = np.cos(angle), np.sin(angle)
    return np.stack([cx + ca * x - sa * y, cy + sa * x + ca * y], axis=1)


_SHIFT = 4  # cv2 fixed-point bits: sub-pixel drawing


def _fill(mask: np.ndarray, poly: np.ndarray) -> None:
    pts = np.round(poly * (1 << _SHIFT)).astype(np.int32)[None]
    cv2.fillPoly(mask, pts, 255, cv2.LINE_AA, _SHIFT)


def _disc(mask: np.ndarray, cx: float, cy: float, r: float, value: int = 255) -> None:
    s = 1 << _SHIFT
    cv2.circle(
        mask, (int(round(cx * s)), int(round(cy * s))), max(1, int(round(r * s))), value, -1, cv2.LINE_AA, _SHIFT
    )


def _stroke(mask: np.ndarray, pts: np.ndarray, thickness: float) -> None:
    s = 1 << _SHIFT
    p = np.round(pts * s).astype(np.int32)
    cv2.polylines(mask, [p], False, 255, max(1, int(round(thickness))), cv2.LINE_AA, _SHIFT)


def _alpha(mask: np.ndarray, soft: float) -> np.ndarray:
    a = mask.astype(np.float32) / 255.0
    return cv2.GaussianBlur(a, (0, 0), soft) if soft > 0 else a


def _paste(canvas: np.ndarray, x0: int, y0: int, rgb: np.ndarray, alpha: np.ndarray) -> None:
    """Alpha-blend a patch (rgb float (h, w, 3), alpha (h, w)) onto canvas at (x0, y0), clipped to the canvas."""
    H, W = canvas.shape[:2]
    h, w = alpha.shape
    xa, ya, xb, yb = max(0, x0), max(0, y0), min(W, x0 + w), min(H, y0 + h)
    if xa >= xb or ya >= yb:
        return
    a = alpha[ya - y0 : yb - y0, xa - x0 : xb - x0, None]
    region = canvas[ya:yb, xa:xb]
    region *= 1 - a
    region += a * rgb[ya - y0 : yb - y0, xa - x0 : xb - x0]


def rbc_patch(rng: np.random.Generator, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """One red cell: biconcave look (pale centre, darker rim, thin edge). Returns (rgb (s,s,3), alpha (s,s))."""
    s = int(np.ceil(radius * 2.5)) | 1
    c = s / 2.0
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
    ecc = rng.uniform(0.88, 1.0)
    ang = rng.uniform(0, np.pi)
    dx, dy = xx - c, yy - c
    u = (dx * np.cos(ang) + dy * np.sin(ang)) / radius
    v = (-dx * np.sin(ang) + dy * np.cos(ang)) / (radius * ecc)
    theta = np.arctan2(v, u)
    wob = 1 + sum(rng.normal(0, 0.02) * np.cos(k * theta + rng.uniform(0, 6.3)) for k in (2, 3))
    r = np.sqrt(u * u + v * v) / wob
    centre = np.asarray(RBC_CENTRE_RGB, np.float32) + rng.normal(0, 3.0, 3).astype(np.float32)
    rim = np.asarray(RBC_RIM_RGB, np.float32) + rng.normal(0, 3.0, 3).astype(np.float32)
    pallor = rng.uniform(0.25, 0.45)
    t = np.clip((r - pallor * 0.5) / (0.78 - pallor * 0.5), 0, 1)[..., None]
    t = t * t * (3 - 2 * t)
    rgb = centre * (1 - t) + rim * t
    edge = np.clip((r - 0.86) / 0.14, 0, 1)[..., None]  # slightly darker outline
    rgb = rgb - edge * np.float32(10.0)
    rgb += _smooth_noise(rng, s, s, 6)[..., None] * np.float32(2.0)
    alpha = np.clip((1.0 - r) * radius / 1.3 + 0.5, 0, 1).astype(np.float32)
    return rgb, alpha


def platelet_patch(rng: np.random.Generator, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """One platelet: a small granular purple disc. Returns (rgb, alpha)."""
    s = int(np.ceil(radius * 2 + 6))
    c = s / 2.0
    mask = np.zeros((s, s), np.uint8)
    _fill(mask, _blob_polygon(rng, c, c, radius, radius * rng.uniform(0.75, 1.0), rng.uniform(0, np.pi), 0.15, 24))
    alpha = _alpha(mask, 0.7)
    base = np.asarray(PLATELET_RGB, np.float32) + rng.normal(0, 6, 3).astype(np.float32)
    gran = np.clip(_smooth_noise(rng, s, s, max(3, int(radius))), 0, None)[..., None]
    rgb = np.broadcast_to(base, (s, s, 3)) - gran * np.float32(30.0)
    return rgb.astype(np.float32), alpha


# --- white cells: a registry of styles --------------------------------------------------------

NucleusFn = Callable[[np.random.Generator, np.ndarray, float, float, float], None]


def _nucleus_round(frac: float, offset: float) -> NucleusFn:
    def draw(rng, mask, c, R, ang):
        r = R * frac * rng.uniform(0.93, 1.05)
        d = R * offset * rng.uniform(0.6, 1.0)
        _fill(
            mask,
            _blob_polygon(
                rng,
                c + d * np.cos(ang),
                c + d * np.sin(ang),
                r,
                r * rng.uniform(0.85, 1.0),
                rng.uniform(0, np.pi),
                0.05,
            ),
        )

    return draw


def _nucleus_segmented(rng, mask, c, R, ang):
    n = int(rng.integers(3, 5))
    span = rng.uniform(2.2, 3.6)
    arc_r = R * rng.uniform(0.38, 0.48)
    angles = ang + np.linspace(-span / 2, span / 2, n)
    pts = np.stack([c + arc_r * np.cos(angles), c + arc_r * np.sin(angles)], 1) + rng.normal(0, R * 0.04, (n, 2))
    _stroke(mask, pts, R * 0.15)
    for x, y in pts:
        lr = R * rng.uniform(0.21, 0.27)
        _fill(mask, _blob_polygon(rng, x, y, lr, lr * rng.uniform(0.75, 0.95), rng.uniform(0, np.pi), 0.06, 24))


def _nucleus_band(rng, mask, c, R, ang):
    span = rng.uniform(2.4, 3.6)
    arc_r = R * rng.uniform(0.38, 0.5)
    t = ang + np.linspace(-span / 2, span / 2, 24)
    pts = np.stack([c + arc_r * np.cos(t), c + arc_r * np.sin(t) * rng.uniform(0.7, 1.0)], 1)
    _stroke(mask, pts, R * rng.uniform(0.26, 0.32))


def _nucleus_bilobed(rng, mask, c, R, ang):
    d = R * rng.uniform(0.32, 0.4)
    pts = []
    for sgn in (-1, 1):
        a = ang + sgn * rng.uniform(1.0, 1.5)
        x, y = c + d * np.cos(a), c + d * np.sin(a)
        lr = R * rng.uniform(0.26, 0.32)
        _fill(mask, _blob_polygon(rng, x, y, lr, lr * rng.uniform(0.75, 0.95), rng.uniform(0, np.pi), 0.05, 32))
        pts.append((x, y))
    mid = (c + d * 0.3 * np.cos(ang), c + d * 0.3 * np.sin(ang))
    _stroke(mask, np.asarray([pts[0], mid, pts[1]]), R * 0.07)


def _nucleus_kidney(frac: float, bite: float) -> NucleusFn:
    def draw(rng, mask, c, R, ang):
        r = R * frac * rng.uniform(0.92, 1.05)
        d = R * 0.12
        x, y = c + d * np.cos(ang), c + d * np.sin(ang)
        _fill(mask, _blob_polygon(rng, x, y, r, r * rng.uniform(0.72, 0.85), ang + np.pi / 2, 0.05))
        br = r * bite * rng.uniform(0.85, 1.1)
        _disc(mask, x - (r * 0.95) * np.cos(ang), y - (r * 0.95) * np.sin(ang), br, 0)

    return draw


@dataclass(frozen=True)
class WbcStyle:
    """How one white-cell class is drawn: size, cytoplasm colour, nucleus shape, granules."""

    radius: tuple[float, float]  # cell radius mean, sd (pixels at 360x363)
    cytoplasm: tuple[float, float, float]  # RGB
    nucleus: NucleusFn
    nucleus_rgb: tuple[float, float, float] = NUCLEUS_RGB
    granules: int = 0  # how many granules
    granule_rgb: tuple[float, float, float] = (0.0, 0.0, 0.0)
    granule_radius: tuple[float, float] = (1.2, 2.0)
    granules_over_nucleus: bool = False
    chromatin: float = 28.0  # nucleus mottling amplitude
    nucleolus: bool = False


WBC_STYLES: dict[str, WbcStyle] = {
    "LY": WbcStyle((47, 3), (178, 172, 218), _nucleus_round(0.8, 0.1), chromatin=22),
    "SNE": WbcStyle(
        (63, 3),
        (228, 203, 211),
        _nucleus_segmented,
        granules=60,
        granule_rgb=(200, 160, 195),
        granule_radius=(0.8, 1.3),
    ),
    "BNE": WbcStyle(
        (62, 3), (228, 202, 210), _nucleus_band, granules=60, granule_rgb=(200, 160, 195), granule_radius=(0.8, 1.3)
    ),
    "EO": WbcStyle(
        (64, 3), (232, 150, 118), _nucleus_bilobed, granules=420, granule_rgb=(214, 104, 72), granule_radius=(1.6, 2.4)
    ),
    "MO": WbcStyle((74, 4), (182, 172, 206), _nucleus_kidney(0.62, 0.45), nucleus_rgb=(118, 72, 160), chromatin=18),
    "BA": WbcStyle(
        (55, 3),
        (196, 168, 212),
        _nucleus_round(0.55, 0.05),
        granules=160,
        granule_rgb=(62, 22, 96),
        granule_radius=(1.8, 3.0),
        granules_over_nucleus=True,
    ),
    "PMY": WbcStyle(
        (72, 4),
        (168, 166, 218),
        _nucleus_round(0.62, 0.22),
        nucleus_rgb=(128, 80, 168),
        granules=90,
        granule_rgb=(150, 55, 128),
        granule_radius=(1.2, 2.0),
        granules_over_nucleus=True,
        chromatin=16,
        nucleolus=True,
    ),
    "MY": WbcStyle(
        (64, 3),
        (214, 186, 210),
        _nucleus_round(0.56, 0.28),
        granules=140,
        granule_rgb=(190, 140, 185),
        granule_radius=(0.9, 1.5),
    ),
    "MMY": WbcStyle(
        (63, 3),
        (220, 192, 212),
        _nucleus_kidney(0.52, 0.55),
        granules=100,
        granule_rgb=(195, 150, 190),
        granule_radius=(0.9, 1.4),
    ),
    "ERB": WbcStyle((38, 3), (150, 140, 198), _nucleus_round(0.62, 0.12), nucleus_rgb=(62, 22, 102), chromatin=12),
}


def wbc_patch(cls: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, float]:
    """One white cell of class `cls` (a key of WBC_STYLES). Returns (rgb, alpha, radius)."""
    st = WBC_STYLES[cls]
    R = max(20.0, rng.normal(*st.radius))
    s = int(np.ceil(R * 2.4))
    c = s / 2.0
    ang = rng.uniform(0, 2 * np.pi)
    cyto = np.zeros((s, s), np.uint8)
    _fill(cyto, _blob_polygon(rng, c, c, R, R * rng.uniform(0.88, 1.0), rng.uniform(0, np.pi), 0.05))
    a_cyto = _alpha(cyto, 0.8)
    nuc = np.zeros((s, s), np.uint8)
    st.nucleus(rng, nuc, c, R, ang)
    nuc = cv2.bitwise_and(nuc, cv2.erode(cyto, np.ones((3, 3), np.uint8), iterations=2))
    a_nuc = _alpha(nuc, 0.9)

    rgb = np.empty((s, s, 3), np.float32)
    rgb[:] = np.asarray(st.cytoplasm, np.float32) + rng.normal(0, 4, 3).astype(np.float32)
    rgb += _smooth_noise(rng, s, s, 8)[..., None] * np.float32(4.0)
    nrgb = np.asarray(st.nucleus_rgb, np.float32) + rng.normal(0, 5, 3).astype(np.float32)
    mott = _smooth_noise(rng, s, s, max(6, int(R / 3)))[..., None] * np.float32(st.chromatin * 0.6)
    nucleus_rgb = nrgb + mott * np.asarray([1.0, 0.8, 0.6], np.float32)
    if st.nucleolus:
        nl = np.zeros((s, s), np.uint8)
        for _ in range(int(rng.integers(1, 3))):
            ys, xs = np.nonzero(nuc > 200)
            if len(xs):
                k = int(rng.integers(len(xs)))
                _disc(nl, xs[k], ys[k], R * 0.07)
        nl_a = _alpha(cv2.bitwise_and(nl, cv2.erode(nuc, np.ones((5, 5), np.uint8), iterations=2)), 1.0)[..., None]
        nucleus_rgb = nucleus_rgb * (1 - nl_a * 0.35) + np.asarray([170, 140, 200], np.float32) * nl_a * 0.35
    a = a_nuc[..., None]
    rgb = rgb * (1 - a) + nucleus_rgb * a

    if st.granules:
        gm = np.zeros((s, s), np.uint8)
        region = cyto if st.granules_over_nucleus else cv2.subtract(cyto, nuc)
        region = cv2.erode(region, np.ones((3, 3), np.uint8), iterations=3)
        ys, xs = np.nonzero(region > 128)
        if len(xs):
            pick = rng.integers(0, len(xs), st.granules)
            radii = rng.uniform(*st.granule_radius, st.granules)
            jitter = rng.uniform(-0.5, 0.5, (st.granules, 2))
            for k, r, (jx, jy) in zip(pick, radii, jitter):
                _disc(gm, xs[k] + jx, ys[k] + jy, r)
        ga = (_alpha(gm, 0.5) * 0.8)[..., None]
        grgb = np.asarray(st.granule_rgb, np.float32) + rng.normal(0, 5, 3).astype(np.float32)
        rgb = rgb * (1 - ga) + grgb * ga
    return rgb, a_cyto, R


def _place_discs(
    rng: np.random.Generator,
    taken: list[tuple[float, float, float]],
    radii: Sequence[float] | np.ndarray,
    h: int,
    w: int,
    gap: float,
    tries: int = 60,
) -> list[tuple[float, float, float]]:
    """Rejection-sample centres for discs of the given radii (border-cut allowed), avoiding `taken`."""
    placed: list[tuple[float, float, float]] = []
    arr = np.asarray(taken, np.float64).reshape(-1, 3)
    for r in radii:
        for _ in range(tries):
            x, y = rng.uniform(-0.4 * r, w + 0.4 * r), rng.uniform(-0.4 * r, h + 0.4 * r)
            if arr.size:
                d = np.hypot(arr[:, 0] - x, arr[:, 1] - y)
                if np.any(d < arr[:, 2] + r + gap):
                    continue
            placed.append((x, y, r))
            arr = np.vstack([arr, [x, y, r]])
            break
    return placed


def draw_image(cls: str, rng: np.random.Generator, height: int = HEIGHT, width: int = WIDTH) -> np.ndarray:
    """Draw one smear image of fine class `cls` (any of CLASSES): RGB uint8 (height, width, 3).

    White-cell classes get one WBC at the centre; PLT images get a small platelet clump there.
    """
    if cls not in CLASSES:
        raise ValueError(f"unknown class {cls!r}; use one of {', '.join(CLASSES)}")
    canvas = draw_background(rng, height, width)
    cx = width / 2 + rng.normal(0, 3)
    cy = height / 2 + rng.normal(0, 3)
    centre_items: list[tuple[np.ndarray, np.ndarray, float, float]] = []
    if cls == "PLT":
        taken: list[tuple[float, float, float]] = []
        for _ in range(int(rng.integers(1, 4))):
            pr = rng.uniform(7, 12)
            ox, oy = rng.normal(0, 8, 2) if taken else (0.0, 0.0)
            rgb, a = platelet_patch(rng, pr)
            centre_items.append((rgb, a, cx + ox, cy + oy))
            taken.append((cx + ox, cy + oy, pr))
        taken = [(cx, cy, 22.0)]
    else:
        rgb, a, R = wbc_patch(cls, rng)
        centre_items.append((rgb, a, cx, cy))
        taken = [(cx, cy, R)]
    n_rbc = int(rng.integers(18, 30))
    rbc_r = np.clip(rng.normal(33, 2.5, n_rbc), 26, 40)
    rbcs = _place_discs(rng, taken, rbc_r, height, width, gap=rng.uniform(1.0, 4.0))
    plts = _place_discs(rng, taken + rbcs, rng.uniform(4, 7, int(rng.integers(0, 3))), height, width, gap=4)
    for x, y, r in rbcs:
        rgb, a = rbc_patch(rng, r)
        _paste(canvas, int(round(x - a.shape[1] / 2)), int(round(y - a.shape[0] / 2)), rgb, a)
    for x, y, r in plts:
        rgb, a = platelet_patch(rng, r)
        _paste(canvas, int(round(x - a.shape[1] / 2)), int(round(y - a.shape[0] / 2)), rgb, a)
    for rgb, a, x, y in centre_items:
        _paste(canvas, int(round(x - a.shape[1] / 2)), int(round(y - a.shape[0] / 2)), rgb, a)
    canvas = cv2.GaussianBlur(canvas, (0, 0), 0.6)
    canvas += rng.normal(0, 1.2, canvas.shape).astype(np.float32)
    return np.clip(np.rint(canvas), 0, 255).astype(np.uint8)


def image_rng(seed: int, cls: str, index: int) -> np.random.Generator:
    """The generator for image `index` of class `cls`: depends only on (seed, class, index)."""
    return np.random.default_rng([int(seed), CLASSES.index(cls), int(index)])


# ----------------------------------------------------------------------------------------------
# File output: a PBC-release-like tree
# ----------------------------------------------------------------------------------------------


def drawn_relpath(cls: str, index: int) -> str:
    """'LY', 0 -> 'lymphocyte/LY_drawn_0001.jpg' (1-based numbering like the release's files)."""
    return f"{_FOLDER_OF[cls]}/{_PREFIX_OF[cls]}_drawn_{index + 1:04d}.jpg"


_CLASS_OF_PREFIX: dict[str, str] = {p: c for c, p in _PREFIX_OF.items()}
_DRAWN_NAME = re.compile(r"([A-Z]+)_drawn_(\d{4,})\.jpg")
#: The files write_drawn_release writes at the top of its folder, beside the class folders.
DRAWN_FILES = ("drawn.json", "README.txt", "manifest.csv")


def written_by_drawing(rel: str) -> bool:
    """Whether `rel`, a file's path inside a drawn set ('lymphocyte/LY_drawn_0001.jpg'), is one write_drawn_release
    writes there: an image at its drawn_relpath, one of DRAWN_FILES, or the temporary file of one. A user's file
    put there is not (overwrite=True refuses it)."""
    folder, _, name = rel.rpartition("/")
    name = temp_target(name) or name
    if not folder:
        return name in DRAWN_FILES
    m = _DRAWN_NAME.fullmatch(name)
    if m is None or m[1] not in _CLASS_OF_PREFIX or int(m[2]) < 1:
        return False
    return f"{folder}/{name}" == drawn_relpath(_CLASS_OF_PREFIX[m[1]], int(m[2]) - 1)


def encode_jpeg(rgb: np.ndarray, comment: str) -> bytes:
    """JPEG bytes (quality 75, 4:4:4: the source format) with a provenance comment."""
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=JPEG_QUALITY, subsampling=0, comment=comment.encode("utf-8"))
    return buf.getvalue()


def _draw_jpeg(job: tuple[str, int, int]) -> bytes:
    """(class, index, seed) -> the JPEG bytes of that drawn image, with its provenance comment."""
    c, i, seed = job
    note = (
        f"naturalize.drawn v{GENERATOR_VERSION}: procedurally drawn, NOT a real smear; class={c} seed={seed} index={i}"
    )
    return encode_jpeg(draw_image(c, image_rng(seed, c, i)), note)


KIND = "drawn"  # the output marker's kind (naturalize.outputs)


def write_drawn_release(
    out: str | Path,
    n_per_class: int | dict[str, int],
    seed: int = 0,
    classes: Sequence[str] = CLASSES,
    overwrite: bool = False,
    progress: bool = True,
    workers: int = 1,
) -> Path:
    """Draw `n_per_class` images per class into a PBC-release-like tree at `out`; return `out`.

    Writes OUT/<release folder>/<PREFIX>_drawn_NNNN.jpg, OUT/README.txt, OUT/manifest.csv and
    OUT/drawn.json. A rerun with the same parameters resumes (finished files are kept); other parameters on a
    non-empty OUT need `overwrite=True`, which removes only what this function wrote there (refused, with nothing
    removed, while a class folder holds any other file or a link: written_by_drawing). `workers` > 1 draws in that
    many processes (the bytes do not depend on it).
    """
    from tqdm import tqdm

    out = Path(out)
    counts = n_per_class if isinstance(n_per_class, dict) else {c: int(n_per_class) for c in classes}
    for c, n in counts.items():
        if c not in CLASSES:
            raise UserError(f"unknown class {c!r} for the drawn set; use one of {', '.join(CLASSES)}")
        if n <= 0:
            raise UserError(f"the drawn set needs at least 1 image per class, got {n} for {c}")
    params = {
        "generator": "naturalize.drawn",
        "generator_version": GENERATOR_VERSION,
        "code": code_digest("naturalize.drawn"),  # any edit of the generator: a folder drawn before is not resumed
        "seed": int(seed),
        "counts": {c: counts[c] for c in CLASSES if c in counts},
        "size": [WIDTH, HEIGHT],
        "jpeg_quality": JPEG_QUALITY,
        "real": False,
    }
    meta_path = out / "drawn.json"
    claim_settled(
        out,
        KIND,
        [*DRAWN_FILES, *sorted({_FOLDER_OF[c] for c in counts})],
        record=meta_path.name,
        differs=lambda old: old != params,
        overwrite=overwrite,
        refusal=f"{out} was drawn with other parameters; pass overwrite=True (--overwrite) or choose "
        f"another output folder",
        option="the drawn set's folder",
        redo_same=False,
        owned=written_by_drawing,
    )
    write_json(meta_path, params)  # first, so an interrupted run is recognised and resumed
    write_text(out / "README.txt", README_TEXT)
    jobs = [(c, i) for c in CLASSES if c in counts for i in range(counts[c])]
    rows = [
        {
            "file": drawn_relpath(c, i),
            "class": c,
            "class_name": CLASS_NAMES[c],
            "seed": seed,
            "index": i,
            "generator_version": GENERATOR_VERSION,
        }
        for c, i in jobs
    ]
    todo = [(c, i, seed) for c, i in jobs if not (out / drawn_relpath(c, i)).is_file()]  # atomic: present = complete
    bar = tqdm(total=len(todo), desc="draw", unit="img", disable=not progress)
    if workers > 1 and len(todo) >= 64:
        pool, procs = started(lambda: pool_context().Pool(workers, die_with_parent))
        with pool:
            for (c, i, _), data in zip(todo, watched(pool, procs, _draw_jpeg, todo, 16)):
                write_bytes(out / drawn_relpath(c, i), data)
                bar.update()
    else:
        for job in todo:
            write_bytes(out / drawn_relpath(job[0], job[1]), _draw_jpeg(job))
            bar.update()
    bar.close()
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    write_text(out / "manifest.csv", buf.getvalue())
    return out
