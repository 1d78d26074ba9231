"""Every representation passes the contract in contract.py: each registered one as a run builds it (with
its parameters perturbed so that seeds differ), plus hand-made variants (SH degree 1, an MLP head)."""

from __future__ import annotations

import pytest
import torch

from distill3d.scene import GaussianModel, RadianceFieldConfig, VoxelRadianceField
from distill3d.scene.registry import REPRESENTATIONS

from .contract import RepresentationContract


class TestEveryRegisteredRepresentation(RepresentationContract):
    @pytest.fixture(autouse=True, params=sorted(REPRESENTATIONS))
    def _entry(self, request):
        self.entry = REPRESENTATIONS[request.param]

    def config(self):
        return self.entry.config_type()

    def make(self, seed: int):
        g = torch.Generator().manual_seed(seed)
        rep = self.entry.cls.build(self.config(), g)
        with torch.no_grad():
            for p in rep.parameters():
                p.add_(0.3 * torch.randn(p.shape, generator=g))
        return rep


class TestGaussiansContract(RepresentationContract):
    def make(self, seed: int) -> GaussianModel:
        g = torch.Generator().manual_seed(seed)
        model = GaussianModel.random_in_sphere(200, radius=0.7, scale=0.08, opacity=0.5, sh_degree=1,
                                               generator=g)
        with torch.no_grad():
            model.sh_rest.normal_(0.0, 0.1, generator=g)
            model.sh_dc.normal_(0.0, 0.5, generator=g)
            model.log_scales.add_(0.4 * torch.randn(200, 3, generator=g))  # anisotropic: quats matter
            model.quats.normal_(generator=g)
        return model


class TestRadianceFieldContract(RepresentationContract):
    def make(self, seed: int) -> VoxelRadianceField:
        field = VoxelRadianceField(RadianceFieldConfig(resolution=12, samples_per_ray=24))
        with torch.no_grad():
            g = torch.Generator().manual_seed(seed)
            field.features.normal_(generator=g)
            field.density.normal_(generator=g)
        return field  # train mode: stratified samples, repeatable under torch.manual_seed


class TestRadianceFieldWithMLPContract(RepresentationContract):
    def make(self, seed: int) -> VoxelRadianceField:
        torch.manual_seed(seed)
        field = VoxelRadianceField(RadianceFieldConfig(resolution=12, color_features=6, mlp_hidden=16,
                                                       samples_per_ray=24))
        with torch.no_grad():
            field.features.normal_()
        return field.eval()
