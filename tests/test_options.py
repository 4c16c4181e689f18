"""One source of defaults: the command line's compose options default to ComposeParams's fields."""

from __future__ import annotations

from naturalize.compose.params import ComposeParams, parse_range, parse_size


def test_compose_command_defaults_are_the_params_defaults() -> None:
    import typer

    from naturalize.cli import app

    command = typer.main.get_command(app).commands["compose"]  # type: ignore[attr-defined]
    default = {p.name: p.default for p in command.params}
    got = ComposeParams(
        rbc=default["rbc"],
        wbc=default["wbc"],
        platelets=parse_range(default["platelets"]),
        size=parse_size(default["size"]),
        fmt=default["fmt"],
        quality=default["quality"],
    )
    assert got == ComposeParams()


def test_cli_reads_compose_defaults_without_loading_opencv() -> None:
    import subprocess
    import sys

    code = "import sys, naturalize.cli; print('cv2' in sys.modules, 'naturalize.compose.run' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]
