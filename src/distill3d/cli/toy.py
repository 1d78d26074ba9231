"""``distill3d toy ...``: the toy world, its judge and the embedded prior trained on it."""

from __future__ import annotations

import click

from distill3d.cli.lazy import LazyGroup

_TOY_COMMANDS: dict[str, str] = {
    "render": "distill3d.cli.toy_world:render",
    "dataset": "distill3d.cli.toy_world:dataset",
    "words": "distill3d.cli.toy_world:words",
    "train": "distill3d.cli.toy_prior:train",
    "sample": "distill3d.cli.toy_prior:sample",
    "report": "distill3d.cli.toy_prior:report",
    "judge-train": "distill3d.cli.toy_judge:judge_train",
    "judge-report": "distill3d.cli.toy_judge:judge_report",
    "judge": "distill3d.cli.toy_judge:judge",
}


@click.group(cls=LazyGroup, lazy_commands=_TOY_COMMANDS)
def toy() -> None:
    """The procedural toy world: ground-truth renders, datasets, the judge and the embedded prior."""
