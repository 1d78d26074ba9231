"""Cost of one AnchorDS step against one SDS step on full-size Stable Diffusion 1.5 (random weights).

Builds SD 1.5's UNet (860 M parameters) and VAE (84 M), IP-Adapter-Plus (CLIP ViT-H/14 image encoder,
Resampler, image K/V projections in every cross-attention layer) with RANDOM weights (nothing is
downloaded: the cost of a step does not depend on the weights; text states are random tensors standing in
for the cached CLIP text states) and times, through ``StableDiffusionPrior`` and the real guidance methods:

- prior calls alone (no grad): ``call:sds`` = one batched prediction of [y, ∅] per view, ``call:anchords``
  = one batched prediction of [y, (∅, render, λ_ip=0.5)] per view (includes the CLIP image encoder and the
  Resampler on the render);
- whole optimisation steps at 512 px: renders [V, 3, 512, 512] with grad → VAE encode → method →
  surrogate-loss backward into the renders → the method's inner step, for ``sds``, ``anchords`` and
  ``anchords-finetune`` (pixel L_rec of the same call, which back-propagates through the VAE decoder) and
  ``anchords-finetune-latent`` (the authors' latent MSE with one fresh-noise call).

    python benchmarks/bench_sd_step.py --out bench_sd_step.json            # full size (GPU or CPU)
    python benchmarks/bench_sd_step.py --tiny --out /tmp/bench_tiny.json   # a seconds-long check on CPU
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from dataclasses import asdict, dataclass

import torch

from distill3d.core.cameras import Cameras
from distill3d.core.io import write_json_atomic
from distill3d.guidance import GENERATE_METHODS, GuidanceInput, surrogate_loss
from distill3d.guidance.anchords import AnchorDS, AnchorDSConfig, FinetuneConfig
from distill3d.priors.base import Condition
from distill3d.priors.sd import StableDiffusionConfig, StableDiffusionPrior

PROMPT = "a prompt"
STEP_METHODS = ("sds", "anchords", "anchords-finetune", "anchords-finetune-latent")


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
    vae_channels: tuple[int, ...]


SD15 = Sizes((320, 640, 1280, 1280), 8, 768, 64, 1280, 32, 16, 224, 14, 16,
             (128, 256, 512, 512))  # SD 1.5 + IP-Adapter-Plus
TINY = Sizes((32, 64, 64, 64), 4, 32, 16, 32, 2, 4, 32, 4, 4, (32, 32, 32, 32))


@dataclass
class Timing:
    name: str
    seconds: list[float]
    median_s: float
    peak_mem_mb: float  # CUDA: peak allocated in its calls; CPU: process peak RSS so far


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
    vae = AutoencoderKL(block_out_channels=s.vae_channels, down_block_types=("DownEncoderBlock2D",) * n,
                        up_block_types=("UpDecoderBlock2D",) * n, latent_channels=4, norm_num_groups=32,
                        layers_per_block=2, scaling_factor=0.18215)
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
    texts = ["", PROMPT] + [f"{PROMPT}, {v} view" for v in ("front", "side", "back", "overhead")]
    for text in texts:  # stands in for cached CLIP text states
        prior._text_cache[text] = torch.randn(77, s.cross_dim, device=prior.device, dtype=prior.dtype)
    return prior


def _peak_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(fns: dict, repeats: int, device: torch.device) -> list[Timing]:
    """Median seconds of each callable: one warm-up each, then ``repeats`` rounds that run every callable
    once in turn, so that load on a shared machine falls on all of them alike."""
    for fn in fns.values():
        fn()  # warm-up (allocations, kernel selection)
    seconds: dict[str, list[float]] = {name: [] for name in fns}
    peak = dict.fromkeys(fns, 0.0)
    for _ in range(repeats):
        for name, fn in fns.items():
            _sync(device)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            start = time.perf_counter()
            fn()
            _sync(device)
            seconds[name].append(time.perf_counter() - start)
            peak[name] = max(peak[name], _peak_mb(device))
    return [Timing(name, s, statistics.median(s), peak[name]) for name, s in seconds.items()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="JSON file to write")
    ap.add_argument("--tiny", action="store_true", help="tiny random model: checks the script in seconds")
    ap.add_argument("--repeats", type=int, default=3, help="timed repetitions per step (after 1 warm-up)")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--device", default="auto", help="'auto' (CUDA if present), 'cpu' or 'cuda'")
    ap.add_argument("--views", type=int, default=1, help="views per step (renders of 8 x latent px)")
    ap.add_argument("--flags", action="store_true",
                    help="only compare the batched prior call with the UNet in channels-last memory against the "
                         "default layout (StableDiffusionConfig.channels_last)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    sizes = TINY if args.tiny else SD15
    prior = build_prior(sizes, args.device)
    dev = prior.device
    v = args.views
    z = torch.randn(2, 4, sizes.latent, sizes.latent, device=dev)
    t = torch.tensor([500, 500], device=dev)
    render = torch.rand(3, 8 * sizes.latent, 8 * sizes.latent, device=dev)
    sds_rows, anchor_rows = [Condition(PROMPT), Condition("")], [Condition(PROMPT), Condition("", render, 0.5)]
    with torch.no_grad():
        calls = _time({"call:sds": lambda: prior.predict_noise(z, t, sds_rows),
                       "call:anchords": lambda: prior.predict_noise(z, t, anchor_rows)}, args.repeats, dev)
    if args.flags:
        prior.unet.to(memory_format=torch.channels_last)  # what channels_last=True does at load time
        with torch.no_grad():
            calls += _time({"call:anchords:channels_last": lambda: prior.predict_noise(z, t, anchor_rows)},
                           args.repeats, dev)
        by = {x.name: x.median_s for x in calls}
        write_json_atomic(args.out, {"command": "python benchmarks/bench_sd_step.py " + " ".join(sys.argv[1:]),
                                     "device": str(dev), "dtype": str(prior.dtype), "threads": args.threads,
                                     "timings": [asdict(x) for x in calls],
                                     "channels_last_over_default": by["call:anchords:channels_last"]
                                     / by["call:anchords"]})
        for x in calls:
            print(f"{x.name:30s} median {x.median_s:.3f} s")
        return
    renders = torch.rand(v, 3, 8 * sizes.latent, 8 * sizes.latent, device=dev)
    cameras = Cameras.from_angles(torch.linspace(0.0, 270.0, v).tolist(), 15.0)
    generator = torch.Generator().manual_seed(0)

    def step_fn(method):
        def step() -> None:
            images = renders.clone().requires_grad_(True)
            latents = prior.encode(images)
            inp = GuidanceInput(latents.detach(), images.detach(), cameras, PROMPT, step=0, total_steps=1000)
            out = method(prior, inp, generator)
            surrogate_loss(latents, out.grad).backward()
            method.inner_step(prior, inp, out, generator)
        return step

    methods = {name: GENERATE_METHODS[name].build() for name in STEP_METHODS[:3]}
    methods["anchords-finetune-latent"] = AnchorDS(AnchorDSConfig(finetune=FinetuneConfig(loss="latent")))
    timings = calls + _time({f"step:{name}": step_fn(methods[name]) for name in STEP_METHODS}, args.repeats, dev)
    by = {x.name: x.median_s for x in timings}
    result = {
        "command": "python benchmarks/bench_sd_step.py " + " ".join(sys.argv[1:]),
        "model": "tiny random" if args.tiny else "SD 1.5 UNet + VAE + IP-Adapter-Plus (ViT-H/14), random weights",
        "device": str(dev), "dtype": str(prior.dtype), "threads": args.threads, "views": v,
        "image_px": 8 * sizes.latent, "latent": sizes.latent,
        "unet_params_M": sum(p.numel() for p in prior.unet.parameters()) / 1e6,
        "vae_params_M": sum(p.numel() for p in prior.vae.parameters()) / 1e6,
        "adapter_layer_params_M": sum(p.numel() for p in prior.adapter_layer().parameters()) / 1e6,
        "timings": [asdict(x) for x in timings],
        "call_anchords_over_sds": by["call:anchords"] / by["call:sds"],
        "step_over_sds": {name: by[f"step:{name}"] / by["step:sds"] for name in STEP_METHODS},
    }
    write_json_atomic(args.out, result)
    for x in timings:
        print(f"{x.name:30s} median {x.median_s:.3f} s  peak {x.peak_mem_mb:.0f} MB")
    print(f"prior call anchords / sds = {result['call_anchords_over_sds']:.3f}")
    for name, ratio in result["step_over_sds"].items():
        print(f"step {name} / sds = {ratio:.3f}")

if __name__ == "__main__":
    main()
