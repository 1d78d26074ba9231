"""``distill3d presets``: the papers' configurations, each number with its source."""

from __future__ import annotations

import click


@click.command()
@click.argument("name", required=False)
def presets(name: str | None) -> None:
    """List the presets named after the papers' configurations (distill3d generate --preset NAME), with what
    each sets, where every number comes from and what is kept different on purpose; with NAME, that one."""
    from distill3d.pipeline.presets import PRESETS, find_preset

    chosen = [find_preset(name)] if name is not None else list(PRESETS)
    for i, p in enumerate(chosen):
        if i:
            click.echo("")
        click.echo(f"{p.name} (--method {p.method}): {p.description}")
        for key, value in p.changes().items():
            click.echo(f"    {key}={value}    [{p.sources[key]}]")
        click.echo(f"    (every other value: the {p.method} preset's, see 'distill3d methods {p.method}')")
        for d in p.deviations:
            click.echo(f"    deviation: {d}")
