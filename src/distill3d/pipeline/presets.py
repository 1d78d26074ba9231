"""Presets named after the papers' configurations: the one registry ``distill3d presets``, ``generate
--preset`` and the tests read.

A :class:`Preset` names a registered method, its full config (typed: the method's dataclass), the run and
representation settings it changes (``RunConfig`` / representation config fields) and where every number
comes from (paper section, table or equation, or the authors' config file). Each paper configuration comes
twice: at the paper's scale (``NAME``: its steps, for Stable Diffusion) and at the toy world's scale
(``NAME-toy``: fewer steps, every step-counted schedule scaled with them, texts the toy prior can read).
What a preset keeps different from its source on purpose is listed in its ``deviations`` and printed with it.
``--set`` keys apply on top of a preset.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from distill3d.core.errors import UserError
from distill3d.guidance.anchords import CODE_NEGATIVE_PROMPT, AnchorDSConfig, CodeForm, FinetuneConfig
from distill3d.guidance.base import LinearRamp, MaxRampTimesteps, MaxSwitchTimesteps
from distill3d.guidance.isd import ISDConfig
from distill3d.guidance.ism import ISMConfig
from distill3d.guidance.registry import MethodKind, find_method
from distill3d.guidance.sds import SDSConfig
from distill3d.guidance.sds_bridge import SOURCE_PROMPT, SDSBridgeConfig
from distill3d.guidance.uds import UDSConfig


@dataclass(frozen=True)
class Preset:
    name: str
    method: str  # a name of distill3d.guidance.registry.METHODS (of ``kind``)
    description: str  # one line, for ``distill3d presets``
    method_config: Any  # the method's full config (its dataclass)
    settings: dict[str, Any] = field(default_factory=dict)  # RunConfig and representation fields it sets
    #: Where each number comes from, by --set path ("steps", "form.guidance_scale", "timesteps"): every
    #: setting and every method-config value that differs from the method's registry preset has one.
    sources: dict[str, str] = field(default_factory=dict)
    deviations: tuple[str, ...] = ()  # what is kept different from the source on purpose, and why
    kind: MethodKind = "generate"

    def changes(self) -> dict[str, str]:
        """What the preset sets, as --set paths and value texts: its settings, then every method-config
        value (variant names included) that differs from the method's registry preset or has a source."""
        mine = config_paths(self.method_config)
        default = config_paths(find_method(self.method, self.kind).config())
        return ({k: value_text(v) for k, v in self.settings.items()}
                | {k: v for k, v in mine.items() if default.get(k) != v or k in self.sources})


def value_text(value: Any) -> str:
    """A config value as --set writes it: ``none``, a variant's name, ``'text'``, ``0.02``, ``True``."""
    if value is None:
        return "none"
    if dataclasses.is_dataclass(value):
        return getattr(type(value), "name", "on")
    return repr(value) if isinstance(value, str) else f"{value:g}" if isinstance(value, float) else str(value)


def config_paths(config: Any, prefix: str = "") -> dict[str, str]:
    """A config as {--set path: value text}, nested dataclasses by their variant name and then their fields."""
    out: dict[str, str] = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        out[prefix + f.name] = value_text(value)
        if dataclasses.is_dataclass(value):
            out |= config_paths(value, prefix + f.name + ".")
    return out


# ---------------------------------------------------------------------------------------------------- sources

_ANCHORDS = "AnchorDS (arXiv 2511.11692)"
_ANCHORDS_CODE = "METHODS.md, AnchorDS authors' code"
_GD_YAML = "hustvl/GaussianDreamer configs/gaussiandreamer-sd.yaml"
_GD_SYSTEM = "hustvl/GaussianDreamer threestudio/systems/GaussianDreamer.py training_step"
_LD_ARGS = "EnVision-Research/LucidDreamer arguments/__init__.py GuidanceParams"
_LD_OPT = "EnVision-Research/LucidDreamer arguments/__init__.py OptimizationParams"
_LD_CODE = "EnVision-Research/LucidDreamer guidance/sd_utils.py train_step"
_BRIDGE_YAML = "davidmcall/SDS-Bridge threestudio-sds-bridge/configs/sds-bridge.yaml"
_BRIDGE_PP = "davidmcall/SDS-Bridge threestudio-sds-bridge prompt processor (use_modifier_only: false)"
_ISD = "ModeDreamer (papers/modedreamer_isd.txt)"
_UDS = "UDS (papers/uds.md)"
_TOY_TEXT = "the toy prior reads only toy-world captions"

_TOY_STEPS = 200  # the toy world's run length (RunConfig's default)


def _toy(steps: int, n: int) -> int:
    """A step count ``n`` of a ``steps``-long paper run, at the same fraction of the toy run."""
    return round(n * _TOY_STEPS / steps)


# ---------------------------------------------------------------------------------------------------- AnchorDS

_GD_STEPS = 1200


def _anchords(toy: bool) -> Preset:
    steps = _TOY_STEPS if toy else _GD_STEPS
    scale = (lambda n: _toy(_GD_STEPS, n)) if toy else (lambda n: n)
    config = AnchorDSConfig(
        form=CodeForm(guidance_scale=101.0, negative_prompt="" if toy else CODE_NEGATIVE_PROMPT,
                      grad_clamp=LinearRamp(1.5, 2.0, 0, scale(1000))),
        image_scale=0.5,
        timesteps=MaxSwitchTimesteps(0.02, 0.98, 0.55, scale(501)),
        weighting="sds",
        finetune=FinetuneConfig(adapter_layer=None, lr=1e-4, loss="latent"))
    scaled = f" (× {_TOY_STEPS}/{_GD_STEPS}: the toy run's length)" if toy else ""
    sources = {
        "steps": f"{_GD_YAML} trainer.max_steps 1200{scaled}; {_ANCHORDS} Sec. 5 runs in the GaussianDreamer framework",
        "views_per_step": f"{_GD_YAML} data.batch_size 4",
        "densify": f"{_GD_SYSTEM} densify_and_prune every 100 steps from 300 to 900"
                   + (" (the toy preset compresses it)" if toy else ""),
        "form": f"{_ANCHORDS_CODE}: image on both branches, y_neg source, CFG, clamp",
        "image_scale": f"{_ANCHORDS_CODE}: IP-Adapter-Plus on SD 1.5 at λ_ip = 0.5",
        "form.guidance_scale": f"{_ANCHORDS_CODE}: s' = 100 in threestudio's form, 101 in the standard form",
        "form.negative_prompt": (f"'': {_TOY_TEXT}" if toy else
                                 "issue 13 (the authors use 'oversaturated, smooth, ...'); full text: METHODS.md "
                                 "(SDS-Bridge's handcrafted prompt, cited by AnchorDS Sec. 2)"),
        "form.grad_clamp": f"{_ANCHORDS_CODE}: element-wise clamp of g, ±1.5 → 2.0 over the first 1000 steps; "
                           f"{_GD_YAML} grad_clip [0, 1.5, 2.0, 1000]",
        "form.grad_clamp.start": f"{_ANCHORDS_CODE}: 1.5", "form.grad_clamp.end": f"{_ANCHORDS_CODE}: 2.0",
        "form.grad_clamp.start_step": f"{_GD_YAML} grad_clip [0, ...]: from step 0",
        "form.grad_clamp.end_step": f"{_ANCHORDS_CODE}: over the first 1000 steps{scaled}",
        "timesteps": f"{_GD_SYSTEM}: t ~ U[0.02, 0.98], max 0.55 once true_global_step > 500",
        "timesteps.t_min": f"{_GD_YAML} min_step_percent 0.02", "timesteps.t_max": f"{_GD_YAML} max_step_percent 0.98",
        "timesteps.t_max_after": f"{_GD_SYSTEM}: set_min_max_steps(0.02, 0.55)",
        "timesteps.switch_step": f"{_GD_SYSTEM}: true_global_step > 500, i.e. from step 501{scaled}",
        "weighting": f"{_GD_YAML} weighting_strategy sds: w = 1 − ᾱ",
        "finetune": f"{_ANCHORDS} Sec. 4.3 fine-tune; Table 2: +Finetune is the best variant",
        "finetune.lr": f"{_ANCHORDS_CODE}: lr 1e-4",
        "finetune.adapter_layer": f"{_ANCHORDS_CODE}: the image K/V projections of the last up block (~1.5 M "
                                  "parameters on SD 1.5), the prior's default layer",
        "finetune.loss": f"{_ANCHORDS_CODE}: latent MSE of x̂0 from a grad-enabled source prediction, fresh noise",
    }
    return Preset(
        "anchords-3dgs-ip" + ("-toy" if toy else ""), "anchords",
        "AnchorDS, the authors' 3DGS IP-Adapter setup (GaussianDreamer pipeline, SD 1.5 + IP-Adapter-Plus, "
        "code form, fine-tune of the last up block's adapter layer)" + (" at the toy world's scale" if toy else ""),
        config, {"steps": steps, "views_per_step": 4, "densify": "toy" if toy else "gaussiandreamer"}, sources,
        ("the Gaussians start as a random ball, not GaussianDreamer's Shap-E / Point-E initialisation",
         "no opacity sparsity loss (GaussianDreamer's lambda_sparsity 1)",
         ("the negative prompt is SDS-Bridge's text as METHODS.md gives it; the AnchorDS code itself was not "
          "available to check it word for word"),
         ("adapter_layer none: the prior's default layer, on Stable Diffusion the last up block's IP K/V "
          "projections (the layer METHODS.md names)"))
        + ((f"negative prompt '' ({_TOY_TEXT})", "the toy prior renders at 32 px, not 512 (1024 in GaussianDreamer)")
           if toy else ()))


# ---------------------------------------------------------------------------------------------------- SDS

_GD_NEGATIVE = ("ugly, bad anatomy, blurry, pixelated obscure, unnatural colors, poor lighting, dull, and unclear, "
                "cropped, lowres, low quality, artifacts, duplicate, morbid, mutilated, poorly drawn face, deformed, "
                "dehydrated, bad proportions, unfocused")


def _gaussiandreamer(toy: bool) -> Preset:
    scale = (lambda n: _toy(_GD_STEPS, n)) if toy else (lambda n: n)
    scaled = f" (× {_TOY_STEPS}/{_GD_STEPS})" if toy else ""
    config = SDSConfig(guidance_scale=101.0, negative_prompt="" if toy else _GD_NEGATIVE,
                       timesteps=MaxSwitchTimesteps(0.02, 0.98, 0.55, scale(501)), weighting="sds",
                       grad_clamp=LinearRamp(1.5, 2.0, 0, scale(1000)))
    sources = {
        "steps": f"{_GD_YAML} trainer.max_steps 1200{scaled}",
        "views_per_step": f"{_GD_YAML} data.batch_size 4",
        "densify": f"{_GD_SYSTEM} densify_and_prune" + (" (the toy preset compresses it)" if toy else ""),
        "guidance_scale": f"{_GD_YAML} guidance_scale 100 (threestudio's form; 101 standard)",
        "negative_prompt": f"'': {_TOY_TEXT}" if toy else f"{_GD_YAML} prompt_processor.negative_prompt",
        "timesteps": f"{_GD_SYSTEM}: t ~ U[0.02, 0.98] (min/max_step_percent), max 0.55 once step > 500",
        "timesteps.t_max_after": f"{_GD_SYSTEM}: set_min_max_steps(0.02, 0.55)",
        "timesteps.switch_step": f"{_GD_SYSTEM}: true_global_step > 500{scaled}",
        "grad_clamp": f"{_GD_YAML} grad_clip [0, 1.5, 2.0, 1000]: ±1.5 → 2.0 over 1000 steps",
        "grad_clamp.start": f"{_GD_YAML} grad_clip", "grad_clamp.end": f"{_GD_YAML} grad_clip",
        "grad_clamp.start_step": f"{_GD_YAML} grad_clip", "grad_clamp.end_step": f"{_GD_YAML} grad_clip{scaled}",
    }
    return Preset(
        "gaussiandreamer-sds" + ("-toy" if toy else ""), "sds",
        "SDS as GaussianDreamer runs it (threestudio stable-diffusion-guidance, SD 2.1 base)"
        + (" at the toy world's scale" if toy else ""),
        config, {"steps": _TOY_STEPS if toy else _GD_STEPS, "views_per_step": 4,
                 "densify": "toy" if toy else "gaussiandreamer"}, sources,
        ("the Gaussians start as a random ball, not Shap-E's points", "no opacity sparsity loss")
        + ((f"negative prompt '' ({_TOY_TEXT})",) if toy else ()))


# ---------------------------------------------------------------------------------------------------- ISM

_LD_STEPS = 5000


def _luciddreamer(toy: bool) -> Preset:
    scale = (lambda n: _toy(_LD_STEPS, n)) if toy else (lambda n: n)
    scaled = f" (× {_TOY_STEPS}/{_LD_STEPS})" if toy else ""
    warm = scale(1500)
    config = ISMConfig(guidance_scale=7.5, interval=LinearRamp(100.0, 80.0, 0, warm), inversion_stride=200,
                       max_inversion_steps=5, timesteps=MaxRampTimesteps(0.02, 0.98, 0.5, warm))
    sources = {
        "steps": f"{_LD_OPT} iterations 5000{scaled}",
        "views_per_step": "EnVision-Research/LucidDreamer configs/*.yaml C_batch_size 4",
        "densify": f"{_LD_OPT} densify_from_iter 100, densify_until_iter 3000"
                   + (" (the toy preset compresses it)" if toy else ""),
        "guidance_scale": f"{_LD_ARGS} guidance_scale 7.5",
        "interval": f"{_LD_CODE}: current_delta_t annealed by warm_up_rate (annealing_intervals: True)",
        "interval.start": f"{_LD_ARGS} delta_t_start 100", "interval.end": f"{_LD_ARGS} delta_t 80",
        "interval.end_step": f"{_LD_OPT} warmup_iter 1500{scaled}: delta_t_start 100 → delta_t 80 ({_LD_ARGS})",
        "inversion_stride": f"{_LD_ARGS} xs_delta_t 200", "max_inversion_steps": f"{_LD_ARGS} xs_inv_steps 5",
        "timesteps": f"{_LD_CODE}: ind_t ~ U[min_step, max_step + warmup_step·warm_up_rate]",
        "timesteps.t_min": f"{_LD_ARGS} t_range [0.02, 0.5]", "timesteps.t_max": f"{_LD_ARGS} max_t_range 0.98",
        "timesteps.t_max_end": f"{_LD_ARGS} t_range [0.02, 0.5]",
        "timesteps.ramp_steps": f"{_LD_OPT} warmup_iter 1500{scaled}: t_max 0.98 (max_t_range) → 0.5 (t_range)",
    }
    return Preset(
        "luciddreamer-ism" + ("-toy" if toy else ""), "ism",
        "ISM as LucidDreamer's code runs it (annealed interval, 200-step inversion stride, t_max 0.98 → 0.5)"
        + (" at the toy world's scale" if toy else ""),
        config, {"steps": _TOY_STEPS if toy else _LD_STEPS, "views_per_step": 4,
                 "densify": "toy" if toy else "luciddreamer"}, sources,
        ("t is drawn per view; the code draws one t per batch",
         "no 0.1-scaled offset noise and no random horizontal flip of the renders (the code's train_step)",
         "the CFG's unconditional is the empty text; the example configs put a negative prompt there",
         "the example configs anneal delta_t to 25-50; the defaults of arguments/__init__.py (80) are used",
         "no lambda_guidance 0.1 loss scale (under Adam a constant scale of the gradient changes little)",
         "the Gaussians start as a random ball, not Point-E's points"))


# ---------------------------------------------------------------------------------------------------- SDS-Bridge

_BRIDGE_STEPS = 25000


def _bridge(toy: bool) -> Preset:
    scale = (lambda n: _toy(_BRIDGE_STEPS, n)) if toy else (lambda n: n)
    scaled = f" (× {_TOY_STEPS}/{_BRIDGE_STEPS})" if toy else ""
    config = SDSBridgeConfig(guidance_scale=100.0, source_prompt="a gray sphere" if toy else SOURCE_PROMPT,
                             prompt_in_source=not toy, timesteps=MaxSwitchTimesteps(0.02, 0.98, 0.5, scale(5000)),
                             weighting="uniform", sds_until=0.8)
    sources = {
        "steps": f"{_BRIDGE_YAML} trainer.max_steps 25000{scaled}",
        "views_per_step": f"{_BRIDGE_YAML} data.batch_size [1, 1]",
        "representation": f"{_BRIDGE_YAML} geometry_type implicit-volume (a NeRF): our radiance field",
        "source_prompt": (f"'a gray sphere', the toy world's smooth grey blob ({_TOY_TEXT})" if toy
                          else f"{_BRIDGE_YAML} prompt_processor.src_modifier"),
        "prompt_in_source": (f"off: {_TOY_TEXT}" if toy else f"{_BRIDGE_PP}: y_src = y + ', ' + src_modifier"),
        "guidance_scale": f"{_BRIDGE_YAML} guidance_scale 100", "weighting": f"{_BRIDGE_YAML} weighting_strategy uniform",
        "timesteps": f"{_BRIDGE_YAML} min_step_percent 0.02, max_step_percent [5000, 0.98, 0.5, 5001]",
        "timesteps.t_min": f"{_BRIDGE_YAML} min_step_percent 0.02",
        "timesteps.t_max": f"{_BRIDGE_YAML} max_step_percent [5000, 0.98, ...]",
        "timesteps.t_max_after": f"{_BRIDGE_YAML} max_step_percent [..., 0.5, 5001]",
        "timesteps.switch_step": f"{_BRIDGE_YAML} max_step_percent [5000, 0.98, 0.5, 5001]{scaled}",
        "sds_until": f"{_BRIDGE_YAML} stage2_start_step 20000 of max_steps 25000",
    }
    return Preset(
        "sds-bridge-release" + ("-toy" if toy else ""), "sds-bridge",
        "SDS-Bridge as its release config runs it (plain SDS for 80% of the run, then the bridge; NeRF, "
        "SD 2.1 base)" + (" at the toy world's scale" if toy else ""),
        config, {"steps": _TOY_STEPS if toy else _BRIDGE_STEPS, "views_per_step": 1, "representation": "radiance"},
        sources,
        ("the bridge's CFG scale 100 stands where the code's stage-two weight is (∅ cancels: g = s·(ε̂(y) − ε̂(y_src)))",
         "the target keeps y, without the release tgt_modifier '.'",
         "64 → 512 px resolution milestones and the opacity losses of the release config are left out")
        + ((f"y_src is the caption 'a gray sphere' alone ({_TOY_TEXT})",) if toy else ()))


# ---------------------------------------------------------------------------------------------------- ISD, UDS


def _isd(toy: bool) -> Preset:
    sec5 = f"{_ISD} Sec. 5 implementation details"
    sources = {"steps": f"{_ISD}: 6000 iterations (METHODS.md)" + (f" (toy run: {_TOY_STEPS})" if toy else ""),
               "mode": f"{_ISD} Eq. 7: the text prediction at the same t as control variate (ablation: best)",
               "guidance_scale": f"{sec5}: CFG 7.5", "image_scale": f"{sec5}: IP scale 0.5 (ablation: best quality)",
               "alpha": f"{_ISD} Eq. 9", "alpha.start": f"{sec5}: α 0.4 → 0.8", "alpha.end": f"{sec5}: α 0.4 → 0.8",
               "beta": f"{_ISD} Eq. 9", "beta.start": f"{sec5}: β 0.6 → 0.02", "beta.end": f"{sec5}: β 0.6 → 0.02",
               "mv_guidance_scale": f"{sec5}: multi-view CFG 50"}
    return Preset(
        "isd-paper" + ("-toy" if toy else ""), "isd",
        "ISD as ModeDreamer Sec. 5 states it: CFG 7.5, IP scale 0.5, α 0.4 → 0.8, β 0.6 → 0.02, MV CFG 50"
        + (" at the toy world's scale" if toy else ""),
        ISDConfig(mode="isd", guidance_scale=7.5, image_scale=0.5, alpha=LinearRamp(0.4, 0.8),
                  beta=LinearRamp(0.6, 0.02), mv_guidance_scale=50.0), {"steps": _TOY_STEPS if toy else 6000}, sources,
        ("the multi-view term uses the same prior with the camera in its condition, not MVDream",))


def _uds(toy: bool) -> Preset:
    return Preset(
        "uds-paper" + ("-toy" if toy else ""), "uds",
        "UDS generation as the paper states it: Eq. 16, s = 7.5, interval c = 80, Tweedie x̂0 (Eq. 10)"
        + (" at the toy world's scale" if toy else ""),
        UDSConfig(guidance_scale=7.5, interval=80), {"steps": _TOY_STEPS} if toy else {},
        {"guidance_scale": f"{_UDS} Eq. 16 and Fig. 2: w = 7.5 (where DDS and PDS use 100)",
         "interval": f"{_UDS} Eq. 16: c, ISM-like (METHODS.md: 80-100)",
         "reconstruction": f"{_UDS} Eq. 16, Alg. 1 line 17: x̂0^t − x̂0^(t−c)",
         "x0_steps": f"{_UDS} Alg. 1 line 17: Tweedie (Eq. 10); Eq. 15 is the slower option"}
        | ({"steps": f"toy run: {_TOY_STEPS}"} if toy else {}),
        ("the paper states no step count (it runs in the DreamFusion and Fantasia3D frameworks): the run's default",))


PRESETS: tuple[Preset, ...] = tuple(p for make in (_anchords, _gaussiandreamer, _luciddreamer, _bridge, _isd, _uds)
                                    for p in (make(False), make(True)))


def find_preset(name: str) -> Preset:
    for p in PRESETS:
        if p.name == name:
            return p
    raise UserError(f"unknown preset {name!r}; choose one of {', '.join(p.name for p in PRESETS)} "
                    "(distill3d presets lists them)")


__all__ = ["PRESETS", "Preset", "config_paths", "find_preset", "value_text"]
