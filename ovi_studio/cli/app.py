"""The Typer application and the guard that turns user errors into messages and exit codes."""
from __future__ import annotations

import enum
import functools
import sys
import typing
import warnings

import typer
from rich.console import Console
from rich.markup import escape

from ovi_studio import __version__, crash
from ovi_studio.errors import UserError

PROG = "ovi-studio"
# Placeholders in help by parameter name; others read NAME (the parameter's name), flags none.
PLACEHOLDERS = {"set_": "KEY=VALUE", "only": "SHOT", "shots": "SHOT", "force": "", "files": "FILE",
                "ckpt_dir": "DIR", "out": "DIR", "out_dir": "DIR", "output": "FILE", "folder": "DIR",
                "cache_dir": "DIR"}


def _placeholder(param) -> str | None:
    """A help placeholder a person reads: `--ckpt-dir DIR`, `--set KEY=VALUE`, `STORYBOARD`
    (typer's default shows Python types: `<path>`, `<list[str]>`, `<bool>`)."""
    annotation = getattr(getattr(param, "type_descriptor", None), "annotation", None)
    if typing.get_origin(annotation) is list:
        (annotation,) = typing.get_args(annotation)
    if getattr(param, "is_flag", False) or annotation is bool:
        return ""
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return None  # typer lists the choices
    if PLACEHOLDERS.get(param.name):
        return PLACEHOLDERS[param.name]
    if annotation is int:
        return "N"
    if annotation is float:
        return "NUMBER"
    return (param.name or "value").strip("_").upper()


class _Group(typer.core.TyperGroup):
    """The root command: `ovi-studio` in usage lines however it was started (python -m, the
    console script, the test runner), readable placeholders on every command."""

    def main(self, *args, **kwargs):
        for command in [self, *self.commands.values()]:  # the completion options come late
            for param in command.params:
                if param.metavar is None:
                    param.metavar = _placeholder(param)
                if isinstance(param, typer.core.TyperArgument):  # its name is the placeholder
                    param.display_type_rich = lambda ctx: None
        kwargs["prog_name"] = kwargs.get("prog_name") or PROG
        return super().main(*args, **kwargs)


app = typer.Typer(
    name=PROG,
    cls=_Group,
    help="Declarative storyboards and batch production for Ovi (audio+video).",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def out_console() -> Console:
    """stdout for a command, made when it runs (COLUMNS and redirection are read then): lines
    are never wrapped when stdout is not a terminal, so printed commands stay whole in logs."""
    return Console(highlight=False, soft_wrap=not sys.stdout.isatty())


def print_error(exc: UserError) -> None:
    """`error: file:line:col: message`; names and values in it are printed as written (a file
    called `[red]x.yaml` is not markup)."""
    err.print(f"[bold red]error:[/] {escape(str(exc))}", markup=True, highlight=False)


def guarded(fn):
    """Run a command so that a UserError prints `file:line:col: message` and exits 2, and any
    other exception prints one line (storyboard, shot, the log holding the traceback) and exits 1."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as exc:
            print_error(exc)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            err.print("interrupted")
            raise typer.Exit(130) from None
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except Exception as exc:  # a bug: one line and a log, never a traceback
            storyboard = kwargs.get("storyboard") or kwargs.get("csv_file")
            command = fn.__name__.removesuffix("_command")
            log = crash.write_crash_log(exc, command, str(storyboard) if storyboard else None)
            err.print(crash.crash_line(exc, command, str(storyboard) if storyboard else None, log),
                      markup=False, highlight=False)
            raise typer.Exit(crash.EXIT_CODE) from None
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
    warnings.formatwarning = _warning_line


def _warning_line(message, category, filename, lineno, line=None) -> str:
    """A library warning (a damaged cache set aside, ...) as one line, not Python's two."""
    return f"warning: {message}\n"
