"""Training the toy prior: a plain loop, readable top to bottom.

Each step draws scenes, picks one of their two views to denoise, and drops each condition
independently (classifier-free dropout): text with ``p_drop_text``, the image with ``p_drop_image``,
the camera with ``p_drop_camera``. With the defaults (0.3, 0.5, 0.3) 35% of rows are "text only", 35%
"text + image", 15% "image only" and 15% neither, so text gets most of the signal (a row that sees its
own view as the image condition barely needs the text) while the image branch still learns the
reconstruction AnchorDS relies on. The image condition is the view being denoised
(``image_view="same"``) or the scene's other view (``"other"``). A fraction of captions get the view
suffix (", front view", ...) of the denoised camera, named by threestudio's rule.

A multi-view network (``ToyUNetConfig.views`` = G > 1, usually inflated from the shipped prior with
``init``) trains on groups (``draw_group_batch``): each step draws ``batch`` scenes, and each is either a
group of its G views from the dataset's groups (one caption, no view suffix, cameras always kept, one t
for the group and independent noise per view, as MVDream trains), or, with probability ``p_single_view``, a
single view drawn as above (a group of one), so the checkpoint keeps the single-view prior it starts from
(MVDream keeps training on 2D images alongside its multi-view renders for the same reason).

Loss (``loss_weighting``): the network's target (ε, or v for a v-prediction model) under
- ``"uniform"``: DDPM's L_simple, ``‖ε − ε̂‖²`` at uniform t (Ho et al. 2020, Eq. 14);
- ``"min-snr"``: min-SNR-γ weighting (Hang et al. 2023, Eq. 11), w(t) = min(SNR(t), γ) / SNR(t) for ε
  (/ (SNR(t) + 1) for v), which stops the nearly clean timesteps from dominating the gradient.
AdamW with linear warm-up, then a constant rate or a cosine decay to ``lr · lr_final`` at ``steps``,
gradient clipping, an EMA of the weights. Everything random comes from one ``torch.Generator`` whose
state is checkpointed, so ``resume`` continues bit-identically (same thread count).

At each checkpoint the EMA model is measured on held-out scenes (ε-MSE, L_rec) and, when a judge is
given, by judged DDIM samples of held-out captions (``judged_accuracy``; a multi-view network also by groups of
views drawn jointly and judged view by view against the truth, ``judged_group_accuracy``); the figures go to the progress
bar and one JSON line per evaluation to ``out/log.jsonl`` (step, wall minutes, loss, accuracies).

Checkpoint (``out/checkpoint.safetensors`` + ``out/checkpoint.json``): model, EMA and AdamW tensors and
the generator state in safetensors; the step, configs, elapsed wall time and AdamW hyper-parameters in
JSON. Nothing is unpickled on resume.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Protocol

import torch
from torch import Tensor

from distill3d.core.cameras import view_direction
from distill3d.core.errors import UserError
from distill3d.core.io import atomic_path, write_json_atomic
from distill3d.priors.base import alphas_cumprod_cosine
from distill3d.priors.toy.evaluate import EvalResult, evaluate, judged_accuracy, judged_group_accuracy
from distill3d.priors.toy.model import ModelConditions, ToyUNet, ToyUNetConfig
from distill3d.priors.toy.prior import save_model

CHECKPOINT = "checkpoint.safetensors"
CHECKPOINT_META = "checkpoint.json"


class JudgeLike(Protocol):
    """What training reads from ``distill3d.toyworld.judge.Judge``: images -> one result each."""

    def __call__(self, images: Tensor) -> list: ...


class ToyDataLike(Protocol):
    """What training reads from ``distill3d.toyworld.dataset.ToyData``."""

    images: Tensor  # [N, 3, S, S] uint8, view 1
    images2: Tensor  # [N, 3, S, S] uint8, view 2 of the same scene
    captions: list[str]
    cameras: Tensor  # [N, 2, 2] float: (azimuth, elevation) degrees of view 1 and view 2
    # A multi-view network also reads ``group_images`` [N, G, 3, S, S] uint8 and ``group_cameras`` [N, G, 2]
    # (``distill3d toy dataset --views G``); a single-view one never does.


LOSS_WEIGHTINGS = ("uniform", "min-snr")
LR_SCHEDULES = ("constant", "cosine")


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 20_000
    batch: int = 32
    lr: float = 1e-3
    warmup: int = 200  # steps of linear learning-rate warm-up
    lr_schedule: str = "cosine"  # after warm-up: "constant", or "cosine" decay to lr · lr_final at `steps`
    lr_final: float = 0.05
    loss_weighting: str = "min-snr"  # "uniform" (L_simple) or "min-snr" (min-SNR-γ)
    snr_gamma: float = 5.0  # γ of min-SNR-γ (the paper's choice)
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    p_drop_text: float = 0.3
    p_drop_image: float = 0.5
    p_drop_camera: float = 0.3
    p_view_suffix: float = 0.3  # share of captions with the denoised view's ", <name> view"
    image_view: str = "same"  # "same": the image condition is the denoised view; "other": the other view
    p_single_view: float = 0.3  # multi-view network only: share of scenes trained as one single view
    seed: int = 0
    holdout: int = 64  # the last scenes, never trained on, for the ε-MSE evaluation at each checkpoint
    eval_captions: int = 4  # held-out captions per caption kind judged at each checkpoint (0: no judging)
    eval_samples: int = 4  # DDIM samples per caption at each checkpoint
    checkpoint_minutes: float = 10.0
    max_minutes: float | None = None  # stop (with a checkpoint) after this much wall time

    def __post_init__(self) -> None:
        if self.image_view not in ("same", "other"):
            raise UserError(f"image_view must be 'same' or 'other', got {self.image_view!r}")
        if self.loss_weighting not in LOSS_WEIGHTINGS:
            raise UserError(f"loss_weighting must be one of {', '.join(LOSS_WEIGHTINGS)}, got {self.loss_weighting!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise UserError(f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}, got {self.lr_schedule!r}")
        for name in ("p_drop_text", "p_drop_image", "p_drop_camera", "p_view_suffix", "p_single_view", "lr_final"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise UserError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.steps < 1 or self.batch < 1 or self.warmup < 1 or not self.lr > 0 or not self.snr_gamma > 0:
            raise UserError("steps, batch and warmup must be >= 1 and lr, snr_gamma > 0")


@dataclass
class TrainState:
    model: ToyUNet
    ema: ToyUNet
    optimizer: torch.optim.AdamW
    generator: torch.Generator
    step: int = 0
    minutes: float = 0.0  # wall time spent training up to ``step``, over every resumed phase


@dataclass(frozen=True)
class Batch:
    x0: Tensor  # [B, 3, S, S] in [-1, 1], the views to denoise
    captions: list[str]  # "" where text is dropped
    cond_image: Tensor  # [R, 3, S, S] in [0, 1]
    image_rows: Tensor  # [R]
    camera: Tensor  # [B, 2]
    camera_mask: Tensor  # [B]
    groups: tuple[int, ...] = ()  # sizes of the consecutive groups of rows denoised jointly; (): each row alone


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


def draw_group_batch(data: ToyDataLike, n_train: int, cfg: TrainConfig, g: torch.Generator, views: int) -> Batch:
    """``cfg.batch`` scenes for a network denoising groups of ``views`` views: those drawn single (probability
    ``p_single_view``) as :func:`draw_batch`'s rows first, then the others as groups of their ``views`` views
    (the dataset's groups, consecutive rows). A group has one caption (dropped with ``p_drop_text``, no view
    suffix), its cameras always, and the image condition (each view its own, or with ``image_view="other"``
    the group's next view) dropped with ``p_drop_image``, per group."""
    group_images = getattr(data, "group_images", None)
    if group_images is None or group_images.shape[1] != views:
        raise UserError(f"a network denoising groups of {views} views trains on a dataset with groups of {views} "
                        f"views: build one with `distill3d toy dataset ... --views {views}`")
    single = int((torch.rand(cfg.batch, generator=g) < cfg.p_single_view).sum())
    m = cfg.batch - single
    idx = torch.randint(n_train, (m,), generator=g)
    keep_text = torch.rand(m, generator=g) >= cfg.p_drop_text
    keep_image = (torch.rand(m, generator=g) >= cfg.p_drop_image).repeat_interleave(views)
    views_u8 = group_images[idx]  # [m, G, 3, S, S]
    x = to_unit(views_u8).flatten(0, 1)  # [m·G, 3, S, S], group after group
    cond = x if cfg.image_view == "same" else to_unit(views_u8.roll(-1, dims=1)).flatten(0, 1)
    rows = keep_image.nonzero()[:, 0]
    grouped = Batch(2.0 * x - 1.0, [data.captions[int(i)] if keep else "" for i, keep in zip(idx, keep_text)
                                    for _ in range(views)],
                    cond[rows], rows, data.group_cameras[idx].flatten(0, 1).float(),
                    torch.ones(m * views, dtype=torch.bool))
    if single == 0:
        return replace(grouped, groups=(views,) * m)
    one = draw_batch(data, n_train, replace(cfg, batch=single), g)
    return Batch(torch.cat([one.x0, grouped.x0]), one.captions + grouped.captions,
                 torch.cat([one.cond_image, grouped.cond_image]), torch.cat([one.image_rows, single + rows]),
                 torch.cat([one.camera, grouped.camera]), torch.cat([one.camera_mask, grouped.camera_mask]),
                 (1,) * single + (views,) * m)


def loss_weight(snr: Tensor, cfg: TrainConfig, prediction: str) -> Tensor:
    """w(t) per row: 1 for "uniform"; min-SNR-γ (Hang et al. 2023, Eq. 11): min(SNR, γ)/SNR for an
    ε target, min(SNR, γ)/(SNR + 1) for a v target (the same weight expressed on x0 for both)."""
    if cfg.loss_weighting == "uniform":
        return torch.ones_like(snr)
    return snr.clamp_max(cfg.snr_gamma) / (snr if prediction == "eps" else snr + 1.0)


def loss_on_batch(model: ToyUNet, batch: Batch, alphas_cumprod: Tensor, g: torch.Generator,
                  cfg: TrainConfig = TrainConfig()) -> Tensor:
    """E_t[w(t) ‖target − f(√ᾱ_t x0 + √(1−ᾱ_t) ε; t, c)‖²], target ε (DDPM Eq. 14) or
    v = √ᾱ_t ε − √(1−ᾱ_t) x0 (Salimans & Ho 2022) by the model's ``prediction``. One t per group of
    ``batch.groups`` (per row without groups), independent ε per row."""
    dev = alphas_cumprod.device
    b = batch.x0.shape[0]
    sizes = torch.tensor(batch.groups or (1,) * b)
    t = torch.randint(len(alphas_cumprod), (len(sizes),), generator=g).repeat_interleave(sizes)
    noise = torch.randn(batch.x0.shape, generator=g)
    x0, t, noise = batch.x0.to(dev), t.to(dev), noise.to(dev)
    a = alphas_cumprod[t][:, None, None, None]
    z_t = a.sqrt() * x0 + (1 - a).sqrt() * noise
    text, mask = model.encode_text(batch.captions)
    cond = ModelConditions(text, mask, batch.camera.to(dev), batch.camera_mask.to(dev),
                           batch.cond_image.to(dev), batch.image_rows.to(dev),
                           torch.ones(len(batch.image_rows), device=dev), batch.groups)
    pred = model.config.prediction
    target = noise if pred == "eps" else a.sqrt() * noise - (1 - a).sqrt() * x0
    w = loss_weight(a / (1 - a), cfg, pred).reshape(b)
    return (w * (model(z_t, t, cond) - target).pow(2).mean(dim=(1, 2, 3))).mean()


def new_state(model_cfg: ToyUNetConfig, cfg: TrainConfig, device: torch.device) -> TrainState:
    torch.manual_seed(cfg.seed)  # parameter initialisation
    model = ToyUNet(model_cfg).to(device)
    ema = ToyUNet(model_cfg).to(device).requires_grad_(False)
    ema.load_state_dict(model.state_dict())
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    return TrainState(model, ema, opt, torch.Generator().manual_seed(cfg.seed))


def learning_rate(cfg: TrainConfig, step: int) -> float:
    """Linear warm-up over ``warmup`` steps, then constant or a cosine decay to ``lr · lr_final``."""
    if step < cfg.warmup or cfg.lr_schedule == "constant":
        return cfg.lr * min(1.0, (step + 1) / cfg.warmup)
    progress = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
    return cfg.lr * (cfg.lr_final + (1 - cfg.lr_final) * 0.5 * (1 + math.cos(math.pi * progress)))


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
    write_json_atomic(out / CHECKPOINT_META, {"step": state.step, "minutes": state.minutes, "train": asdict(cfg),
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
    state.minutes = float(meta.get("minutes", 0.0))
    return state


def export_ema(out: str | Path, path: str | Path) -> None:
    """Write the EMA weights of the checkpoint in ``out`` to ``path`` (fp16) + its JSON config."""
    state = load_checkpoint(Path(out), TrainConfig(), torch.device("cpu"))
    save_model(state.ema, path, half=True)


def train(data: ToyDataLike, model_cfg: ToyUNetConfig, cfg: TrainConfig, out: str | Path, resume: bool = False,
          device: str | torch.device = "cpu", progress: bool = True,
          log: Callable[[str], None] = print, judge: JudgeLike | None = None,
          stop_at: int | None = None, init: ToyUNet | None = None) -> TrainState:
    """Train (or resume) until ``cfg.steps``; checkpoint and evaluate every ``cfg.checkpoint_minutes``
    and at the end (judged held-out accuracy too when ``judge`` is given). ``stop_at`` stops earlier,
    with a checkpoint, without changing the schedule (which ``cfg.steps`` sets), as an interruption would.
    ``init`` fine-tunes: a fresh run's model and EMA start from its weights (its config replaces
    ``model_cfg``), with a fresh optimiser and schedule; a resumed run ignores it (the checkpoint holds both).
    A network with ``views`` > 1 trains on groups (:func:`draw_group_batch`)."""
    from tqdm import tqdm

    out, device = Path(out), torch.device(device)
    out.mkdir(parents=True, exist_ok=True)
    n = len(data.captions)
    n_train = n - cfg.holdout
    if n_train < 1:
        raise UserError(f"the dataset has {n} scenes; at least {cfg.holdout + 1} are needed")
    if resume:
        state = load_checkpoint(out, cfg, device)
    else:
        state = new_state(init.config if init is not None else model_cfg, cfg, device)
        if init is not None:  # fine-tune: both start from the given weights
            state.model.load_state_dict(init.state_dict())
            state.ema.load_state_dict(init.state_dict())
    alphas_cumprod = alphas_cumprod_cosine().to(device)
    start, last_ckpt, minutes0, images_seen, loss_avg = time.time(), time.time(), state.minutes, 0, None
    bar = tqdm(total=cfg.steps, initial=state.step, disable=not progress, mininterval=10, dynamic_ncols=True)
    postfix: dict[str, str] = {}
    end = cfg.steps if stop_at is None else min(stop_at, cfg.steps)
    while state.step < end:
        for group in state.optimizer.param_groups:
            group["lr"] = learning_rate(cfg, state.step)
        views = state.model.config.views
        batch = (draw_batch(data, n_train, cfg, state.generator) if views == 1
                 else draw_group_batch(data, n_train, cfg, state.generator, views))
        loss = loss_on_batch(state.model, batch, alphas_cumprod, state.generator, cfg)
        state.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(state.model.parameters(), cfg.grad_clip)
        state.optimizer.step()
        update_ema(state.ema, state.model, cfg.ema_decay, state.step)
        state.step += 1
        images_seen += batch.x0.shape[0]
        state.minutes = minutes0 + (time.time() - start) / 60
        loss_avg = loss.item() if loss_avg is None else 0.98 * loss_avg + 0.02 * loss.item()
        bar.update(1)
        postfix |= {"loss": f"{loss_avg:.4f}", "img/s": f"{images_seen / (time.time() - start):.1f}"}
        bar.set_postfix(postfix, refresh=False)
        out_of_time = cfg.max_minutes is not None and time.time() - start > 60 * cfg.max_minutes
        if time.time() - last_ckpt > 60 * cfg.checkpoint_minutes or state.step == end or out_of_time:
            save_checkpoint(state, out, cfg)
            record: dict = {"step": state.step, "minutes": round(state.minutes, 2), "loss": loss_avg,
                            "lr": learning_rate(cfg, state.step - 1)}
            if cfg.holdout > 0:
                result = evaluate(state.ema, data, range(n_train, n), cfg.image_view)
                record |= {"eval": asdict(result)}
                log(f"step {state.step}: {result}")
            if judge is not None and cfg.eval_captions > 0:
                acc = judged_accuracy(state.ema, judge, cfg.eval_captions, cfg.eval_samples)
                if state.ema.config.views > 1:  # and groups of views drawn jointly, judged view by view
                    acc |= judged_group_accuracy(state.ema, judge, cfg.eval_captions, max(1, cfg.eval_samples // 2))
                record |= {"judged": acc}
                postfix |= {k.replace(" ", "_"): f"{v:.0%}" for k, v in acc.items()}
                log(f"step {state.step} ({state.minutes:.1f} min): judged held-out "
                    + ", ".join(f"{k} {v:.0%}" for k, v in acc.items()))
            with open(out / "log.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")
            last_ckpt = time.time()
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
