"""The ``spectrack`` app: the root command (``--version``), its commands in the order ``--help`` lists
them, and the entry point that turns domain errors into one line and an exit code.
"""

from __future__ import annotations

import sys

import typer

from ..errors import EXIT_CODES
from .file_commands import export, info, report, resolution
from .output import _say
from .phantom_commands import demo, phantom
from .study_commands import batch, quantify

_EXIT_HELP = "Exit codes: " + "; ".join(f"{k} {v}" for k, v in EXIT_CODES.items()) + "; 130 cancelled."

app = typer.Typer(
    name="spectrack",
    help="Percent injected dose per region over time from SPECT/CT (and PET) series.\n\n" + _EXIT_HELP,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


# ---------------------------------------------------------------- the root command and its commands

def _print_version(value: bool):
    if value:
        from .._version import __version__

        typer.echo(f"spectrack {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(version: bool = typer.Option(False, "--version", help="Print the version and exit.",
                                       callback=_print_version, is_eager=True)):
    """Percent injected dose per region over time from SPECT/CT (and PET) series."""


# the commands, in the order ``spectrack --help`` lists them
for _command in (info, quantify, demo, phantom, resolution, batch, export, report):
    app.command()(_command)


# ---------------------------------------------------------------- entry point

def main(args=None) -> int:
    """Entry point: run the CLI, turning domain errors into one line and an exit code."""
    from ..errors import SpectrackError

    cmd = typer.main.get_command(app)
    try:
        rv = cmd.main(args=args, prog_name="spectrack", standalone_mode=False)
        return int(rv) if isinstance(rv, int) else 0
    except SpectrackError as e:
        _say(("spectrack: error:", "red"), f" {e}", err=True)
        return e.exit_code
    except typer.Exit as e:
        return int(getattr(e, "exit_code", 0) or 0)
    except (typer.Abort, KeyboardInterrupt):
        _say("spectrack: interrupted", err=True)
        return 130
    except Exception as e:
        # click (vendored or not) usage errors: print usage and the message, exit 2
        if hasattr(e, "show") and hasattr(e, "exit_code"):
            e.show()
            return int(e.exit_code)
        raise


def _entry():  # console script and python -m spectrack
    sys.exit(main())
