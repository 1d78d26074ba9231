"""``distill3d render`` and ``distill3d export``: views, meshes, PLYs and turntables of a saved result.

Only click and the standard library are imported at module level; torch and the exporters load inside
the commands so that ``distill3d --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path

import click

from distill3d.core.errors import UserError

FORMATS = {"ply": "gaussians.ply", "glb": "mesh.glb", "obj": "mesh.obj", "mp4": "turntable.mp4"}


def parse_azimuths(text: str) -> list[float]:
    """"0,45,90" -> [0.0, 45.0, 90.0]; a UserError for anything else."""
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError:
        raise UserError(f"--azimuths must be comma-separated numbers in degrees, got {text!r}") from None
    if len(set(values)) != len(values):
        raise UserError(f"--azimuths lists an azimuth twice: {text!r}")
    return values


def _check_view(elevation: float, size: int) -> None:
    if not -89.0 <= elevation <= 89.0:
        raise UserError(f"--elevation must lie within [-89, 89] degrees, got {elevation:g}")
    if size < 16:
        raise UserError(f"--size must be at least 16 pixels, got {size}")


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
              help="Output folder [default: views/ beside the representation].")
def render(source: Path, azimuths: str, elevation: float, size: int, out_dir: Path | None) -> None:
    """Render a saved representation (.ply, radiance .safetensors or a run directory) into OUT/view_<az>.png
    and the grid OUT/views.png."""
    angles = parse_azimuths(azimuths)
    _check_view(elevation, size)
    from distill3d.export.load import load_representation

    representation = load_representation(source)
    from distill3d.export.views import save_views

    saved = save_views(representation, angles, elevation, size, out_dir or _home(source) / "views")
    click.echo(f"wrote {len(saved.views)} views and {saved.grid}")


@click.command()
@click.argument("run", metavar="RUN", type=click.Path(path_type=Path))
@click.option("--format", "fmt", required=True, help="One of: ply, glb, obj, mp4.")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Output file [default: RUN/gaussians.ply, mesh.glb, mesh.obj or turntable.mp4].")
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
        raise UserError(f"unknown --format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if fmt == "mp4":
        _check_view(elevation, size)
        if frames < 2:
            raise UserError(f"--frames must be at least 2, got {frames}")
    out = out or _home(run) / FORMATS[fmt]
    from distill3d.export.load import load_representation

    representation = load_representation(run)
    click.echo(f"wrote {_export(representation, fmt, out, resolution, threshold, frames, elevation, size)}")


def _export(representation: object, fmt: str, out: Path, resolution: int, threshold: float | None,
            frames: int, elevation: float, size: int) -> Path:
    if fmt == "ply":
        from distill3d.export.ply import save_gaussians_ply
        from distill3d.scene.gaussians import GaussianModel

        if not isinstance(representation, GaussianModel):
            raise UserError("--format ply needs 3D Gaussians; export a radiance field as glb, obj or mp4")
        return save_gaussians_ply(representation, out)
    if fmt == "mp4":
        from distill3d.export.views import save_turntable

        return save_turntable(representation, out, frames=frames, elevation=elevation, size=size)
    from distill3d.export.gltf import write_glb
    from distill3d.export.mesh import extract_mesh
    from distill3d.export.obj import write_obj

    mesh = extract_mesh(representation, resolution=resolution, threshold=threshold)
    return (write_glb if fmt == "glb" else write_obj)(mesh, out)
