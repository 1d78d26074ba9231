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
from distill3d.toyworld.grammar import all_specs, is_heldout

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


#: toy-claims: how many prompts of each kind its [test] and [dev] sets draw (``draw_claims_suite``).
CLAIMS_TEST = {"next to": 12, "on top of": 12, "single": 8, "face": 8}
CLAIMS_DEV = {"next to": 18, "on top of": 12, "single": 4, "face": 0}
CLAIMS_SALT = "toy-claims"
HELDOUT_MARK = "held out of the prior's training"


def draw_claims_suite() -> str:
    """The text of ``suites/toy-claims.txt``, drawn by one documented rule (a test keeps the file current):
    every caption of the grammar whose objects are not faces and, for pairs, have two different colours
    (so that ``toyworld.layout`` can tell the objects apart), plus the single faces; ordered by CRC-32 of
    ``caption + CLAIMS_SALT``; per kind the first ``CLAIMS_TEST[kind]`` go to [test] and the next
    ``CLAIMS_DEV[kind]`` to [dev]. Captions held out of the prior's training are marked in a comment."""
    import zlib

    def eligible(spec) -> bool:
        if spec.kind == "face":
            return True
        return not spec.has_face and (spec.relation is None or spec.objects[0].color != spec.objects[1].color)

    ranked = sorted((s for s in all_specs() if eligible(s)),
                    key=lambda s: (zlib.crc32((s.caption + CLAIMS_SALT).encode()), s.caption))
    sets: dict[str, list[str]] = {"test": [], "dev": []}
    for kind, n_test in CLAIMS_TEST.items():
        of_kind = [s for s in ranked if s.kind == kind]
        n_dev = CLAIMS_DEV[kind]
        for split, chosen in (("test", of_kind[:n_test]), ("dev", of_kind[n_test : n_test + n_dev])):
            sets[split] += [s.caption + (f"  # {HELDOUT_MARK}" if is_heldout(s) else "") for s in chosen]
    head = [
        "# toy-claims: the claims ledger's suite (distill3d bench claims). Drawn by bench.suite.draw_claims_suite:",
        "# every caption whose objects are not faces and, for pairs, differ in colour (so the layout check of",
        "# toyworld.layout can tell the two apart), plus the single faces; ordered by CRC-32 of caption +",
        f"# '{CLAIMS_SALT}'; per kind the first go to [test] ({', '.join(f'{n} {k}' for k, n in CLAIMS_TEST.items())})",
        f"# and the next to [dev] ({', '.join(f'{n} {k}' for k, n in CLAIMS_DEV.items())}). The grammar has 8 single faces",
        "# and [test] takes all 8, so [dev] has none: nothing may be tuned for faces on this suite.",
        f"# '{HELDOUT_MARK}' marks captions never in the embedded prior's training data.",
    ]
    return "\n".join(head + ["[dev]", *sets["dev"], "[test]", *sets["test"]]) + "\n"


__all__ = ["CLAIMS_DEV", "CLAIMS_TEST", "SPLITS", "SUITES_DIR", "Split", "Suite", "draw_claims_suite", "load_suite", "parse_suite", "shipped_suites"]
