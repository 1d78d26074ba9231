"""Cost of AnchorDS' image-anchored source branch on a full-size Stable Diffusion 1.5 UNet.

Builds SD 1.5's UNet (860 M parameters), IP-Adapter-Plus (CLIP ViT-H/14 image encoder, Resampler, image
K/V projections in every cross-attention layer) with RANDOM weights (nothing is downloaded: the cost of a
step does not depend on the weights) and times, at 64x64 latents, through ``StableDiffusionPrior``:

- ``sds``:       one batched prediction of 2 rows, [y, ∅] (cond + uncond);
- ``anchords``:  one batched prediction of 2 rows, [y, (∅, render, λ_ip=0.5)], which includes encoding
                 the render with the CLIP image encoder and the Resampler;
- ``finetune``:  AnchorDS' fine-tune inner step: one grad-enabled source prediction and the backward pass
                 into the adapter layer (the last up block's image K/V projections).

The VAE is a small random one (encode/decode are not timed) and text embeddings are random (they are
cached by the prior, so they are not part of a step). Writes JSON to --out.

    python benchmarks/bench_sd_step.py --out bench_sd_step.json            # full size (GPU machine)
    python benchmarks/bench_sd_step.py --tiny --out /tmp/bench_tiny.json   # a seconds-long check on CPU
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time
from dataclasses import asdict, dataclass

import torch

from distill3d.core.io import write_json_atomic
from distill3d.priors.base import Condition
from distill3d.priors.sd import StableDiffusionConfig, StableDiffusionPrior


@dataclass(frozen=True)
class Sizes:
    unet_channels: tuple[int, ...]
    heads: int
    cross_dim: int
    latent: int
    clip_width: int
    clip_layers: int
    clip_heads: int
    clip_image: int
    clip_patch: int
    resampler_queries: int


SD15 = Sizes((320, 640, 1280, 1280), 8, 768, 64, 1280, 32, 16, 224, 14, 16)  # SD 1.5 + IP-Adapter-Plus
TINY = Sizes((32, 64, 64, 64), 4, 32, 16, 32, 2, 4, 32, 4, 4)


@dataclass
class Timing:
    name: str
    seconds: list[float]
    median_s: float
    peak_mem_mb: float  # CUDA: peak allocated during this phase; CPU: process peak RSS so far


def build_prior(s: Sizes, device: str) -> StableDiffusionPrior:
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from diffusers.models.attention_processor import IPAdapterAttnProcessor2_0
    from diffusers.models.embeddings import IPAdapterPlusImageProjection, MultiIPAdapterImageProjection
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    n = len(s.unet_channels)
    unet = UNet2DConditionModel(
        sample_size=s.latent, block_out_channels=s.unet_channels, layers_per_block=2,
        down_block_types=("CrossAttnDownBlock2D",) * (n - 1) + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * (n - 1),
        cross_attention_dim=s.cross_dim, attention_head_dim=s.heads)
    vae = AutoencoderKL(block_out_channels=(32,) * n, down_block_types=("DownEncoderBlock2D",) * n,
                        up_block_types=("UpDecoderBlock2D",) * n, latent_channels=4, norm_num_groups=32)
    encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=s.clip_width, intermediate_size=4 * s.clip_width, num_hidden_layers=s.clip_layers,
        num_attention_heads=s.clip_heads, image_size=s.clip_image, patch_size=s.clip_patch,
        projection_dim=1024 if s is SD15 else 32))
    # What diffusers' load_ip_adapter builds for IP-Adapter-Plus, here with random weights.
    proj = IPAdapterPlusImageProjection(embed_dims=s.clip_width, output_dims=s.cross_dim,
                                        hidden_dims=s.cross_dim, heads=max(1, s.cross_dim // 64),
                                        num_queries=s.resampler_queries)
    unet.encoder_hid_proj = MultiIPAdapterImageProjection([proj])
    procs = {}
    for name, proc in unet.attn_processors.items():
        if name.endswith("attn2.processor"):
            width = unet.get_submodule(name.removesuffix(".processor")).to_q.out_features
            proc = IPAdapterAttnProcessor2_0(width, s.cross_dim, num_tokens=(s.resampler_queries,))
        procs[name] = proc
    unet.set_attn_processor(procs)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=None, tokenizer=None, unet=unet,
                                   scheduler=DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085,
                                                           beta_end=0.012, clip_sample=False,
                                                           set_alpha_to_one=False, steps_offset=1),
                                   safety_checker=None, feature_extractor=None, image_encoder=encoder,
                                   requires_safety_checker=False)
    prior = StableDiffusionPrior.from_pipeline(pipe, config=StableDiffusionConfig(device=device))
    for text in ("a prompt", ""):  # stands in for cached CLIP text states
        prior._text_cache[text] = torch.randn(77, s.cross_dim, device=prior.device, dtype=prior.dtype)
    return prior


def _peak_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _time(name: str, fn, repeats: int, device: torch.device) -> Timing:
    fn()  # warm-up (allocations, kernel selection)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds.append(time.perf_counter() - start)
    return Timing(name, seconds, statistics.median(seconds), _peak_mb(device))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="JSON file to write")
    ap.add_argument("--tiny", action="store_true", help="tiny random model: checks the script in seconds")
    ap.add_argument("--repeats", type=int, default=3, help="timed repetitions per step (after 1 warm-up)")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--device", default="auto", help="'auto' (CUDA if present), 'cpu' or 'cuda'")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    sizes = TINY if args.tiny else SD15
    prior = build_prior(sizes, args.device)
    dev = prior.device
    z = torch.randn(2, 4, sizes.latent, sizes.latent, device=dev)
    t = torch.tensor([500, 500], device=dev)
    render = torch.rand(3, 8 * sizes.latent, 8 * sizes.latent, device=dev)
    sds = [Condition("a prompt"), Condition("")]
    anchor = [Condition("a prompt"), Condition("", render, 0.5)]
    layer = prior.adapter_layer()

    def finetune() -> None:
        layer.requires_grad_(True)
        prior.predict_noise(z[:1], t[:1], anchor[1:]).square().mean().backward()
        layer.requires_grad_(False)
        layer.zero_grad(set_to_none=True)

    with torch.no_grad():
        timings = [_time("sds", lambda: prior.predict_noise(z, t, sds), args.repeats, dev),
                   _time("anchords", lambda: prior.predict_noise(z, t, anchor), args.repeats, dev)]
    timings.append(_time("finetune", finetune, args.repeats, dev))
    by = {x.name: x for x in timings}
    result = {
        "model": "tiny random" if args.tiny else "SD 1.5 UNet + IP-Adapter-Plus (ViT-H/14), random weights",
        "device": str(dev), "dtype": str(prior.dtype), "threads": args.threads,
        "latent": sizes.latent, "unet_params_M": sum(p.numel() for p in prior.unet.parameters()) / 1e6,
        "adapter_layer_params_M": sum(p.numel() for p in layer.parameters()) / 1e6,
        "timings": [asdict(x) for x in timings],
        "anchords_over_sds": by["anchords"].median_s / by["sds"].median_s,
        "anchords_plus_finetune_over_sds": (by["anchords"].median_s + by["finetune"].median_s)
        / by["sds"].median_s,
    }
    write_json_atomic(args.out, result)
    for x in timings:
        print(f"{x.name:9s} median {x.median_s:.3f} s  peak {x.peak_mem_mb:.0f} MB")
    print(f"anchords / sds = {result['anchords_over_sds']:.3f}; "
          f"(anchords + finetune) / sds = {result['anchords_plus_finetune_over_sds']:.3f}")


if __name__ == "__main__":
    main()
