"""code_digest: a cached artefact's stamp changes with any edit of the code that made it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from naturalize.codeversion import code_digest
from naturalize.compose import scenes, source_cache


def test_code_digest_changes_with_the_modules_source_and_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "nz_digest_probe.py").write_text("X = 1\n")
    first = code_digest("nz_digest_probe")
    assert first == code_digest("nz_digest_probe") and len(first) == 64
    (tmp_path / "nz_digest_probe.py").write_text("X = 2\n")  # an edit: a new process sees another digest
    code_digest.cache_clear()
    assert code_digest("nz_digest_probe") != first
    assert code_digest("nz_digest_probe", "naturalize.codeversion") != code_digest("nz_digest_probe")
    sys.modules.pop("nz_digest_probe", None)


def test_both_bank_caches_stamp_the_code_that_fills_them() -> None:
    for module in (*source_cache.CODE, *scenes.DONOR_CODE):
        assert code_digest(module)  # every listed module exists and is read
    assert "naturalize.compose.library" in source_cache.CODE  # feathering and warping live there
    assert "naturalize.segment.inpaint" in scenes.DONOR_CODE  # the donor's hole is filled there
