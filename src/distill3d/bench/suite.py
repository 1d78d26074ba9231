"""Benchmark suites: prompt files split into a dev set (for tuning) and a test set (for the reported numbers).

A suite is a text file, one prompt a line, ``#`` starting a comment; ``[dev]`` and ``[test]`` lines open the
two sets. A file without them is one set used for both (any prompt list is a suite; tuning on it is then not
a fair protocol, which ``bench tune`` says). Shipped suites live in ``suites/`` and are named without the
``.txt``: ``toy-core`` (every caption kind, small) and ``toy-hard`` (two objects and faces).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from distill3d.core.errors import UserError, shorten

SUITES_DIR = Path(__file__).resolve().parent / "suites"
Split = Literal["dev", "test"]
SPLITS: tuple[Split, ...] = ("dev", "test")


@dataclass(frozen=True)
class Suite:
    name: str  # the shipped name, or the file's path
    dev: tuple[str, ...]  # prompts for tuning
    test: tuple[str, ...]  # prompts for the reported numbers
    split: bool  # False: the file had no [dev]/[test] sections, so dev and test are the same prompts

    def prompts(self, split: Split) -> tuple[str, ...]:
        return self.dev if split == "dev" else self.test


def shipped_suites() -> list[str]:
    return sorted(p.stem for p in SUITES_DIR.glob("*.txt"))


def parse_suite(text: str, name: str) -> Suite:
    sets: dict[str, list[str]] = {"dev": [], "test": [], "": []}
    current = ""
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("[") and line.endswith("]"):
            current = line[1:-1].strip().lower()
            if current not in SPLITS:
                raise UserError(f"suite {shorten(name)} line {number}: unknown section {shorten(line)!r}; "
                                f"use [dev] or [test]")
            continue
        sets[current].append(line)
    if not any(sets.values()):
        raise UserError(f"suite {shorten(name)} holds no prompts")
    if sets[""] and (sets["dev"] or sets["test"]):
        raise UserError(f"suite {shorten(name)}: prompts before the first [dev]/[test] section")
    if sets[""]:
        prompts = tuple(dict.fromkeys(sets[""]))
        return Suite(name, prompts, prompts, split=False)
    dev, test = tuple(dict.fromkeys(sets["dev"])), tuple(dict.fromkeys(sets["test"]))
    if not dev or not test:
        raise UserError(f"suite {shorten(name)} needs prompts in both [dev] and [test]")
    both = sorted(set(dev) & set(test))
    if both:
        raise UserError(f"suite {shorten(name)}: {shorten(both[0])!r} is in both [dev] and [test]")
    return Suite(name, dev, test, split=True)


def load_suite(name_or_path: str) -> Suite:
    """A shipped suite by name (``toy-core``), or any prompt file."""
    path = SUITES_DIR / f"{name_or_path}.txt"
    if not path.is_file():
        path = Path(name_or_path).expanduser()
    if not path.is_file():
        raise UserError(f"no suite {shorten(name_or_path)!r}: name one of {', '.join(shipped_suites())} "
                        f"or give a prompt file")
    return parse_suite(path.read_text(encoding="utf-8"), name_or_path)


__all__ = ["SPLITS", "SUITES_DIR", "Split", "Suite", "load_suite", "parse_suite", "shipped_suites"]
