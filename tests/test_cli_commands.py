"""Every command the CLI advertises must load, and --help must not import torch (it stays fast)."""

import subprocess
import sys

import click

from distill3d.cli.main import cli


def _walk(group: click.Group, ctx: click.Context, prefix: str = ""):
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        assert cmd is not None, f"{prefix}{name} is listed but does not load"
        yield f"{prefix}{name}", cmd
        if isinstance(cmd, click.Group):
            yield from _walk(cmd, click.Context(cmd), f"{prefix}{name} ")


def test_every_listed_command_loads_and_has_help():
    names = dict(_walk(cli, click.Context(cli)))
    for expected in ("toy", "toy render", "toy dataset", "generate", "edit", "methods", "render", "export", "bench",
                     "bench edit"):
        assert expected in names
    for name, cmd in names.items():
        assert (cmd.help or "").strip(), f"{name} has no help text"


def test_help_does_not_import_torch():
    code = "import sys; from distill3d.cli.main import main; main(['--help']); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().endswith("False")
