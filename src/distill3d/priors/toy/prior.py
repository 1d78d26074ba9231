"""``ToyPrior``: the embedded toy-world UNet behind the ``Prior`` interface.

Pixel space: ``encode`` is x ↦ 2x − 1 and ``decode`` its inverse, so latents are images in [-1, 1].
Weights are stored with safetensors (never pickles) beside a JSON file holding the ``ToyUNetConfig``;
the shipped file keeps fp16 tensors and is upcast to fp32 on load. A network with ``views`` = N > 1 (the
multi-view prior ``toy-mv``) makes the prior a joint one: ``view_capabilities.joint_views`` = N, and the
rows of one ``Condition.view_group`` are denoised together (``distill3d.priors.base.view_groups``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from distill3d.core.errors import UserError
from distill3d.core.io import atomic_path, write_json_atomic
from distill3d.priors.base import Condition, ViewCapabilities, alphas_cumprod_cosine, view_groups
from distill3d.priors.lora import LoRADenoiser
from distill3d.priors.toy.attention import Attention
from distill3d.priors.toy.model import ModelConditions, ToyUNet, ToyUNetConfig

WEIGHTS_DIR = Path(__file__).resolve().parents[2] / "weights"
DEFAULT_WEIGHTS = WEIGHTS_DIR / "toy_prior.safetensors"
#: The shipped toy priors by name: "toy", the default (object tokens, the second prior), and
#: "toy-words", the first shipped prior (word tokens, colours often bound to the wrong object), kept so
#: that a benchmark can ask whether a method's advantage depends on a prior that mixes attributes.
SHIPPED = {"toy": DEFAULT_WEIGHTS, "toy-words": WEIGHTS_DIR / "toy_words.safetensors"}
#: Named priors made by distill3d's own commands from a shipped one: where their weights go (the package ships
#: them; where the file is missing, loading says how to make it) and the commands. "toy-mv", the multi-view
#: prior: the shipped prior inflated across groups of 4 views and fine-tuned on them (2,011 steps,
#: benchmarks/results/toy_mv_curve.json), then 1,396 more with camera-modulated text tokens
#: (benchmarks/results/toy_mv_curve_phase2.json, report benchmarks/results/toy_mv_report.md).
TRAINED_HERE = {"toy-mv": WEIGHTS_DIR / "toy_mv.safetensors"}
#: The shipped toy-mv's recipe (its two phases stopped at steps 2,011 and 1,396 by wall time: 62 + 86 minutes).
TRAIN_COMMANDS = {"toy-mv": (
    "distill3d toy dataset --out data/toy-mv --count 20000 --views 4 --workers 2 && "
    "distill3d toy train --data data/toy-mv --out runs/toy-mv --init toy --views 4 --batch 16 --steps 2400 "
    "--lr 5e-4 --stop-at 2011 --export runs/toy-mv.safetensors && "
    "distill3d toy train --data data/toy-mv --out runs/toy-mv-camtext --init runs/toy-mv.safetensors --camera-text "
    "--batch 16 --steps 1589 --lr 3e-4 --p-single-view 0.15 --stop-at 1396 "
    f"--export {TRAINED_HERE['toy-mv']}")}
NUM_TIMESTEPS = 1000


def config_path(weights: Path) -> Path:
    """The JSON config that sits beside a weights file: ``toy_prior.safetensors`` -> ``toy_prior.json``."""
    return weights.with_suffix(".json")


def save_model(model: ToyUNet, path: str | Path, half: bool = True) -> None:
    """Write ``model``'s weights (fp16 when ``half``) to ``path`` and its config beside it, atomically."""
    from safetensors.torch import save_file

    path = Path(path)
    dtype = torch.float16 if half else torch.float32
    tensors = {k: v.detach().to("cpu", dtype).contiguous() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp))
    write_json_atomic(config_path(path), {"model": model.config.to_json()})


def load_model(path: str | Path) -> ToyUNet:
    """Read a model written by ``save_model`` (any float dtype; upcast to fp32)."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file() or not config_path(path).is_file():
        what = (f"{path} exists but has no {config_path(path).name} beside it" if path.is_file()
                else f"no toy prior weights at {path} (and {config_path(path).name} beside it)")
        raise UserError(f"{what}; train and export them with `distill3d toy train ... --export PATH`")
    try:
        cfg = ToyUNetConfig.from_json(json.loads(config_path(path).read_text())["model"])
        model = ToyUNet(cfg)
        model.load_state_dict({k: v.float() for k, v in load_file(str(path)).items()})
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as err:  # not a toy prior's files
        raise UserError(f"{path} is not a toy prior written by `distill3d toy train --export` "
                        f"({type(err).__name__}: {str(err).splitlines()[0][:120] if str(err) else ''})") from None
    return model


class ToyPrior(nn.Module):
    """The toy-world diffusion prior (ε-prediction, cosine schedule, T = 1000, pixel space).

    The network's parameters are frozen; a guidance method that trains an adapter layer turns its
    parameters back on explicitly (``prior.adapter_layer().requires_grad_(True)``).
    """

    num_timesteps: int = NUM_TIMESTEPS
    #: No ControlNet: a row with a control map at a non-zero scale is refused.
    control_kind: str | None = None
    #: The network embeds ``Condition.camera`` (trained on renders with their cameras); an instance's
    #: ``joint_views`` is its network's ``views``.
    view_capabilities = ViewCapabilities(conditions_on_cameras=True)

    def __init__(self, model: ToyUNet) -> None:
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        self.view_capabilities = ViewCapabilities(conditions_on_cameras=True, joint_views=model.config.views)
        self.image_size = model.config.image_size
        self.register_buffer("_alphas_cumprod", alphas_cumprod_cosine(NUM_TIMESTEPS), persistent=False)
        self._text_cache: dict[str, tuple[Tensor, Tensor]] = {}

    @staticmethod
    def load(path: str | Path | None = None, device: str | torch.device = "cpu") -> ToyPrior:
        """The shipped prior (``DEFAULT_WEIGHTS``), a shipped one by name (``SHIPPED``), one trained here by
        name (``TRAINED_HERE``: a one-line error with the commands that make it while it is missing) or the
        weights at ``path``."""
        if str(path) in TRAINED_HERE:
            name, path = str(path), TRAINED_HERE[str(path)]
            if not path.is_file():
                raise UserError(f"the prior {name} is not trained yet (no {path.name}); make it with: "
                                f"{TRAIN_COMMANDS[name]}")
        if path is None or str(path) in SHIPPED:
            path = SHIPPED["toy" if path is None else str(path)]
        return ToyPrior(load_model(path)).to(device)

    def save(self, path: str | Path, half: bool = True) -> None:
        save_model(self.model, path, half)

    @property
    def alphas_cumprod(self) -> Tensor:
        return self._alphas_cumprod

    @property
    def device(self) -> torch.device:
        return self._alphas_cumprod.device

    def encode(self, images: Tensor) -> Tensor:
        """[B, 3, S, S] in [0, 1] -> latents [B, 3, S, S] in [-1, 1]."""
        return 2.0 * images - 1.0

    def decode(self, latents: Tensor) -> Tensor:
        """[B, 3, S, S] -> images [B, 3, S, S] in [0, 1]."""
        return ((latents + 1.0) / 2.0).clamp(0.0, 1.0)

    def _text(self, text: str) -> tuple[Tensor, Tensor]:
        """Tokens [L, D] and mask [L] of one prompt, computed once per string (the encoder is frozen)."""
        if text not in self._text_cache:
            with torch.no_grad():
                tokens, mask = self.model.encode_text([text])
            self._text_cache[text] = (tokens[0], mask[0])
        return self._text_cache[text]

    def _image(self, image: Tensor) -> Tensor:
        """[3, H, W] in [0, 1] -> [3, S, S] on the prior's device."""
        if image.ndim != 3 or image.shape[0] != 3:
            raise UserError(f"a condition image must be [3, H, W], got {list(image.shape)}")
        image = image.to(self.device, torch.float32)
        if image.shape[-1] != self.image_size or image.shape[-2] != self.image_size:
            image = F.interpolate(image[None], size=self.image_size, mode="bilinear", antialias=True,
                                  align_corners=False)[0]
        return image

    def conditions(self, conditions: Sequence[Condition]) -> ModelConditions:
        """A list of ``Condition`` -> the batched tensors the network reads."""
        texts = [self._text(c.text) for c in conditions]
        dev = self.device
        image_rows = [i for i, c in enumerate(conditions) if c.image is not None and c.image_scale != 0]
        s = self.image_size
        return ModelConditions(
            text=torch.stack([t for t, _ in texts]).to(dev),
            text_mask=torch.stack([m for _, m in texts]).to(dev),
            camera=torch.tensor([c.camera if c.camera is not None else (0.0, 0.0) for c in conditions],
                                dtype=torch.float32, device=dev).reshape(len(conditions), 2),
            camera_mask=torch.tensor([c.camera is not None for c in conditions], dtype=torch.bool, device=dev),
            image=torch.stack([self._image(conditions[i].image) for i in image_rows]) if image_rows
            else torch.zeros(0, 3, s, s, device=dev),
            image_rows=torch.tensor(image_rows, dtype=torch.long, device=dev),
            image_scale=torch.tensor([conditions[i].image_scale for i in image_rows], dtype=torch.float32,
                                     device=dev),
            groups=view_groups(conditions, self.view_capabilities.joint_views),
        )

    def predict_noise(self, z_t: Tensor, t: Tensor, conditions: Sequence[Condition]) -> Tensor:
        """ε̂ [N, 3, S, S] for z_t [N, 3, S, S] at timesteps t [N], one forward pass for all rows (the rows of
        one ``view_group`` denoised jointly when the network has ``views`` > 1)."""
        if len(conditions) != z_t.shape[0]:
            raise ValueError(f"{len(conditions)} conditions for {z_t.shape[0]} rows")
        if any(c.control is not None and c.control_scale != 0 for c in conditions):
            raise UserError("a condition carries a control map but the toy prior has no ControlNet: "
                            "use --prior sd with --controlnet")
        return self.model.eps(z_t, t.to(self.device).long().reshape(-1).expand(z_t.shape[0]),
                              self.conditions(conditions), self._alphas_cumprod)

    def adapter_layer(self, name: str | None = None) -> nn.Module:
        """The module holding ``to_k_ip``/``to_v_ip`` of one transformer block; default: the last up
        level's (AnchorDS' code fine-tunes the last up block's image K/V)."""
        layers = self.model.adapter_layers()
        if name is None:
            name = [n for n in layers if n.startswith("up.")][-1]
        if name not in layers:
            raise KeyError(f"unknown adapter layer {name!r}; valid names: {', '.join(layers)}")
        return layers[name]

    def trainable_denoiser(self, rank: int = 4) -> LoRADenoiser:
        """VSD's ε̂_φ: a rank-``rank`` LoRA on the q/k/v/out projections of every UNet attention (self and
        text cross-attention; the image adapter's K/V are left alone) and a camera embedding added to the
        timestep embedding (``distill3d.priors.lora``). The network's own camera input sees
        ``Condition.camera`` as well. Starts equal to this prior."""
        linears = {f"{name}.{proj}": getattr(m, proj) for name, m in self.model.named_modules()
                   if isinstance(m, Attention) and name.split(".")[0] in ("down", "mid", "up")
                   for proj in ("to_q", "to_k", "to_v", "to_out")}
        return LoRADenoiser(self.predict_noise, linears, self.model.time_mlp, self.model.config.emb_dim, rank,
                            self.device)
