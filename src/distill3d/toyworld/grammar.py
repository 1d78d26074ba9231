"""The toy world's caption grammar and scene specs.

    caption  := object [relation object] [", " view " view"]
    object   := ("a" | "an") colour shape
    relation := "on top of" | "next to"
    view     := "front" | "side" | "back" | "overhead"

"X on top of Y" stacks X above Y; "X next to Y" puts X on the -y side of Y, so X is on the left seen
from the front (azimuth 0). The "face" is a sphere with two large dark eyes on its front (+x), the one
object whose front differs from its back, so that view consistency (Janus) can be measured.
"""

from __future__ import annotations

import itertools
import re
import zlib
from dataclasses import dataclass

from distill3d.core.errors import UserError, shorten

SHAPES: tuple[str, ...] = ("sphere", "cube", "cone", "cylinder", "torus", "face")
COLORS: dict[str, tuple[float, float, float]] = {
    "red": (0.86, 0.13, 0.13),
    "orange": (0.96, 0.52, 0.08),
    "yellow": (0.95, 0.86, 0.12),
    "green": (0.16, 0.68, 0.24),
    "blue": (0.14, 0.32, 0.88),
    "purple": (0.56, 0.22, 0.78),
    "pink": (0.98, 0.52, 0.74),
    "gray": (0.50, 0.50, 0.50),
}
COLOR_NAMES: tuple[str, ...] = tuple(COLORS)
RELATIONS: tuple[str, ...] = ("on top of", "next to")
VIEWS: tuple[str, ...] = ("front", "side", "back", "overhead")
_ALIASES = {"grey": "gray"}
VOCABULARY: tuple[str, ...] = ("a", "an", *COLOR_NAMES, *SHAPES, "on", "top", "of", "next", "to", *VIEWS, "view")

#: Single-object captions never used to train the embedded prior (each colour and shape still appears
#: in other training captions), so the prior's report measures generalisation.
HELDOUT_SINGLES: tuple[str, ...] = (
    "a purple torus", "a green cone", "an orange cylinder", "a pink cube", "a gray sphere", "a blue face",
)


@dataclass(frozen=True)
class ObjectSpec:
    shape: str
    color: str

    def phrase(self) -> str:
        article = "an" if self.color[0] in "aeiou" else "a"
        return f"{article} {self.color} {self.shape}"


@dataclass(frozen=True)
class SceneSpec:
    """One or two objects; with two, ``relation`` says how the first stands to the second."""

    objects: tuple[ObjectSpec, ...]
    relation: str | None = None

    def __post_init__(self) -> None:
        if len(self.objects) not in (1, 2) or (len(self.objects) == 2) != (self.relation is not None):
            raise ValueError("a scene has one object, or two objects and a relation")
        if self.relation is not None and self.relation not in RELATIONS:
            raise ValueError(f"unknown relation {self.relation!r}")

    @property
    def caption(self) -> str:
        if self.relation is None:
            return self.objects[0].phrase()
        return f"{self.objects[0].phrase()} {self.relation} {self.objects[1].phrase()}"

    @property
    def kind(self) -> str:
        """"single", "on top of", "next to" or "face" (a single face: the view-consistency case)."""
        if self.relation is None:
            return "face" if self.objects[0].shape == "face" else "single"
        return self.relation

    @property
    def has_face(self) -> bool:
        return any(o.shape == "face" for o in self.objects)


def _words_error(text: str, detail: str) -> UserError:
    return UserError(
        f"caption {shorten(text)!r} is outside the toy world's grammar ({shorten(detail)}); "
        f"it reads 'a <colour> <shape>' optionally followed by 'on top of' or 'next to' and another "
        f"'a <colour> <shape>'; "
        f"colours: {', '.join(COLOR_NAMES)}; shapes: {', '.join(SHAPES)}"
    )


def split_view_suffix(text: str) -> tuple[str, str | None]:
    """Split "a red cube, front view" into ("a red cube", "front")."""
    m = re.fullmatch(r"\s*(.*?)\s*,\s*(front|side|back|overhead)\s+view\s*\.?\s*", text, flags=re.IGNORECASE)
    if m:
        return m.group(1), m.group(2).lower()
    return text, None


def parse_caption(text: str) -> SceneSpec:
    """Parse a caption (an optional view suffix is ignored). Raises ``UserError`` outside the grammar."""
    body, _ = split_view_suffix(text)
    words = [_ALIASES.get(w, w) for w in re.findall(r"[a-z]+", body.lower())]
    unknown = sorted({w for w in words if w not in VOCABULARY})
    if unknown:
        raise _words_error(text, f"unknown words: {', '.join(unknown)}")
    if re.sub(r"[a-z\s.,]", "", body.lower()):
        raise _words_error(text, "unexpected characters")

    def take_object(i: int) -> tuple[ObjectSpec, int]:
        if i + 3 > len(words):
            raise _words_error(text, "an object needs an article, a colour and a shape")
        article, color, shape = words[i : i + 3]
        if article not in ("a", "an") or color not in COLORS or shape not in SHAPES:
            raise _words_error(text, f"expected 'a <colour> <shape>' at {' '.join(words[i:i + 3])!r}")
        return ObjectSpec(shape, color), i + 3

    first, i = take_object(0)
    if i == len(words):
        return SceneSpec((first,))
    for rel in RELATIONS:
        rw = rel.split()
        if words[i : i + len(rw)] == rw:
            second, j = take_object(i + len(rw))
            if j != len(words):
                raise _words_error(text, f"unexpected words after the second object: {' '.join(words[j:])!r}")
            return SceneSpec((first, second), rel)
    raise _words_error(text, f"expected 'on top of' or 'next to' at {' '.join(words[i:])!r}")


def all_specs() -> list[SceneSpec]:
    """Every scene of the grammar: single objects and ordered pairs of different objects."""
    objects = [ObjectSpec(s, c) for s in SHAPES for c in COLOR_NAMES]
    specs = [SceneSpec((o,)) for o in objects]
    for rel in RELATIONS:
        specs += [SceneSpec((a, b), rel) for a, b in itertools.permutations(objects, 2)]
    return specs


def is_heldout(spec: SceneSpec) -> bool:
    """Held-out captions: the fixed singles above and one pair caption in ten (a stable hash)."""
    if spec.relation is None:
        return spec.caption in HELDOUT_SINGLES
    return zlib.crc32(spec.caption.encode()) % 10 == 0
