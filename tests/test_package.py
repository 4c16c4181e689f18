"""Packaging facts a user relies on: one version string for both commands, light core imports."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version

import classify
import naturalize


def test_one_version_string_from_the_installed_metadata() -> None:
    assert naturalize.__version__ == version("naturalize") == classify.__version__
    assert naturalize.__version__[0].isdigit()


def test_core_imports_need_neither_scikit_learn_nor_the_classify_extra() -> None:
    code = (
        "import sys; import naturalize.prepare, naturalize.records, naturalize.compose, naturalize.segment, "
        "naturalize.build, naturalize.drawn; "
        "print(sorted(m for m in ('sklearn', 'tensorflow', 'keras', 'torch') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
