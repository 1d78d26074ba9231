"""Stable Diffusion (1.5 / 2.1) through diffusers behind the ``Prior`` protocol, with an optional
IP-Adapter(-Plus) image branch and an optional ControlNet.

Choices, in one place:
- Weights come from a local folder or the Hugging Face cache only (``distill3d.priors.weights``).
- ``encode`` uses the VAE posterior's *mean* (times ``scaling_factor``), not a sample: the posterior std of
  SD's VAE is tiny next to the diffusion noise, and a deterministic encoder makes a step repeatable and the
  AnchorDS reconstruction L_rec compare against a fixed z. (threestudio samples; the difference is the
  posterior std, ~1e-2 of the latent scale.)
- ``predict_noise`` makes ONE UNet call for the whole list of conditions (plus one ControlNet call for the
  rows with a control map). Per row: the text embedding (cached by string), an optional IP-Adapter image
  with its own λ_ip (``sd_attention``), and an optional ControlNet map with its own conditioning scale. A
  row without image and map (or with both scales 0) is exactly the text-only UNet.
- v-prediction networks (SD 2.1 768-v) are converted to ε: ε = √ᾱ_t v + √(1−ᾱ_t) z_t, so guidance never
  branches on the prediction type. Outputs are float32 whatever the network's dtype.
- Where ``Condition.image`` goes: to the IP-Adapter only. ``Condition.control`` (a normal or depth map,
  ``control_kind``, made from the render by ``distill3d.scene.control``) goes to the ControlNet only, times
  ``control_scale``. Both may be configured at once and a batch may mix image rows, map rows and rows with
  both; an image (or a map) that arrives without its IP-Adapter (or ControlNet) is a ``UserError``. As in
  diffusers' ControlNet pipelines, the ControlNet's own cross-attention sees the text only.
- The adapter's image encoder sees the image as diffusers' CLIPImageProcessor prepares it (default), or with
  ``ip_image_input="raw"`` as AnchorDS' code hands it over: the [0, 1] render resized bilinearly to 224²,
  not normalised (``raw_resize``).
- The image branch is computed without gradient to the image itself (renders are stop-gradient in every
  method); the adapter's K/V projections do receive gradients when the caller enables them
  (``adapter_layer(...).requires_grad_(True)``). Every other weight is frozen.
- ``camera`` is ignored: SD has no camera input (view-dependent prompts are plain texts to this prior),
  except by the camera-conditioned LoRA copy of ``trainable_denoiser`` (VSD).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from distill3d.core.errors import UserError
from distill3d.priors.base import Condition, ViewCapabilities
from distill3d.priors.lora import LoRADenoiser
from distill3d.priors.sd_attention import IPRows, install_row_scaled_processors
from distill3d.priors.weights import (
    CONTROLNET_WEIGHTS,
    IP_ADAPTER_WEIGHTS,
    SD_WEIGHTS,
    import_diffusers,
    load_local,
)

# OpenAI CLIP's normalisation, which IP-Adapter's CLIPImageProcessor uses (diffusers builds the
# processor with these defaults and size = the image encoder's image_size, 224 for ViT-H/14).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

SD15 = "runwayml/stable-diffusion-v1-5"
SD21 = "stabilityai/stable-diffusion-2-1-base"
IP_ADAPTER = "h94/IP-Adapter"
IP_ADAPTER_PLUS_SD15 = "ip-adapter-plus_sd15.safetensors"
CONTROLNET_SD15 = {"normal": "lllyasviel/control_v11p_sd15_normalbae",
                   "depth": "lllyasviel/control_v11f1p_sd15_depth"}


@dataclass(frozen=True)
class StableDiffusionConfig:
    """What to load and how to run it."""

    #: A diffusers folder or a Hugging Face id already in the local cache.
    model: str = SD15
    #: IP-Adapter folder or id (``None``: no image adapter). AnchorDS/ISD use IP-Adapter-Plus on SD 1.5.
    ip_adapter: str | None = None
    #: Subfolder of ``ip_adapter`` holding the weight file and ``image_encoder/``.
    ip_adapter_subfolder: str = "models"
    #: Weight file of the adapter (IP-Adapter and IP-Adapter-Plus are both understood).
    ip_adapter_weight: str = IP_ADAPTER_PLUS_SD15
    #: How an image reaches the adapter's CLIP image encoder: "clip" (diffusers' CLIPImageProcessor:
    #: bicubic resize, centre crop, CLIP mean/std; ``clip_preprocess``) or "raw" (AnchorDS' code: the [0, 1]
    #: render resized bilinearly to the encoder's input size, 224² for ViT-H/14, not normalised; ``raw_resize``).
    ip_image_input: Literal["clip", "raw"] = "clip"
    #: ControlNet folder or id (``None``: no ControlNet). Its map arrives as ``Condition.control``.
    controlnet: str | None = None
    #: What the ControlNet's map is (``distill3d.scene.control``): a NormalBAE-coloured normal map
    #: (control_v11p_sd15_normalbae) or a relative inverse depth map (control_v11f1p_sd15_depth; one channel
    #: is repeated to 3).
    controlnet_kind: Literal["normal", "depth"] = "normal"
    #: "auto": float16 on CUDA, float32 on CPU (this CPU has no fast half precision).
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    #: "auto": CUDA when available, else CPU.
    device: str = "auto"
    #: Store the UNet (and ControlNet) weights channels-last (NHWC), which cuDNN/oneDNN convolutions may
    #: prefer; the predictions are the same up to float rounding. ``benchmarks/bench_sd_step.py --flags``
    #: measures it. Attention slicing is not offered: the row-scaled IP-Adapter processors replace
    #: diffusers' attention processors, and PyTorch's fused attention already keeps memory linear.
    channels_last: bool = False


def _pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _pick_dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    return getattr(torch, name)


def clip_preprocess(images: Tensor, size: int) -> Tensor:
    """CLIPImageProcessor's steps in torch: shortest side to ``size`` (bicubic), centre crop, OpenAI CLIP
    normalisation. Images [B, 3, H, W] in [0, 1] -> [B, 3, size, size]."""
    h, w = images.shape[-2:]
    scale = size / min(h, w)
    hs, ws = max(size, int(h * scale)), max(size, int(w * scale))  # int(), as transformers does
    x = F.interpolate(images, size=(hs, ws), mode="bicubic", antialias=True, align_corners=False)
    top, left = (hs - size) // 2, (ws - size) // 2
    x = x[..., top:top + size, left:left + size].clamp(0, 1)
    mean = x.new_tensor(CLIP_MEAN)[:, None, None]
    std = x.new_tensor(CLIP_STD)[:, None, None]
    return (x - mean) / std


def raw_resize(images: Tensor, size: int) -> Tensor:
    """AnchorDS' image input (manqiwu/AnchorDS ip_adapter_guidance.py: ``F.interpolate(rgb_BCHW, (224, 224),
    mode="bilinear", align_corners=False)`` handed as a tensor to diffusers' ``encode_image``, which then skips
    the feature extractor): bilinear, no antialias, no crop, no normalisation. [B, 3, H, W] in [0, 1] ->
    [B, 3, size, size] in [0, 1]."""
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)


class StableDiffusionPrior(nn.Module):
    """A diffusers Stable Diffusion as a ``Prior`` (see the module docstring for every choice made)."""

    #: The protocol's optional ``view_capabilities``: Stable Diffusion has no camera input, ``Condition.camera``
    #: is ignored.
    view_capabilities = ViewCapabilities(conditions_on_cameras=False)

    def __init__(self, config: StableDiffusionConfig = StableDiffusionConfig()) -> None:
        """Load everything ``config`` names from local folders or the Hugging Face cache."""
        super().__init__()
        diffusers, _ = import_diffusers()
        device = _pick_device(config.device)
        dtype = _pick_dtype(config.dtype, device)
        pipe = load_local(SD_WEIGHTS, config.model, lambda src: diffusers.StableDiffusionPipeline.from_pretrained(
            src, dtype=dtype, local_files_only=True, safety_checker=None, requires_safety_checker=False,
            low_cpu_mem_usage=False))
        if config.ip_adapter:
            load_local(IP_ADAPTER_WEIGHTS, config.ip_adapter, lambda src: pipe.load_ip_adapter(
                src, subfolder=config.ip_adapter_subfolder, weight_name=config.ip_adapter_weight,
                local_files_only=True, low_cpu_mem_usage=False))
        controlnet = None
        if config.controlnet:
            controlnet = load_local(CONTROLNET_WEIGHTS, config.controlnet,
                                    lambda src: diffusers.ControlNetModel.from_pretrained(
                                        src, dtype=dtype, local_files_only=True))
        self._setup(pipe, controlnet, config, device, dtype)

    @classmethod
    def from_pipeline(cls, pipe, controlnet: nn.Module | None = None,
                      config: StableDiffusionConfig = StableDiffusionConfig()) -> StableDiffusionPrior:
        """Wrap an already built ``StableDiffusionPipeline`` (an IP-Adapter, if any, already loaded into
        it with ``load_ip_adapter``); ``config`` only supplies device, dtype, ``controlnet_kind`` and
        ``ip_image_input``."""
        prior = cls.__new__(cls)
        nn.Module.__init__(prior)
        device = _pick_device(config.device)
        prior._setup(pipe, controlnet, config, device, _pick_dtype(config.dtype, device))
        return prior

    def _setup(self, pipe, controlnet: nn.Module | None, config: StableDiffusionConfig,
               device: torch.device, dtype: torch.dtype) -> None:
        self.config, self._device, self.dtype = config, device, dtype
        self.unet, self.vae = pipe.unet, pipe.vae
        self.text_encoder, self.tokenizer, self.scheduler = pipe.text_encoder, pipe.tokenizer, pipe.scheduler
        self.prediction_type: str = self.scheduler.config.prediction_type
        if self.prediction_type not in ("epsilon", "v_prediction"):
            raise UserError(f"unsupported prediction type '{self.prediction_type}' in {config.model}")
        self.num_timesteps: int = self.scheduler.config.num_train_timesteps
        vae_factor = 2 ** (len(self.vae.config.block_out_channels) - 1)
        self.image_size: int = self.unet.config.sample_size * vae_factor
        self._alphas_cumprod = self.scheduler.alphas_cumprod.float().to(device)
        self._text_cache: dict[str, Tensor] = {}
        self._ip_rows = IPRows()
        self.image_encoder: nn.Module | None = None
        self.image_proj: nn.Module | None = None
        self.ip_layers: dict[str, nn.Module] = {}
        if self.unet.encoder_hid_proj is not None:  # an IP-Adapter was loaded into the pipeline
            self._take_ip_adapter(pipe)
        self.controlnet = controlnet
        #: The ``Prior`` protocol's optional ``control_kind``: the map kind, None without a ControlNet.
        self.control_kind: str | None = config.controlnet_kind if controlnet is not None else None
        #: The protocol's optional ``takes_images``: whether ``Condition.image`` has an adapter to go to.
        self.takes_images = self.image_proj is not None
        self.to(device=device, dtype=dtype)
        self.requires_grad_(False)
        self.eval()
        if config.channels_last:
            for net in (self.unet, self.controlnet):
                if net is not None:
                    net.to(memory_format=torch.channels_last)

    def _take_ip_adapter(self, pipe) -> None:
        from diffusers.models.embeddings import ImageProjection

        # The projection (Resampler for -Plus) runs here, on the image rows only; the UNet then sees plain
        # text states and the processors add the image branch per row (sd_attention).
        self.image_proj = self.unet.encoder_hid_proj.image_projection_layers[0]
        self.unet.encoder_hid_proj = None
        self.image_encoder = pipe.image_encoder
        self._ip_plus = not isinstance(self.image_proj, ImageProjection)  # -Plus reads CLIP's patch tokens
        self.ip_layers = install_row_scaled_processors(self.unet, self._ip_rows)

    # ---- Prior protocol -------------------------------------------------------------------------

    @property
    def alphas_cumprod(self) -> Tensor:
        return self._alphas_cumprod  # [T]

    @property
    def device(self) -> torch.device:
        return self._device

    def encode(self, images: Tensor) -> Tensor:
        """Images [B, 3, H, W] in [0, 1] (resized to image_size if needed) -> latents [B, 4, S/8, S/8]."""
        images = self._resize(images.to(self._device))
        posterior = self.vae.encode((2 * images - 1).to(self.dtype)).latent_dist
        return (posterior.mean * self.vae.config.scaling_factor).float()

    def decode(self, latents: Tensor) -> Tensor:
        """Latents [B, 4, h, w] -> images [B, 3, S, S] in [0, 1]."""
        x = self.vae.decode((latents / self.vae.config.scaling_factor).to(self.dtype)).sample
        return ((x.float() + 1) / 2).clamp(0, 1)

    def predict_noise(self, z_t: Tensor, t: Tensor, conditions: Sequence[Condition]) -> Tensor:
        """ε̂ [N, 4, h, w] for latents z_t [N, 4, h, w] at timesteps t [N], one condition per row."""
        n = z_t.shape[0]
        if len(conditions) != n or t.shape != (n,):
            raise ValueError(f"need one condition and one timestep per row: {n} rows, "
                             f"{len(conditions)} conditions, t of shape {tuple(t.shape)}")
        t = t.to(self._device)
        z = z_t.to(self._device, self.dtype)
        image_rows = [i for i, c in enumerate(conditions) if c.image is not None and c.image_scale != 0]
        control_rows = [i for i, c in enumerate(conditions) if c.control is not None and c.control_scale != 0]
        if image_rows and self.image_proj is None:
            raise UserError("a condition carries an image but this Stable Diffusion prior has no IP-Adapter: "
                            "configure --ip-adapter (or set the method's image_scale to 0)")
        if control_rows and self.controlnet is None:
            raise UserError("a condition carries a control map but this Stable Diffusion prior has no "
                            "ControlNet: configure --controlnet and --controlnet-kind")
        text = self.text_embeddings([c.text for c in conditions])  # [N, L, D]
        residuals = self._control_residuals(z, t, text, control_rows, conditions) if control_rows else {}
        if image_rows:
            self._set_image_rows(image_rows, conditions)
        try:
            out = self.unet(z, t, encoder_hidden_states=text, **residuals,
                            **self._unet_inputs(conditions)).sample
        finally:
            self._ip_rows.rows = self._ip_rows.tokens = self._ip_rows.scale = None
        return self._to_epsilon(out.float(), z_t.to(self._device).float(), t)

    def adapter_layer(self, name: str | None = None) -> nn.Module:
        """The IP K/V projections of one UNet block (``"up_blocks.3"``, ``"mid_block"``, ...), as a
        ModuleList of that block's IP processors. Default: the last up block with cross-attention, the
        layer AnchorDS' code fine-tunes (~1.5 M parameters on SD 1.5)."""
        blocks: dict[str, list[nn.Module]] = {}
        for layer, proc in self.ip_layers.items():
            block = "mid_block" if layer.startswith("mid_block") else ".".join(layer.split(".")[:2])
            blocks.setdefault(block, []).append(proc)
        if name is None:
            ups = sorted((b for b in blocks if b.startswith("up_blocks.")), key=lambda b: int(b.split(".")[1]))
            name = ups[-1] if ups else None
        if name not in blocks:
            valid = sorted(blocks) or "none (no IP-Adapter loaded)"
            raise KeyError(f"no image-adapter layer {name!r}; valid names: {valid}")
        return nn.ModuleList(blocks[name])

    def trainable_denoiser(self, rank: int = 4) -> LoRADenoiser:
        """VSD's ε̂_φ as ProlificDreamer trains it: a rank-``rank`` LoRA (float32) on the q/k/v/out
        projections of every UNet attention (self- and cross-attention; diffusers' LoRA attention processors
        adapt the same four) and a camera embedding added to the UNet's timestep embedding, as ProlificDreamer's
        camera-conditioned LoRA UNet does through its class embedding (``distill3d.priors.lora``). The
        IP-Adapter's K/V and the ControlNet are left alone. Starts equal to this prior."""
        linears = {name: m for name, m in self.unet.named_modules() if isinstance(m, nn.Linear)
                   and name.endswith((".to_q", ".to_k", ".to_v", ".to_out.0"))}
        dim = self.unet.time_embedding.linear_2.out_features
        return LoRADenoiser(self.predict_noise, linears, self.unet.time_embedding, dim, rank, self._device)

    # ---- pieces ---------------------------------------------------------------------------------

    def text_embeddings(self, texts: Sequence[str]) -> Tensor:
        """CLIP text states for each text, cached by string. [N, L, D]"""
        missing = sorted({s for s in texts if s not in self._text_cache})
        if missing:
            ids = self.tokenizer(missing, padding="max_length", max_length=self.tokenizer.model_max_length,
                                 truncation=True, return_tensors="pt").input_ids.to(self._device)
            with torch.no_grad():
                states = self.text_encoder(ids)[0].to(self.dtype)
            self._text_cache.update(zip(missing, states))
        return torch.stack([self._text_cache[s] for s in texts])

    @torch.no_grad()
    def image_tokens(self, images: Sequence[Tensor]) -> Tensor:
        """IP-Adapter image tokens for K images [3, H, W] in [0, 1] (any sizes) -> [K, M, D] (M = 4, or 16
        for -Plus on SD 1.5). -Plus projects CLIP's penultimate hidden states, IP-Adapter its image embedding.
        The encoder's input is ``config.ip_image_input``'s: CLIP-preprocessed, or the raw bilinear resize."""
        size = self.image_encoder.config.image_size
        prepare = clip_preprocess if self.config.ip_image_input == "clip" else raw_resize
        pixels = torch.cat([prepare(im[None].to(self._device).float(), size) for im in images])
        pixels = pixels.to(self.dtype)  # [K, 3, size, size]
        if self._ip_plus:
            feats = self.image_encoder(pixels, output_hidden_states=True).hidden_states[-2]  # [K, 257, 1280]
        else:
            feats = self.image_encoder(pixels).image_embeds  # [K, 1024]
        return self.image_proj(feats)

    def _unet_inputs(self, conditions: Sequence[Condition]) -> dict:
        """Further UNet inputs for a batch: none here; a subclass whose UNet takes more (the MVDream prior: its
        cameras and groups of views, ``distill3d.priors.mvdream``) returns them."""
        return {}

    def _set_image_rows(self, rows: list[int], conditions: Sequence[Condition]) -> None:
        self._ip_rows.tokens = self.image_tokens([conditions[i].image for i in rows])
        self._ip_rows.rows = torch.tensor(rows, device=self._device)
        self._ip_rows.scale = torch.tensor([conditions[i].image_scale for i in rows], device=self._device)

    def _control_residuals(self, z: Tensor, t: Tensor, text: Tensor, rows: list[int],
                           conditions: Sequence[Condition]) -> dict:
        """ControlNet residuals for the map rows, times each row's scale; zero (exactly) elsewhere. The
        ControlNet sees the text states only (its cross-attention has no image branch)."""
        maps = torch.stack([self._control_map(conditions[i].control) for i in rows])  # [K, 3, S, S]
        idx = torch.tensor(rows, device=self._device)
        scale = torch.tensor([conditions[i].control_scale for i in rows], device=self._device,
                             dtype=self.dtype)
        down, mid = self.controlnet(z[idx], t[idx], encoder_hidden_states=text[idx], controlnet_cond=maps,
                                    conditioning_scale=1.0, return_dict=False)

        def scatter(r: Tensor) -> Tensor:
            full = r.new_zeros((z.shape[0], *r.shape[1:]))
            return full.index_copy(0, idx, scale[:, None, None, None] * r)

        return {"down_block_additional_residuals": [scatter(r) for r in down],
                "mid_block_additional_residual": scatter(mid)}

    def _control_map(self, image: Tensor) -> Tensor:
        """A normal map [3, H, W] or depth map [1 or 3, H, W] in [0, 1] -> [3, S, S] in the prior's dtype."""
        if self.control_kind == "depth" and image.ndim == 3 and image.shape[0] == 1:
            image = image.expand(3, -1, -1)
        if image.ndim != 3 or image.shape[0] != 3:
            raise UserError(f"a {self.control_kind} control map must be [3, H, W], got {list(image.shape)}")
        return self._resize(image[None].to(self._device).float())[0].to(self.dtype)

    def _resize(self, images: Tensor) -> Tensor:
        if images.shape[-1] == images.shape[-2] == self.image_size:
            return images
        return F.interpolate(images, size=(self.image_size, self.image_size), mode="bilinear",
                             align_corners=False, antialias=True)

    def _to_epsilon(self, out: Tensor, z_t: Tensor, t: Tensor) -> Tensor:
        if self.prediction_type == "epsilon":
            return out
        a = self._alphas_cumprod[t][:, None, None, None]
        return a.sqrt() * out + (1 - a).sqrt() * z_t  # v -> ε: ε = √ᾱ_t v + √(1−ᾱ_t) z_t
