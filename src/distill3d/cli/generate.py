"""``distill3d generate`` and ``distill3d methods``; the prior and run options ``edit`` shares."""

from __future__ import annotations

from collections.abc import Callable

import click

#: The options that choose and load the prior.
PRIOR_OPTIONS = [
    click.option("--prior", "prior_kind", default="toy", show_default=True,
                 type=click.Choice(["toy", "toy-words", "toy-mv", "sd", "mvdream"]),
                 help="'toy': the embedded prior shipped with distill3d (object tokens); 'toy-words': the first "
                      "embedded prior (word tokens); 'toy-mv': the multi-view toy prior (groups of 4 views, "
                      "trained with `distill3d toy train --views 4`); 'sd': Stable Diffusion from local weights; "
                      "'mvdream': MVDream's sd-v2.1-base-4view.pt given as --model."),
    click.option("--model", default=None, help="Prior weights: a folder or a cached Hugging Face id ('sd'), "
                                               "or a toy checkpoint file ('toy')."),
    click.option("--ip-adapter", default=None, help="IP-Adapter folder or id ('sd' prior)."),
    click.option("--controlnet", default=None, help="ControlNet folder or id ('sd' prior); it sees exact maps "
                                                    "of each render, of --controlnet-kind."),
    click.option("--controlnet-kind", default="normal", show_default=True, type=click.Choice(["normal", "depth"]),
                 help="The ControlNet's map: 'normal' (e.g. control_v11p_sd15_normalbae) or 'depth' "
                      "(e.g. control_v11f1p_sd15_depth)."),
    click.option("--mv-prior", default=None, metavar="PATH",
                 help="The prior of the rows with a camera (ISD's g_MV, the -mv methods' term); all other rows go to "
                      "--prior. With 'sd': MVDream's sd-v2.1-base-4view.pt, run at SD's image size. With a toy prior: "
                      "a toy-world prior (toy-mv) or a toy checkpoint file."),
]

#: The options of a run's length, seed, presets, resume and progress.
RUN_OPTIONS = [
    click.option("--steps", type=click.IntRange(1), default=None, help="Optimisation steps (default: the preset's)."),
    click.option("--seed", type=int, default=None, help="Seed (default: the preset's)."),
    click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                 help="Override a preset field, e.g. --set views_per_step=2 --set form=code --set "
                      "form.guidance_scale=50 (dotted keys into nested configs; 'distill3d methods METHOD' "
                      "lists a method's keys)."),
    click.option("--resume", is_flag=True, help="Continue an unfinished run in --out from its last checkpoint."),
    click.option("--quiet", is_flag=True, help="No progress bar."),
]


def with_options(options: list) -> Callable:
    """Apply click options in the order listed (as if stacked as decorators in that order)."""
    def apply(command: Callable) -> Callable:
        for option in reversed(options):
            command = option(command)
        return command
    return apply


def run_overrides(overrides: tuple[str, ...], steps: int | None, seed: int | None) -> dict[str, str]:
    """--set pairs plus --steps and --seed, as raw preset overrides."""
    from distill3d.pipeline.config import parse_overrides

    raw = parse_overrides(list(overrides))
    if steps is not None:
        raw["steps"] = str(steps)
    if seed is not None:
        raw["seed"] = str(seed)
    return raw


@click.command()
@click.argument("prompt")
@click.option("--method", default=None, help="Guidance method (see 'distill3d methods') [default: anchords, or "
                                             "the --preset's].")
@click.option("--preset", default=None, help="A paper configuration (see 'distill3d presets'); --set applies on top.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Run directory.")
@with_options(PRIOR_OPTIONS)
@with_options(RUN_OPTIONS)
@click.option("--view", "live", is_flag=True,
              help="Watch the asset in a web viewer (localhost) as it changes, every preview_every steps (10 "
                   "unless --set), then keep serving the result until Ctrl+C. Needs the extra 'view'.")
def generate(prompt: str, method: str | None, preset: str | None, out_dir: str, prior_kind: str, model: str | None, ip_adapter: str | None,
             controlnet: str | None, controlnet_kind: str, mv_prior: str | None, steps: int | None,
             seed: int | None, overrides: tuple[str, ...], resume: bool, quiet: bool, live: bool) -> None:
    """Generate a 3D asset for PROMPT by score distillation.

    With the embedded prior PROMPT is a toy-world caption, e.g. "a blue cone on top of a yellow cube".
    """
    from distill3d.cli.view import live_view_of, print_summary, serve_result
    from distill3d.pipeline.config import resolve_run_config
    from distill3d.pipeline.generate import generate as run
    from distill3d.pipeline.priors import PriorSpec

    raw = run_overrides(overrides, steps, seed)
    if live:
        from distill3d.viewer.live import LIVE_EVERY

        raw.setdefault("preview_every", str(LIVE_EVERY))
    cfg, method_overrides = resolve_run_config(method if method or preset else "anchords", raw, preset=preset)
    with live_view_of(live, cfg.steps) as live_view:
        result = run(prompt, cfg, method_overrides, out_dir,
                     PriorSpec(prior_kind, model, ip_adapter, controlnet, controlnet_kind, mv_prior),
                     resume=resume, progress=not quiet, on_preview=live_view)
        print_summary(result.out_dir)
        serve_result(live_view, result.out_dir)


@click.command()
@click.argument("method", required=False)
def methods(method: str | None) -> None:
    """List the guidance methods by kind with their presets, and the representations with theirs; with
    METHOD, every --set key of that method with its type, preset value and doc."""
    from distill3d.cli.describe import field_lines
    from distill3d.core.errors import UserError
    from distill3d.guidance import KINDS, methods_of
    from distill3d.pipeline.config import NOT_SET_KEYS, RunConfig
    from distill3d.pipeline.edit import EDIT_DEFAULTS
    from distill3d.scene.registry import REPRESENTATIONS

    if method is not None:
        entries = [e for kind in KINDS for name, e in methods_of(kind).items() if name == method]
        if not entries:
            names = sorted({n for kind in KINDS for n in methods_of(kind)})
            raise UserError(f"unknown method {method!r}; choose one of {', '.join(names)}")
        for entry in entries:
            click.echo(f"{entry.name} ({entry.kind}: distill3d {entry.kind} --method {entry.name}): {entry.description}")
            click.echo("  --set keys (type = preset value  — doc):")
            for line in field_lines(entry.config()):
                click.echo(line)
        click.echo("the run's and the representations' keys: distill3d methods (without METHOD)")
        return
    cfg = RunConfig()
    click.echo("run settings (every method; --set KEY=VALUE):")
    for line in field_lines(cfg):
        if line.split(":")[0].strip() not in NOT_SET_KEYS:
            click.echo(line)
    click.echo(f"edit runs start from: {' '.join(f'{k}={v}' for k, v in EDIT_DEFAULTS.items())}")
    for entry in REPRESENTATIONS.values():
        click.echo(f"representation {entry.name}: {entry.description}\n    {entry.config_type()}")
        for line in field_lines(entry.config_type()):
            click.echo(line)
    headings = {"generate": "generate methods (distill3d generate --method; 'distill3d methods METHOD' lists "
                            "its --set keys)",
                "edit": "edit methods (distill3d edit --method)"}
    for kind in KINDS:
        click.echo(f"{headings[kind]}:")
        for name, entry in methods_of(kind).items():
            click.echo(f"{name}: {entry.description}")
            click.echo(f"    {entry.config()}")
