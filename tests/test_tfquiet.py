"""TensorFlow's C++ start-up lines (absl's preamble, `I... cudart_stub.cc:31] Could not find cuda drivers`, oneDNN,
cpu_feature_guard) stay off stderr of the commands that import it, unless the user sets TF_CPP_MIN_LOG_LEVEL lower."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from naturalize.tfquiet import ENV, drop_log_lines

#: lines TensorFlow 2.21 printed on this project's dev box on `import tensorflow` (2026-11-30), and older formats
ABSL = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
CUDA = "I0000 00:00:1796021074.075357    5238 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will"
CPU = "I0000 00:00:1796021074.190004    5238 cpu_feature_guard.cc:227] This TensorFlow binary is optimized to use"
CPU_MORE = "To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow with the flags.\n"
CUINIT = "E0000 00:00:1796021097.787279    5265 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error\n"
ONEDNN = "2024-03-01 10:00:00.123456: I tensorflow/core/util/port.cc:113] oneDNN custom operations are on.\n"
#: any C++ log line (absl's or TensorFlow's older format) or absl's preamble
TF_LINE = re.compile(r"^([IWEF]\d{4} [\d:.]+\s+\d+ \S+:\d+\]|\d{4}-\d\d-\d\d [\d:.]+: [IWEF] |WARNING: All log )", re.M)


def test_drop_log_lines_drops_what_the_level_hides_and_keeps_the_rest() -> None:
    warning = "/x/keras/src/y.py:12: UserWarning: something the user should see\n  warnings.warn(msg)\n"
    text = ABSL + CUDA + "\n" + CPU + "\n" + CPU_MORE + warning + ONEDNN + CUINIT + "error: a real one\n"
    assert drop_log_lines(text, 3) == warning + "error: a real one\n"
    assert drop_log_lines(text, 2) == warning + CUINIT + "error: a real one\n"
    assert drop_log_lines(text, 0) == text
    assert drop_log_lines("50%|#####     | 5/10\r", 3) == "50%|#####     | 5/10\r"  # a progress bar's line


def _realism(real: Path, syn: Path, out: Path, level: str | None) -> subprocess.CompletedProcess[str]:
    """`naturalize realism` as a user starts it: TF_CPP_MIN_LOG_LEVEL unset (None) or set to `level`."""
    env = {k: v for k, v in os.environ.items() if k != ENV} | ({ENV: level} if level is not None else {})
    args = ["--real", real, "--synthetic", syn, "--out", out]
    cmd = [sys.executable, "-m", "naturalize.cli", "realism", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)


def test_realism_prints_no_tensorflow_start_up_line_unless_the_user_asks(sample_release: Path, tmp_path: Path) -> None:
    """Real PMY against real MY images: realism imports Keras (TensorFlow) and then stops, as the sides share no class;
    stderr is that one error line. With TF_CPP_MIN_LOG_LEVEL=0 (the user's setting wins) TensorFlow's lines show."""
    for side, prefix in (("real", "PMY_"), ("syn", "MY_")):
        (tmp_path / side).mkdir()
        for p in sorted((sample_release / "ig").glob(f"{prefix}*.jpg"))[:3]:
            shutil.copy(p, tmp_path / side / p.name)
    error = f"error: --real {tmp_path / 'real'} and --synthetic {tmp_path / 'syn'} share no class"
    r = _realism(tmp_path / "real", tmp_path / "syn", tmp_path / "out", None)
    assert r.returncode == 2 and r.stderr.startswith(error) and r.stderr.count("\n") == 1, r.stderr[-2000:]
    assert not TF_LINE.search(r.stderr)
    loud = _realism(tmp_path / "real", tmp_path / "syn", tmp_path / "out", "0")
    assert loud.returncode == 2 and loud.stderr.endswith(r.stderr), loud.stderr[-2000:]
    assert drop_log_lines(loud.stderr, 3) == r.stderr  # what it shows more is TensorFlow's C++ log, nothing else
