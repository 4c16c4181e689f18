"""The command line as users meet it: fast help without heavy frameworks, one-line errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

from naturalize.testing.cli import run_cli


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)


def test_help_and_core_imports_stay_free_of_torch_and_tensorflow():
    heavy = ("torch", "tensorflow", "keras", "segment_anything")
    code = (
        "import sys\nimport naturalize, naturalize.cli, naturalize.records, naturalize.prepare, naturalize.bank\n"
        "from naturalize.cli import app\n"
        "try:\n    app(['--help'])\nexcept SystemExit as e:\n    assert e.code == 0, e.code\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {heavy!r}))"
    )
    done = _run(code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
    assert "prepare" in done.stdout and "segment" in done.stdout and "compose" in done.stdout


def test_usage_errors_exit_2_and_user_errors_are_one_line(tmp_path):
    usage = run_cli("naturalize", "prepare")
    assert usage.returncode == 2 and "Traceback" not in usage.stderr
    missing = run_cli("naturalize", "prepare", tmp_path / "none", "--out", tmp_path / "o")
    assert missing.returncode == 2
    assert missing.stderr.startswith("error: ") and missing.stderr.count("\n") == 1


def test_build_help_reproduces_the_paper_with_its_protocol():
    """The help's paper example named --scene paper only; reproducing the paper needs --protocol paper too."""
    done = run_cli("naturalize", "build", "--help", env={"COLUMNS": "300"})
    assert done.returncode == 0, done.stderr
    paper = [line for line in done.stdout.splitlines() if "2k-pbc-paper" in line]
    assert paper and all("--protocol paper" in line and "--scene paper" in line for line in paper), paper


def test_both_commands_let_idle_openmp_threads_sleep_unless_the_user_says_otherwise():
    """Under the torch backend on a shared CPU (load 9-12 on 2 cores), PyTorch's OpenMP threads spinning between
    parallel regions made `classify train` 5-20x slower (DenseNet-169 transfer at 64 px: 0.4 img/s, 8.0 with
    OMP_WAIT_POLICY=PASSIVE). Both entry points now set OMP_WAIT_POLICY=PASSIVE before any framework loads, and keep
    a value the user set."""
    import os

    for prog in ("classify", "naturalize"):
        code = (
            f"import os, sys\nfrom {prog}.cli import main\nsys.argv = [{prog!r}, '--version']\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print(os.environ.get('OMP_WAIT_POLICY'), sorted(m for m in sys.modules if m in ('torch', 'keras')))"
        )
        env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
        assert done.stdout.strip().splitlines()[-1] == "PASSIVE []", done.stderr
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env={**env, "OMP_WAIT_POLICY": "ACTIVE"}
        )
        assert done.stdout.strip().splitlines()[-1] == "ACTIVE []", done.stderr


def test_allocation_failures_of_each_library_are_told_apart_from_other_errors():
    """run_app turns an allocation failure into one line (exit 1): NumPy's MemoryError, PyTorch's CPU allocator's
    RuntimeError, TensorFlow's ResourceExhaustedError, also when Keras re-raised it as the cause of another error;
    any other exception keeps its traceback (a bug must stay visible)."""
    import numpy as np
    import pytest

    from naturalize.clihelp import oom_line, out_of_memory

    failures = []
    try:
        np.empty((2**40, 2**20), np.uint8)
    except MemoryError as e:
        failures.append(e)
    torch = pytest.importorskip("torch")
    try:
        torch.empty(2**50)
    except RuntimeError as e:
        failures.append(e)
    tf = pytest.importorskip("tensorflow")
    try:
        tf.zeros((2**20, 2**20, 2**8))
    except tf.errors.ResourceExhaustedError as e:
        failures.append(e)
    assert len(failures) == 3
    for e in failures:
        try:
            raise ValueError("Exception encountered when calling Conv2D.call()") from e
        except ValueError as wrapped:
            assert out_of_memory(wrapped) is e and out_of_memory(e) is e
        line = oom_line(e)
        assert line.startswith(f"out of memory ({type(e).__name__}: ") and "\n" not in line and len(line) < 400
    assert out_of_memory(ValueError("bad value")) is None and out_of_memory(KeyError("memory")) is None


NOISE = (
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "I0000 00:00:1796067341.107222   17631 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will "
    "not be used.",
)


def test_the_import_filter_drops_only_tensorflows_early_log_lines():
    """Whatever else reaches file descriptor 2 while the filter is on (C code's writes, Python's, a last line
    without its newline) comes out, in order; only TensorFlow's two early lines are dropped."""
    noise = "".join(f"{line}\n" for line in NOISE * 2).encode()
    code = (
        "import os, sys\nfrom naturalize.clihelp import TF_IMPORT_NOISE, filtered_stderr\n"
        "print('before', file=sys.stderr)\n"
        "with filtered_stderr(TF_IMPORT_NOISE):\n"
        f"    os.write(2, {noise!r} + b'E0000 a real error at import\\n' + {noise!r})\n"
        "    print('a Python warning', file=sys.stderr)\n"
        "    os.write(2, b'cudart_stub.cc:31] Could not find cuda drivers (not the whole line)\\nno newline')\n"
        "print('after', file=sys.stderr)\n"
    )
    done = _run(code)
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [
        "before",
        "E0000 a real error at import",
        "a Python warning",
        "cudart_stub.cc:31] Could not find cuda drivers (not the whole line)",
        "no newlineafter",
    ], done.stderr


def test_tensorflows_import_prints_none_of_its_early_log_lines_under_either_command():
    """TensorFlow 2.21 printed "WARNING: All log messages before absl::InitializeLog() is called are written to
    STDERR" and "I0000 ... cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used."
    twice each on every classify command, TF_CPP_MIN_LOG_LEVEL=3 notwithstanding (abseil logs them before it reads
    the level). quiet_tensorflow (both commands' entry points) filters them from stderr while TensorFlow loads."""
    pytest.importorskip("tensorflow")
    import os

    from naturalize.clihelp import TF_IMPORT_NOISE

    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    show = "import sys\nprint('before', file=sys.stderr)\nimport tensorflow\nprint('after', file=sys.stderr)\n"
    plain = subprocess.run([sys.executable, "-c", show], capture_output=True, text=True, env=env)
    if not any(TF_IMPORT_NOISE.fullmatch(line) for line in plain.stderr.splitlines()):
        pytest.skip("this TensorFlow build prints none of those lines")
    quiet = "from naturalize.clihelp import quiet_tensorflow\nquiet_tensorflow()\n" + show
    done = subprocess.run([sys.executable, "-c", quiet], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert lines[0] == "before" and lines[-1] == "after", done.stderr
    assert not any(TF_IMPORT_NOISE.fullmatch(line) for line in lines), done.stderr
