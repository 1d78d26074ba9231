"""``distill3d edit``: change a distill3d run or any standard 3DGS .ply toward a target text."""

from __future__ import annotations

import click

from distill3d.cli.generate import PRIOR_OPTIONS, RUN_OPTIONS, run_overrides, with_options


@click.command()
@click.argument("source", metavar="SOURCE")
@click.option("--from", "source_prompt", required=True, help="Text describing the source asset (y_src).")
@click.option("--to", "prompt", required=True, help="Text the edited asset should match (y_tgt).")
@click.option("--method", default="uds", show_default=True,
              help="Edit method: uds, dds or pds (see 'distill3d methods').")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Run directory.")
@with_options(PRIOR_OPTIONS)
@with_options(RUN_OPTIONS)
@click.option("--view", "live", is_flag=True,
              help="Watch the edited asset in a web viewer (localhost) as it changes, every preview_every steps "
                   "(10 unless --set), then keep serving the result until Ctrl+C. Needs the extra 'view'.")
def edit(source: str, source_prompt: str, prompt: str, method: str, out_dir: str, prior_kind: str,
         model: str | None, ip_adapter: str | None, controlnet: str | None, controlnet_kind: str,
         mv_prior: str | None, steps: int | None, seed: int | None, overrides: tuple[str, ...], resume: bool,
         quiet: bool, live: bool) -> None:
    """Edit SOURCE (a distill3d run directory, a standard 3DGS .ply in the graphdeco or gsplat layout, or a
    radiance field) from the text --from toward the text --to. The source is never written; OUT gets the
    edited asset and its exports, before_after.png and a side-by-side turntable.

    With the embedded prior both texts are toy-world captions, e.g.
    --from "a red cube" --to "a blue cube".
    """
    from distill3d.cli.view import live_view_of, serve_result
    from distill3d.pipeline.edit import edit as run
    from distill3d.pipeline.edit import resolve_edit_config
    from distill3d.pipeline.priors import PriorSpec

    raw = run_overrides(overrides, steps, seed)
    if live:
        from distill3d.viewer.live import LIVE_EVERY

        raw.setdefault("preview_every", str(LIVE_EVERY))
    cfg, method_overrides = resolve_edit_config(method, raw, source)
    with live_view_of(live, cfg.steps) as live_view:
        result = run(source, source_prompt, prompt, cfg, method_overrides, out_dir,
                     PriorSpec(prior_kind, model, ip_adapter, controlnet, controlnet_kind, mv_prior),
                     resume=resume, progress=not quiet, on_preview=live_view)
        line = f"wrote {result.out_dir} in {result.seconds:.1f} s"
        if result.judge is not None:
            line += f"; judge: {result.judge['match_rate']:.0%} of views match {prompt!r}"
        click.echo(line)
        serve_result(live_view, result.out_dir)
