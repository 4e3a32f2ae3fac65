"""The Typer application and the guard that turns user errors into messages and exit codes."""
from __future__ import annotations

import functools
import sys

import typer
from rich.markup import escape
from rich.console import Console

from ovi_studio import __version__
from ovi_studio.errors import UserError

app = typer.Typer(
    name="ovi-studio",
    help="Declarative storyboards and batch production for Ovi (audio+video).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def guarded(fn):
    """Run a command so that a UserError prints `file:line:col: message` and exits 2."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as exc:
            err.print(f"[bold red]error:[/] {escape(str(exc))}", markup=True, highlight=False)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            err.print("interrupted")
            raise typer.Exit(130) from None
    return wrapper


def _version(value: bool) -> None:
    if value:
        typer.echo(f"ovi-studio {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """ovi-studio: write a storyboard, `check` it, `plan` it, `render` it."""
    if sys.version_info < (3, 10):  # pragma: no cover - pyproject already forbids it
        raise typer.Exit(2)
