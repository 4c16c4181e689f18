"""The dataset protocols of `naturalize build --protocol` (`Protocol`, `PROTOCOLS` by name): which images feed which
split, and the words build, audit and classify use for each. Pure: no I/O.

build, audit, classify evaluate and the CLI read a protocol's fields; none compares protocol names, so a new
protocol is one entry here (and its tests)."""

from __future__ import annotations

from dataclasses import dataclass

from naturalize.fsio import UserError


@dataclass(frozen=True)
class Protocol:
    """One protocol.

    sprite_split:   the split sprites are cut from (one bank per split), or None: one bank of every image
    pooled:         real and synthetic images are pooled, then split (val/test may hold composites); else the
                    real images keep prepare's split and composites go to train only
    help:           its `--protocol` help wording
    sprite_sources: dataset.json's `sprite_sources`
    sprites_from:   build's segment-stage wording of where composing sprites come from
    source_images:  the images a composed class must have, in build's error line
    warning:        printed once before build's stages ('' for none)
    ok_verdict:     audit's verdict when it finds no problem
    score_note:     what `classify evaluate` says the protocol means for val/test scores
    """

    name: str
    sprite_split: str | None
    pooled: bool
    help: str
    sprite_sources: str
    sprites_from: str
    source_images: str
    warning: str
    ok_verdict: str
    score_note: str

    def sprite_source(self, split: str) -> bool:
        """Whether an image of `split` may lend sprites (a cell or a plate) to a composite."""
        return self.sprite_split is None or split == self.sprite_split


CLEAN = Protocol(
    name="clean",
    sprite_split="train",
    pooled=False,
    help="val/test real-only, sprites from train only",
    sprite_sources="train split only",
    sprites_from="training images only",
    source_images="training images",
    warning="",
    ok_verdict="no leak found",
    score_note="val and test hold real images only",
)

PAPER = Protocol(
    name="paper",
    sprite_split=None,
    pooled=True,
    help="pooled, then split",
    sprite_sources="all images",
    sprites_from="all images",
    source_images="images",
    warning=(
        "warning: protocol 'paper' pools real and synthetic images before splitting, so val and test hold "
        "synthetic images made from sprites of val/test images, and training composites hold the white cells "
        "of real val/test images; their scores are optimistic"
    ),
    # the paper protocol leaks by design: never report it as leak-free
    ok_verdict="no problem found; val/test are NOT real-only (the protocol's pooling, counted below)",
    score_note=(
        "val and test hold synthetic images made from val/test images' cells, so these scores are optimistic and "
        "not comparable with a clean build's"
    ),
)

#: name -> protocol; the first is build's default.
PROTOCOLS: dict[str, Protocol] = {p.name: p for p in (CLEAN, PAPER)}
DEFAULT = next(iter(PROTOCOLS))


def protocol_help() -> str:
    """The --protocol help line, generated from the registry."""
    return " ".join(f"{p.name}: {p.help}." for p in PROTOCOLS.values())


def get_protocol(name: str) -> Protocol:
    """The protocol called `name`; UserError naming the known ones otherwise."""
    if name not in PROTOCOLS:
        others = [f"{n} (default)" if n == DEFAULT else n for n in PROTOCOLS]
        listed = " or ".join([", ".join(others[:-1]), others[-1]]) if len(others) > 1 else others[0]
        raise UserError(f"unknown protocol {name!r}; use {listed}")
    return PROTOCOLS[name]
