"""The contract every 3D representation passes. A test class subclasses ``RepresentationContract`` and
implements ``make(seed)`` (and ``config()``, the run config ``param_groups`` reads); pytest collects the
inherited tests for it. ``test_scene_representations.py`` runs it on every registered representation."""

from __future__ import annotations

import io

import torch

from distill3d.core.cameras import Cameras
from distill3d.scene import render
from distill3d.scene.registry import entry_of, find_representation_file
from distill3d.scene.representation import Representation

SIZE = 16


class RepresentationContract:
    """Shapes, finite gradients to every parameter, determinism, save/load round trip, background."""

    def make(self, seed: int):  # pragma: no cover - every subclass overrides it
        raise NotImplementedError

    def config(self):
        """The run config of the representation's registry entry (defaults unless a subclass says)."""
        return entry_of(self.make(0)).config_type()

    def cameras(self) -> Cameras:
        return Cameras.from_angles([0.0, 135.0], [15.0, -10.0])

    def test_render_shapes_and_ranges(self):
        out = render(self.make(0), self.cameras(), SIZE)
        assert out.image.shape == (2, 3, SIZE, SIZE)
        assert out.alpha.shape == (2, 1, SIZE, SIZE) and out.depth.shape == (2, 1, SIZE, SIZE)
        for t in (out.image, out.alpha, out.depth):
            assert torch.isfinite(t).all()
        assert out.alpha.min() >= 0 and out.alpha.max() <= 1 + 1e-6
        assert out.image.min() >= -1e-6 and out.image.max() <= 1 + 1e-6
        assert out.alpha.max() > 0.05, "the test scene should be visible"

    def test_finite_gradients_reach_every_parameter(self):
        rep = self.make(0)
        out = render(rep, self.cameras(), SIZE)
        weights = torch.rand(out.image.shape, generator=torch.Generator().manual_seed(1))
        ((out.image * weights).sum() + out.alpha.sum() + 0.1 * out.depth.sum()).backward()
        for name, p in rep.named_parameters():
            if p.numel() == 0:  # e.g. the SH coefficients above degree 0 of a degree-0 model
                continue
            assert p.grad is not None, f"{name} got no gradient"
            assert torch.isfinite(p.grad).all(), f"{name} has a non-finite gradient"
            assert p.grad.abs().sum() > 0, f"{name} has an all-zero gradient"

    def test_deterministic_under_a_seed(self):
        outs = []
        for _ in range(2):
            torch.manual_seed(3)
            outs.append(render(self.make(0), self.cameras(), SIZE))
        assert torch.equal(outs[0].image, outs[1].image)
        assert torch.equal(outs[0].depth, outs[1].depth)

    def test_state_dict_round_trip_renders_identically(self):
        rep, other = self.make(0), self.make(1)
        torch.manual_seed(0)
        before = render(rep, self.cameras(), SIZE).image
        torch.manual_seed(0)
        assert not torch.equal(before, render(other, self.cameras(), SIZE).image)
        buf = io.BytesIO()
        torch.save(rep.state_dict(), buf)
        buf.seek(0)
        other.load_state_dict(torch.load(buf))
        torch.manual_seed(0)
        assert torch.equal(before, render(other, self.cameras(), SIZE).image)

    def test_background_fills_what_alpha_leaves(self):
        rep = self.make(0)
        torch.manual_seed(0)
        white = render(rep, self.cameras(), SIZE, background=(1.0, 1.0, 1.0))
        torch.manual_seed(0)
        black = render(rep, self.cameras(), SIZE, background=(0.0, 0.0, 0.0))
        torch.testing.assert_close(white.image - black.image, (1 - white.alpha).expand_as(white.image),
                                   atol=1e-5, rtol=0)

    def test_density_grid_and_color_at_for_mesh_export(self):
        rep = self.make(0)
        grid = rep.density_grid(8)
        assert grid.shape == (8, 8, 8) and (grid >= 0).all() and grid.max() > 0
        rgb = rep.color_at(torch.zeros(5, 3))
        assert rgb.shape == (5, 3) and (rgb >= 0).all() and (rgb <= 1).all()

    def test_implements_the_protocol_and_is_registered(self):
        rep = self.make(0)
        assert isinstance(rep, Representation)
        assert entry_of(rep).cls is type(rep)
        assert "." in rep.file_name and rep.mesh_threshold > 0

    def test_param_groups_hold_every_parameter_once(self):
        rep = self.make(0)
        groups = rep.param_groups(self.config())
        grouped = [id(p) for g in groups for p in g.params]
        assert sorted(grouped) == sorted(id(p) for p in rep.parameters())
        assert all(g.lr >= 0 and g.name for g in groups)

    def test_restore_takes_a_checkpoints_parameters(self):
        rep, other = self.make(0), self.make(1)
        other.restore({k: v.clone() for k, v in rep.state_dict().items()})
        torch.manual_seed(0)
        before = render(rep, self.cameras(), SIZE).image
        torch.manual_seed(0)
        assert torch.equal(before, render(other, self.cameras(), SIZE).image)
        assert sorted(id(p) for p in other.parameters()) == sorted(
            id(p) for g in other.param_groups(self.config()) for p in g.params)  # groups see the new tensors

    def test_save_then_load_renders_identically(self, tmp_path):
        rep = self.make(0).eval()
        path = rep.save(tmp_path / rep.file_name)
        found, entry = find_representation_file(tmp_path)
        assert found == path and entry.cls is type(rep)
        back = type(rep).load(path).eval()
        torch.testing.assert_close(render(back, self.cameras(), SIZE).image, render(rep, self.cameras(), SIZE).image,
                                   rtol=0, atol=1e-6)
