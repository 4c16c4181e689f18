"""The 11 fine PBC classes, how the release names them, and the paper's class groups."""

from __future__ import annotations

#: The 11 fine classes, in the order used everywhere (label index = position).
CLASSES: tuple[str, ...] = ("BA", "BNE", "EO", "ERB", "LY", "MMY", "MO", "MY", "PLT", "PMY", "SNE")

#: What hematologists call each class.
CLASS_NAMES: dict[str, str] = {
    "BA": "basophil",
    "BNE": "band neutrophil",
    "EO": "eosinophil",
    "ERB": "erythroblast",
    "LY": "lymphocyte",
    "MMY": "metamyelocyte",
    "MO": "monocyte",
    "MY": "myelocyte",
    "PLT": "platelet",
    "PMY": "promyelocyte",
    "SNE": "segmented neutrophil",
}

#: Images per class in the full public release after dropping the unlabeled IG/NEUTROPHIL files (16,891 in all).
RELEASE_COUNTS: dict[str, int] = {
    "BA": 1218,
    "BNE": 1633,
    "EO": 3117,
    "ERB": 1551,
    "LY": 1214,
    "MMY": 1015,
    "MO": 1420,
    "MY": 1137,
    "PLT": 2348,
    "PMY": 592,
    "SNE": 1646,
}

#: File-name prefix -> fine class. The release names platelets PLATELET_*.
PREFIX_TO_CLASS: dict[str, str] = {c: c for c in CLASSES if c != "PLT"} | {"PLATELET": "PLT", "PLT": "PLT"}

#: Prefixes of images the release leaves without a fine label; they are dropped.
UNLABELED_PREFIXES: frozenset[str] = frozenset({"IG", "NEUTROPHIL"})

#: The 8 folders of the public release and the fine classes each holds.
RELEASE_FOLDERS: dict[str, tuple[str, ...]] = {
    "basophil": ("BA",),
    "eosinophil": ("EO",),
    "erythroblast": ("ERB",),
    "ig": ("MMY", "MY", "PMY"),
    "lymphocyte": ("LY",),
    "monocyte": ("MO",),
    "neutrophil": ("BNE", "SNE"),
    "platelet": ("PLT",),
}

#: Name of the folder the release unpacks to.
RELEASE_DIRNAME = "PBC_dataset_normal_DIB"

#: The classes the paper tops up with Naturalize images (1K-PBC, 2K-PBC).
AUGMENTED_CLASSES: tuple[str, ...] = ("BNE", "MMY", "MY", "PMY", "SNE")

#: Classes whose real images hold no white cell, so a scene built around one (transplant, matched) cannot show them.
NO_WBC_CLASSES: tuple[str, ...] = ("PLT",)
#: Classes whose image is centred on a white cell (every class but platelets).
WBC_CLASSES: tuple[str, ...] = tuple(c for c in CLASSES if c not in NO_WBC_CLASSES)

SPLITS: tuple[str, ...] = ("train", "val", "test")


def class_of_prefix(filename: str) -> str | None:
    """'BNE_123.jpg' -> 'BNE', 'PLATELET_9.jpg' -> 'PLT'; None for unknown or unlabeled prefixes."""
    return PREFIX_TO_CLASS.get(filename.split("_", 1)[0].upper())


def normalize_class(code: str) -> str:
    """' bne' -> 'BNE', 'platelet' -> 'PLT': a class code or release prefix as its canonical code; anything else
    comes back stripped and upper-cased, for the caller to check against CLASSES."""
    code = code.strip().upper()
    return PREFIX_TO_CLASS.get(code, code)


def parse_classes(text: str | None) -> tuple[str, ...]:
    """'bne, PMY' -> ('BNE', 'PMY'). Raises ValueError naming the unknown code and the valid ones."""
    if not text:
        return ()
    out = []
    for code in (normalize_class(t) for t in text.split(",")):
        if not code:
            continue
        if code not in CLASSES:
            raise ValueError(f"unknown class {code!r}; use one of {', '.join(CLASSES)}")
        out.append(code)
    return tuple(dict.fromkeys(out))
