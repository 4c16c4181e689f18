"""The pure compose core without real data: box clipping, occupancy, painting and its label map, transforms,
stain gains, parameters, the library loader, the image layout and its records (COCO RLE, manifest and COCO
text), on drawn cells (naturalize.testing.drawnbank)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from naturalize.bank import Bank
from naturalize.compose.annotate import (
    CATEGORIES,
    CATEGORY_ID,
    JSON_SEPARATORS,
    coco_text,
    image_record,
    journal_entry,
    label_rles,
    manifest_text,
)
from naturalize.compose.core import (
    Composite,
    Occupancy,
    Placed,
    clip_box,
    compose_image,
    paint,
    recolour,
    resized,
)
from naturalize.compose.library import feathered, load_library, plasma_colour, sprite_plasma
from naturalize.compose.params import ComposeParams, parse_range, parse_shard, parse_size, shard_range
from naturalize.compose.stain import GAIN_RANGE, UNIT_TOLERANCE, gain_table, stain_gain
from naturalize.compose.transform import (
    Transform,
    mirror_turn,
    sample_transform,
    split_warped,
    turned,
    warp,
)
from naturalize.fsio import UserError
from naturalize.testing.drawnbank import make_drawn_bank
from naturalize.testing.oracles import coco, manifest_entry

IDENTITY = Transform(False, 0, 0.0, 1.0)


@pytest.fixture(scope="module")
def drawn_bank(tmp_path_factory: pytest.TempPathFactory) -> Bank:
    """3 PMY, 2 LY and 1 PLT drawn source images: 6 plates, 24 red cells, 7 platelets, 5 white cells."""
    return Bank.open(make_drawn_bank(tmp_path_factory.mktemp("drawn-bank"), {"PMY": 3, "LY": 2, "PLT": 1}))


def disc(r: int, pad: int = 0) -> np.ndarray:
    """uint8 0/255 mask of a filled disc of radius r on a (2r + 1 + 2 pad) square canvas."""
    s = 2 * r + 1 + 2 * pad
    m = np.zeros((s, s), np.uint8)
    cv2.circle(m, (s // 2, s // 2), r, 255, -1)
    return m


def placed(mask: np.ndarray, colour: tuple[int, int, int], x: int, y: int, role: str = "RBC") -> Placed:
    """An opaque cell of one BGR colour over `mask`, ready for paint (premultiplied, inverse alpha)."""
    bgri = np.zeros(mask.shape + (4,), np.uint8)
    bgri[mask > 0, :3] = colour
    bgri[:, :, 3] = 255 - mask
    return Placed(role, 0, x, y, bgri, mask, int(np.count_nonzero(mask)), IDENTITY, (1.0, 1.0, 1.0))


# ---------------------------------------------------------------- clip_box


@pytest.mark.parametrize(
    "box, want",
    [
        ((10, 20, 5, 6, 100, 50), (10, 20, 15, 26)),  # inside
        ((-3, -4, 10, 10, 100, 50), (0, 0, 7, 6)),  # cut at the top-left
        ((95, 45, 10, 10, 100, 50), (95, 45, 100, 50)),  # cut at the bottom-right
        ((-10, 0, 10, 10, 100, 50), None),  # ends exactly at the left edge
        ((100, 0, 10, 10, 100, 50), None),  # starts exactly at the right edge
        ((-20, -20, 200, 200, 100, 50), (0, 0, 100, 50)),  # larger than the image
    ],
)
def test_clip_box_keeps_the_part_inside_the_image(box, want) -> None:
    assert clip_box(*box) == want


# ---------------------------------------------------------------- Occupancy


def test_occupancy_rejects_white_cell_overlap_and_outside_positions() -> None:
    occ = Occupancy(100, 80)
    m = disc(8)
    assert occ.fits(m, 10, 10, int(np.count_nonzero(m)), 0.7, 0.0)
    occ.mark(disc(15), 30, 20, white=True)
    area = int(np.count_nonzero(m))
    assert not occ.fits(m, 38, 28, area, 0.7, 0.0)  # on the white cell
    assert not occ.fits(m, 30 + 31 - 4, 20 + 15 - 8, area, 0.7, 1.0)  # its edge: overlap allowance is for small cells
    assert occ.fits(m, 75, 50, area, 0.7, 0.0)  # well away from it
    assert not occ.fits(m, 200, 200, area, 0.0, 1.0)  # entirely outside
    assert not occ.fits(m, -12, 30, area, 0.7, 0.0)  # mostly cut by the border
    assert occ.fits(m, -3, 60, area, 0.7, 0.0)  # a little cut by the border


def test_occupancy_lets_small_cells_overlap_by_at_most_the_allowance() -> None:
    occ = Occupancy(120, 120)
    m = disc(10)
    area = int(np.count_nonzero(m))
    occ.mark(m, 20, 20, white=False)
    for dx in range(0, 22):  # the same disc shifted right by dx overlaps the marked one by `overlap` pixels
        overlap = int(np.count_nonzero(cv2.bitwise_and(m[:, dx:], m[:, : 21 - dx]))) if dx < 21 else 0
        assert occ.fits(m, 20 + dx, 20, area, 0.7, 0.05) == (overlap <= 0.05 * area), dx


def test_occupancy_with_free_centres_refuses_a_cell_centred_on_another() -> None:
    """matched's sampler: a cell whose centre pixel lands on a small cell is refused even where the overlap is
    allowed; off (paper), only the overlap counts."""
    m = disc(20)
    area = int(np.count_nonzero(m))
    for free in (False, True):
        occ = Occupancy(120, 120, free_centres=free)
        occ.mark(disc(2), 58, 58, white=False)  # a 5 px speck centred at (60, 60): 2 % of the disc at most
        assert occ.fits(m, 40, 40, area, 0.7, 0.15) is not free  # the disc's centre (60, 60) on it
        assert occ.fits(m, 44, 40, area, 0.7, 0.15)  # centre 4 px off: only the overlap counts
        assert not occ.fits(m, 40, 40, area, 0.7, 0.0)  # no overlap allowed: refused either way


def test_occupancy_counts_only_the_visible_part_of_a_cell_cut_by_any_border() -> None:
    occ = Occupancy(60, 50)
    m = disc(8)
    area = int(np.count_nonzero(m))
    visible = {  # top-left -> pixels of the mask inside the 60 x 50 image
        (x, y): int(np.count_nonzero(m[max(0, -y) : 50 - y, max(0, -x) : 60 - x]))
        for x, y in [(52, 10), (10, 42), (52, 42), (-9, -9), (55, 20), (20, 46)]
    }
    for (x, y), seen in visible.items():
        for min_visible in (0.2, 0.4, 0.6):
            assert occ.fits(m, x, y, area, min_visible, 0.0) == (seen >= min_visible * area), (x, y, min_visible)
    occ.mark(m, 52, 42, white=False)  # a cut cell marks only its visible part
    assert int(np.count_nonzero(occ.small)) == visible[(52, 42)]
    assert occ.fits(m, 52, 42, area, 0.2, 1.0) and not occ.fits(m, 52, 42, area, 0.2, 0.99 * visible[(52, 42)] / area)


def test_occupancy_mark_clips_at_the_border_and_tracks_the_white_box() -> None:
    occ = Occupancy(50, 40)
    occ.mark(disc(10), -5, -5, white=True)
    assert occ.white_box == (0, 0, 16, 16)
    assert occ.white[15, 15] == 0 and occ.white[5, 5] == 255 and occ.small.max() == 0
    occ.mark(disc(4), 40, 30, white=True)
    assert occ.white_box == (0, 0, 49, 39)
    occ.mark(disc(4), 100, 100, white=False)  # outside: nothing marked
    assert occ.small.max() == 0


# ---------------------------------------------------------------- paint and its label map


def test_paint_blends_in_order_and_labels_the_visible_cell() -> None:
    image = np.full((40, 60, 3), 200, np.uint8)
    plate = image.copy()
    a = placed(disc(8), (10, 20, 30), 5, 5)
    b = placed(disc(8), (100, 110, 120), 14, 5)  # overlaps a, painted later
    c = placed(disc(8), (50, 50, 50), 52, 30)  # cut by the bottom-right border
    labels = paint(image, [a, b, c])
    assert labels.dtype == np.uint8 and labels.shape == (40, 60)
    assert tuple(image[13, 13]) == (10, 20, 30) and labels[13, 13] == 1
    assert tuple(image[13, 22]) == (100, 110, 120) and labels[13, 22] == 2
    assert tuple(image[13, 18]) == (100, 110, 120) and labels[13, 18] == 2  # the later cell covers the earlier
    assert labels[39, 59] == 3 and tuple(image[39, 59]) == (50, 50, 50)
    assert set(np.unique(labels)) == {0, 1, 2, 3}
    assert np.array_equal(image[labels == 0], plate[labels == 0])  # opaque hard masks: the plate elsewhere


def test_paint_applies_the_stain_gain_and_partial_alpha() -> None:
    image = np.full((20, 20, 3), 100, np.uint8)
    m = np.zeros((4, 4), np.uint8)
    m[1:3, 1:3] = 255
    cell = placed(m, (40, 40, 40), 8, 8)
    cell.gain = (2.0, 1.0, 0.5)
    cell.bgri[0, 0] = (10, 10, 10, 128)  # a feathered edge pixel: premultiplied colour 10, alpha 127
    paint(image, [cell])
    assert tuple(image[9, 9]) == (80, 40, 20)
    assert tuple(image[8, 8]) == tuple(np.round(np.array([20, 10, 5]) + 100 * 128 / 255).astype(int))
    assert tuple(image[0, 0]) == (100, 100, 100)


def test_label_map_widens_beyond_255_cells() -> None:
    image = np.zeros((30, 300, 3), np.uint8)
    m = np.full((1, 1), 255, np.uint8)
    cells = [placed(m, (1, 1, 1), i, i % 30) for i in range(300)]
    labels = paint(image, cells)
    assert labels.dtype == np.uint16 and labels[299 % 30, 299] == 300 and labels[0, 0] == 1


def test_recolour_multiplies_and_saturates() -> None:
    bgr = np.array([[[100, 200, 50]]], np.uint8)
    assert recolour(bgr, (1.0, 1.0, 1.0)).tolist() == [[[100, 200, 50]]]
    assert recolour(bgr, (0.5, 1.5, 2.0)).tolist() == [[[50, 255, 100]]]


# ---------------------------------------------------------------- transforms


def test_identity_warp_returns_the_sprite() -> None:
    rng = np.random.default_rng(0)
    sprite = rng.integers(0, 256, (13, 9, 4), dtype=np.uint8)
    assert np.array_equal(warp(sprite, IDENTITY), sprite)


def test_quarter_turn_and_mirror_warps_are_exact_and_match_mirror_turn() -> None:
    rng = np.random.default_rng(1)
    sprite = rng.integers(0, 256, (7, 11, 4), dtype=np.uint8)
    assert np.array_equal(warp(sprite, Transform(True, 0, 0.0, 1.0)), sprite[:, ::-1])
    assert np.array_equal(warp(sprite, Transform(False, 1, 0.0, 1.0)), np.rot90(sprite, -1))
    for flip in (False, True):
        for turns in range(4):
            turn = mirror_turn(flip, turns)
            got = sprite if turn is None else turn(sprite)
            assert np.array_equal(got, warp(sprite, turned(IDENTITY, flip, turns))), (flip, turns)


def test_turned_transform_of_a_rotated_sprite_matches_its_warp() -> None:
    """The transform recorded for a variant mirrored and turned after warping describes what was pasted."""
    mask = np.zeros((31, 21, 4), np.uint8)
    cv2.ellipse(mask, (10, 15), (8, 13), 20, 0, 360, (255, 255, 255, 255), -1)
    t = Transform(flip=True, rot90=1, angle=9.0, scale=1.05)
    for flip in (False, True):
        for turns in range(4):
            got, turn = split_warped(warp(mask, t))[1], mirror_turn(flip, turns)
            got = got if turn is None else turn(got)
            want = split_warped(warp(mask, turned(t, flip, turns)))[1]
            h, w = min(got.shape[0], want.shape[0]), min(got.shape[1], want.shape[1])
            assert max(got.shape[0], want.shape[0]) - h <= 1 and max(got.shape[1], want.shape[1]) - w <= 1
            a, b = got[:h, :w] > 0, want[:h, :w] > 0
            assert (a & b).sum() / (a | b).sum() > 0.97, (flip, turns)


def test_warp_canvas_holds_the_whole_rotated_sprite() -> None:
    sprite = np.full((20, 40, 4), 255, np.uint8)
    out = warp(sprite, Transform(False, 0, 45.0, 1.0))
    side = (20 + 40) / np.sqrt(2)
    assert abs(out.shape[0] - side) <= 1 and abs(out.shape[1] - side) <= 1
    assert out[:, :, 3].sum() == pytest.approx(sprite[:, :, 3].sum(), rel=0.02)  # nothing cut off
    big = warp(sprite, Transform(False, 0, 0.0, 1.5))
    assert big.shape[:2] == (30, 60)


def test_a_recorded_transform_is_the_one_used_and_redraws_the_same_canvas() -> None:
    """A manifest cell's `transform` (as_dict, through JSON) is the warp that was pasted: rounded to 3 and 4 decimals
    it redrew some sprites on a canvas one pixel larger (half a pixel off; 1 cell in ~700 of the sample's), so a
    consumer pasting the recorded sprite at the recorded x, y missed part of the cell's mask."""
    p = ComposeParams()
    sprite = np.zeros((75, 82, 4), np.uint8)
    cv2.ellipse(sprite, (41, 37), (38, 34), 0, 0, 360, (200, 120, 150, 255), -1)
    ts = [sample_transform(np.random.default_rng([5, i]), p) for i in range(300)]
    for t in ts:
        back = Transform(**json.loads(json.dumps(t.as_dict())))
        assert back == t and np.array_equal(warp(sprite, back), warp(sprite, t))


def test_sampled_transforms_stay_in_their_ranges_and_follow_the_seed() -> None:
    p = ComposeParams(max_angle=10.0, scale_jitter=0.1)
    ts = [sample_transform(np.random.default_rng([3, i]), p) for i in range(200)]
    assert all(-10 <= t.angle <= 10 and 0.9 <= t.scale <= 1.1 and t.rot90 in range(4) for t in ts)
    assert {t.flip for t in ts} == {False, True} and {t.rot90 for t in ts} == {0, 1, 2, 3}
    assert sample_transform(np.random.default_rng([3, 7]), p) == ts[7]


def test_split_warped_gives_inverse_alpha_and_the_half_alpha_mask() -> None:
    w = np.zeros((3, 3, 4), np.uint8)
    w[1, 1] = (50, 60, 70, 200)
    w[0, 1] = (5, 5, 5, 100)  # faint edge next to the mask: kept
    bgri, mask, area = split_warped(w)
    assert area == 1 and mask[1, 1] == 255 and mask[0, 1] == 0
    assert tuple(bgri[1, 1]) == (50, 60, 70, 55) and tuple(bgri[0, 1]) == (5, 5, 5, 155)
    assert tuple(bgri[2, 2]) == (0, 0, 0, 255)


# ---------------------------------------------------------------- stain matching


def test_stain_gain_is_the_plasma_ratio_clipped() -> None:
    src = np.array([200.0, 200.0, 200.0], np.float32)
    assert stain_gain(src, np.array([220.0, 180.0, 200.0], np.float32)).tolist() == pytest.approx([1.1, 0.9, 1.0])
    g = stain_gain(src, np.array([400.0, 20.0, 200.0], np.float32))
    assert g.tolist() == pytest.approx([GAIN_RANGE[1], GAIN_RANGE[0], 1.0])
    assert g.dtype == np.float32


def test_gain_table_is_plates_by_sprites_with_exact_ones_near_unity() -> None:
    sprites = np.array([[200, 200, 200], [100, 200, 250]], np.float32)
    plates = np.array([[200, 200.5, 199.5], [110, 220, 250], [200, 200, 200]], np.float32)
    g = gain_table(sprites, plates)
    assert g.shape == (3, 2, 3)
    assert np.all(g[0, 0] == 1.0) and np.all(g[2, 0] == 1.0)  # within UNIT_TOLERANCE: pasted unchanged
    assert abs(200.5 / 200 - 1) <= UNIT_TOLERANCE
    assert g[1, 1].tolist() == pytest.approx([1.1, 1.1, 1.0])


# ---------------------------------------------------------------- parameters


def test_compose_params_validate_with_one_line_naming_the_option() -> None:
    with pytest.raises(UserError, match="--size 32x400 is too small"):
        ComposeParams(size=(32, 400))
    with pytest.raises(UserError, match="--platelets LOW..HIGH"):
        ComposeParams(platelets=(3, 1))
    with pytest.raises(UserError, match="--format 'gif'"):
        ComposeParams(fmt="gif")
    with pytest.raises(UserError, match="--quality 101"):
        ComposeParams(quality=101)
    p = ComposeParams(size=[200, 100], platelets=[0, 1])  # as read back from JSON
    assert p == ComposeParams(size=(200, 100), platelets=(0, 1))
    assert ComposeParams(**p.as_dict()) == p and p.as_dict()["size"] == [200, 100]


def test_command_line_forms_parse_or_name_the_fix() -> None:
    assert parse_size("360x363") == (360, 363) and parse_size("64X80") == (64, 80)
    assert parse_range("0..3") == (0, 3) and parse_range("2") == (2, 2)
    assert parse_shard(None) == (1, 1) and parse_shard("2/4") == (2, 4)
    for fn, text, msg in (
        (parse_size, "360", "WIDTHxHEIGHT"),
        (parse_range, "a..b", "LOW..HIGH"),
        (parse_range, "3..1", "0 <= LOW <= HIGH"),
        (parse_shard, "5/4", "1 <= K <= N"),
        (parse_shard, "1-4", "K/N"),
    ):
        with pytest.raises(UserError, match=msg):
            fn(text)


def test_shard_ranges_are_contiguous_and_balanced() -> None:
    parts = [shard_range(10, (k, 3)) for k in (1, 2, 3)]
    assert [list(r) for r in parts] == [[0, 1, 2], [3, 4, 5], [6, 7, 8, 9]]
    assert list(shard_range(2, (1, 4))) == []


# ---------------------------------------------------------------- library pieces


def test_feathering_fades_the_edge_inside_the_mask_and_premultiplies() -> None:
    bgra = np.zeros((41, 41, 4), np.uint8)
    bgra[:, :, :3] = (40, 80, 160)
    cv2.circle(bgra, (20, 20), 15, (40, 80, 160, 255), -1)
    bgra[2, 2, 3] = 255  # a speck far from the cell
    hard = feathered(bgra, 0)
    assert np.array_equal(hard[:, :, 3], bgra[:, :, 3]) and tuple(hard[20, 20]) == (40, 80, 160, 255)
    assert tuple(hard[0, 0]) == (0, 0, 0, 0)  # colour under alpha 0 is premultiplied away
    soft = feathered(bgra, 1.5)
    a = soft[:, :, 3]
    assert np.all(a <= bgra[:, :, 3]) and a[20, 20] == 255 and 0 < a[20, 33] < 255 and a[20, 35] == 0
    assert a[2, 2] == 0  # the speck is dropped
    want = np.rint(bgra[:, :, :3].astype(float) * a[:, :, None] / 255.0)
    assert np.abs(soft[:, :, :3].astype(int) - want).max() <= 1  # colour premultiplied by the feathered alpha


def test_plasma_colours_of_plates_and_sprite_crops() -> None:
    plate = np.full((40, 40, 3), (180, 200, 240), np.uint8)
    plate[10:20, 10:20] = 50  # a cell: the median ignores it
    assert plasma_colour(plate).tolist() == [180, 200, 240]
    crop = np.zeros((20, 20, 4), np.uint8)
    crop[:, :, :3] = (170, 190, 230)
    crop[5:15, 5:15] = (60, 30, 90, 255)
    assert sprite_plasma(crop).tolist() == [170, 190, 230]
    crop[:, :, :3][crop[:, :, 3] == 0] = 0  # no colour kept around the cell
    assert sprite_plasma(crop) is None


def test_library_of_a_drawn_bank_follows_the_seed_and_the_limits(drawn_bank: Bank) -> None:
    p = ComposeParams(max_sources=4, max_small=10)
    lib = load_library(drawn_bank, "PMY", 0, p)
    assert lib.cls == "PMY" and lib.centre_kind == "WBC" and len(lib.centre) == 3
    assert len(lib.plates) == 4 and all(plate.shape == (363, 360, 3) for plate in lib.plates)
    assert len(lib.rbc) == 10 and {r.source for r in lib.rbc.rows} <= {r.source for r in lib.plate_rows}
    assert lib.centre.gains.shape == (4, 3, 3) and len(lib.centre.transforms[0]) == p.centre_variants
    again = load_library(drawn_bank, "PMY", 0, p)
    assert [r.sprite_id for r in again.rbc.rows] == [r.sprite_id for r in lib.rbc.rows]
    other = load_library(drawn_bank, "PMY", 1, p)
    assert ([r.source for r in other.plate_rows], [r.sprite_id for r in other.rbc.rows]) != (
        [r.source for r in lib.plate_rows],
        [r.sprite_id for r in lib.rbc.rows],
    )
    plt = load_library(drawn_bank, "PLT", 0, ComposeParams())
    assert plt.centre_kind == "PLT" and len(plt.centre) == 7


def test_library_names_what_the_bank_lacks(drawn_bank: Bank) -> None:
    with pytest.raises(UserError, match="unknown class 'XX'"):
        load_library(drawn_bank, "XX", 0, ComposeParams())
    with pytest.raises(UserError, match="no WBC sprites of class BA.*naturalize segment"):
        load_library(drawn_bank, "BA", 0, ComposeParams())


# ---------------------------------------------------------------- compose_image


def test_same_generator_state_same_image_other_state_other_image(drawn_bank: Bank) -> None:
    p = ComposeParams()
    lib = load_library(drawn_bank, "PMY", 0, p)
    a, b = (compose_image(lib, np.random.default_rng([0, 1]), p) for _ in range(2))
    assert np.array_equal(a.image, b.image) and np.array_equal(a.labels, b.labels)
    assert [(c.role, c.index, c.x, c.y) for c in a.cells] == [(c.role, c.index, c.x, c.y) for c in b.cells]
    c = compose_image(lib, np.random.default_rng([0, 2]), p)
    assert not np.array_equal(a.image, c.image)


def test_composite_layout_centre_cell_and_counts(drawn_bank: Bank) -> None:
    p = ComposeParams(rbc=6, platelets=(1, 1))
    lib = load_library(drawn_bank, "LY", 0, p)
    W, H = p.size
    for i in range(6):
        comp = compose_image(lib, np.random.default_rng([5, i]), p)
        assert comp.image.shape == (H, W, 3) and comp.labels.shape == (H, W)
        roles = [c.role for c in comp.cells]
        assert roles[-1] == "centre" and roles.count("centre") == 1  # white cells painted last
        assert roles.count("RBC") <= 6 and roles.count("PLT") <= 1 and roles.count("RBC") >= 4
        centre = comp.cells[-1]
        h, w = centre.mask.shape
        assert abs(centre.x + w / 2 - W / 2) <= p.centre_max + 2 and abs(centre.y + h / 2 - H / 2) <= p.centre_max + 2
        # the label map shows each cell only where its mask is; the centre cell is never covered
        n = len(comp.cells)
        box = clip_box(centre.x, centre.y, w, h, W, H)
        region = comp.labels[box[1] : box[3], box[0] : box[2]]
        inside = centre.mask[box[1] - centre.y : box[3] - centre.y, box[0] - centre.x : box[2] - centre.x] > 0
        assert np.all(region[inside] == n)
        # no other cell lies within the white cell's margin
        grown = cv2.dilate(inside.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
        assert not np.any((region > 0) & (region != n) & grown)
        # pixels far from every cell are the plate's
        plate = lib.plates[comp.plate]
        near = cv2.dilate((comp.labels > 0).astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
        assert np.array_equal(comp.image[~near], plate[~near])


def test_no_red_cells_no_platelets_only_the_centre_cell(drawn_bank: Bank) -> None:
    p = ComposeParams(rbc=0, platelets=(0, 0))
    lib = load_library(drawn_bank, "PMY", 0, p)
    comp = compose_image(lib, np.random.default_rng(0), p)
    assert [c.role for c in comp.cells] == ["centre"]
    p2 = ComposeParams(wbc=2)
    comp2 = compose_image(load_library(drawn_bank, "PMY", 0, p2), np.random.default_rng(0), p2)
    assert sorted(c.role for c in comp2.cells if c.role in ("centre", "WBC")) == ["WBC", "centre"]


def test_plate_under_a_centre_cell_had_no_larger_cell(drawn_bank: Bank) -> None:
    lib = load_library(drawn_bank, "PMY", 0, ComposeParams())
    for i in range(10):
        comp = compose_image(lib, np.random.default_rng([2, i]), ComposeParams())
        centre = comp.cells[-1]
        k = int(np.flatnonzero(lib.plate_by_centre_area == comp.plate)[0])
        assert lib.plate_centre_area_sorted[k] <= lib.centre.areas[centre.index] or k == 0


def test_drawn_bank_is_byte_identical_for_the_same_seed(tmp_path: Path) -> None:
    a = make_drawn_bank(tmp_path / "a", {"LY": 1, "PLT": 1}, seed=4)
    b = make_drawn_bank(tmp_path / "b", {"LY": 1, "PLT": 1}, seed=4)
    files = sorted(p.relative_to(a).as_posix() for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b).as_posix() for p in b.rglob("*") if p.is_file())
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    bank = Bank.open(a)
    assert {s.kind for s in bank.sprites} == {"WBC", "RBC", "PLT"} and len(bank.backgrounds) == 2


# ---------------------------------------------------------------- records, COCO RLE, run-file text


def test_label_rles_of_a_uint16_map_match_pycocotools() -> None:
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 300, (23, 31)).astype(np.uint16)
    labels[labels % 7 == 0] = 0
    got = label_rles(labels, 301)
    for n in range(1, 301):
        full = np.asfortranarray(labels == n).astype(np.uint8)
        if not full.any():
            assert got[n - 1] is None
            continue
        counts, box, area = got[n - 1]
        assert counts == mask_utils.encode(full)["counts"].decode() and area == full.sum()
        assert box == mask_utils.toBbox(mask_utils.encode(full)).astype(int).tolist()
    assert got[300] is None and label_rles(np.zeros((4, 5), np.uint8), 2) == [None, None]


def test_label_rles_of_more_than_255_visible_cells() -> None:
    # pycocotools' area() fails on 256 or more RLEs in one call (its result starts as uint8); an image of a bank with
    # tiny red cells can show that many
    labels = np.zeros((40, 40), np.uint16)
    labels.ravel()[::5] = np.arange(1, 321)  # 320 one-pixel cells
    got = label_rles(labels, 321)
    assert got[320] is None
    for n in range(1, 321):
        full = np.asfortranarray(labels == n).astype(np.uint8)
        rle = mask_utils.encode(full)
        assert got[n - 1] == (rle["counts"].decode(), mask_utils.toBbox(rle).astype(int).tolist(), 1)


def _dump(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=JSON_SEPARATORS)


def test_records_describe_every_visible_cell_and_serialise_like_json(drawn_bank: Bank) -> None:
    p = ComposeParams(rbc=10, platelets=(2, 2))
    lib = load_library(drawn_bank, "PMY", 1, p)
    records = []
    for i in range(4):
        comp = compose_image(lib, np.random.default_rng([1, i]), p)
        rec = image_record(comp, lib, f"PMY/PMY_syn_1_{i}.jpg", 1, i)
        records.append(rec)
        assert rec["class"] == "PMY" and (rec["width"], rec["height"]) == p.size
        assert rec["background"]["id"] == lib.plate_rows[comp.plate].background_id
        assert [c["kind"] for c in rec["cells"]] == [{"centre": "WBC"}.get(c.role, c.role) for c in comp.cells]
        centre = [c for c in rec["cells"] if c["centre"]]
        assert len(centre) == 1 and centre[0]["category"] == "PMY"
        for n, cell in enumerate(rec["cells"], start=1):
            assert cell["category"] in CATEGORIES
            visible = comp.labels == n
            if not visible.any():
                assert "rle" not in cell
                continue
            rle = {"size": [p.size[1], p.size[0]], "counts": cell["rle"].encode()}
            assert np.array_equal(mask_utils.decode(rle).astype(bool), visible)
            assert cell["area"] == visible.sum()
        assert manifest_text(rec) == _dump(manifest_entry(rec))
    entries = [journal_entry(r) for r in records]
    assert coco_text(entries) == _dump(coco(records))
    parsed = json.loads(coco_text(entries))
    assert [im["id"] for im in parsed["images"]] == [1, 2, 3, 4]
    assert [a["id"] for a in parsed["annotations"]] == list(range(1, len(parsed["annotations"]) + 1))
    assert {c["id"] for c in parsed["categories"]} == set(CATEGORY_ID.values())


def test_a_resized_composite_keeps_every_visible_cell_inside_its_recorded_canvas() -> None:
    """--size scales the label map by nearest neighbour; each cell's recorded canvas (x, y, w, h) is scaled the same
    way, so the visible box COCO gives never sticks out of it (round() of the edges put 79 boxes 1 px outside in a
    transplant run at 224x224)."""
    rng = np.random.default_rng(5)
    W0, H0 = 360, 363
    cells, labels = [], np.zeros((H0, W0), np.uint8)
    for n in range(1, 41):
        w, h = (int(v) for v in rng.integers(9, 60, 2))
        x, y = int(rng.integers(-w // 2, W0 - w // 2)), int(rng.integers(-h // 2, H0 - h // 2))
        cells.append(
            Placed(
                "RBC",
                0,
                x,
                y,
                np.zeros((h, w, 4), np.uint8),
                np.full((h, w), 255, np.uint8),
                w * h,
                IDENTITY,
                (1.0, 1.0, 1.0),
            )
        )
        x0, y0 = max(x, 0), max(y, 0)
        labels[y0 : y + h, x0 : x + w] = n
    comp = Composite(np.zeros((H0, W0, 3), np.uint8), 0, cells, labels)
    for size in ((224, 224), (100, 97), (512, 500), (359, 363)):
        small = resized(comp, size)
        for n, c in enumerate(small.cells, start=1):
            ys, xs = np.nonzero(small.labels == n)
            if len(xs):
                assert c.x <= xs.min() and xs.max() < c.x + c.mask.shape[1], (size, n, c.x, xs.min(), xs.max())
                assert c.y <= ys.min() and ys.max() < c.y + c.mask.shape[0], (size, n, c.y, ys.min(), ys.max())
