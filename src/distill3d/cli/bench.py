"""``distill3d bench``: the benchmark commands (each writes result files); ``run``/``tune``/``report`` are in
``bench_grid.py``, ``clip``/``t3bench`` in ``bench_eval.py``."""

from __future__ import annotations

import shlex
import sys

import click

from distill3d.cli.lazy import LazyGroup


def _split(text: str) -> list[str]:
    return [p.strip() for p in text.split(",") if p.strip()]


@click.group(cls=LazyGroup, lazy_commands={"step-cost": "distill3d.cli.bench:step_cost",
                                           "run": "distill3d.cli.bench_grid:run",
                                           "tune": "distill3d.cli.bench_grid:tune",
                                           "report": "distill3d.cli.bench_grid:report",
                                           "claims": "distill3d.cli.bench_grid:claims",
                                           "remeasure": "distill3d.cli.bench_grid:remeasure",
                                           "edit": "distill3d.cli.bench:edit",
                                           "clip": "distill3d.cli.bench_eval:clip",
                                           "t3bench": "distill3d.cli.bench_eval:t3bench"})
def bench() -> None:
    """Benchmarks of the guidance methods (results go to files)."""


@click.command("step-cost")
@click.option("--methods", default="sds,anchords,anchords-filter,anchords-finetune,isd,uds", show_default=True)
@click.option("--steps", default=10, show_default=True, type=click.IntRange(1))
@click.option("--rounds", default=3, show_default=True, type=click.IntRange(1))
@click.option("--views", default=4, show_default=True, type=click.IntRange(1))
@click.option("--threads", default=1, show_default=True, type=click.IntRange(1))
@click.option("--out", default="benchmarks/results/step_cost.json", show_default=True, type=click.Path())
def step_cost(methods: str, steps: int, rounds: int, views: int, threads: int, out: str) -> None:
    """Per-step time of each method relative to SDS, measured in one interleaved run."""
    from pathlib import Path

    from distill3d.bench.step_cost import step_cost as run
    from distill3d.bench.step_cost import write_step_cost
    from distill3d.core.errors import UserError
    from distill3d.guidance import GENERATE_METHODS

    names = _split(methods)
    unknown = [m for m in names if m not in GENERATE_METHODS]
    if unknown:
        raise UserError(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(GENERATE_METHODS)}")
    costs = run(names, steps=steps, rounds=rounds, views=views, threads=threads)
    write_step_cost(costs, Path(out), "distill3d " + " ".join(shlex.quote(a) for a in sys.argv[1:]))
    for c in costs:
        click.echo(f"{c.method:18s} {c.seconds_per_step:.3f} s/step  x{c.ratio_to_sds:.2f} of SDS")
    click.echo(f"wrote {out}")


@click.command("edit")
@click.option("--methods", default=None, help="Comma-separated edit methods [default: every one registered].")
@click.option("--pairs", default=None,
              help="'from -> to' toy captions separated by ';', each changing one attribute of one object "
                   "(from == to: an identity check) [default: a colour and a shape change, one and two objects, "
                   "and an identity check per source].")
@click.option("--seeds", default="0,1,2", show_default=True)
@click.option("--steps", type=click.IntRange(1), default=None, help="Steps per edit [default: the edit preset's].")
@click.option("--source-points", default=5000, show_default=True, type=click.IntRange(10),
              help="Gaussians of each source asset (surfels on the truth's surface).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Preset overrides for every edit.")
@click.option("--out", "out_dir", default="benchmarks/results/edit", show_default=True,
              type=click.Path(file_okay=False))
def edit(methods: str | None, pairs: str | None, seeds: str, steps: int | None, source_points: int,
         overrides: tuple[str, ...], out_dir: str) -> None:
    """Editing methods on the toy world (truth known before and after): did the edited object change,
    did the rest stay, how far an identity edit drifts; mean ± 95% interval over seeds (resumable sweep)."""
    from pathlib import Path

    from distill3d.bench.edit import bench_edit, default_pairs, parse_pairs, write_table
    from distill3d.core.errors import UserError
    from distill3d.guidance import EDIT_METHODS
    from distill3d.pipeline.config import parse_overrides

    try:
        seed_list = [int(s) for s in _split(seeds)]
    except ValueError:
        raise UserError(f"--seeds must be comma-separated integers, got {seeds!r}") from None
    raw = parse_overrides(list(overrides))
    if steps is not None:
        raw["steps"] = str(steps)
    method_list = _split(methods) if methods else list(EDIT_METHODS)
    pair_list = parse_pairs(pairs) if pairs else default_pairs()
    result = bench_edit(method_list, pair_list, seed_list, Path(out_dir), raw, source_points=source_points)
    click.echo(write_table(result, Path(out_dir), "distill3d " + " ".join(shlex.quote(a) for a in sys.argv[1:])))
    click.echo(f"wrote {out_dir}/results.json and results.md")
