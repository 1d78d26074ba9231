"""3D Gaussians as a standard 3DGS PLY file: the Gaussians' own format, which lives beside them in
``distill3d.scene.ply`` (``GaussianModel.save`` / ``GaussianModel.load``); re-exported here with the
other file writers."""

from distill3d.scene.ply import gaussian_ply_properties, load_gaussians_ply, save_gaussians_ply

__all__ = ["gaussian_ply_properties", "load_gaussians_ply", "save_gaussians_ply"]
