"""Settings files that are JSON but not an object (a list or a number: edited by hand, or another tool's file under
the same name) are the usual one error line naming the file, never an AttributeError traceback. Drawn data only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from naturalize.fsio import UserError

NOT_OBJECTS = ["[1]", "3", '"dataset"']


@pytest.mark.parametrize("text", NOT_OBJECTS)
def test_naturalize_audit_on_a_dataset_json_that_is_no_object(tmp_path: Path, text: str) -> None:
    from naturalize.audit import audit_dataset

    (tmp_path / "dataset.json").write_text(text)
    with pytest.raises(UserError, match=r"dataset\.json is missing or damaged"):
        audit_dataset(tmp_path)


@pytest.mark.parametrize("text", NOT_OBJECTS)
def test_segment_rerun_on_a_bank_json_that_is_no_object(tmp_path: Path, text: str) -> None:
    from naturalize.bank import BankWriter
    from naturalize.testing.drawnbank import make_drawn_bank

    bank = make_drawn_bank(tmp_path / "bank", {"PMY": 1})
    (bank / "bank.json").write_text(text)
    with pytest.raises(UserError, match=r"bank\.json is missing or damaged; rerun with --overwrite"):
        BankWriter.check(bank, {"backend": "drawn"}, overwrite=False)


@pytest.mark.parametrize("text", NOT_OBJECTS)
def test_classify_on_a_dataset_json_that_is_no_object(tmp_path: Path, text: str) -> None:
    """(Before: the dataset loaded, train stored the list as the run's dataset_meta, evaluate then failed on it.)"""
    import numpy as np
    from PIL import Image

    from classify.datasets import load_dataset

    for cls in ("PMY", "SNE"):
        (tmp_path / cls).mkdir()
        for i in range(3):
            Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(tmp_path / cls / f"{cls}_{i}.png")
    (tmp_path / "dataset.json").write_text(text)
    with pytest.raises(UserError, match=r"dataset\.json is not a JSON object"):
        load_dataset(tmp_path)


@pytest.mark.parametrize("text", NOT_OBJECTS)
def test_build_on_a_cached_summary_that_is_no_object(tmp_path: Path, text: str) -> None:
    """A build's work cache whose prepared summary is damaged: its settings are unknown, so it is refused as one of
    other settings (with the fix: another --work, or delete it)."""
    from naturalize.build import check_cached_prepared

    prepared = tmp_path / "work" / "prepared"
    prepared.mkdir(parents=True)
    (prepared / "records.csv").write_text("path\n")
    (prepared / "summary.json").write_text(text)
    with pytest.raises(UserError, match=r"records prepared with other settings .* delete"):
        check_cached_prepared(tmp_path / "work", tmp_path / "pbc", 0, (0.8, 0.1, 0.1), None)


@pytest.mark.parametrize("text", NOT_OBJECTS + ["{oops"])
def test_compose_caches_that_are_no_object_are_made_again(tmp_path: Path, text: str) -> None:
    """A scene cache of the bank (BANK/scenes/: the matched scene's statistics, the sources' focus, a source's cached
    sprites) that holds other JSON or none is remade, as a stale one is (before: an AttributeError or a
    JSONDecodeError traceback)."""
    from naturalize.bank import Bank
    from naturalize.compose.params import ComposeParams
    from naturalize.compose.scene_stats import scene_stats, source_focus
    from naturalize.compose.source_cache import CACHE_DIR, source_entry
    from naturalize.testing.drawnbank import make_drawn_bank

    bank = Bank.open(make_drawn_bank(tmp_path / "bank", {"PMY": 2}))
    stats, focus = scene_stats(bank, "PMY"), source_focus(bank)
    bg = bank.backgrounds[0]
    rows = [r for r in bank.select("RBC") + bank.select("PLT") if r.source == bg.source]
    entry = source_entry(bank, bg, rows, ComposeParams())
    damaged = [
        bank.root / "scenes" / "matched" / "PMY.json",
        bank.root / "scenes" / "focus.json",
        bank.root / CACHE_DIR / f"{bg.background_id}.json",
    ]
    for path in damaged:
        assert path.is_file()
        path.write_text(text)
    assert scene_stats(bank, "PMY").sources == stats.sources
    assert source_focus(bank) == focus
    again = source_entry(bank, bg, rows, ComposeParams())
    assert again.areas == entry.areas and np.array_equal(again.plate, entry.plate)
    assert all(path.read_text() != text for path in damaged)  # made again, in place of the damaged file
