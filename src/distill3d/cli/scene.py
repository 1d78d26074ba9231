"""``distill3d render`` and ``distill3d export``: views, meshes, PLYs and turntables of a saved result.

Only click and the standard library are imported at module level; torch and the exporters load inside
the commands so that ``distill3d --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path

import click

from distill3d.core.errors import UserError, check_out_path, check_range, shorten

FORMATS = {"ply": "gaussians.ply", "glb": "mesh.glb", "obj": "mesh.obj", "mp4": "turntable.mp4"}


def parse_azimuths(text: str) -> list[float]:
    """"0,45,90" -> [0.0, 45.0, 90.0]; a UserError for anything else."""
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError:
        raise UserError(f"--azimuths must be comma-separated numbers in degrees, got {shorten(text)!r}"
                        ) from None
    if len(set(values)) != len(values):
        raise UserError(f"--azimuths lists an azimuth twice: {shorten(text)!r}")
    if not all(-720.0 <= v <= 720.0 for v in values) or len(values) > 360:  # NaN and inf fail too
        raise UserError(f"--azimuths takes at most 360 finite angles within [-720, 720] degrees, "
                        f"got {shorten(text)!r}")
    return values


def _check_view(elevation: float, size: int) -> None:
    if not -89.0 <= elevation <= 89.0:
        raise UserError(f"--elevation must lie within [-89, 89] degrees, got {elevation:g}")
    check_range("--size", size, 16, 2048)


def _taken(path: Path) -> bool:
    """Does ``path`` exist (for a turntable also its .gif twin, written where there is no ffmpeg)?"""
    return path.exists() or (path.suffix == ".mp4" and path.with_suffix(".gif").exists())


def free_name(path: Path, tag: str = "export") -> Path:
    """``path`` when free, else the first free ``<stem>_<tag><suffix>``, ``<stem>_<tag>_2<suffix>``, ..."""
    candidate, n = path, 1
    while _taken(candidate):
        candidate = path.with_name(f"{path.stem}_{tag}{'' if n == 1 else f'_{n}'}{path.suffix}")
        n += 1
    return candidate


def _home(source: Path) -> Path:
    """The folder results go to by default: the run directory, or the folder holding the file."""
    return source if source.is_dir() else source.parent


@click.command()
@click.argument("source", metavar="RUN_OR_PLY", type=click.Path(path_type=Path))
@click.option("--azimuths", default="0,45,90,135,180,225,270,315", show_default=True,
              help="Comma-separated azimuths in degrees (0 = front, on +x; growing toward +y).")
@click.option("--elevation", default=20.0, show_default=True, help="Camera elevation in degrees.")
@click.option("--size", default=128, show_default=True, help="Image side in pixels.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None,
              help="Output folder [default: views/ beside the representation, or views_render/ ... "
                   "when that exists].")
def render(source: Path, azimuths: str, elevation: float, size: int, out_dir: Path | None) -> None:
    """Render a saved representation (.ply, radiance .safetensors or a run directory) into OUT/view_<az>.png
    and the grid OUT/views.png."""
    angles = parse_azimuths(azimuths)
    _check_view(elevation, size)
    if out_dir is not None:
        check_out_path("--out", out_dir, folder=True)
    from distill3d.export.load import load_representation

    representation = load_representation(source)
    from distill3d.export.views import save_views

    default = _home(source) / "views"
    chosen = out_dir or free_name(default, "render")  # never over an earlier render unless --out names it
    saved = save_views(representation, angles, elevation, size, chosen)
    kept = f" ({default} exists and is kept)" if out_dir is None and chosen != default else ""
    click.echo(f"wrote {len(saved.views)} views and {saved.grid}{kept}")


@click.command()
@click.argument("run", metavar="RUN", type=click.Path(path_type=Path))
@click.option("--format", "fmt", required=True, help="One of: ply, glb, obj, mp4.")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Output file [default: RUN/gaussians.ply, mesh.glb, mesh.obj or turntable.mp4; when that "
                   "exists, a new name beside it such as mesh_export.glb: the run's own files are kept].")
@click.option("--resolution", default=128, show_default=True, help="Marching-cubes grid size (glb, obj).")
@click.option("--threshold", type=float, default=None,
              help="Density level of the mesh surface (glb, obj) [default: 0.5 for Gaussians, 2 for a "
                   "radiance field's sigma].")
@click.option("--frames", default=60, show_default=True, help="Turntable frames (mp4).")
@click.option("--elevation", default=20.0, show_default=True, help="Turntable elevation in degrees (mp4).")
@click.option("--size", default=256, show_default=True, help="Turntable frame side in pixels (mp4).")
def export(run: Path, fmt: str, out: Path | None, resolution: int, threshold: float | None, frames: int,
           elevation: float, size: int) -> None:
    """Export a saved representation (.ply, radiance .safetensors or a run directory) as PLY, GLB, OBJ or an
    MP4 turntable."""
    fmt = fmt.lower()
    if fmt not in FORMATS:
        raise UserError(f"unknown --format {shorten(fmt)!r}; choose one of {', '.join(FORMATS)}")
    if fmt == "mp4":
        _check_view(elevation, size)
        check_range("--frames", frames, 2, 3600)
        if out is not None and out.suffix.lower() not in (".mp4", ".gif"):
            raise UserError(f"--out of --format mp4 must end in .mp4 or .gif, got {shorten(out.name)!r}")
    elif out is not None and out.suffix.lower() != f".{fmt}":
        raise UserError(f"--out of --format {fmt} must end in .{fmt}, got {shorten(out.name)!r}")
    if out is not None:
        check_out_path("--out", out)
    if fmt in ("glb", "obj"):
        check_range("--resolution", resolution, 8, 512)
        if threshold is not None:
            check_range("--threshold", threshold, -1e30, 1e30)
    from distill3d.export.load import load_representation

    representation = load_representation(run)
    default = _home(run) / FORMATS[fmt]
    target = out or free_name(default)  # the run's own files are never overwritten unless --out names them
    written = _export(representation, fmt, target, resolution, threshold, frames, elevation, size)
    kept = f" ({default} exists and is kept; --out chooses the file)" if target != (out or default) else ""
    click.echo(f"wrote {written}{kept}")


def _export(representation: object, fmt: str, out: Path, resolution: int, threshold: float | None,
            frames: int, elevation: float, size: int) -> Path:
    if fmt == "ply":
        if Path(representation.file_name).suffix != ".ply":  # the representation's own file is not a PLY
            raise UserError(f"--format ply needs 3D Gaussians; this {type(representation).__name__} exports "
                            "as glb, obj or mp4")
        return representation.save(out)
    if fmt == "mp4":
        from distill3d.export.views import save_turntable

        return save_turntable(representation, out, frames=frames, elevation=elevation, size=size)
    from distill3d.export.gltf import write_glb
    from distill3d.export.mesh import extract_mesh
    from distill3d.export.obj import write_obj

    mesh = extract_mesh(representation, resolution=resolution, threshold=threshold)
    return (write_glb if fmt == "glb" else write_obj)(mesh, out)
