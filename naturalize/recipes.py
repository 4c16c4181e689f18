"""The dataset recipes of `naturalize build`: how many synthetic images each class gets (`Recipe`), by name
(`RECIPES`), and `resolve_recipe` (a name plus --classes / --per-class -> a Recipe). Pure: no I/O."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from naturalize.classes import AUGMENTED_CLASSES, CLASSES
from naturalize.fsio import UserError

PAPER_PMY_TOTAL = 1011  # 592 real PMY + 419 synthetic in the paper


@dataclass(frozen=True)
class Recipe:
    """How many synthetic images each class gets, as a function of the real (curated) counts.

    topup:     class -> total real + synthetic to reach
    per_class: synthetic images added to each of `classes`
    balance:   bring every class of `classes` (all when empty) to the largest real count (or to `per_class`)
    """

    name: str
    description: str
    curated: bool = True
    topup: Mapping[str, int] = field(default_factory=dict)
    per_class: int = 0
    classes: tuple[str, ...] = ()
    balance: bool = False

    @property
    def adds_synthetic(self) -> bool:
        """True when the recipe composes synthetic images (it then needs a sprite bank)."""
        return bool(self.topup or (self.per_class and self.classes) or self.balance)

    def synthetic_counts(self, real: Mapping[str, int]) -> dict[str, int]:
        """Class -> number of synthetic images to compose, given real image counts per class."""
        out: Counter = Counter()
        for cls, total in self.topup.items():
            out[cls] += max(0, total - real.get(cls, 0))
        for cls in self.classes:
            out[cls] += self.per_class
        if self.balance:
            target = self.per_class or max(real.values())
            for cls in self.classes or CLASSES:
                out[cls] = max(0, target - real.get(cls, 0))
        return {c: out[c] for c in CLASSES if out[c] > 0}


RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in (
        Recipe("pbc11", "all real images of the 11 classes (16,891 in the release)", curated=False),
        Recipe("pbc11-curated", "real images, multi-cell images removed"),
        Recipe("419-pmy", "curated, PMY topped up to 1,011 with synthetic images", topup={"PMY": PAPER_PMY_TOTAL}),
        Recipe(
            "1k-pbc",
            "419-pmy plus 1,000 synthetic images each for BNE, MMY, MY, PMY, SNE",
            topup={"PMY": PAPER_PMY_TOTAL},
            per_class=1000,
            classes=AUGMENTED_CLASSES,
        ),
        Recipe(
            "2k-pbc",
            "419-pmy plus 2,000 synthetic images each for BNE, MMY, MY, PMY, SNE",
            topup={"PMY": PAPER_PMY_TOTAL},
            per_class=2000,
            classes=AUGMENTED_CLASSES,
        ),
        # the paper composed only its five white-cell classes ("using only these six classes in SAM": RBC, BNE, MMY,
        # MY, PMY, SNE; Algorithms 16(12):562, section 3.3), so no class outside them gets synthetic images
        Recipe(
            "1k-class-pbc",
            "BNE, MMY, MY, PMY, SNE each brought to the largest class's count",
            classes=AUGMENTED_CLASSES,
            balance=True,
        ),
    )
}


#: The recipe made of --classes and --per-class alone.
CUSTOM = "custom"


def recipe_names() -> str:
    """'pbc11, pbc11-curated, ..., 1k-class-pbc or custom': every name `resolve_recipe` takes, for help and errors."""
    return f"{', '.join(RECIPES)} or {CUSTOM}"


def segments(recipe: Recipe) -> bool:
    """Whether building the recipe segments images: for curation or for the sprites of synthetic images (only then
    is a segmentation backend resolved, announced and its options checked)."""
    return recipe.curated or recipe.adds_synthetic


def resolve_recipe(name: str, classes: Sequence[str] = (), per_class: int | None = None) -> Recipe:
    """A named recipe, optionally with other classes / per-class count; 'custom' needs both."""
    if name == CUSTOM:
        if not classes or not per_class:
            raise UserError("recipe 'custom' needs --classes and --per-class (e.g. --classes PMY,MY --per-class 500)")
        custom = Recipe(CUSTOM, "", per_class=per_class, classes=tuple(classes))
        return replace(custom, description=describe(custom))
    if name not in RECIPES:
        raise UserError(f"unknown recipe {name!r}; use one of {recipe_names()}")
    recipe = RECIPES[name]
    if classes:
        recipe = replace(recipe, classes=tuple(classes))
    if per_class is not None:
        if per_class < 0:
            raise UserError(f"--per-class {per_class} must be >= 0")
        # --per-class N replaces the recipe's counts: every class it augments (--classes, else its own classes
        # and its top-up class) gets N synthetic images; a top-up to the paper's total is dropped
        augmented = recipe.classes if classes else tuple(c for c in CLASSES if c in {*recipe.classes, *recipe.topup})
        recipe = replace(recipe, per_class=per_class, topup={}, classes=augmented)
    if recipe.adds_synthetic and recipe != RECIPES[name]:
        recipe = replace(recipe, description=describe(recipe))
    return recipe


def describe(recipe: Recipe) -> str:
    """What a recipe adds, in words, from its own numbers (a named recipe's text no longer fits once --classes or
    --per-class change them)."""
    parts = ["curated" if recipe.curated else "all real images"]
    parts += [f"{cls} topped up to {total:,} with synthetic images" for cls, total in recipe.topup.items()]
    if recipe.balance:
        target = f"{recipe.per_class:,} images" if recipe.per_class else "the largest class's count"
        parts.append(
            f"every {'one of ' + ', '.join(recipe.classes) if recipe.classes else 'class'} brought to {target}"
        )
    elif recipe.per_class and recipe.classes:
        parts.append(f"{recipe.per_class:,} synthetic images each for {', '.join(recipe.classes)}")
    return ", ".join(parts[:1] + [" plus ".join(parts[1:])]) if len(parts) > 1 else parts[0]
