"""Shared fixtures. Real PBC images come from the shared sample, read in place, never copied into the repo."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from naturalize.testing import sample_home

# One pytest process runs both the SAM tests (torch) and the classifier tests (TensorFlow). Importing
# torchvision after TensorFlow segfaults in triton's C extension; torch first is fine. Users never
# load both: `naturalize segment` uses torch, `classify` uses TensorFlow.
try:
    import torchvision  # noqa: F401
except ImportError:
    pass

SAMPLE = sample_home()


@pytest.fixture(scope="session")
def sample_root() -> Path:
    """The shared PBC sample (release layout + OI-PBC boxes); tests that need it skip when it is absent."""
    if not (SAMPLE / "PBC_dataset_normal_DIB").is_dir():
        pytest.skip(
            f"PBC sample not found at {SAMPLE} (set NATURALIZE_SAMPLE to a folder holding PBC_dataset_normal_DIB/)"
        )
    return SAMPLE.resolve()


@pytest.fixture(scope="session")
def sample_release(sample_root: Path) -> Path:
    """The sample's PBC_dataset_normal_DIB folder (8 class folders)."""
    return sample_root / "PBC_dataset_normal_DIB"


@pytest.fixture(scope="session")
def sample_boxes(sample_root: Path) -> Path:
    """The sample's OI-PBC YOLO boxes folder (`<stem>.txt`, class cx cy w h normalised)."""
    path = sample_root / "oi-pbc-boxes"
    if not path.is_dir():
        pytest.skip(f"OI-PBC boxes not found at {path}")
    return path


@pytest.fixture(scope="module")
def classify_cache(tmp_path_factory):
    """$CLASSIFY_CACHE set to a fresh folder for one test module (classify's decoded-image cache), restored after."""
    old = os.environ.get("CLASSIFY_CACHE")
    os.environ["CLASSIFY_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if old is None:
        os.environ.pop("CLASSIFY_CACHE", None)
    else:
        os.environ["CLASSIFY_CACHE"] = old
