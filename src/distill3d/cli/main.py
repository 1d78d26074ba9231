"""Entry point of the ``distill3d`` command: a click group whose subcommands load lazily."""

from __future__ import annotations

import os
import sys

import click

from distill3d import __version__
from distill3d.cli.lazy import LazyGroup
from distill3d.core.errors import UserError

# name -> "module:attribute"; each module defines its command without importing torch at top level.
_COMMANDS: dict[str, str] = {
    "toy": "distill3d.cli.toy:toy",
    "render": "distill3d.cli.scene:render",
    "export": "distill3d.cli.scene:export",
    "generate": "distill3d.cli.generate:generate",
    "edit": "distill3d.cli.edit:edit",
    "methods": "distill3d.cli.generate:methods",
    "presets": "distill3d.cli.presets:presets",
    "bench": "distill3d.cli.bench:bench",
    "view": "distill3d.cli.view:view",
}


@click.group(cls=LazyGroup, lazy_commands=_COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="distill3d")
def cli() -> None:
    """distill3d: text-to-3D by score distillation from 2D diffusion priors, on any machine."""


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; a ``UserError`` becomes one line on stderr and its exit code, never a traceback."""
    # Idle OpenMP threads spin by default; on a small shared CPU that made renders 60x slower. Must be set
    # before torch loads (commands import it lazily, after this line).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        cli.main(args=argv, prog_name="distill3d", standalone_mode=False)
    except UserError as err:
        click.echo(f"error: {err}", err=True)
        return err.exit_code
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except click.ClickException as err:
        err.show()
        return err.exit_code
    except KeyboardInterrupt:
        click.echo("interrupted; finished results were written atomically and a run can --resume", err=True)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
