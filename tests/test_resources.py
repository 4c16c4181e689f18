"""A command that dies of its machine, not of its input: a write that finds no room (a full disk, a quota, a file
size limit), a worker process killed (the kernel's out-of-memory killer), an allocation failing inside a worker.
Each stops with one `error:` line and exit code 1, no traceback, its inputs untouched, no half-written visible file,
and the same command rerun finishes with the files of an uninterrupted run.

Real failures, no mocks: the command runs with RLIMIT_FSIZE set small and SIGXFSZ ignored (writes past it fail with
EFBIG, as a full disk fails with ENOSPC), a worker is sent SIGKILL, a worker's address space is capped (RLIMIT_AS)."""

from __future__ import annotations

import errno
import hashlib
import multiprocessing as mp
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path

import pytest

from naturalize.clihelp import no_space, no_space_line
from naturalize.procs import (
    DEBUG_ENV,
    OUT_OF_MEMORY_EXIT,
    WorkerDied,
    die_with_parent,
    died_how,
    started,
    waited,
    watched,
)
from naturalize.testing.boxbank import make_box_bank, pick_images

NATURALIZE = [sys.executable, "-m", "naturalize.cli"]
#: A hang (a Pool waiting forever for the results of a killed worker) fails the test instead of stalling the suite.
HANG = 300


@pytest.fixture(scope="module")
def bank(sample_release: Path, sample_boxes: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bank of 6 PMY and 2 platelet images of the sample."""
    images = pick_images(sample_release, sample_boxes, {"PMY": 6, "PLT": 2})
    return make_box_bank(sample_release, sample_boxes, images, tmp_path_factory.mktemp("bank"))


def digests(root: Path, hidden: bool = True) -> dict[str, str]:
    """Relative path -> SHA-256 of every file under `root` (without hidden ones and those in hidden folders unless
    `hidden`)."""
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and (hidden or not any(part.startswith(".") for part in p.relative_to(root).parts))
    }


def file_size_limit(limit: int) -> Callable[[], None]:
    """A preexec_fn: writes past `limit` bytes in one file fail with EFBIG (SIGXFSZ ignored), as on a full disk."""

    def limit_writes() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return limit_writes


def one_error_line(proc: subprocess.CompletedProcess | tuple[int, str]) -> str:
    """The single `error:` line of a command that died of its machine: exit code 1, no traceback."""
    code, err = (proc.returncode, proc.stderr) if isinstance(proc, subprocess.CompletedProcess) else proc
    assert code == 1, err
    assert "Traceback" not in err and "╭" not in err, err
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and err.strip().endswith(errors[0]), err
    return errors[0]


def children(pid: int) -> list[int]:
    """The process ids of `pid`'s children (Linux /proc)."""
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def run_on_workers(
    cmd: list[str], act: Callable[[list[int]], None], ready: Callable[[], bool], env: dict[str, str] | None = None
) -> tuple[int, str]:
    """Start `cmd` (in `env`); once it has its worker processes and ready() holds, act(worker ids); its (exit code,
    stderr)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    try:
        workers: list[int] = []
        while proc.poll() is None and not (len(workers := children(proc.pid)) >= 2 and ready()):
            time.sleep(0.02)
        assert proc.poll() is None, "the command ended before its workers could be reached"
        act(workers)
        _, err = proc.communicate(timeout=HANG)
        return proc.returncode, err
    finally:
        if proc.poll() is None:
            for pid in children(proc.pid):
                os.kill(pid, signal.SIGKILL)
            proc.kill()
            proc.communicate()


@pytest.mark.parametrize("workers", ["1", "2"])
def test_compose_out_of_room_is_one_line_and_the_rerun_resumes(bank: Path, tmp_path: Path, workers: str) -> None:
    """A full disk mid-compose used to end in a rich traceback of OSError [Errno 27] naming no file; now one line
    names the file and the fix, the images written are whole, the bank is untouched, and the rerun gives the files
    of an uninterrupted run."""
    cmd = [*NATURALIZE, "compose", "--class", "PMY", "--n", "100", "--bank", str(bank), "--seed", "3"]
    cmd += ["--workers", workers, "--no-progress"]
    clean, out = tmp_path / "clean", tmp_path / "out"
    subprocess.run([*cmd, "--out", str(clean)], check=True, capture_output=True)
    before = digests(bank)
    # a journal line is ~6 KB, an image ~20 KB: the journal outgrows 100 KB mid-run
    failed = subprocess.run(
        [*cmd, "--out", str(out)], capture_output=True, text=True, preexec_fn=file_size_limit(100_000)
    )
    line = one_error_line(failed)
    assert line.startswith(f"error: could not write {out}") and "free space" in line and "rerun" in line, line
    left, finished = digests(out, hidden=False), digests(clean, hidden=False)
    assert 0 < len(left) < len(finished), "the run did not stop mid-way"
    assert all(finished[k] == v for k, v in left.items() if k.startswith("PMY/")), "an image was left half-written"
    assert digests(bank) == before
    subprocess.run([*cmd, "--out", str(out)], check=True, capture_output=True)
    assert digests(out, hidden=False) == finished and not list(out.rglob("*.tmp"))


def test_segment_and_prepare_out_of_room_resume_to_the_same_files(sample_root: Path, tmp_path: Path) -> None:
    """`segment --workers 2` (the bank's index.csv outgrows the limit) and `prepare` (records.csv does): one line
    naming the file, exit code 1, and the rerun gives the files of an uninterrupted run."""
    for name, args, limit in [
        ("bank", ["segment", str(sample_root), "--backend", "classical", "--limit", "12", "--workers", "2"], 60_000),
        ("prepared", ["prepare", str(sample_root)], 20_000),
    ]:
        cmd = [*NATURALIZE, *args, "--no-progress"]
        clean, out = tmp_path / f"clean-{name}", tmp_path / name
        subprocess.run([*cmd, "--out", str(clean)], check=True, capture_output=True)
        failed = subprocess.run(
            [*cmd, "--out", str(out)], capture_output=True, text=True, preexec_fn=file_size_limit(limit)
        )
        assert one_error_line(failed).startswith(f"error: could not write {out}"), failed.stderr
        subprocess.run([*cmd, "--out", str(out)], check=True, capture_output=True)
        assert digests(out) == digests(clean)


def test_a_full_disk_a_quota_and_a_size_limit_read_the_same() -> None:
    """ENOSPC, EDQUOT and EFBIG give one line naming the file, the same but for the system's words; another OSError
    (a bug, or the user's to see in full) is not taken for one."""
    lines = {
        code: no_space_line(no_space(OSError(code, os.strerror(code), "/data/out/x.png")))  # type: ignore[arg-type]
        for code in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
    }
    assert {line.replace(os.strerror(code), "") for code, line in lines.items()} == {
        lines[errno.ENOSPC].replace(os.strerror(errno.ENOSPC), "")
    }
    assert all(line.startswith("could not write /data/out/x.png: ") for line in lines.values())
    assert no_space(OSError(errno.EACCES, "Permission denied", "/data/out/x.png")) is None


def _end_this_process(item: int) -> int:
    """In a worker: die as the out-of-memory killer makes a process die (SIGKILL), at item 3."""
    if item == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    return item


def test_a_pool_whose_worker_dies_says_so_instead_of_waiting_forever() -> None:
    """A worker of a multiprocessing Pool killed while it holds a task: pool.imap and apply_async(...).get() wait
    for its result forever; watched and waited raise WorkerDied naming it."""
    pool, workers = started(lambda: mp.get_context("fork").Pool(2))
    with pool, pytest.raises(WorkerDied, match=r"worker process \d+ was killed \(SIGKILL"):
        list(watched(pool, workers, _end_this_process, list(range(8)), 2))
    pool, workers = started(lambda: mp.get_context("fork").Pool(2))
    with pool:
        assert list(watched(pool, workers, _end_this_process, [0, 1, 2], 2)) == [0, 1, 2]
        with pytest.raises(WorkerDied, match="SIGKILL"):
            waited(pool.apply_async(_end_this_process, (3,)), workers)


@pytest.mark.slow
@pytest.mark.parametrize("command", ["compose", "segment"])
def test_a_killed_worker_stops_the_command_with_one_line(
    bank: Path, sample_root: Path, tmp_path: Path, command: str
) -> None:
    """kill -9 of one worker (what the kernel's out-of-memory killer does) mid-run: the multiprocessing Pool replaced
    it and waited forever for the images it held (compose of 3,000 images: 2,983 written, then a hang). Now one
    line, exit code 1, and the rerun resumes to the files of an uninterrupted run."""
    if command == "compose":
        cmd = [*NATURALIZE, "compose", "--class", "PMY", "--n", "2000", "--bank", str(bank), "--workers", "2"]
    else:
        cmd = [*NATURALIZE, "segment", str(sample_root), "--backend", "classical", "--limit", "40", "--workers", "2"]
    cmd += ["--no-progress"]
    clean, out = tmp_path / "clean", tmp_path / "out"
    subprocess.run([*cmd, "--out", str(clean)], check=True, capture_output=True)
    made = out / "PMY" if command == "compose" else out / "sprites"

    def started() -> bool:
        return made.is_dir() and any(made.rglob("*.*g"))

    line = one_error_line(run_on_workers([*cmd, "--out", str(out)], lambda w: os.kill(w[0], signal.SIGKILL), started))
    assert "worker process" in line and "SIGKILL" in line and "rerun" in line, line
    subprocess.run([*cmd, "--out", str(out)], check=True, capture_output=True)
    assert digests(out, hidden=False) == digests(clean, hidden=False)


@pytest.mark.slow
def test_out_of_memory_in_a_worker_is_one_line(bank: Path, tmp_path: Path) -> None:
    """An allocation failing in a compose worker (its address space capped at its size): where the failure took the
    worker down (no memory left even to send its error back), the Pool replaced it and waited forever for its
    result (3,000 images written, then a hang), then ended with the worker line below the worker's own MemoryError
    traceback, saying "exit code 1". Now that is the one line "worker process PID ran out of memory"; where the
    MemoryError reaches the parent, run_app's out-of-memory line. Exit code 1, no traceback either way."""
    cmd = [*NATURALIZE, "compose", "--class", "PMY", "--n", "3000", "--bank", str(bank), "--workers", "2"]

    def cap(workers: list[int]) -> None:
        for pid in workers:
            status = Path(f"/proc/{pid}/status").read_text()
            size = int(next(ln for ln in status.splitlines() if ln.startswith("VmSize")).split()[1]) * 1024
            resource.prlimit(pid, resource.RLIMIT_AS, (size, resource.RLIM_INFINITY))

    out = tmp_path / "out"
    code, err = run_on_workers(
        [*cmd, "--out", str(out), "--no-progress"], cap, lambda: any(out.rglob("*.jpg")), env=_quiet_env()
    )
    line = one_error_line((code, err))
    assert line.startswith("error: out of memory (MemoryError") or "ran out of memory (a MemoryError" in line, err


#: A tiny command whose pool workers die as HOW says (naturalize.testing.crash): kill, memory, import.
CRASH = [sys.executable, "-m", "naturalize.testing.crash"]


def _quiet_env() -> dict[str, str]:
    """This environment without $NATURALIZE_DEBUG (which lets dying workers print their tracebacks)."""
    return {k: v for k, v in os.environ.items() if k != DEBUG_ENV}


@pytest.mark.parametrize(
    "how, says, memory",
    [
        ("kill", "was killed (SIGKILL", True),  # the kernel's out-of-memory killer
        ("memory", "ran out of memory (a MemoryError", True),  # RLIMIT_AS: no memory left to send the error back
        ("import", "crashed with exit code 1", False),  # an import error in the worker's initializer, at start-up
    ],
)
def test_a_worker_that_dies_is_told_in_one_line_with_its_own_fix(how: str, says: str, memory: bool) -> None:
    """A pool worker dying of memory printed multiprocessing's own traceback ('Process ForkPoolWorker-1: Traceback
    ... MemoryError') above the command's line; one failing at start-up printed one per worker the Pool started
    in its place (dozens), and was told to lower --workers or free memory. Now: one line, no traceback, exit 1, and
    a fix that fits: memory for SIGKILL or a MemoryError, --workers 1 (to see the error) for a crash."""
    proc = subprocess.run([*CRASH, how], capture_output=True, text=True, timeout=HANG, env=_quiet_env())
    line = one_error_line(proc)
    assert says in line, line
    assert ("free memory" in line) is memory and ("--workers 1" in line) is not memory, line


def test_a_dying_worker_prints_its_traceback_when_debugging() -> None:
    """$NATURALIZE_DEBUG=1 keeps a crashed worker's traceback for a developer, above the same one line."""
    proc = subprocess.run(
        [*CRASH, "import"], capture_output=True, text=True, timeout=HANG, env={**_quiet_env(), DEBUG_ENV: "1"}
    )
    assert proc.returncode == 1 and "Traceback" in proc.stderr and "naturalize_no_such_module" in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: worker process"), proc.stderr


def test_how_a_worker_died_decides_the_fix() -> None:
    """A fault signal is a crash (see it with --workers 1), SIGTERM came from outside (rerun), SIGKILL and the
    out-of-memory exit code are memory."""
    assert "--workers 1" in died_how(-signal.SIGSEGV) and "SIGSEGV" in died_how(-signal.SIGSEGV)
    assert "SIGTERM" in died_how(-signal.SIGTERM) and "rerun" in died_how(-signal.SIGTERM)
    assert "free memory" not in died_how(-signal.SIGTERM) + died_how(-signal.SIGSEGV) + died_how(2)
    assert all("free memory" in died_how(c) for c in (-signal.SIGKILL, OUT_OF_MEMORY_EXIT))


def _echo_once(conn: Connection) -> None:
    """In a worker: die_with_parent, say so, then send back the one message it gets."""
    die_with_parent()
    conn.send("ready")
    conn.send(conn.recv())


def test_a_worker_outlives_the_thread_that_started_it() -> None:
    """Linux sends a process's parent-death signal when the *thread* that started it ends: a Pool starts the workers
    that replace dead ones from a thread of its own, which ends when the pool is terminated, and die_with_parent
    killed them then, one even while it held the pool's task-queue lock: Pool.terminate waited for it forever (1 run
    in 15 of a pool with a killed worker hung). A worker now ends only when its parent process does."""
    ctx = mp.get_context("fork")
    here, there = ctx.Pipe()
    started: dict = {}

    def start() -> None:
        started["proc"] = ctx.Process(target=_echo_once, args=(there,))
        started["proc"].start()
        started["thread"] = threading.get_native_id()
        assert here.recv() == "ready"  # its parent-death signal is armed while this thread runs

    thread = threading.Thread(target=start)
    thread.start()
    thread.join()
    there.close()
    while Path(f"/proc/self/task/{started['thread']}").exists():  # the thread is gone: Linux has signalled
        time.sleep(0.01)
    here.send("still here")
    assert here.recv() == "still here"
    started["proc"].join()
    assert started["proc"].exitcode == 0


@pytest.mark.parametrize(
    "limit, file",
    [
        (50_000, "cache"),  # the decoded-image cache (92 KB): np.save said "92160 requested and 36736 written"
        (1_000_000, "run/model.keras"),  # the best model (2 MB), Keras's own write at the end of epoch 1
    ],
)
def test_classify_train_out_of_room_is_one_line_naming_the_file(
    sample_release: Path, tmp_path: Path, limit: int, file: str
) -> None:
    """`classify train` of custom_cnn at 32 px on a tree of class folders of real images, with writes past `limit`
    bytes failing (as on a full disk): the image cache ended in a traceback of numpy's errno-less short write
    ("OSError: 92160 requested and 36736 written"); now it is one line naming the file, as Keras's save of the
    model is."""
    tree = tmp_path / "cells"
    for folder, prefix in (("basophil", "BA"), ("eosinophil", "EO"), ("lymphocyte", "LY")):
        (tree / prefix).mkdir(parents=True)
        for src in sorted((sample_release / folder).glob(f"{prefix}_*.jpg"))[:12]:
            (tree / prefix / src.name).write_bytes(src.read_bytes())
    cmd = [sys.executable, "-m", "classify.cli", "train", "--dataset", str(tree), "--model", "custom_cnn"]
    cmd += ["--image-size", "32", "--epochs", "1", "--batch-size", "8", "--out", str(tmp_path / "run")]
    env = {**os.environ, "CLASSIFY_CACHE": str(tmp_path / "cache"), "TF_CPP_MIN_LOG_LEVEL": "3"}
    failed = subprocess.run(
        cmd, capture_output=True, text=True, env=env, preexec_fn=file_size_limit(limit), timeout=HANG
    )
    line = one_error_line(failed)
    assert line.startswith(f"error: could not write {tmp_path / file}") and "a full disk" in line, line


def test_a_full_disk_under_tensorflows_own_writes_is_no_space_not_out_of_memory() -> None:
    """TensorFlow's file writes (tf.io, gfile: Keras's save to a remote path) report a full disk as
    ResourceExhaustedError, "PATH; No space left on device", which the command told as "out of memory": lower
    --batch-size. It is now the no-room line naming PATH (/dev/full: every write finds the disk full)."""
    tf = pytest.importorskip("tensorflow")
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full here")
    from naturalize.clihelp import out_of_memory

    lines = []
    for write in (
        lambda: tf.io.write_file("/dev/full", tf.constant(b"x" * 100)),
        lambda: tf.io.gfile.GFile("/dev/full", "wb").write(b"x" * 100_000),
    ):
        with pytest.raises(tf.errors.ResourceExhaustedError) as err:
            write()
        assert out_of_memory(err.value) is None
        lines.append(no_space_line(no_space(err.value)))  # type: ignore[arg-type]
    assert lines == [no_space_line(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/dev/full"))] * 2
    oom = tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor with shape[64,256,56,56]")
    assert no_space(oom) is None and out_of_memory(oom) is oom  # running out of memory stays that
