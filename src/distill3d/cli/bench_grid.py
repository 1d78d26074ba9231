"""``distill3d bench run | tune | report``: the benchmark grid over a suite, its tuning and its report."""

from __future__ import annotations

import shlex
import sys

import click

DEFAULT_METHODS = "sds,anchords,anchords-filter,anchords-finetune,isd,uds"


def _command_line() -> str:
    return "distill3d " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def _split(text: str) -> list[str]:
    return [p.strip() for p in text.split(",") if p.strip()]


def _seeds(text: str) -> list[int]:
    from distill3d.core.errors import UserError, shorten

    try:
        seeds = [int(s) for s in _split(text)]
    except ValueError:
        raise UserError(f"--seeds must be comma-separated integers, got {shorten(text)!r}") from None
    if not seeds or min(seeds) < 0:
        raise UserError("--seeds must name at least one seed, none negative")
    return seeds


def _names(text: str, option: str) -> list[str]:
    from distill3d.core.errors import UserError

    names = list(dict.fromkeys(_split(text)))
    if not names:
        raise UserError(f"{option} must name at least one entry")
    return names


def _overrides(overrides: tuple[str, ...], steps: int | None) -> dict[str, str]:
    from distill3d.pipeline.config import parse_overrides

    raw = parse_overrides(list(overrides))
    if steps is not None:
        raw["steps"] = str(steps)
    return raw


def _engine_options(f):
    options = [
        click.option("--workers", default=1, show_default=True, type=click.IntRange(1),
                     help="Runs at once: local processes, or with --ray the Ray tasks of a local instance."),
        click.option("--ray", "ray_address", default=None, metavar="auto|ADDRESS",
                     help="Run on Ray (the 'ray' extra): 'auto' starts a local instance, an address joins a cluster."),
        click.option("--threads", default=1, show_default=True, type=click.IntRange(1),
                     help="Torch threads per run (Ray: CPUs each task asks for)."),
        click.option("--gpus-per-run", default=None, type=click.FloatRange(0, 1),
                     help="Ray: GPUs each task asks for (a fraction shares one) [default: 1 with CUDA, else 0]."),
        click.option("--clip", "clip_source", default=None,
                     help="Priors outside the toy world: score runs by CLIP similarity with this CLIP (folder or "
                          "cached id)."),
        click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Overrides for every run."),
        click.option("--steps", type=click.IntRange(1), default=None, help="Steps per run [default: the preset's]."),
        click.option("--methods", default=DEFAULT_METHODS, show_default=True),
        click.option("--suite", required=True,
                     help="A shipped suite (toy-core, toy-hard) or a prompt file ([dev]/[test] sections optional)."),
    ]
    for option in options:
        f = option(f)
    return f


@click.command()
@_engine_options
@click.option("--seeds", default="0,1,2", show_default=True)
@click.option("--split", default="test", show_default=True, type=click.Choice(["test", "dev"]),
              help="Which prompts of the suite.")
@click.option("--priors", default="toy", show_default=True, help="Comma-separated prior kinds: an axis of the grid.")
@click.option("--presets", "presets_file", default=None, type=click.Path(exists=True, dir_okay=False),
              help="A presets file from `bench tune`: every run is made with the defaults and with it (preset 'tuned').")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False))
def run(suite: str, methods: str, seeds: str, steps: int | None, overrides: tuple[str, ...], clip_source: str | None,
        gpus_per_run: float | None, threads: int, ray_address: str | None, workers: int, split: str, priors: str,
        presets_file: str | None, out_dir: str) -> None:
    """Every (prompt, method, preset, prior, seed) run of a suite, resumable; DIR/results.csv."""
    from pathlib import Path

    from distill3d.bench.engines import choose_engine
    from distill3d.bench.grid import check_specs, make_specs, run_grid
    from distill3d.bench.suite import load_suite
    from distill3d.bench.tune import read_presets

    s = load_suite(suite)
    presets: dict[str, dict[str, dict[str, str]]] = {"default": {}}
    if presets_file:
        presets["tuned"] = read_presets(Path(presets_file))
    specs = make_specs(s.prompts(split), _names(methods, "--methods"), presets, _names(priors, "--priors"),
                       _seeds(seeds), _overrides(overrides, steps))
    check_specs(specs)  # every input checked before anything runs
    engine = choose_engine(workers, ray_address, clip_source, threads, gpus_per_run)
    rows = run_grid(specs, Path(out_dir), engine, lambda line: click.echo(line))
    click.echo(f"wrote {out_dir}/results.csv ({len(rows)} rows); report it with: distill3d bench report {out_dir}")


@click.command()
@_engine_options
@click.option("--seeds", default="0", show_default=True, help="Seeds of every dev run.")
@click.option("--budget", default=4, show_default=True, type=click.IntRange(1),
              help="Candidate settings per method (the same for every method; its defaults are the first).")
@click.option("--prior", "prior_kind", default="toy", show_default=True)
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Where the dev runs go.")
@click.option("--presets-out", default=None, type=click.Path(dir_okay=False),
              help="The presets file [default: OUT/presets.json].")
def tune(suite: str, methods: str, seeds: str, steps: int | None, overrides: tuple[str, ...], clip_source: str | None,
         gpus_per_run: float | None, threads: int, ray_address: str | None, workers: int, budget: int, prior_kind: str,
         out_dir: str, presets_out: str | None) -> None:
    """Equal-budget sweep of each method's guidance scale, learning rate and t range on the suite's dev
    prompts; writes the best settings as a presets file for `bench run --presets`."""
    from pathlib import Path

    from distill3d.bench.engines import choose_engine
    from distill3d.bench.grid import check_specs, make_specs
    from distill3d.bench.suite import load_suite
    from distill3d.bench.tune import tune as run_tune

    s = load_suite(suite)
    method_list, raw = _names(methods, "--methods"), _overrides(overrides, steps)
    check_specs(make_specs(s.prompts("dev"), method_list, {"default": {}}, [prior_kind], _seeds(seeds), raw))
    engine = choose_engine(workers, ray_address, clip_source, threads, gpus_per_run)
    target = Path(presets_out) if presets_out else Path(out_dir) / "presets.json"
    run_tune(s, method_list, budget, _seeds(seeds), prior_kind, raw, Path(out_dir), engine, target,
             lambda line: click.echo(line))
    click.echo(f"wrote {target}; use it with: distill3d bench run --suite {suite} --presets {target} ...")


@click.command()
@click.argument("out_dir", type=click.Path(exists=True, file_okay=False))
def report(out_dir: str) -> None:
    """report.md and PNG figures from DIR/results.csv alone."""
    from pathlib import Path

    from distill3d.bench.report import write_report

    path = write_report(Path(out_dir), _command_line())
    click.echo(f"wrote {path}")


@click.command()
@click.option("--seeds", default="0,1,2", show_default=True)
@click.option("--only", default=None, help="Comma-separated claim keys (default: every claim of the ledger).")
@click.option("--no-run", is_flag=True, help="Write claims.md from the runs already finished, run nothing.")
@click.option("--plan", is_flag=True, help="Print the runs per method and prior, how many are finished and the "
              "projected hours (from the finished runs' median times), run nothing, write nothing.")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1),
              help="Runs at once: generation runs in local processes (or Ray tasks with --ray), edits in local "
              "processes (one at a time with --ray).")
@click.option("--ray", "ray_address", default=None, metavar="auto|ADDRESS",
              help="Run the generation runs on Ray (the 'ray' extra): 'auto' starts a local instance.")
@click.option("--threads", default=1, show_default=True, type=click.IntRange(1), help="Torch threads per run.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False))
def claims(seeds: str, only: str | None, no_run: bool, plan: bool, workers: int, ray_address: str | None,
           threads: int, out_dir: str) -> None:
    """Run or resume the grids behind the papers' claims (toy-claims [test], both toy priors, toy edits) and
    write DIR/claims.md: effect, 95% interval and verdict per claim."""
    from pathlib import Path

    from distill3d.bench.claims import CLAIMS, run_claims
    from distill3d.bench.engines import choose_engine
    from distill3d.core.errors import UserError

    chosen = CLAIMS
    if only:
        keys = _names(only, "--only")
        unknown = sorted(set(keys) - {c.key for c in CLAIMS})
        if unknown:
            raise UserError(f"unknown claim {unknown[0]!r}; choose from {', '.join(c.key for c in CLAIMS)}")
        chosen = tuple(c for c in CLAIMS if c.key in keys)
    if plan:
        from distill3d.bench.claims import edit_runs, format_plan, run_plan
        from distill3d.bench.grid import RESULTS, read_results

        rows = read_results(Path(out_dir)) if (Path(out_dir) / RESULTS).is_file() else []
        click.echo(format_plan(run_plan(chosen, _seeds(seeds), rows, edit_runs(Path(out_dir) / "edit")), workers),
                   nl=False)
        return
    engine = choose_engine(workers, ray_address, None, threads, None)
    run_claims(Path(out_dir), _seeds(seeds), engine, chosen, run=not no_run, log=lambda line: click.echo(line),
               edit_workers=1 if ray_address else workers, threads=threads)
    click.echo(f"wrote {out_dir}/claims.md")


@click.command()
@click.argument("out_dir", type=click.Path(exists=True, file_okay=False))
def remeasure(out_dir: str) -> None:
    """Judge every finished run of a grid (bench run or bench claims) again with today's evaluation, without
    optimising anything, and rebuild DIR/results.csv."""
    from pathlib import Path

    from distill3d.bench.grid import remeasure as run_remeasure

    rows = run_remeasure(Path(out_dir), lambda line: click.echo(line))
    click.echo(f"wrote {out_dir}/results.csv ({len(rows)} rows)")
