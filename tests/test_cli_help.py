"""What a user reads: every command's --help describes every option, shows defaults and ends with examples;
one --version for both commands; `build` resolves the segmentation backend once."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer

import naturalize
from classify.cli import app as classify_app
from naturalize.cli import app as naturalize_app
from naturalize.compose.params import ComposeParams
from naturalize.testing.cli import run_cli

APPS = {"naturalize": naturalize_app, "classify": classify_app}


def _commands() -> list[tuple[str, str, object]]:
    out = []
    for prog, app in APPS.items():
        group = typer.main.get_command(app)
        assert hasattr(group, "commands")
        out += [(prog, name, cmd) for name, cmd in group.commands.items()]
    return out


def _help(prog: str, *args: str) -> str:
    done = run_cli(prog, *args, "--help")
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize(("prog", "name", "cmd"), _commands(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_option_and_argument_is_described(prog, name, cmd):
    undescribed = [p.name for p in cmd.params if not (getattr(p, "help", None) or "").strip()]
    assert undescribed == [], f"{prog} {name}: {undescribed}"


def test_every_help_ends_with_real_examples_shows_defaults_and_no_bool_column():
    for prog, name, cmd in _commands():
        text = _help(prog, name)
        assert "<bool>" not in text, f"{prog} {name}"
        tail = text.rstrip().split("Examples:")
        assert len(tail) == 2, f"{prog} {name} has no Examples: block"
        lines = [line.strip() for line in tail[1].strip().splitlines()]
        assert lines and all(line.startswith(f"{prog} {name}") for line in lines), (prog, name, lines)
        valued = [p for p in cmd.params if p.param_type_name == "option" and not p.required and not p.is_flag]
        assert text.count("[default:") >= len(valued), f"{prog} {name}"
    assert "$NATURALIZE_DATA/RECIPE" in _help("naturalize", "build")  # was swallowed as markup before


@pytest.mark.parametrize("prog", ["naturalize", "classify"])
def test_version_is_the_package_version(prog):
    done = run_cli(prog, "--version")
    assert done.returncode == 0 and done.stdout == f"{prog} {naturalize.__version__}\n"


def test_default_weights_are_imagenet_only_where_keras_has_them():
    from classify.models import MODELS, default_weights

    assert default_weights("efficientnetv2b0") == "imagenet" and default_weights("densenet169") == "imagenet"
    assert default_weights("custom_cnn") == "none" and default_weights("vit_b16") == "none"
    assert {default_weights(m) for m in MODELS} == {"imagenet", "none"}


def test_build_names_the_backend_once_says_device_is_ignored_and_numbers_its_stages(tmp_path):
    from naturalize.build import build
    from naturalize.drawn import write_drawn_release

    drawn_pbc = write_drawn_release(tmp_path / "pbc", 4, seed=0, progress=False)

    lines: list[str] = []
    paper = ComposeParams(rbc=6, platelets=(1, 1), scene="paper")
    small = dict(classes=("PMY",), per_class=2, per_class_cap=3, workers=1, progress=False, compose=paper)
    build("custom", drawn_pbc, tmp_path / "ds", device="cuda", echo=lines.append, **small)
    assert sum(line.startswith("backend ") for line in lines) == 1
    assert any("--device cuda ignored" in line for line in lines)
    assert [line.split(":")[0] for line in lines if line.startswith("[")] == [
        "[1/4] prepare",
        "[2/4] segment",
        "[3/4] compose",
        "[4/4] dataset tree",
    ]
    meta = __import__("json").loads((tmp_path / "ds" / "dataset.json").read_text())
    assert meta["parameters"]["compose"] == {"rbc": 6, "platelets": [1, 1], "scene": "paper"}
    # the same build again is recognised as the same dataset (tuples vs JSON lists compare equal)
    build("custom", drawn_pbc, tmp_path / "ds", echo=lines.append, **small)


def test_build_that_composes_nothing_still_numbers_every_stage(tmp_path):
    """1k-class-pbc with a balance target below every class's count adds no image: the compose stage says so,
    and the last header is [4/4], not [3/4] (a user reading "[3/4] dataset tree" waits for a fourth stage)."""
    from naturalize.build import build
    from naturalize.drawn import write_drawn_release

    drawn_pbc = write_drawn_release(tmp_path / "pbc", 4, seed=0, progress=False)
    lines: list[str] = []
    build(
        "1k-class-pbc",
        drawn_pbc,
        tmp_path / "ds",
        per_class=1,
        per_class_cap=3,
        workers=1,
        progress=False,
        echo=lines.append,
    )
    headers = [line for line in lines if line.startswith("[")]
    assert [h.split(":")[0] for h in headers] == [
        "[1/4] prepare",
        "[2/4] segment",
        "[3/4] compose",
        "[4/4] dataset tree",
    ]
    assert "nothing to compose" in headers[2]
    assert not (tmp_path / "ds" / "synthetic").exists() or not any((tmp_path / "ds" / "synthetic").rglob("*.jpg"))


def test_segment_says_device_is_ignored_by_the_classical_backend(tmp_path):
    from naturalize.drawn import write_drawn_release
    from naturalize.segment.run import segment

    pbc = write_drawn_release(tmp_path / "pbc", 1, seed=0, classes=("LY",), progress=False)
    lines: list[str] = []
    segment(
        pbc,
        tmp_path / "bank",
        backend="classical",
        device="cuda",
        workers=1,
        limit=1,
        progress=False,
        echo=lines.append,
    )
    assert "note: --device cuda ignored: the classical backend runs on the CPU" in lines
    lines.clear()
    segment(pbc, tmp_path / "bank2", backend="classical", workers=1, limit=1, progress=False, echo=lines.append)
    assert not any("ignored" in line for line in lines)


ROOT = Path(__file__).resolve().parents[1]
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FLAG = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*[a-z0-9])")
# flags of other programs the docs show (pip, pytest, SLURM's sbatch) and the ones every command has
NOT_OURS = {
    "--help",
    "--version",
    "--parsable",
    "--dependency",
    "--wrap",
    "--job-name",
    "--array",
    "--cpus-per-task",
    "--time",
}


def _doc_spans(text: str) -> list[str]:
    """Markdown text -> its code: each line of a fenced block (backslash continuations joined) and each
    inline `code` span outside the blocks."""
    blocks = re.findall(r"```\w*\n(.*?)```", text, re.S)
    lines = [line for block in blocks for line in block.replace("\\\n", " ").splitlines()]
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    return lines + re.findall(r"`([^`\n]+)`", prose)


def _options() -> dict[tuple[str, str], set[str]]:
    """(program, command) -> every option string the command accepts (`--x` and its `--no-x`)."""
    return {
        (prog, name): {o for p in cmd.params for o in (*p.opts, *getattr(p, "secondary_opts", []))}
        for prog, name, cmd in _commands()
    }


def _script_options() -> dict[str, set[str]]:
    """Script name (`realism.py`) -> the options it declares (argparse `add_argument("--x"`), for every script
    in benchmarks/ and examples/, read from its source and from the sources of the sibling scripts it imports."""
    sources = {
        f.name: f.read_text(encoding="utf-8") for d in ("benchmarks", "examples") for f in (ROOT / d).glob("*.py")
    }

    def declared(name: str, seen: set[str]) -> set[str]:
        seen.add(name)
        own = set(re.findall(r"add_argument\(\s*\"(--[\w-]+)\"", sources[name]))
        imported = {f"{m}.py" for m in re.findall(r"^\s*(?:from|import) (\w+)", sources[name], re.M)}
        return own.union(*(declared(i, seen) for i in imported & sources.keys() - seen))

    return {name: declared(name, set()) for name in sources}


def _wrong_flags(span: str, options: dict[tuple[str, str], set[str]], scripts: dict[str, set[str]]) -> list[str]:
    """One line of code from the docs -> the flags it gives a command or script that does not take them."""
    wrong = []
    for prog, name, rest in re.findall(
        r"\b(naturalize|classify) ([a-z][a-z-]*)((?:(?!\b(?:naturalize|classify) ).)*)", span
    ):
        if (prog, name) in options:
            wrong += [f"{prog} {name} {f}" for f in FLAG.findall(rest) if f not in options[prog, name] | NOT_OURS]
    for script, rest in re.findall(r"([\w-]+\.py)\b([^|;]*)", span):
        if script in scripts:
            wrong += [f"{script} {f}" for f in FLAG.findall(rest) if f not in scripts[script] | NOT_OURS]
    return wrong


def test_every_flag_the_docs_show_exists_on_its_command():
    """A flag the manual gives a `naturalize X` / `classify X` command line or a benchmarks/ or examples/ script
    is one it accepts, and every other `--flag` the manual names belongs to some command or script (docs rot:
    a renamed or removed flag)."""
    options, scripts = _options(), _script_options()
    anywhere = set().union(*options.values(), *scripts.values(), NOT_OURS)
    wrong, unknown = [], []
    for doc in DOC_FILES:
        text = doc.read_text(encoding="utf-8")
        wrong += [f"{doc.name}: {w}" for span in _doc_spans(text) for w in _wrong_flags(span, options, scripts)]
        unknown += [f"{doc.name}: {f}" for f in sorted(set(FLAG.findall(text)) - anywhere)]
    assert wrong == [], wrong
    assert unknown == [], unknown


def test_segment_build_and_fetch_sam_list_the_sam_model_types_alike() -> None:
    """build's --help listed 'vit_b, vit_l, vit_h' (and its --device 'auto, cpu or cuda') where segment and
    fetch-sam read 'vit_b | vit_l | vit_h': all three now list the registry's types the same way."""
    from naturalize.fetch import CHECKPOINTS

    listed = " | ".join(CHECKPOINTS)
    texts = {name: " ".join(_help("naturalize", name).split()) for name in ("segment", "build", "fetch-sam")}
    for name in ("segment", "build"):
        assert f"SAM model type of the checkpoint: {listed}." in texts[name], name
        assert "SAM device: auto | cpu | cuda" in texts[name], name
    sized = re.sub(r" \([^)]*\)", "", texts["fetch-sam"].split("model_type <str>")[1].split("[required]")[0])
    assert sized.strip() == f"{listed}.", sized
