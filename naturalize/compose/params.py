"""Composition parameters and the parsing of their command-line forms (sizes, ranges, shards)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from naturalize.fsio import UserError

#: Where the WBC centre lies in real PBC crops, measured on the 2,977 OI-PBC boxes of the shared sample
#: (the white cell nearest the centre of each image): median offset from the image centre (px) and a
#: Laplace scale per axis (the mean absolute deviation: 2.0 px across, 4.6 px down; 99 % within 41 px).
CENTRE_OFFSET = (1.0, 1.0)
CENTRE_JITTER = (2.0, 4.6)
CENTRE_MAX = 45.0

#: Output formats: suffix -> OpenCV encoder name.
FORMATS = {"jpg": ".jpg", "png": ".png"}
#: The PBC release's JPEGs: IJG quality-75 quantisation tables without chroma subsampling (4:4:4): so are
#: 3,280 of the shared sample's 3,525 files, all the 360x363 crops (the others, 359-366 px, quality ~85
#: 4:2:0). Composites are written the same way, so no compression artefact tells them from real crops.
JPEG_QUALITY = 75


@dataclass(frozen=True)
class Scene:
    """What one scene is, without its code: the single list of scenes (`SCENES`), light enough for the CLI to build
    its help from. compose/scenes.py's SCENE_REGISTRY maps each of these names to its code (load a run's library,
    compose one image), so a new scene is one entry here and one there.

    help:           its `--scene` help wording
    from_real:      the cell-count options (ComposeParams fields) the scene takes from real images, so setting
                    one away from its default is refused (check_scene_counts); the others it uses
    replaces_wbc:   it replaces a real image's white cell, so it cannot show a class with none (NO_WBC_CLASSES)
    no_wbc_scene:   the scene build composes such a class with instead ('' when this scene shows it)
    """

    name: str
    help: str
    from_real: tuple[str, ...] = ()
    replaces_wbc: bool = False
    no_wbc_scene: str = ""

    @property
    def places_rbc(self) -> bool:
        """Whether the scene places `rbc` red cells anew (else it takes them from real images)."""
        return "rbc" not in self.from_real


#: Scenes a composite can be built on, by name; the first is compose's default (transplant scored the lowest critic
#: AUC, BENCHMARKS.md). `transplant`: a real training image keeps its own red cells and platelets; its white cell is
#: inpainted away and the class's white cell takes its place. `matched`: the paper's layout with counts and
#: white-cell offset drawn from the class's own bank images, red cells from the plate's own image and its closest
#: one, allowed to be cut by the border, to overlap and to touch. `paper`: a cell-free plate, `rbc` red cells and
#: platelets placed anew, one centred white cell.
SCENES: dict[str, Scene] = {
    s.name: s
    for s in (
        Scene(
            "transplant",
            "a real training image keeps its own red cells and platelets, its white cell is replaced",
            from_real=("rbc", "platelets", "wbc"),
            replaces_wbc=True,
            no_wbc_scene="paper",
        ),
        Scene(
            "matched",
            "the class's measured layout, red cells from a few coherent images",
            from_real=("rbc", "platelets"),
            no_wbc_scene="paper",
        ),
        Scene("paper", "a cell-free plate, --rbc red cells placed anew"),
    )
}
DEFAULT_SCENE = next(iter(SCENES))
#: The scene that places every cell anew (the paper's), named in the errors that refuse an option or class.
PLACING_SCENE = next(s.name for s in SCENES.values() if not s.from_real)


def scene_help() -> str:
    """The --scene help line, generated from the registry."""
    return "; ".join(f"{s.name}: {s.help}" for s in SCENES.values()) + "."


def scenes_using(option: str) -> str:
    """'--scene paper' / '--scene paper or matched': the scenes that use the cell-count `option` (a ComposeParams
    field), for its help."""
    return "--scene " + " or ".join(s.name for s in SCENES.values() if option not in s.from_real)


#: The size (width, height) every composite is made at: the PBC crops' own, so sprites, plates and donor images keep
#: their scale; `ComposeParams.size` then resizes the finished image (and its masks) as a whole.
CANVAS = (360, 363)


@dataclass(frozen=True)
class ComposeParams:
    """What one composite looks like. Sizes are (width, height) in pixels; angles in degrees.

    size: the written image's size; every composite is made at CANVAS (the PBC crop size, where the sprites and
    plates have their own scale) and then resized as a whole, so all its cells keep their relative sizes.

    rbc, wbc, platelets: cell counts (platelets: an inclusive (low, high) range drawn per image).
    fmt, quality: jpg (4:4:4, `quality`, by default as the PBC files) or png.
    feather: sigma (px) of the alpha edge blur, 0 = hard edges. stain: match each sprite's colour to the
    background's source image. max_angle / scale_jitter: the small rotation and scale ranges (on top of
    random flips and 90-degree turns). rbc_overlap: fraction of a red cell's area that may lie on other
    red cells (they touch); min_visible: smallest fraction of a border-cut cell left inside the image.
    max_sources / max_wbc / max_small: how many source images (backgrounds), white-cell sprites and
    red-cell (and platelet) sprites one run holds in memory, drawn by seed from a larger bank.
    variants / centre_variants: each red cell and platelet / each centre cell gets this many random
    transforms per run (flip, quarter turn, rotation, scale), warped on first use and kept; an image
    draws one and mirrors / turns it at random (exact, cheap), so a sprite has 8 x variants looks.
    scene: what the white cell is pasted into (a name of SCENES; transplant, the default, scored the lowest critic
    AUC, BENCHMARKS.md); transplant ignores rbc, platelets, wbc > 1 and the layout fields (the donor image brings
    its own cells and its white cell's position); matched replaces rbc, platelets and the centre offset by
    the class's measured ones. wbc_scale: each variant of the class's cell sized within the class's own
    size range (variety.py) instead of 1 +- scale_jitter. wbc_stain: each variant of the class's cell takes
    the stain (colour relative to its plasma) of another of the class's cells (variety.py). wbc_warp: each
    variant of the class's cell bent by a small smooth area-keeping warp (at most variety.WARP_PX px).
    wbc_focus: the class's cell blurred or sharpened from its own image's focus to the scene image's (both
    measured on their red cells' edges: variety.edge_sigma).
    """

    size: tuple[int, int] = (360, 363)
    rbc: int = 8
    wbc: int = 1
    platelets: tuple[int, int] = (0, 2)
    fmt: str = "jpg"
    quality: int = JPEG_QUALITY
    feather: float = 0.7
    stain: bool = True
    max_angle: float = 15.0
    scale_jitter: float = 0.06
    centre_offset: tuple[float, float] = CENTRE_OFFSET
    centre_jitter: tuple[float, float] = CENTRE_JITTER
    centre_max: float = CENTRE_MAX
    rbc_overlap: float = 0.05
    min_visible: float = 0.7
    wbc_margin: int = 2
    tries: int = 40
    max_sources: int = 300
    max_wbc: int = 1000
    max_small: int = 1200
    variants: int = 3
    centre_variants: int = 4
    scene: str = DEFAULT_SCENE
    wbc_scale: bool = False
    wbc_stain: bool = False
    wbc_warp: bool = False
    wbc_focus: bool = False

    def __post_init__(self) -> None:
        w, h = self.size
        if w < 64 or h < 64:
            raise UserError(f"--size {w}x{h} is too small; use at least 64x64 (PBC crops are 360x363)")
        if self.rbc < 0 or self.wbc < 0 or self.platelets[0] < 0 or self.platelets[1] < self.platelets[0]:
            raise UserError(
                "cell counts must be >= 0 and --platelets LOW..HIGH with LOW <= HIGH (e.g. --platelets 0..2)"
            )
        if self.scene not in SCENES:
            raise UserError(f"--scene {self.scene!r} is not one of {', '.join(SCENES)}")
        if self.fmt not in FORMATS:
            raise UserError(f"--format {self.fmt!r} is not one of {', '.join(FORMATS)}")
        if not 1 <= self.quality <= 100:
            raise UserError(f"--quality {self.quality} is not a JPEG quality; use 1..100 (75: the PBC files' own)")
        # tuples may arrive as lists (from JSON): normalise so equal parameters compare equal
        for name in ("size", "platelets", "centre_offset", "centre_jitter"):
            object.__setattr__(self, name, tuple(getattr(self, name)))

    @property
    def canvas(self) -> tuple[int, int]:
        """The size composites are made at (CANVAS), before resizing to `size`."""
        return CANVAS

    @property
    def places_rbc(self) -> bool:
        """Whether `rbc` red cells are placed anew (the paper scene); transplant and matched take theirs from
        real images, so --rbc neither limits nor is owed to them."""
        return SCENES[self.scene].places_rbc

    def as_dict(self) -> dict:
        """JSON-ready parameters (tuples as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def check_scene_counts(params: ComposeParams) -> None:
    """UserError when cell-count options are set away from their defaults but `params.scene` does not use them
    (paper uses all; matched draws red cells and platelets from the class's measured counts; transplant keeps
    the donor image's own cells and places one white cell), so no option is silently ignored."""
    default = ComposeParams()
    unused = SCENES[params.scene].from_real
    shown = {"platelets": lambda v: "{}..{}".format(*v)}
    ignored = [
        f"--{name} {shown.get(name, str)(getattr(params, name))}"
        for name in unused
        if getattr(params, name) != getattr(default, name)
    ]
    if ignored:
        raise UserError(
            f"{' and '.join(ignored)} would be ignored: the {params.scene} scene takes "
            f"{'them' if len(ignored) > 1 else 'it'} from real images; leave the default, or use "
            f"--scene {PLACING_SCENE} to place cells anew"
        )


def check_format_options(params: ComposeParams) -> None:
    """UserError when --quality is set away from its default but the format does not use it (png is lossless), so
    no option is silently ignored."""
    if params.fmt != "jpg" and params.quality != ComposeParams().quality:
        raise UserError(
            f"--quality {params.quality} would be ignored: --format {params.fmt} is lossless; leave the default, "
            f"or use --format jpg"
        )


def parse_size(text: str) -> tuple[int, int]:
    """'360x363' -> (360, 363) (width, height)."""
    try:
        w, h = (int(t) for t in text.lower().split("x"))
    except ValueError:
        raise UserError(f"--size {text!r} is not WIDTHxHEIGHT (e.g. 360x363)") from None
    return w, h


def parse_range(text: str) -> tuple[int, int]:
    """'0..3' -> (0, 3); '2' -> (2, 2)."""
    try:
        lo, _, hi = text.partition("..")
        low, high = int(lo), int(hi or lo)
    except ValueError:
        raise UserError(f"--platelets {text!r} is not a count or a range LOW..HIGH (e.g. 0..2)") from None
    if low < 0 or high < low:
        raise UserError(f"--platelets {text!r}: need 0 <= LOW <= HIGH (e.g. 0..2)")
    return low, high


def parse_shard(text: str | None) -> tuple[int, int]:
    """'2/4' -> (2, 4): this run makes the second of four equal parts; None -> (1, 1)."""
    if text is None:
        return 1, 1
    try:
        k, n = (int(t) for t in text.split("/"))
    except ValueError:
        raise UserError(f"--shard {text!r} is not K/N (e.g. 1/4 for the first of four machines)") from None
    if not 1 <= k <= n:
        raise UserError(f"--shard {text!r}: need 1 <= K <= N (e.g. 1/4 ... 4/4)")
    return k, n


def shard_range(n: int, shard: tuple[int, int]) -> range:
    """Image indices of shard (k, N) of an n-image run: contiguous blocks that together cover 0..n-1."""
    k, parts = shard
    return range(n * (k - 1) // parts, n * k // parts)
