"""benchmarks/gpu_check.py --dry-run: the GPU readiness script runs end to end on the CPU (tiny sizes), so the
brief GPU loan is not spent on a broken script. Speed figures are not asserted (benchmarks hold those)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_check_dry_run_measures_every_part_and_writes_one_json(tmp_path):
    pytest.importorskip("segment_anything")
    pytest.importorskip("tensorflow")
    pytest.importorskip("torch")
    out = tmp_path / "gpu.json"
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--dry-run", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["dry_run"] is True and set(result["sam"]) == {"vit_b", "vit_h"}
    for sam in result["sam"].values():
        assert sam["images"] >= 1 and sam["images_per_s"] > 0, sam
    assert set(result["train"]) == {"tensorflow", "torch"}
    for backend, run in result["train"].items():
        assert "error" not in run, run
        assert run["backend"] == backend and run["policy"] == "mixed_float16"
        assert set(run["models"]) == {"efficientnetv2b0", "densenet169"}
        assert all(m["images_per_s"] > 0 and m["loss"] == m["loss"] for m in run["models"].values())
