"""Find and load a saved representation: a file, or a run directory holding one (the representations and
their file names are ``distill3d.scene.registry``'s)."""

from distill3d.scene.registry import find_representation_file, load_representation

__all__ = ["find_representation_file", "load_representation"]
