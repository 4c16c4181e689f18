"""The sprite bank on disk: the format `naturalize segment` writes and `naturalize compose` reads.

BANK/bank.json               format_version, code (digest), backend, parameters, counts per kind/class
BANK/index.csv               one row per sprite (INDEX_FIELDS)
BANK/sprites/<kind>/[<label>/]<sprite_id>.png   RGBA, tight crop, alpha = mask: sprites that passed the gate
BANK/backgrounds.csv         one row per background plate (BACKGROUND_FIELDS)
BANK/backgrounds/<background_id>.png            the source image with every cell inpainted
BANK/curation.csv            one row per source image (CURATION_FIELDS)
BANK/qc/                     the QC page (naturalize/segment/qc.py), remade after each run
BANK/scenes/                 compose's caches made once per bank (transplant donors, matched statistics and sources)

A sprite the quality gate rejected (reason other than "ok") has no PNG file: its index.csv row holds its mask in
the `mask` column (a COCO RLE, pycocotools' compact string, of the mask inside the row's box); `Bank.load_sprite`
cuts its pixels from the source image (bank.json `root` + row.source). A non-empty `mask` column = no PNG file.
Format version 1 (every sprite a PNG file, no `mask` column) is still read; a run never resumes one.

The package, one job a module: `files` (names, columns, row types), `masks` (a rejected sprite's mask string),
`stamps` (bank.json and the checksums of the CSVs), `reader` (`Bank`), `writer` (`BankWriter`). Import the names
from here: `from naturalize.bank import Bank, BankWriter, SpriteRow, ...`.
"""

from __future__ import annotations

from naturalize.bank.files import (
    BACKGROUND_FIELDS,
    BANK_DIRS,
    BANK_FILES,
    CSV_FILES,
    CURATION_FIELDS,
    DERIVED_DIRS,
    FORMAT_VERSION,
    GATE_FIELDS,
    INDEX_FIELDS,
    KINDS,
    OPTIONAL_FIELDS,
    PASS,
    READ_VERSIONS,
    BackgroundRow,
    SpriteRow,
)
from naturalize.bank.masks import decode_mask, encode_mask
from naturalize.bank.reader import Bank
from naturalize.bank.stamps import file_record, read_bank_meta
from naturalize.bank.writer import KIND, STALE_FIX, BankWriter, EncodedSprite, ImageEntry

__all__ = [
    "BACKGROUND_FIELDS",
    "BANK_DIRS",
    "BANK_FILES",
    "CSV_FILES",
    "CURATION_FIELDS",
    "DERIVED_DIRS",
    "FORMAT_VERSION",
    "GATE_FIELDS",
    "INDEX_FIELDS",
    "KIND",
    "KINDS",
    "OPTIONAL_FIELDS",
    "PASS",
    "READ_VERSIONS",
    "STALE_FIX",
    "Bank",
    "BackgroundRow",
    "BankWriter",
    "EncodedSprite",
    "ImageEntry",
    "SpriteRow",
    "decode_mask",
    "encode_mask",
    "file_record",
    "read_bank_meta",
]
