"""``distill3d view``: a run or a 3DGS .ply in a web viewer (viser, the optional extra ``view``)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from distill3d.viewer.live import LiveView

HOST_HELP = "Address to listen on (0.0.0.0: every interface, so other machines can connect)."
PORT_HELP = "Port to listen on (busy: the next free one; 0: any free port)."


@click.command()
@click.argument("path", metavar="RUN_OR_PLY", type=click.Path())
@click.option("--host", default="127.0.0.1", show_default=True, help=HOST_HELP)
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True, help=PORT_HELP)
def view(path: str, host: str, port: int) -> None:
    """Show RUN_OR_PLY (a run directory, or a Gaussian-splatting .ply from any producer) in the browser,
    with the run's views, judge scores and curves beside it. Serves until Ctrl+C."""
    from distill3d.viewer.app import open_asset

    viewer = open_asset(Path(path), host, port)
    click.echo(f"viewer: open {viewer.url} in a browser (Ctrl+C to stop)")
    viewer.wait()
    viewer.stop()


def start_live_view(steps: int, host: str = "127.0.0.1", port: int = 8080) -> LiveView:
    """A viewer for ``generate --view`` (and ``edit``), its URL printed; pass it as the run's ``on_preview``."""
    from distill3d.viewer.live import LiveView
    from distill3d.viewer.server import Viewer

    viewer = Viewer(host, port)
    viewer.status("waiting for the first preview step")
    click.echo(f"viewer: open {viewer.url} to watch the run")
    return LiveView(viewer, steps)


@contextmanager
def live_view_of(enabled: bool, steps: int) -> Iterator[LiveView | None]:
    """``--view`` of ``generate`` and ``edit``: a started live viewer (None when not asked for), stopped
    however the run ends."""
    live = start_live_view(steps) if enabled else None
    try:
        yield live
    finally:
        if live is not None:
            live.viewer.stop()


def serve_result(live: LiveView | None, run_dir: Path) -> None:
    """Show the finished run in the live viewer, if any, and serve it until Ctrl+C."""
    if live is None:
        return
    live.finish(run_dir)
    click.echo(f"viewer: the result is at {live.viewer.url} (Ctrl+C to stop)")
    live.viewer.wait()


def print_summary(run_dir: Path) -> None:
    """The one-screen summary of a finished run, from its run.json."""
    import json

    from distill3d.pipeline.generate import RUN_FILE
    from distill3d.pipeline.report import run_summary

    click.echo(run_summary(run_dir, json.loads((run_dir / RUN_FILE).read_text())))
