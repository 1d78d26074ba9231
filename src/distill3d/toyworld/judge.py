"""The toy world's judge: a small CNN that reads one rendered view and says what it sees.

It reports the objects (shape and colour of each, in the canonical slot order of
``judge_data.canonical_objects``), their relation, whether the face's front (its eyes) is visible, and
"nothing recognisable" for blank images, noise or junk: an explicit outcome trained on synthetic
negatives, plus a confidence floor (``JudgeConfig.min_confidence``) under which the judge abstains.

Weights live in safetensors beside a JSON config (``judge.safetensors`` + ``judge.json``); nothing is
unpickled. ``distill3d toy judge-train`` retrains the shipped checkpoint from a seed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from distill3d.core.errors import UserError
from distill3d.core.io import atomic_path, write_json_atomic
from distill3d.toyworld.grammar import COLOR_NAMES, SHAPES, ObjectSpec, SceneSpec
from distill3d.toyworld.judge_data import LAYOUTS, canonical_objects, object_key, to_judge_size

DEFAULT_WEIGHTS = Path(__file__).resolve().parents[1] / "weights" / "judge.safetensors"


@dataclass(frozen=True)
class JudgeConfig:
    widths: tuple[int, int, int] = (24, 48, 96)  # channels at 32, 16 and 8 px
    hidden: int = 128
    min_confidence: float = 0.5  # a layout probability below this means "nothing recognisable"

    @staticmethod
    def from_json(d: dict) -> JudgeConfig:
        return JudgeConfig(widths=tuple(d["widths"]), hidden=int(d["hidden"]),
                           min_confidence=float(d["min_confidence"]))


@dataclass(frozen=True)
class JudgeLogits:
    layout: Tensor  # [B, 4] over LAYOUTS
    shape: Tensor  # [B, 2, 6] per slot over SHAPES
    color: Tensor  # [B, 2, 8] per slot over COLOR_NAMES
    front: Tensor  # [B] logit of "the front is visible"


def _conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class JudgeNet(nn.Module):
    """Three conv stages (32 -> 16 -> 8 -> 4 px; one conv at full size, where it is most costly), a 1x1
    squeeze, flattened so that position (top, bottom, left, right) survives, one hidden layer, four heads."""

    def __init__(self, config: JudgeConfig) -> None:
        super().__init__()
        self.config = config
        w1, w2, w3 = config.widths
        self.features = nn.Sequential(
            _conv(3, w1), nn.MaxPool2d(2),
            _conv(w1, w2), _conv(w2, w2), nn.MaxPool2d(2),
            _conv(w2, w3), _conv(w3, w3), nn.MaxPool2d(2),
            nn.Conv2d(w3, 32, 1), nn.ReLU(inplace=True), nn.Flatten(),
        )
        self.hidden = nn.Sequential(nn.Linear(32 * 4 * 4, config.hidden), nn.ReLU(inplace=True))
        self.layout = nn.Linear(config.hidden, len(LAYOUTS))
        self.shape = nn.Linear(config.hidden, 2 * len(SHAPES))
        self.color = nn.Linear(config.hidden, 2 * len(COLOR_NAMES))
        self.front = nn.Linear(config.hidden, 1)

    def forward(self, images: Tensor) -> JudgeLogits:
        """images [B, 3, 32, 32] in [0, 1]."""
        h = self.hidden(self.features(images * 2.0 - 1.0))
        return JudgeLogits(self.layout(h), self.shape(h).reshape(-1, 2, len(SHAPES)),
                           self.color(h).reshape(-1, 2, len(COLOR_NAMES)), self.front(h)[:, 0])


@dataclass(frozen=True)
class JudgeResult:
    """What the judge sees in one image. ``objects`` are in canonical slot order (empty when nothing is
    recognisable); ``confidence`` is the probability of the reported layout, None when nothing is
    recognisable (the judge then reports no confidence: it may abstain for lack of it), ``object_confidence``
    min(shape, colour) probability per object, and ``front_confidence`` the probability that the front is
    visible."""

    recognisable: bool
    objects: tuple[ObjectSpec, ...]
    relation: str | None
    front_visible: bool
    confidence: float | None
    object_confidence: tuple[float, ...]
    front_confidence: float

    @property
    def count(self) -> int:
        return len(self.objects)

    def describe(self) -> str:
        if not self.recognisable:
            return "nothing recognisable"
        if self.relation is None:
            return self.objects[0].phrase()
        return f"{self.objects[0].phrase()} {self.relation} {self.objects[1].phrase()}"


@dataclass(frozen=True)
class JudgeMatch:
    """How a judgement compares with the scene it should show. Shapes and colours compare per slot,
    or in either order where either side says "next to" (its order is not visible from every view);
    ``objects_ok`` also checks that each colour sits on the right shape. A face whose front the view
    does not show looks like a sphere, so "sphere" is accepted for it; pass ``front_visible`` (the truth for this
    camera: ``judge_data.front_visible(spec, render.eye_pixels[i], size)`` on a ground-truth render) to
    demand "face" where its eyes are in view (scenes with one face). ``front_ok`` is None when ``front_visible`` was not given.
    ``hidden``: objects the view barely shows (another stands in front of them: ``hidden_objects`` on the truth
    rendered from the same camera); their shape and colour cannot be read, so any are accepted, as for a
    face seen from behind. They must still be counted, and the relation read."""

    count_ok: bool
    shapes_ok: bool
    colors_ok: bool
    objects_ok: bool
    relation_ok: bool
    front_ok: bool | None
    all_ok: bool


def match(result: JudgeResult, spec: SceneSpec, front_visible: bool | None = None,
          hidden: frozenset[ObjectSpec] = frozenset()) -> JudgeMatch:
    truth = canonical_objects(spec)
    count_ok = result.recognisable and result.count == len(truth)
    orders = [truth, truth[::-1]] if "next to" in (result.relation, spec.relation) else [truth]
    eyes_shown = front_visible is True and sum(o.shape == "face" for o in truth) == 1

    def shape_ok(seen: ObjectSpec, true: ObjectSpec) -> bool:
        return (seen.shape == true.shape or true in hidden
                or (true.shape == "face" and seen.shape == "sphere" and not eyes_shown))

    def color_ok(seen: ObjectSpec, true: ObjectSpec) -> bool:
        return seen.color == true.color or true in hidden

    def in_some_order(ok: Callable[[ObjectSpec, ObjectSpec], bool]) -> bool:
        return count_ok and any(all(ok(a, b) for a, b in zip(result.objects, order)) for order in orders)

    shapes_ok = in_some_order(shape_ok)
    colors_ok = in_some_order(color_ok)
    objects_ok = in_some_order(lambda a, b: shape_ok(a, b) and color_ok(a, b))
    relation_ok = result.recognisable and result.relation == spec.relation
    front_ok = None if front_visible is None else result.front_visible == front_visible
    all_ok = objects_ok and relation_ok and front_ok is not False
    return JudgeMatch(count_ok, shapes_ok, colors_ok, objects_ok, relation_ok, front_ok, all_ok)


#: An object the truth shows on fewer pixels than this share of the other object's is hidden behind it.
HIDDEN_SHARE = 0.4


def hidden_objects(spec: SceneSpec, material: Tensor) -> frozenset[ObjectSpec]:
    """The objects of ``spec`` that one truth view (its ``ToyRender.material`` [S, S]) barely shows."""
    if len(spec.objects) < 2:
        return frozenset()
    seen = [int((material == k + 1).sum()) for k in range(len(spec.objects))]
    return frozenset(o for o, n in zip(spec.objects, seen) if n < HIDDEN_SHARE * max(seen))


def config_path(weights: Path) -> Path:
    return weights.with_suffix(".json")


class Judge:
    """A trained ``JudgeNet`` with its decision rule. ``judge(images)`` -> one ``JudgeResult`` each."""

    def __init__(self, net: JudgeNet) -> None:
        self.net = net.eval().requires_grad_(False)
        self.config = net.config

    @staticmethod
    def load(path: str | Path | None = None) -> Judge:
        """The shipped judge (``DEFAULT_WEIGHTS``) or the weights at ``path`` (+ the JSON beside it)."""
        from safetensors.torch import load_file

        path = DEFAULT_WEIGHTS if path is None else Path(path)
        if not path.is_file() or not config_path(path).is_file():
            raise UserError(f"no judge weights at {path} (and {config_path(path).name} beside it); retrain them "
                            f"with `distill3d toy judge-train --data DATASET --out {path}`")
        meta = json.loads(config_path(path).read_text())
        net = JudgeNet(JudgeConfig.from_json(meta["config"]))
        net.load_state_dict({k: v.float() for k, v in load_file(str(path)).items()})
        return Judge(net)

    def save(self, path: str | Path, extra: dict | None = None) -> None:
        """Weights (fp32 safetensors) and ``{"config": ..., **extra}`` JSON beside them, atomically."""
        from safetensors.torch import save_file

        path = Path(path)
        tensors = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in self.net.state_dict().items()}
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp))
        write_json_atomic(config_path(path), {"config": asdict(self.config), **(extra or {})})

    @torch.no_grad()
    def probabilities(self, images: Tensor) -> JudgeLogits:
        """Softmax / sigmoid probabilities (same fields as the logits). images [B, 3, H, W] in [0, 1]."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise UserError(f"the judge reads RGB images [B, 3, H, W], got {list(images.shape)}")
        logits = self.net(to_judge_size(images.float().cpu().clamp(0, 1)))
        return JudgeLogits(logits.layout.softmax(-1), logits.shape.softmax(-1), logits.color.softmax(-1),
                           logits.front.sigmoid())

    @torch.no_grad()
    def features(self, images: Tensor, batch: int = 512) -> Tensor:
        """The penultimate (hidden-layer) activations [B, hidden] of images [B, 3, H, W] in [0, 1]: the
        embedding a Fréchet distance between image sets is computed on."""
        out = [self.net.hidden(self.net.features(to_judge_size(images[i : i + batch].float().cpu().clamp(0, 1))
                                                 * 2.0 - 1.0)) for i in range(0, images.shape[0], batch)]
        return torch.cat(out) if out else torch.zeros(0, self.config.hidden)

    def __call__(self, images: Tensor, batch: int = 512) -> list[JudgeResult]:
        """images [B, 3, H, W] in [0, 1] (white background; larger than 32 px is area-resized)."""
        results: list[JudgeResult] = []
        for i in range(0, images.shape[0], batch):
            p = self.probabilities(images[i : i + batch])
            results += [self._decide(p, k) for k in range(p.layout.shape[0])]
        return results

    def _decide(self, p: JudgeLogits, k: int) -> JudgeResult:
        conf, layout_id = p.layout[k].max(dim=0)
        layout = LAYOUTS[int(layout_id)]
        if layout == "nothing" or float(conf) < self.config.min_confidence:
            return JudgeResult(False, (), None, False, None, (), float(p.front[k]))
        n = 1 if layout == "single" else 2
        sp, si = p.shape[k, :n].max(dim=-1)
        cp, ci = p.color[k, :n].max(dim=-1)
        objects = tuple(ObjectSpec(SHAPES[int(s)], COLOR_NAMES[int(c)]) for s, c in zip(si, ci))
        if layout == "next to":  # the network fills a "next to" pair's slots in either order
            order = sorted(range(2), key=lambda i: object_key(objects[i]))
            objects, sp, cp = tuple(objects[i] for i in order), sp[order], cp[order]
        has_face = any(o.shape == "face" for o in objects)
        front = float(p.front[k])
        return JudgeResult(True, objects, None if layout == "single" else layout, has_face and front >= 0.5,
                           float(conf), tuple(float(v) for v in torch.minimum(sp, cp)), front)
