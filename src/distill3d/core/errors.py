"""The one exception type for bad user input: the CLI prints its message on one line and exits."""

from __future__ import annotations


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
