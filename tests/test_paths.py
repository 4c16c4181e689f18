"""Where things live (naturalize/paths.py): one dataset home for `naturalize build` and `classify`, env variables
that are set but empty count as unset, one list of image suffixes."""

from __future__ import annotations

from pathlib import Path

import pytest

from naturalize.build import resolve_recipe
from naturalize.paths import data_home, env_path, is_image_name


def test_an_empty_variable_means_unset(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NATURALIZE_TEST_ENV_PATH", "")
    assert env_path("NATURALIZE_TEST_ENV_PATH", tmp_path) == tmp_path
    monkeypatch.setenv("NATURALIZE_TEST_ENV_PATH", "/x/y")
    assert env_path("NATURALIZE_TEST_ENV_PATH", tmp_path) == Path("/x/y")


def test_build_and_classify_agree_on_the_dataset_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from classify.datasets import resolve_root

    monkeypatch.chdir(tmp_path)
    (tmp_path / "datasets" / "2k-pbc").mkdir(parents=True)
    for value in ("", None):  # empty or unset: ./datasets, for both
        if value is None:
            monkeypatch.delenv("NATURALIZE_DATA", raising=False)
        else:
            monkeypatch.setenv("NATURALIZE_DATA", value)
        assert data_home() == Path("datasets")
        assert data_home() / resolve_recipe("2k-pbc").name == Path("datasets/2k-pbc")
        assert resolve_root("2k-pbc") == (tmp_path / "datasets" / "2k-pbc").resolve()


def test_image_names_by_suffix_in_any_case() -> None:
    assert is_image_name("a/BNE_1.JPG") and is_image_name("x.tiff") and is_image_name("y.webp")
    assert not is_image_name("notes.txt") and not is_image_name(".DS_Store") and not is_image_name("jpg")


def test_a_benchmark_record_names_the_cpu_it_ran_on() -> None:
    import os
    import platform

    from naturalize.testing import machine

    text = machine()
    assert text.startswith(f"{os.cpu_count()}-core ") and text.endswith(f"({platform.machine()})")
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file() and "model name" in cpuinfo.read_text():
        model = next(s for s in cpuinfo.read_text().splitlines() if s.startswith("model name")).split(":", 1)[1]
        assert model.strip() in text
