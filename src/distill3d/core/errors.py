"""The one exception type for bad user input: the CLI prints its message on one line and exits."""

from __future__ import annotations

import os
from pathlib import Path


class UserError(Exception):
    """A problem the user can fix (bad caption, missing file, missing weights).

    The message must be one line that says what is wrong and what to do. ``exit_code`` follows the
    usual conventions: 2 for bad arguments, 1 for anything else.
    """

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def shorten(text: str, limit: int = 80) -> str:
    """``text`` as a one-line message echoes it: at most ``limit`` characters, then "…" when cut."""
    text = str(text)
    return text if len(text) <= limit else text[:limit] + "…"


def check_range(option: str, value: float, lo: float, hi: float) -> None:
    """A ``UserError`` unless ``lo <= value <= hi`` (NaN and inf never pass)."""
    if not lo <= value <= hi:
        raise UserError(f"{option} must lie within [{lo:g}, {hi:g}], got {value:g}")


def check_out_path(option: str, path: str | os.PathLike[str], folder: bool = False) -> None:
    """A ``UserError`` unless ``path`` can be written as a file (``folder``: as a folder): it is not the
    other kind already, and the nearest existing folder above it is a folder, not a file."""
    path = Path(path)
    want = "a folder" if folder else "a file name"
    if path.exists() and path.is_dir() != folder:
        raise UserError(f"{option} {shorten(str(path))!r} is {'a folder' if path.is_dir() else 'a file'}; "
                        f"give {want}")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UserError(f"{option} {shorten(str(path))!r} lies inside {shorten(str(parent))!r}, which is "
                                f"a file, not a folder")
            return
