"""``distill3d generate`` and ``distill3d methods``."""

from __future__ import annotations

import click


@click.command()
@click.argument("prompt")
@click.option("--method", default="anchords", show_default=True,
              help="Guidance method (see 'distill3d methods').")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Run directory.")
@click.option("--prior", "prior_kind", default="toy", show_default=True, type=click.Choice(["toy", "sd"]),
              help="'toy': the embedded prior shipped with distill3d; 'sd': Stable Diffusion from local weights.")
@click.option("--model", default=None, help="Prior weights: a folder or a cached Hugging Face id ('sd'), "
                                            "or a toy checkpoint file ('toy').")
@click.option("--ip-adapter", default=None, help="IP-Adapter folder or id ('sd' prior).")
@click.option("--controlnet", default=None, help="ControlNet folder or id ('sd' prior); it sees exact maps "
                                                 "of each render, of --controlnet-kind.")
@click.option("--controlnet-kind", default="normal", show_default=True, type=click.Choice(["normal", "depth"]),
              help="The ControlNet's map: 'normal' (e.g. control_v11p_sd15_normalbae) or 'depth' "
                   "(e.g. control_v11f1p_sd15_depth).")
@click.option("--steps", type=click.IntRange(1), default=None, help="Optimisation steps (default: the preset's).")
@click.option("--seed", type=int, default=None, help="Seed (default: the preset's).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a preset field, e.g. --set views_per_step=2 --set guidance_scale=50.")
@click.option("--resume", is_flag=True, help="Continue an unfinished run in --out from its last checkpoint.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def generate(prompt: str, method: str, out_dir: str, prior_kind: str, model: str | None, ip_adapter: str | None,
             controlnet: str | None, controlnet_kind: str, steps: int | None, seed: int | None,
             overrides: tuple[str, ...], resume: bool, quiet: bool) -> None:
    """Generate a 3D asset for PROMPT by score distillation.

    With the embedded prior PROMPT is a toy-world caption, e.g. "a blue cone on top of a yellow cube".
    """
    from distill3d.pipeline.config import parse_overrides, resolve_run_config
    from distill3d.pipeline.generate import generate as run
    from distill3d.pipeline.priors import PriorSpec

    raw = parse_overrides(list(overrides))
    if steps is not None:
        raw["steps"] = str(steps)
    if seed is not None:
        raw["seed"] = str(seed)
    cfg, method_overrides = resolve_run_config(method, raw)
    result = run(prompt, cfg, method_overrides, out_dir,
                 PriorSpec(prior_kind, model, ip_adapter, controlnet, controlnet_kind), resume=resume,
                 progress=not quiet)
    line = f"wrote {result.out_dir} in {result.seconds:.1f} s"
    if result.judge is not None:
        line += f"; judge: {result.judge['match_rate']:.0%} of views match"
        if result.judge["kind"] == "face":
            line += f", eyes seen at azimuths {result.judge['front_seen_azimuths']}"
    click.echo(line)


@click.command()
def methods() -> None:
    """List the guidance methods and their presets."""
    from distill3d.guidance import METHODS
    from distill3d.pipeline.config import GENERATE_METHODS, RunConfig

    cfg = RunConfig()
    click.echo(f"run preset (every method): steps={cfg.steps} views_per_step={cfg.views_per_step} "
               f"representation={cfg.representation} densify={cfg.densify} (see --set)")
    for name, entry in METHODS.items():
        click.echo(f"{name}: {entry.description}")
        if name in GENERATE_METHODS:
            click.echo(f"    method: {entry.factory().config}")
        else:
            click.echo("    (editing method: used with a source asset; not a 'generate' method)")
