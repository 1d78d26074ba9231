"""Training the toy prior: a plain loop, readable top to bottom.

Each step draws scenes, picks one of their two views to denoise, and drops each condition
independently (classifier-free dropout): text with ``p_drop_text``, the image with ``p_drop_image``,
the camera with ``p_drop_camera``. With the defaults 30% of rows are "image only", 30% "image + text",
20% text only and 20% nothing, so the image branch gets a real share of the signal. The image condition is the view being
denoised (``image_view="same"``) or the scene's other view (``"other"``). A fraction of captions get
the view suffix (", front view", ...) of the denoised camera, named by threestudio's rule.

Loss: ε-MSE at uniform t (DDPM's L_simple). AdamW with linear warm-up then a constant rate, gradient
clipping, an EMA of the weights. Everything random comes from one ``torch.Generator`` whose state is
checkpointed, so ``resume`` continues bit-identically (same thread count).

Checkpoint (``out/checkpoint.safetensors`` + ``out/checkpoint.json``): model, EMA and AdamW tensors and
the generator state in safetensors; the step, configs and AdamW hyper-parameters in JSON. Nothing is
unpickled on resume.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

import torch
from torch import Tensor

from distill3d.core.cameras import view_direction
from distill3d.core.errors import UserError
from distill3d.core.io import atomic_path, write_json_atomic
from distill3d.priors.base import alphas_cumprod_cosine
from distill3d.priors.toy.evaluate import EvalResult, evaluate
from distill3d.priors.toy.model import ModelConditions, ToyUNet, ToyUNetConfig
from distill3d.priors.toy.prior import save_model

CHECKPOINT = "checkpoint.safetensors"
CHECKPOINT_META = "checkpoint.json"


class ToyDataLike(Protocol):
    """What training reads from ``distill3d.toyworld.dataset.ToyData``."""

    images: Tensor  # [N, 3, S, S] uint8, view 1
    images2: Tensor  # [N, 3, S, S] uint8, view 2 of the same scene
    captions: list[str]
    cameras: Tensor  # [N, 2, 2] float: (azimuth, elevation) degrees of view 1 and view 2


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 20_000
    batch: int = 32
    lr: float = 1e-3
    warmup: int = 100  # steps of linear learning-rate warm-up
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    p_drop_text: float = 0.5
    p_drop_image: float = 0.4
    p_drop_camera: float = 0.3
    p_view_suffix: float = 0.3  # share of captions with the denoised view's ", <name> view"
    image_view: str = "same"  # "same": the image condition is the denoised view; "other": the other view
    seed: int = 0
    holdout: int = 64  # the last scenes, never trained on, for the evaluation at each checkpoint
    checkpoint_minutes: float = 5.0
    max_minutes: float | None = None  # stop (with a checkpoint) after this much wall time

    def __post_init__(self) -> None:
        if self.image_view not in ("same", "other"):
            raise UserError(f"image_view must be 'same' or 'other', got {self.image_view!r}")


@dataclass
class TrainState:
    model: ToyUNet
    ema: ToyUNet
    optimizer: torch.optim.AdamW
    generator: torch.Generator
    step: int = 0


@dataclass(frozen=True)
class Batch:
    x0: Tensor  # [B, 3, S, S] in [-1, 1], the views to denoise
    captions: list[str]  # "" where text is dropped
    cond_image: Tensor  # [R, 3, S, S] in [0, 1]
    image_rows: Tensor  # [R]
    camera: Tensor  # [B, 2]
    camera_mask: Tensor  # [B]


def to_unit(images: Tensor) -> Tensor:
    """uint8 [..., 3, S, S] -> float in [0, 1]."""
    return images.float() / 255.0


def draw_batch(data: ToyDataLike, n_train: int, cfg: TrainConfig, g: torch.Generator) -> Batch:
    b = cfg.batch
    idx = torch.randint(n_train, (b,), generator=g)
    second = torch.randint(2, (b,), generator=g).bool()  # denoise view 2?
    v1, v2 = to_unit(data.images[idx]), to_unit(data.images2[idx])
    pick = second[:, None, None, None]
    x = torch.where(pick, v2, v1)
    other = torch.where(pick, v1, v2)
    camera = data.cameras[idx, second.long()].float()  # [B, 2] camera of the denoised view
    keep_text = torch.rand(b, generator=g) >= cfg.p_drop_text
    keep_image = torch.rand(b, generator=g) >= cfg.p_drop_image
    keep_camera = torch.rand(b, generator=g) >= cfg.p_drop_camera
    suffix = torch.rand(b, generator=g) < cfg.p_view_suffix
    captions = []
    for i in range(b):
        text = data.captions[int(idx[i])]
        if suffix[i]:
            text = f"{text}, {view_direction(float(camera[i, 0]), float(camera[i, 1]))} view"
        captions.append(text if keep_text[i] else "")
    rows = keep_image.nonzero()[:, 0]
    cond = x if cfg.image_view == "same" else other
    return Batch(2.0 * x - 1.0, captions, cond[rows], rows, camera, keep_camera)


def loss_on_batch(model: ToyUNet, batch: Batch, alphas_cumprod: Tensor, g: torch.Generator) -> Tensor:
    """L_simple = ||ε − ε̂(√ᾱ_t x0 + √(1−ᾱ_t) ε; t, c)||² (DDPM Eq. 14)."""
    dev = alphas_cumprod.device
    b = batch.x0.shape[0]
    t = torch.randint(len(alphas_cumprod), (b,), generator=g)
    noise = torch.randn(batch.x0.shape, generator=g)
    x0, t, noise = batch.x0.to(dev), t.to(dev), noise.to(dev)
    a = alphas_cumprod[t][:, None, None, None]
    z_t = a.sqrt() * x0 + (1 - a).sqrt() * noise
    text, mask = model.encode_text(batch.captions)
    cond = ModelConditions(text, mask, batch.camera.to(dev), batch.camera_mask.to(dev),
                           batch.cond_image.to(dev), batch.image_rows.to(dev),
                           torch.ones(len(batch.image_rows), device=dev))
    return (model(z_t, t, cond) - noise).pow(2).mean()


def new_state(model_cfg: ToyUNetConfig, cfg: TrainConfig, device: torch.device) -> TrainState:
    torch.manual_seed(cfg.seed)  # parameter initialisation
    model = ToyUNet(model_cfg).to(device)
    ema = ToyUNet(model_cfg).to(device).requires_grad_(False)
    ema.load_state_dict(model.state_dict())
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    return TrainState(model, ema, opt, torch.Generator().manual_seed(cfg.seed))


def learning_rate(cfg: TrainConfig, step: int) -> float:
    return cfg.lr * min(1.0, (step + 1) / cfg.warmup)


@torch.no_grad()
def update_ema(ema: ToyUNet, model: ToyUNet, decay: float, step: int) -> None:
    d = min(decay, (1 + step) / (10 + step))  # short warm-up so early EMAs are not the initialisation
    for pe, pm in zip(ema.parameters(), model.parameters(), strict=True):
        pe.lerp_(pm, 1.0 - d)


def save_checkpoint(state: TrainState, out: Path, cfg: TrainConfig) -> None:
    """Tensors in safetensors, the rest in JSON; both written atomically, the JSON last."""
    from safetensors.torch import save_file

    tensors = {f"model.{k}": v for k, v in state.model.state_dict().items()}
    tensors |= {f"ema.{k}": v for k, v in state.ema.state_dict().items()}
    opt = state.optimizer.state_dict()
    for i, s in opt["state"].items():
        tensors |= {f"optim.{i}.{k}": v for k, v in s.items()}
    tensors["generator"] = state.generator.get_state()
    tensors["step"] = torch.tensor([state.step])
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    with atomic_path(out / CHECKPOINT) as tmp:
        save_file(tensors, str(tmp))
    write_json_atomic(out / CHECKPOINT_META, {"step": state.step, "train": asdict(cfg),
                                              "model": state.model.config.to_json(),
                                              "param_groups": opt["param_groups"]})


def load_checkpoint(out: Path, cfg: TrainConfig, device: torch.device) -> TrainState:
    from safetensors.torch import load_file

    meta_path, path = out / CHECKPOINT_META, out / CHECKPOINT
    if not meta_path.is_file() or not path.is_file():
        raise UserError(f"--resume: no checkpoint in {out}")
    meta = json.loads(meta_path.read_text())
    tensors = load_file(str(path))
    if int(tensors["step"]) != meta["step"]:
        raise UserError(f"--resume: {CHECKPOINT} and {CHECKPOINT_META} in {out} disagree; the last write broke")
    state = new_state(ToyUNetConfig.from_json(meta["model"]), cfg, device)
    part = lambda prefix: {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    state.model.load_state_dict(part("model."))
    state.ema.load_state_dict(part("ema."))
    opt_state: dict[int, dict[str, Tensor]] = {}
    for k, v in part("optim.").items():
        i, name = k.split(".", 1)
        opt_state.setdefault(int(i), {})[name] = v
    state.optimizer.load_state_dict({"state": opt_state, "param_groups": meta["param_groups"]})
    state.generator.set_state(tensors["generator"])
    state.step = meta["step"]
    return state


def export_ema(out: str | Path, path: str | Path) -> None:
    """Write the EMA weights of the checkpoint in ``out`` to ``path`` (fp16) + its JSON config."""
    state = load_checkpoint(Path(out), TrainConfig(), torch.device("cpu"))
    save_model(state.ema, path, half=True)


def train(data: ToyDataLike, model_cfg: ToyUNetConfig, cfg: TrainConfig, out: str | Path, resume: bool = False,
          device: str | torch.device = "cpu", progress: bool = True,
          log: Callable[[str], None] = print) -> TrainState:
    """Train (or resume) until ``cfg.steps``; checkpoint every ``cfg.checkpoint_minutes`` and at the end."""
    from tqdm import tqdm

    out, device = Path(out), torch.device(device)
    out.mkdir(parents=True, exist_ok=True)
    n = len(data.captions)
    n_train = n - cfg.holdout
    if n_train < 1:
        raise UserError(f"the dataset has {n} scenes; at least {cfg.holdout + 1} are needed")
    state = load_checkpoint(out, cfg, device) if resume else new_state(model_cfg, cfg, device)
    alphas_cumprod = alphas_cumprod_cosine().to(device)
    start, last_ckpt, images_seen, loss_avg = time.time(), time.time(), 0, None
    bar = tqdm(total=cfg.steps, initial=state.step, disable=not progress, mininterval=10, dynamic_ncols=True)
    while state.step < cfg.steps:
        for group in state.optimizer.param_groups:
            group["lr"] = learning_rate(cfg, state.step)
        batch = draw_batch(data, n_train, cfg, state.generator)
        loss = loss_on_batch(state.model, batch, alphas_cumprod, state.generator)
        state.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(state.model.parameters(), cfg.grad_clip)
        state.optimizer.step()
        update_ema(state.ema, state.model, cfg.ema_decay, state.step)
        state.step += 1
        images_seen += cfg.batch
        loss_avg = loss.item() if loss_avg is None else 0.98 * loss_avg + 0.02 * loss.item()
        bar.update(1)
        bar.set_postfix(loss=f"{loss_avg:.4f}", img_s=f"{images_seen / (time.time() - start):.1f}", refresh=False)
        out_of_time = cfg.max_minutes is not None and time.time() - start > 60 * cfg.max_minutes
        if time.time() - last_ckpt > 60 * cfg.checkpoint_minutes or state.step == cfg.steps or out_of_time:
            save_checkpoint(state, out, cfg)
            last_ckpt = time.time()
            if cfg.holdout > 0:
                log(f"step {state.step}: {evaluate(state.ema, data, range(n_train, n), cfg.image_view)}")
            if out_of_time:
                log(f"stopped after {cfg.max_minutes} minutes at step {state.step}; --resume continues")
                break
    bar.close()
    return state


__all__ = [
    "EvalResult",
    "TrainConfig",
    "TrainState",
    "export_ema",
    "load_checkpoint",
    "save_checkpoint",
    "train",
]
