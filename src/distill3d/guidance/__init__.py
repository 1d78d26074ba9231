"""Score distillation behind one protocol (``distill3d.guidance.base``), one method per file.

``METHODS`` maps the CLI's method names to a factory and a one-line description, for ``distill3d methods``
and ``generate --method``. A factory takes keyword overrides of the method's config fields. Editing
methods (``uds-edit``, ``dds``) need ``source_prompt=``.
VSD is not here: it trains a LoRA copy of the prior's denoiser on the renders, which the Prior protocol
(one frozen denoiser plus one image-adapter layer) does not expose.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from distill3d.guidance.anchords import (
    AnchorDiagnostics,
    AnchorDS,
    AnchorDSConfig,
    CodeForm,
    FinetuneConfig,
    PaperForm,
)
from distill3d.guidance.base import (
    AnnealedTimesteps,
    Constant,
    Diagnostics,
    GuidanceInput,
    GuidanceMethod,
    GuidanceOutput,
    InnerStepOutput,
    LinearRamp,
    MaxSwitchTimesteps,
    UniformTimesteps,
    surrogate_loss,
)
from distill3d.guidance.csd import CSD, CSDConfig
from distill3d.guidance.dds import DDS, DDSConfig
from distill3d.guidance.isd import ISD, ISDConfig, ISDDiagnostics
from distill3d.guidance.ism import ISM, ISMConfig
from distill3d.guidance.nfsd import NFSD, NFSDConfig
from distill3d.guidance.sds import SDS, SDSConfig
from distill3d.guidance.sds_bridge import SDSBridge, SDSBridgeConfig
from distill3d.guidance.uds import UDS, UDSConfig, UDSDiagnostics, UDSEdit, UDSEditConfig


@dataclass(frozen=True)
class MethodEntry:
    description: str
    factory: Callable[..., GuidanceMethod]  # factory(**config_overrides)


def _preset(cls: type, config: Any) -> Callable[..., GuidanceMethod]:
    def make(**overrides: Any) -> GuidanceMethod:
        return cls(replace(config, **overrides))
    return make


def _editing(cls: type, config_cls: type) -> Callable[..., GuidanceMethod]:
    def make(**overrides: Any) -> GuidanceMethod:
        return cls(config_cls(**overrides))
    return make


METHODS: dict[str, MethodEntry] = {
    "sds": MethodEntry("SDS (DreamFusion): w(t)(ε̂_cfg(z_t;y) − ε), CFG 100, view-dependent prompts (Perp-Neg: --set perp_neg=true)",
                       _preset(SDS, SDSConfig())),
    "anchords": MethodEntry("AnchorDS (Eq. 11): w(t)(ε̂(z_t;y) − ε̂(z_t;∅,I)), source anchored on the render",
                            _preset(AnchorDS, AnchorDSConfig())),
    "anchords-filter": MethodEntry("AnchorDS + filter (Eq. 14): drop views whose L_rec ≥ 0.03",
                                   _preset(AnchorDS, AnchorDSConfig(filter_threshold=0.03))),
    "anchords-finetune": MethodEntry("AnchorDS + fine-tune: train one image-adapter layer on L_rec, lr 1e-4",
                                     _preset(AnchorDS, AnchorDSConfig(finetune=FinetuneConfig()))),
    "isd": MethodEntry("ISD (ModeDreamer Eq. 7+9): ε̂_IP,cfg(y,x_ref) − ε̂_cfg(y), plus a camera-conditioned "
                       "SDS regulariser", _preset(ISD, ISDConfig())),
    "uds": MethodEntry("UDS (Eq. 16): Δx̂0 of unconditional predictions at t and t−c + 7.5·δ_cls",
                       _preset(UDS, UDSConfig())),
    "uds-edit": MethodEntry("UDS editing (Eq. 14): x̂0^tgt − x̂0^src + 7.5(δ_cls^tgt − δ_cls^src)",
                            _editing(UDSEdit, UDSEditConfig)),
    "sds-bridge": MethodEntry("SDS-Bridge: ε̂_cfg(z_t;y) − ε̂_cfg(z_t;y_src), handcrafted failure prompt as source",
                              _preset(SDSBridge, SDSBridgeConfig())),
    "csd": MethodEntry("CSD: classifier term only, w(t)·s·(ε̂(z_t;y) − ε̂(z_t;∅))", _preset(CSD, CSDConfig())),
    "nfsd": MethodEntry("NFSD: δ_D + 7.5·δ_cls, δ_D with a negative prompt above t = 200",
                        _preset(NFSD, NFSDConfig())),
    "ism": MethodEntry("ISM (LucidDreamer): DDIM-inverted z_s, z_t; ε̂_cfg(z_t;y) − ε̂(z_s;∅)",
                       _preset(ISM, ISMConfig())),
    "dds": MethodEntry("DDS editing: ε̂_cfg(z_t^tgt;y_tgt) − ε̂_cfg(z_t^src;y_src), CFG 100",
                       _editing(DDS, DDSConfig)),
}

__all__ = [
    "CSD",
    "DDS",
    "ISD",
    "ISM",
    "METHODS",
    "NFSD",
    "SDS",
    "UDS",
    "AnchorDS",
    "AnchorDSConfig",
    "AnchorDiagnostics",
    "AnnealedTimesteps",
    "CSDConfig",
    "CodeForm",
    "Constant",
    "DDSConfig",
    "Diagnostics",
    "FinetuneConfig",
    "GuidanceInput",
    "GuidanceMethod",
    "GuidanceOutput",
    "ISDConfig",
    "ISDDiagnostics",
    "ISMConfig",
    "InnerStepOutput",
    "LinearRamp",
    "MaxSwitchTimesteps",
    "MethodEntry",
    "NFSDConfig",
    "PaperForm",
    "SDSBridge",
    "SDSBridgeConfig",
    "SDSConfig",
    "UDSConfig",
    "UDSDiagnostics",
    "UDSEdit",
    "UDSEditConfig",
    "UniformTimesteps",
    "surrogate_loss",
]
