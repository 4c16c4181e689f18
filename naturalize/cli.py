"""The `naturalize` command line: thin wrappers that parse options and call the library.

Heavy imports (torch, segment-anything, tensorflow) happen inside the commands that need them,
so `naturalize --help` stays fast.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from naturalize.fsio import UserError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Naturalize: PBC records, SAM sprite banks, realistic synthetic blood-smear images and datasets.",
)


@app.callback()
def _root() -> None:
    """Naturalize: PBC records, sprite banks, realistic synthetic blood-smear images and datasets."""


def _parse_split(text: str) -> tuple[float, float, float]:
    try:
        parts = tuple(float(p) for p in text.split(","))
    except ValueError:
        parts = ()
    if len(parts) != 3 or min(parts) < 0 or abs(sum(parts) - 1) > 1e-6 or parts[0] <= 0:
        raise UserError(f"--split {text!r} is not three fractions train,val,test summing to 1 (e.g. 0.8,0.1,0.1)")
    return parts  # type: ignore[return-value]


@app.command()
def prepare(
    pbc_root: Path = typer.Argument(..., help="A PBC download: the release's 8 folders, an 11-class tree, or a train/val/test tree."),
    out: Path = typer.Option(..., "--out", help="Directory for records.csv, dropped.csv and summary.json."),
    seed: int = typer.Option(0, help="Seed of the stratified split."),
    split: str = typer.Option("0.8,0.1,0.1", help="Train,val,test fractions (ignored for a train/val/test tree)."),
    materialize: bool = typer.Option(False, help="Also lay out OUT/<split>/<CLASS>/ (hard links, else copies)."),
    workers: int = typer.Option(2, help="Processes that read and hash images."),
    overwrite: bool = typer.Option(False, help="Replace an existing prepared directory."),
) -> None:
    """Index a PBC tree into labelled, de-duplicated, split records (records.csv, summary.json)."""
    from naturalize import prepare as prep

    summary = prep.prepare(pbc_root, out, seed=seed, fractions=_parse_split(split), materialize=materialize,
                           workers=workers, overwrite=overwrite)
    typer.echo(prep.format_table(summary))
    typer.echo(f"wrote {out / 'records.csv'} and {out / 'summary.json'}")


def main() -> None:
    """Entry point: run the app, turning a UserError into one line on stderr and exit code 2."""
    try:
        app(standalone_mode=False)
    except UserError as e:
        typer.echo(f"error: {e}", err=True)
        sys.exit(2)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(130)
    except Exception as e:  # click usage errors carry their own exit code
        import click

        if isinstance(e, click.exceptions.ClickException):
            e.show()
            sys.exit(e.exit_code)
        raise


if __name__ == "__main__":
    main()
