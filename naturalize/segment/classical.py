"""Weight-free segmentation of one PBC image (OpenCV + scikit-image).

In: an image array (gray, RGB or RGBA). Out: a `Segmentation` (cells with kinds RBC/WBC/PLT, the
cell-free background plate, curation flags). Images are analysed at a short side of
`work_size` pixels (speed) and the masks scaled back to full resolution.

Steps: (1) the plate colour is the median of the greenest pixels; every pixel far from it is
foreground (the red cells' pale centres filled); (2) blue-minus-green marks the purple stain of
nuclei and platelets; (3) the white cells grow from their nuclei by a marker watershed on colour
edges, competing with the plate and with red-cell cores, where "white-cell colour" is
100 * (1 - OD_blue / OD_green) (optical density against the plate: hue, not paleness); they are
split into single cells at distance-map necks or between far-apart nuclei, opened to drop stain
haze (a basophil ends at its very dark granular body), and small light-purple bodies are set aside
as large platelets; (4) the remaining foreground
is split into red-cell candidates by a watershed on its distance map, one marker per peak;
(5) `assign.judge_regions` decides which cells are usable for compositing (whole, single, typical).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from naturalize.segment.cells import Segmentation, as_rgb, fill_holes, finish, touches_border
from naturalize.segment.colour import REF_SIZE, colour_maps, disk, white_cell_colour
from naturalize.segment.refine import RefineInput


@dataclass(frozen=True)
class ClassicalParams:
    """Thresholds of the classical backend; pixel sizes are for ~360 px PBC crops and scale with the image."""

    # foreground and stain
    fg_delta: float = 18.0  # min colour distance from the plate colour to count as cell
    purple_delta: float = 45.0  # min blue-minus-green of nucleus / platelet stain
    nucleus_min_area: int = 150  # purple blobs at least this big may be nuclear lobes
    plt_min_area: int = 10  # purple blobs between these areas are platelet candidates
    plt_max_area: int = 1200
    # white cells: growing from the nuclei
    wbcness_red: float = 42.0  # typical white-cell colour score of red cells (when an image has too few)
    red_core_margin: float = 5.0  # red-cell cores: white-cell colour below the red cells' median + this ...
    red_core_erode_px: int = 4  # ... eroded by this ...
    red_core_texture: float = 7.0  # ... smooth (local green std below this; granules are not) ...
    red_core_clear_px: float = 14.0  # ... and not this close to a nucleus (erythroblast cytoplasm is red)
    nucleus_grow_px: int = 3  # the nucleus marker reaches this far past the nucleus edge
    sure_cyto_margin: float = 14.0  # sure cytoplasm: white-cell colour this much above the red cells' ...
    sure_cyto_reach_px: int = 45  # ... within this distance of the nucleus
    wbcness_clip: float = 15.0  # white-cell colour contrast above the red cells' level that counts as edge
    wbcness_edge_weight: float = 1.0  # weight of white-cell colour edges against plate-distance edges
    wbc_window_px: int = 80  # white cells are searched within this margin around their nuclei
    wbc_open_px: int = 8  # opening radius removing thin bridges from the white-cell mask
    # white cells: splitting, checking, rounding off
    wbc_min_area: int = 1200  # a white cell holds at least this many nuclear pixels ...
    wbc_cut_min_area: int = 400  # ... or this many when cut by the image border
    wbc_big_area: int = 6000  # a white cell smaller than this needs a dark nucleus (25th percentile
    nucleus_dark: float = 0.136  # of green / plate green at most this); else it is a large platelet
    wbc_peak_px: int = 25  # cell centres: distance-map peaks at least this far apart ...
    wbc_min_radius: float = 20.0  # ... and at least this deep
    wbc_split_ratio: float = (
        0.75  # two basins are one cell when their border is this deep relative to the shallower peak ...
    )
    wbc_split_nuclei_ratio: float = 0.9  # ... or this deep when each basin holds a whole nucleus
    nucleus_group_px: int = 6  # nuclear lobes closer than this form one nucleus; two whole nuclei ...
    nuclei_apart_px: int = 80  # ... this far apart in one region are two cells ...
    nuclei_split_aspect: float = 1.18  # ... if the region is this elongated (one round cell is not)
    wbc_round_px: int = 36  # white cells are opened with a disk of this radius at most ...
    wbc_round_ratio: float = 0.7  # ... and at most this fraction of their inscribed radius
    dense_min_area: int = 9000  # a very dark (basophil) body at least this big ...
    dense_dark: float = 0.13  # ... (25th percentile of green / plate green at most this) ...
    dense_cell_ratio: float = 1.3  # ... inside a cell this much larger (a smear around it) ...
    dense_solidity: float = 0.92  # ... round ...
    dense_fill: float = 0.85  # ... and densely stained ends the cell
    wbc_refine: bool = True  # refine white-cell masks with the learned model (segment/refine.py) when shipped
    wbc_refine_margin: float = 0.0  # a candidate replaces the mask when its score beats the mask's by this
    # red cells
    rbc_min_radius: float = 9.0  # distance-map peaks lower than this are no red-cell centre
    rbc_peak_px: int = 9  # red-cell markers: local distance maxima within this radius
    rim_px: int = 0  # grow red-cell masks into the plate by this much (the pale rim is already in)
    # geometry
    ref_size: int = REF_SIZE  # the short side the pixel sizes above are tuned for
    work_size: int = 180  # analyse at this short side (masks are scaled back); 0: full resolution


def _components(mask: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
    n, lab, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    return n, lab, stats[:, cv2.CC_STAT_AREA]


def _members(lab: np.ndarray, n: int, keep: np.ndarray) -> np.ndarray:
    """Bool mask of the pixels of `lab` (labels 0..n-1) whose label is in `keep`: numpy.isin by a lookup table."""
    table = np.zeros(n, bool)
    table[keep] = True
    return table[lab]


def _box(mask: np.ndarray) -> tuple[slice, slice]:
    """The tight box of a non-empty bool mask, as slices."""
    x, y, w, h = cv2.boundingRect(mask.astype(np.uint8))
    return slice(y, y + h), slice(x, x + w)


def find_nuclei(fg: np.ndarray, stain: np.ndarray, p: ClassicalParams) -> tuple[np.ndarray, list[np.ndarray]]:
    """(nuclear lobes: purple blobs big enough to belong to a white cell, small purple blobs: platelet candidates)."""
    s = min(fg.shape) / p.ref_size
    a = s * s
    purple = cv2.morphologyEx(((stain > p.purple_delta) & fg).astype(np.uint8), cv2.MORPH_OPEN, disk(1))
    n, lab, areas = _components(purple)
    lobes = _members(lab, n, np.flatnonzero(areas >= p.nucleus_min_area * a)) & (lab > 0)
    small = [lab == i for i in range(1, n) if p.plt_min_area * a <= areas[i] <= p.plt_max_area * a]
    return lobes, small


def red_cell_level(fg: np.ndarray, wbcness: np.ndarray, to_nuc: np.ndarray, p: ClassicalParams) -> float:
    """The red cells' white-cell colour score: its median over the foreground far from every nucleus
    (`to_nuc`: distance to the nearest nuclear pixel), or `p.wbcness_red` when too little is far."""
    s = min(fg.shape) / p.ref_size
    far = fg & (to_nuc > 60 * s)
    return float(np.median(wbcness[far])) if far.sum() > 500 * s * s else p.wbcness_red


def white_region(
    fg: np.ndarray,
    nuclei: np.ndarray,
    wbcness: np.ndarray,
    colour_dist: np.ndarray,
    rgb_green: np.ndarray,
    p: ClassicalParams,
    to_nuc: np.ndarray,
    red_level: float,
) -> np.ndarray:
    """Bool mask of all white-cell pixels (nuclei and cytoplasm); `to_nuc`: distance to the nearest nuclear
    pixel, `red_level`: the red cells' white-cell colour score (`red_cell_level`).

    Marker watershed on the colour edges around the nuclei: the nuclei (with the clearly
    white-cell-coloured pixels next to them) compete with the plate (pixels close to the plate
    colour) and with red-cell cores (pixels at the red cells' colour score), so each white cell stops
    at its strongest edge, against the plate or a touching red cell; holes are filled and thin
    bridges opened away."""
    from skimage.segmentation import watershed

    h, w = fg.shape
    out = np.zeros((h, w), bool)
    if not nuclei.any():
        return out
    s = min(h, w) / p.ref_size
    ys, xs = np.nonzero(nuclei)
    m = round(p.wbc_window_px * s)
    y0, y1, x0, x1 = max(0, ys.min() - m), min(h, ys.max() + m + 1), max(0, xs.min() - m), min(w, xs.max() + m + 1)
    win = (slice(y0, y1), slice(x0, x1))
    cd, wn, fgw, nuc = colour_dist[win], wbcness[win], fg[win], nuclei[win]
    markers = np.zeros(cd.shape, np.int32)
    plate = cv2.erode((cd < 0.7 * p.fg_delta).astype(np.uint8), disk(max(1, round(2 * s)))).astype(bool)
    g = rgb_green[win].astype(np.float32)
    tw = max(3, 2 * round(3 * s) + 1)
    texture = np.sqrt(np.maximum(cv2.blur(g * g, (tw, tw)) - cv2.blur(g, (tw, tw)) ** 2, 0))
    red = (fgw & (wn < red_level + p.red_core_margin) & (texture < p.red_core_texture)).astype(np.uint8)
    red = cv2.erode(red, disk(max(1, round(p.red_core_erode_px * s)))).astype(bool)
    near_nuc = to_nuc[win] <= max(1.5, 3 * s)
    markers[plate] = 1
    markers[red & (to_nuc[win] > p.red_core_clear_px * s)] = 2
    # sure cytoplasm: clearly white-cell-coloured pixels touching a nucleus join its marker
    sure = cv2.erode(((wn > red_level + p.sure_cyto_margin) & fgw).astype(np.uint8), disk(max(1, round(2 * s))))
    near = (to_nuc[win] <= p.sure_cyto_reach_px * s).astype(np.uint8)
    sn, slab, _ = _components(sure & near)
    touching = np.unique(slab[near_nuc])
    markers[_members(slab, sn, touching[touching > 0]) & (markers == 0)] = 3
    markers[cv2.dilate(nuc.astype(np.uint8), disk(max(1, round(p.nucleus_grow_px * s)))).astype(bool) & fgw] = 3

    def grad(img: np.ndarray) -> np.ndarray:
        return cv2.magnitude(cv2.Sobel(img, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(img, cv2.CV_32F, 0, 1, ksize=3))

    # clipped maps: the nucleus/cytoplasm edge must not stop the flood, only cell/plate and cell/cell edges
    elev = grad(np.minimum(cd, 2.0 * p.fg_delta)) + p.wbcness_edge_weight * grad(
        np.clip(wn, red_level, red_level + p.wbcness_clip)
    )
    reg = fill_holes(watershed(elev, markers) == 3).astype(np.uint8)
    reg = cv2.morphologyEx(reg, cv2.MORPH_OPEN, disk(max(1, round(p.wbc_open_px * s))))
    n, lab, _ = _components(reg)
    keep = np.unique(lab[nuc & (reg > 0)])
    out[win] = fill_holes(_members(lab, n, keep[keep > 0]) | nuc)
    return out


def split_white(
    region: np.ndarray, nuclei: np.ndarray, green: np.ndarray, p: ClassicalParams
) -> tuple[np.ndarray, int, list[np.ndarray]]:
    """Split the white-cell mask into single cells: one watershed basin per distance-map peak, basins
    whose shared border is nearly as deep as their peaks merged (one cell, not two). A cell must hold
    at least `wbc_min_area` nuclear pixels, and be big or have a dark nucleus (`green` is the green
    channel relative to the plate): small, lighter purple bodies are large platelets.
    Returns (labels 1..n, n, large-platelet masks)."""
    from skimage.feature import peak_local_max
    from skimage.segmentation import watershed

    out = np.zeros(region.shape, np.int32)
    if not region.any():
        return out, 0, []
    s = min(region.shape) / p.ref_size
    dist = cv2.distanceTransform(region.astype(np.uint8), cv2.DIST_L2, 5)
    rn, rlab, _ = _components(region)
    peaks = peak_local_max(
        dist,
        min_distance=max(1, round(p.wbc_peak_px * s)),
        threshold_abs=p.wbc_min_radius * s,
        labels=rlab,
        exclude_border=False,
    )
    markers = np.zeros(region.shape, np.int32)
    for k, (y, x) in enumerate(peaks, start=1):
        markers[y, x] = k
    # regions without a peak (small) keep one marker at their deepest point
    for i in range(1, rn):
        if not (markers[rlab == i] > 0).any():
            yx = np.unravel_index(np.argmax(np.where(rlab == i, dist, -1)), dist.shape)
            markers[yx] = markers.max() + 1
    basins = np.zeros(region.shape, np.int32)
    box = _box(region)  # every marker lies in the region: the flood never leaves its box
    basins[box] = watershed(-dist[box], markers[box], mask=region[box])
    n = int(basins.max())
    peak_d = np.zeros(n + 1)
    for y, x in zip(*np.nonzero(markers)):
        peak_d[markers[y, x]] = dist[y, x]
    parent = list(range(n + 1))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    # saddles: deepest point on the border between two basins
    right = (basins[:, :-1] != basins[:, 1:]) & (basins[:, :-1] > 0) & (basins[:, 1:] > 0)
    down = (basins[:-1, :] != basins[1:, :]) & (basins[:-1, :] > 0) & (basins[1:, :] > 0)
    saddle: dict[tuple[int, int], float] = {}
    (ry, rx), (dy_, dx_) = np.nonzero(right), np.nonzero(down)
    steps: list[tuple[np.ndarray, np.ndarray, int, int]] = [(ry, rx, 0, 1), (dy_, dx_, 1, 0)]
    for ys, xs, dy, dx in steps:
        for y, x in zip(ys, xs):
            a_, b_ = int(basins[y, x]), int(basins[y + dy, x + dx])
            key = (min(a_, b_), max(a_, b_))
            saddle[key] = max(saddle.get(key, 0.0), float(min(dist[y, x], dist[y + dy, x + dx])))
    a = s * s
    nuc_px = np.bincount(basins[nuclei & (basins > 0)], minlength=n + 1).astype(float)
    for (a_, b_), d in sorted(saddle.items(), key=lambda kv: -kv[1]):
        ra, rb = root(a_), root(b_)
        if ra == rb:
            continue
        shallow = min(peak_d[a_], peak_d[b_])
        # two basins each holding a whole nucleus stay apart unless their border is almost as deep as a peak
        two_nuclei = min(nuc_px[ra], nuc_px[rb]) >= p.wbc_min_area * a
        if d >= (p.wbc_split_nuclei_ratio if two_nuclei else p.wbc_split_ratio) * shallow:
            parent[ra] = rb
            nuc_px[rb] += nuc_px[ra]
    roots = np.array([root(i) for i in range(n + 1)])
    merged = roots[basins]
    merged[basins == 0] = 0
    merged = _split_by_nuclei(merged, nuclei, p)
    k = 0
    big_plts = []
    for r in np.unique(merged[merged > 0]):
        cell = merged == r
        nuc = cell & nuclei
        cut = touches_border(cell)
        if nuc.sum() < (p.wbc_cut_min_area if cut else p.wbc_min_area) * a:
            continue
        if cell.sum() < p.wbc_big_area * a and np.percentile(green[nuc], 25) > p.nucleus_dark:
            big_plts.append(cell)
            continue
        k += 1
        out[cell] = k
    # basins with too little nucleus (a cytoplasm lobe) join the cell they touch, if any
    if k and (region & (out == 0)).any():
        from skimage.segmentation import expand_labels

        sub = out[box]  # every label and every pixel to fill lies in the region's box
        sub[:] = np.where(region[box] & (sub == 0), expand_labels(sub, distance=2), sub)
    return _round_off(out, k, nuclei, dist, green, p), k, big_plts


def _split_by_nuclei(labels: np.ndarray, nuclei: np.ndarray, p: ClassicalParams) -> np.ndarray:
    """A region holding two or more whole nuclei far apart is several touching cells: split it
    between those nuclei (watershed on the distance to them)."""
    from scipy import ndimage as ndi
    from skimage.segmentation import watershed

    s = min(labels.shape) / p.ref_size
    out = labels.copy()
    nxt = int(labels.max()) + 1
    for i, sl in enumerate(ndi.find_objects(labels), start=1):
        if sl is None:
            continue
        cell = labels[sl] == i
        nuc = nuclei[sl] & cell
        grouped = cv2.morphologyEx(nuc.astype(np.uint8), cv2.MORPH_CLOSE, disk(max(1, round(p.nucleus_group_px * s))))
        n, lab, stats, cent = cv2.connectedComponentsWithStats(grouped, connectivity=8)
        big = [j for j in range(1, n) if (nuc & (lab == j)).sum() >= p.wbc_min_area * s * s]
        if len(big) < 2:
            continue
        c = cent[big]
        far = np.sqrt(((c[:, None] - c[None]) ** 2).sum(-1))
        if far[np.triu_indices(len(big), 1)].min() < p.nuclei_apart_px * s:
            continue
        markers = np.zeros(cell.shape, np.int32)
        for k, j in enumerate(big, start=1):
            markers[(lab == j) & nuc] = k
        to_nuc = ndi.distance_transform_edt(markers == 0)
        parts = watershed(to_nuc, markers, mask=cell)
        # one round cell (an eosinophil's two lobes) stays whole: touching cells make an elongated region
        cnts, _ = cv2.findContours(cell.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        (_, _), (rw, rh), _ = cv2.minAreaRect(max(cnts, key=cv2.contourArea))
        if max(rw, rh) < p.nuclei_split_aspect * min(rw, rh):
            continue
        sub = out[sl]
        for k in range(2, len(big) + 1):
            sub[parts == k] = nxt
            nxt += 1
    return out


def _round_off(
    labels: np.ndarray, n: int, nuclei: np.ndarray, dist: np.ndarray, green: np.ndarray, p: ClassicalParams
) -> np.ndarray:
    """Open each white cell with a disk about half its inscribed radius: stain haze and skirts around
    the cell go, the round body (and its nucleus) stays."""
    from scipy import ndimage as ndi

    out = np.zeros_like(labels)
    s = min(labels.shape) / p.ref_size
    for i, sl in enumerate(ndi.find_objects(labels, max_label=n), start=1):
        if sl is None:
            continue
        cell = labels[sl] == i
        r = int(min(p.wbc_round_px * s, p.wbc_round_ratio * float(dist[sl][cell].max())))
        if r >= 2:
            pad = r + 1
            big = np.pad(cell, pad).astype(np.uint8)
            opened = cv2.morphologyEx(big, cv2.MORPH_OPEN, disk(r))[pad:-pad, pad:-pad].astype(bool)
            nuc = nuclei[sl] & cell
            m, lab, _ = _components(opened)
            keep = np.unique(lab[nuc & opened])
            keep = keep[keep > 0]
            if keep.size:
                cell = fill_holes(_members(lab, m, keep) | nuc)
        cell = _dense_body(cell, nuclei[sl] & cell, green[sl], s, p)
        out[sl][cell] = i
    return out


def _dense_body(cell: np.ndarray, nuc: np.ndarray, green: np.ndarray, s: float, p: ClassicalParams) -> np.ndarray:
    """A cell whose very dark stain fills a big round body (a basophil's granules over nucleus and
    cytoplasm) ends at that body: the paler smear often around a basophil is no cell."""
    closed = cv2.morphologyEx(nuc.astype(np.uint8), cv2.MORPH_CLOSE, disk(max(1, round(3 * s))))
    body = fill_holes(closed)
    area = int(body.sum())
    if area < p.dense_min_area * s * s or cell.sum() < p.dense_cell_ratio * area:
        return cell
    if np.percentile(green[nuc], 25) > p.dense_dark:
        return cell
    cnts, _ = cv2.findContours(body.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    hull = cv2.contourArea(cv2.convexHull(max(cnts, key=cv2.contourArea)))
    if hull <= 0 or area / hull < p.dense_solidity or (nuc & body).sum() < p.dense_fill * area:
        return cell
    return cv2.dilate(body.astype(np.uint8), disk(max(1, round(2 * s)))).astype(bool) & cell


def split_regions(fg: np.ndarray, wbc_labels: np.ndarray, n_wbc: int, p: ClassicalParams) -> tuple[np.ndarray, int]:
    """Marker watershed of the non-white-cell foreground on its distance map (at half resolution for
    speed, edges against the plate kept at full resolution), one marker per distance peak: labels
    1..n_wbc are the white cells (kept as given), higher labels red-cell candidates, 0 the plate.
    Returns (labels, highest label)."""
    from skimage.segmentation import watershed

    h, w = fg.shape
    s = min(h, w) / p.ref_size
    rest = fg & (wbc_labels == 0)
    k = 2 if min(h, w) > 250 else 1
    small = (
        cv2.resize(rest.astype(np.uint8), (w // k, h // k), interpolation=cv2.INTER_NEAREST)
        if k > 1
        else rest.astype(np.uint8)
    )
    dist = cv2.distanceTransform(small, cv2.DIST_L2, 5)
    r = max(1, round(p.rbc_peak_px * s / k))
    peaks = (dist >= cv2.dilate(dist, np.ones((2 * r + 1, 2 * r + 1), np.uint8))) & (dist >= p.rbc_min_radius * s / k)
    # plateau peaks come as several touching pixels: one marker per blob
    pn, plab, _ = _components(cv2.dilate(peaks.astype(np.uint8), np.ones((3, 3), np.uint8)) & small)
    lab_small = watershed(-dist, plab.astype(np.int32), mask=small.astype(bool))
    labels = (
        cv2.resize(lab_small.astype(np.float32), (w, h), interpolation=cv2.INTER_NEAREST).astype(np.int32)
        if k > 1
        else lab_small.astype(np.int32)
    )
    # full-resolution pixels the coarse labels missed take their nearest label
    miss = rest & (labels == 0)
    if miss.any():
        grown = cv2.dilate(labels.astype(np.float32), np.ones((5, 5), np.uint8)).astype(np.int32)
        labels = np.where(miss, grown, labels)
    labels[~rest] = 0
    labels[labels > 0] += n_wbc
    labels[wbc_labels > 0] = wbc_labels[wbc_labels > 0]
    return labels, n_wbc + pn - 1


def _refine(labels: np.ndarray, n: int, x: RefineInput, p: ClassicalParams, trace: list | None) -> np.ndarray:
    """White-cell labels after the learned refinement (segment/refine.py; unchanged without its weights)."""
    from naturalize.segment.refine import refine_white, shipped_model

    return refine_white(labels, n, x, shipped_model() if p.wbc_refine else None, p.wbc_refine_margin, trace)


def _segment_at(
    rgb: np.ndarray, p: ClassicalParams, trace: list | None = None, label: str = ""
) -> tuple[list, np.ndarray]:
    """The pipeline at the image's own resolution: (cells, foreground mask); `trace` collects the white-cell
    refinement's candidates (benchmarks/train_wbc_refine.py); `label`: the image's class, if known."""
    from naturalize.segment.assign import judge_regions

    fg, stain, colour_dist, plate = colour_maps(rgb, p)
    nuclei, small = find_nuclei(fg, stain, p)
    wbcness = white_cell_colour(rgb, fg, plate)
    to_nuc = cv2.distanceTransform((~nuclei).astype(np.uint8), cv2.DIST_L2, 3)
    red_level = red_cell_level(fg, wbcness, to_nuc, p)
    region = white_region(fg, nuclei, wbcness, colour_dist, rgb[:, :, 1], p, to_nuc, red_level)
    green = rgb[:, :, 1] / max(1.0, float(plate[1]))
    wbc_labels, n_wbc, big_plts = split_white(region, nuclei, green, p)
    if n_wbc and (p.wbc_refine or trace is not None):
        x = RefineInput(fg, nuclei, wbcness, colour_dist, green, red_level, min(fg.shape) / p.ref_size, label)
        wbc_labels = _refine(wbc_labels, n_wbc, x, p, trace)
    plts = [m for m in small if not (wbc_labels[m] > 0).any() and not any((b & m).any() for b in big_plts)]
    plts += big_plts
    debris = region & (wbc_labels == 0)  # stain haze trimmed off white cells: no cell, but not plate either
    for b in big_plts:
        debris &= ~b
    labels, n = split_regions(fg & ~debris, wbc_labels, n_wbc, p)
    return judge_regions(rgb, labels, n, n_wbc, plts, stain, rim_px=p.rim_px, plate=plate), fg


def _upscale(
    mask: np.ndarray, shape: tuple[int, int], box: tuple[int, int, int, int] | None = None
) -> tuple[np.ndarray, tuple[int, int, int, int] | None]:
    """(bool mask resized to `shape` (bilinear, then thresholded: smooth edges), its box or None when empty),
    working on the mask's box only (`box`: the mask's box when known)."""
    from naturalize.segment.cells import box_of

    h, w = shape
    fy, fx = h / mask.shape[0], w / mask.shape[1]
    x0, y0, x1, y1 = box or box_of(mask)
    x0, y0, x1, y1 = max(0, x0 - 1), max(0, y0 - 1), min(mask.shape[1], x1 + 1), min(mask.shape[0], y1 + 1)
    X0, Y0, X1, Y1 = int(round(x0 * fx)), int(round(y0 * fy)), min(w, int(round(x1 * fx))), min(h, int(round(y1 * fy)))
    crop = cv2.resize(mask[y0:y1, x0:x1].astype(np.float32), (X1 - X0, Y1 - Y0), interpolation=cv2.INTER_LINEAR) > 0.5
    out = np.zeros(shape, bool)
    out[Y0:Y1, X0:X1] = crop
    if not crop.any():
        return out, None
    bx0, by0, bx1, by1 = box_of(crop)
    return out, (X0 + bx0, Y0 + by0, X0 + bx1, Y0 + by1)


def segment_classical(
    rgb: np.ndarray, params: ClassicalParams | None = None, trace: list | None = None, label: str = ""
) -> Segmentation:
    """Segment one PBC image into RBC / WBC / PLT cells plus a cell-free background (see module doc).

    Images larger than `params.work_size` are analysed at that size (for speed) and the masks
    scaled back to full resolution; the background is always made at full resolution. `trace` (a list)
    receives the white-cell refinement's candidates at the work size (for training its model). `label`: the
    image's class (e.g. "BA"), which the white-cell refinement reads; "" (unknown) leaves the masks unrefined."""
    from naturalize.segment.cells import Cell, box_touches_border, with_box

    p = params or ClassicalParams()
    rgb = as_rgb(rgb)
    h, w = rgb.shape[:2]
    f = p.work_size / min(h, w) if p.work_size else 1.0
    if f >= 0.9:
        cells, fg = _segment_at(rgb, p, trace, label)
        return finish(rgb, cells, also_remove=[fg])
    small = cv2.resize(rgb, (max(8, round(w * f)), max(8, round(h * f))), interpolation=cv2.INTER_AREA)
    cells_small, fg_small = _segment_at(small, p, trace, label)
    cells = []
    for c in cells_small:
        m, box = _upscale(c.mask, (h, w), c.box)
        if box is not None:
            border = box_touches_border(box, (h, w))
            usable = c.usable and not border
            cells.append(
                with_box(Cell(c.kind, m, c.score, border, usable, "" if usable else c.reason or "border"), box)
            )
    fg = cv2.resize(fg_small.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR) > 0.25
    # the plate keeps nothing that is not plate-coloured: stain debris and cell slivers go as well
    return finish(rgb, cells, also_remove=[fg])
