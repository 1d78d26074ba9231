"""Score distillation behind one protocol (``distill3d.guidance.base``), one method per file, listed in
one registry (``distill3d.guidance.registry``: ``METHODS``, by kind ``GENERATE_METHODS``/``EDIT_METHODS``).
"""

from __future__ import annotations

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
    EditRows,
    GuidanceInput,
    GuidanceMethod,
    GuidanceOutput,
    InnerStepOutput,
    LinearRamp,
    MaxSwitchTimesteps,
    UniformTimesteps,
    predict_edit_rows,
    surrogate_loss,
)
from distill3d.guidance.csd import CSD, CSDConfig
from distill3d.guidance.dds import DDS, DDSConfig
from distill3d.guidance.isd import ISD, ISDConfig, ISDDiagnostics
from distill3d.guidance.ism import ISM, ISMConfig
from distill3d.guidance.nfsd import NFSD, NFSDConfig
from distill3d.guidance.pds import PDS, PDSConfig
from distill3d.guidance.registry import (
    EDIT_METHODS,
    GENERATE_METHODS,
    KINDS,
    METHODS,
    MethodEntry,
    MethodKind,
    find_method,
    methods_of,
)
from distill3d.guidance.sds import SDS, SDSConfig
from distill3d.guidance.sds_bridge import SDSBridge, SDSBridgeConfig
from distill3d.guidance.uds import UDS, UDSConfig, UDSDiagnostics, UDSEdit, UDSEditConfig

__all__ = [
    "CSD",
    "DDS",
    "EDIT_METHODS",
    "GENERATE_METHODS",
    "ISD",
    "ISM",
    "KINDS",
    "METHODS",
    "NFSD",
    "PDS",
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
    "EditRows",
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
    "MethodKind",
    "NFSDConfig",
    "PDSConfig",
    "PaperForm",
    "SDSBridge",
    "SDSBridgeConfig",
    "SDSConfig",
    "UDSConfig",
    "UDSDiagnostics",
    "UDSEdit",
    "UDSEditConfig",
    "UniformTimesteps",
    "find_method",
    "methods_of",
    "predict_edit_rows",
    "surrogate_loss",
]
