"""A click group whose subcommands are imported only when used (keeps ``--help`` fast)."""

from __future__ import annotations

import importlib

import click


class LazyGroup(click.Group):
    """``commands`` maps a subcommand name to ``"module:attribute"``."""

    def __init__(self, *args, lazy_commands: dict[str, str] | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.lazy_commands = dict(lazy_commands or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(self.lazy_commands)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = self.lazy_commands.get(name)
        if target is None:
            return None
        module, attr = target.split(":")
        return getattr(importlib.import_module(module), attr)
