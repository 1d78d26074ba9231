"""CLIP similarity between a run's prompt and its rendered views (transformers CLIP, local weights only).

The score of one view is the cosine similarity of CLIP's projected, L2-normalised image and text embeddings
(the quantity CLIP's ``logits_per_image`` holds before it is multiplied by ``logit_scale.exp()``). The score
of a run is the mean over ``views`` cameras evenly spaced in azimuth at one elevation, rendered on white.

Views are quantised to 8 bits and handed to the checkpoint's own ``CLIPImageProcessor`` (resize, centre
crop, normalise), exactly as a user who saved the renders as PNGs and scored them with transformers would.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from distill3d.core.cameras import orbit
from distill3d.core.errors import UserError
from distill3d.export.load import load_representation
from distill3d.pipeline.generate import RUN_FILE
from distill3d.priors.weights import SD_EXTRA_HINT, WeightsSpec, load_local
from distill3d.scene.render import render

DEFAULT_CLIP = "openai/clip-vit-large-patch14"
CLIP_WEIGHTS = WeightsSpec("CLIP", "--clip", "a transformers CLIP folder: config.json, its weights, "
                                             "tokenizer and image-processor files")

#: ``scorer(prompt, images)``: one score per image. images [B, 3, H, W] in [0, 1] -> [B]
ImageScorer = Callable[[str, Tensor], Tensor]


def run_prompt(run_dir: str | os.PathLike[str]) -> str:
    """The prompt a ``distill3d generate`` run directory was made from (its run.json)."""
    file = Path(run_dir) / RUN_FILE
    if not file.is_file():
        raise UserError(f"{run_dir} is not a run directory: it has no {RUN_FILE} (made by `distill3d generate`)")
    try:
        return str(json.loads(file.read_text(encoding="utf-8"))["prompt"])
    except (ValueError, KeyError, TypeError):
        raise UserError(f"{file} is not a run file with a \"prompt\" entry") from None


def to_uint8_images(images: Tensor) -> list:
    """[B, 3, H, W] in [0, 1] -> B PIL images, rounded to 8 bits as a PNG of the render would be."""
    from PIL import Image

    arr = (images.detach().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    return [Image.fromarray(a) for a in arr]


class ClipScorer:
    """A transformers ``CLIPModel`` with its tokenizer and image processor; ``scorer(prompt, images)``."""

    def __init__(self, model, processor) -> None:
        self.model = model.eval()
        self.processor = processor

    @staticmethod
    def load(source: str = DEFAULT_CLIP, device: str = "cpu") -> ClipScorer:
        """From a local folder or the local Hugging Face cache (never the network); a one-line
        ``UserError`` naming the download when the weights are not there."""
        try:
            from transformers import CLIPModel, CLIPProcessor
        except ImportError as e:
            raise UserError(f"CLIP evaluation needs transformers: {SD_EXTRA_HINT}", exit_code=1) from e

        def load(src: str) -> ClipScorer:
            model = CLIPModel.from_pretrained(src, local_files_only=True).to(device)
            return ClipScorer(model, CLIPProcessor.from_pretrained(src, local_files_only=True))

        return load_local(CLIP_WEIGHTS, source, load)

    @torch.no_grad()
    def __call__(self, prompt: str, images: Tensor) -> Tensor:
        """Cosine similarity of ``prompt`` with each image. images [B, 3, H, W] in [0, 1] -> [B]"""
        inputs = self.processor(text=[prompt], images=to_uint8_images(images), return_tensors="pt",
                                padding=True, truncation=True)
        device = next(self.model.parameters()).device
        out = self.model(**{k: v.to(device) for k, v in inputs.items()})
        return (out.image_embeds @ out.text_embeds[0]).float().cpu()  # both L2-normalised by CLIPModel


@dataclass(frozen=True)
class ClipEvalConfig:
    views: int = 8  # cameras evenly spaced in azimuth, starting at the front (azimuth 0)
    elevation: float = 15.0  # degrees
    size: int = 224  # render size in pixels (CLIP ViT input size; the processor resizes anyway)
    chunk: int = 8  # views rendered at once


@dataclass(frozen=True)
class RunClipScore:
    run: str
    prompt: str
    azimuths: list[float]
    per_view: list[float]  # cosine similarity per view
    mean: float


@torch.no_grad()
def clip_score_run(run_dir: str | os.PathLike[str], scorer: ImageScorer,
                   config: ClipEvalConfig = ClipEvalConfig(), device: str = "cpu") -> RunClipScore:
    """Render ``config.views`` turntable views of a run on white and score each against the run's prompt."""
    prompt = run_prompt(run_dir)
    rep = load_representation(run_dir).to(device).eval()
    cams = orbit(config.views, config.elevation)
    views = (render(rep, cams[i:i + config.chunk], config.size).image.clamp(0, 1)
             for i in range(0, config.views, config.chunk))  # [chunk, 3, size, size] each
    scores = torch.cat([scorer(prompt, v).cpu() for v in views])  # [V]
    return RunClipScore(run=str(run_dir), prompt=prompt, azimuths=cams.azimuth.tolist(),
                        per_view=scores.tolist(), mean=float(scores.mean()))
