"""The fast rasterizer against the dense reference (forward and every parameter's gradient), gradcheck of
the reference, projection, culling, backgrounds, batching and chunking."""

from __future__ import annotations

import pytest
import torch

from distill3d.core.cameras import Cameras
from distill3d.scene import GaussianModel, RasterConfig
from distill3d.scene.projection import project_gaussians
from distill3d.scene.reference import reference_render, render_gaussians_reference
from distill3d.scene.splat import render_gaussians_torch

WHITE = torch.ones(3)
EXACT = RasterConfig(min_transmittance=0.0)  # no early termination: must equal the reference


def scene(n: int = 150, seed: int = 0, sh_degree: int = 2, scale: float = 0.08, opacity: float = 0.5):
    g = torch.Generator().manual_seed(seed)
    model = GaussianModel.random_in_sphere(n, radius=0.8, scale=scale, opacity=opacity, sh_degree=sh_degree,
                                           generator=g)
    with torch.no_grad():
        model.sh_dc.normal_(0.0, 1.0, generator=g)
        model.sh_rest.normal_(0.0, 0.2, generator=g)
        model.quats.normal_(generator=g)
        model.log_scales.add_(0.4 * torch.randn(n, 3, generator=g))
        model.opacity_logits.add_(torch.randn(n, generator=g))
    return model


CAMS = Cameras.from_angles([20.0, 200.0], [10.0, -30.0], distance=torch.tensor([3.2, 2.6]))


def test_forward_matches_dense_reference():
    model = scene()
    fast = render_gaussians_torch(model, CAMS, 24, WHITE, EXACT)
    ref = render_gaussians_reference(model, CAMS, 24, WHITE)
    assert ref.alpha.max() > 0.9  # the scene covers pixels with real occlusion
    # float32 sums in a different order: 1e-5
    torch.testing.assert_close(fast.image, ref.image, atol=1e-5, rtol=0)
    torch.testing.assert_close(fast.alpha, ref.alpha, atol=1e-5, rtol=0)
    torch.testing.assert_close(fast.depth, ref.depth, atol=1e-4, rtol=0)
    torch.testing.assert_close(fast.means2d, ref.means2d, atol=1e-4, rtol=0)
    # the fast radius uses 3DGS's eigenvalue bound (>= exact); culling must agree
    assert torch.equal(fast.radii > 0, ref.radii > 0)
    assert (fast.radii >= ref.radii).all() and (fast.radii <= ref.radii + 1).all()


def _grads(model, out, weights):
    model.zero_grad()
    ((out.image * weights).sum() + 0.3 * out.alpha.sum() + 0.05 * out.depth.sum()).backward()
    return {name: p.grad.clone() for name, p in model.named_parameters()}


def test_gradients_match_dense_reference_for_every_parameter():
    model = scene()
    weights = torch.rand(2, 3, 24, 24, generator=torch.Generator().manual_seed(5))
    fast = _grads(model, render_gaussians_torch(model, CAMS, 24, WHITE, EXACT), weights)
    ref = _grads(model, render_gaussians_reference(model, CAMS, 24, WHITE), weights)
    for name in ref:
        scale = ref[name].abs().max()
        assert scale > 0, name
        # tolerance: 1e-4 of the largest gradient entry (float32 accumulation order differs)
        torch.testing.assert_close(fast[name], ref[name], atol=1e-4 * float(scale), rtol=0, msg=name)


def test_early_termination_stays_within_its_bound():
    # an opaque, dense scene where transmittance really drops below 1e-4
    model = scene(n=400, scale=0.12, opacity=0.9, seed=3)
    ref = render_gaussians_reference(model, CAMS[:1], 24, WHITE)
    exact = render_gaussians_torch(model, CAMS[:1], 24, WHITE, EXACT)
    fast = render_gaussians_torch(model, CAMS[:1], 24, WHITE, RasterConfig(min_transmittance=1e-4))
    assert ref.alpha.max() > 1 - 1e-4
    torch.testing.assert_close(exact.image, ref.image, atol=1e-5, rtol=0)
    # dropped pairs sit behind T < 1e-4: each channel moves by at most ~1e-4 (+ float noise)
    torch.testing.assert_close(fast.image, ref.image, atol=2e-4, rtol=0)


def test_chunked_pair_generation_gives_the_same_image():
    model = scene()
    whole = render_gaussians_torch(model, CAMS, 24, WHITE)
    chunked = render_gaussians_torch(model, CAMS, 24, WHITE,
                                     RasterConfig(depth_chunks=50, max_pairs_per_chunk=500))
    torch.testing.assert_close(chunked.image, whole.image, atol=1e-6, rtol=0)


def test_reference_gradcheck_float64():
    g = torch.Generator().manual_seed(0)
    n = 3
    means = (0.3 * torch.randn(n, 3, generator=g, dtype=torch.float64)).requires_grad_()
    quats = torch.randn(n, 4, generator=g, dtype=torch.float64).requires_grad_()
    # large Gaussians: every pixel lies well inside every 3-sigma ellipse (no truncation edge)
    log_scales = (torch.full((n, 3), -0.3, dtype=torch.float64)
                  + 0.2 * torch.randn(n, 3, generator=g, dtype=torch.float64)).requires_grad_()
    logits = torch.randn(n, generator=g, dtype=torch.float64).mul(0.3).requires_grad_()  # opacity < 0.99
    sh = (0.3 * torch.randn(n, 4, 3, generator=g, dtype=torch.float64)).requires_grad_()
    cams = Cameras.from_angles([30.0], [20.0])

    def fn(*params):
        out = reference_render(*params, cams, 5, torch.ones(3, dtype=torch.float64))
        return out.image, out.alpha, out.depth

    assert torch.autograd.gradcheck(fn, (means, quats, log_scales, logits, sh), eps=1e-6, atol=1e-5)


def test_projection_agrees_with_camera_projection():
    model = scene()
    proj = project_gaussians(model.means, model.covariances(), CAMS, 32)
    uv, depth = CAMS.project(model.means.detach(), 32)
    torch.testing.assert_close(proj.means2d.detach(), uv, atol=1e-4, rtol=0)
    torch.testing.assert_close(proj.depths.detach(), depth, atol=1e-5, rtol=0)


def _single(mean, scale=0.3, color=(1.0, 0.0, 0.0), opacity=0.9):
    rgb = torch.tensor([color])
    return GaussianModel.from_points(torch.tensor([mean]), rgb, scale=scale, opacity=opacity)


def test_gaussian_behind_or_beside_the_camera_is_culled():
    cam = Cameras.from_angles([0.0])  # at (3.2, 0, 0) looking toward -x
    for mean in ([4.0, 0.0, 0.0], [0.0, 3.0, 0.0]):  # behind the camera; far outside the frustum
        out = render_gaussians_torch(_single(mean), cam, 16, WHITE)
        assert int(out.radii[0, 0]) == 0
        assert torch.equal(out.image, torch.ones(1, 3, 16, 16))
    out = render_gaussians_torch(_single([0.0, 0.0, 0.0]), cam, 16, WHITE)
    assert int(out.radii[0, 0]) > 0 and out.alpha.max() > 0.8


def test_background_is_configurable_and_depth_is_expected_depth():
    out = render_gaussians_torch(_single([0.0, 0.0, 0.0]), Cameras.from_angles([0.0]), 16,
                                 torch.tensor([0.0, 0.0, 1.0]))
    corner = out.image[0, :, 0, 0]
    torch.testing.assert_close(corner, torch.tensor([0.0, 0.0, 1.0]))  # nothing there: background
    centre = out.image[0, :, 8, 8]
    assert centre[0] > 0.8 and centre[2] < 0.2
    torch.testing.assert_close(out.depth[0, 0, 8, 8], torch.tensor(3.2), atol=1e-4, rtol=0)


def test_batch_renders_equal_single_camera_renders():
    model = scene()
    batch = render_gaussians_torch(model, CAMS, 20, WHITE)
    for b in range(len(CAMS)):
        one = render_gaussians_torch(model, CAMS[b], 20, WHITE)
        torch.testing.assert_close(batch.image[b:b + 1], one.image, atol=1e-6, rtol=0)  # batched matmuls


def test_means2d_retains_its_gradient():
    model = scene()
    with torch.no_grad():
        model.means[0] = torch.tensor([0.0, 0.0, 6.0])  # above every camera's view: culled
    out = render_gaussians_torch(model, CAMS, 16, WHITE)
    out.image.sum().backward()
    assert out.means2d.grad is not None and out.means2d.grad.shape == (2, len(model), 2)
    seen = out.radii > 0
    assert not seen[:, 0].any()
    assert out.means2d.grad[~seen].abs().sum() == 0 and out.means2d.grad[seen].abs().max() > 0


@pytest.mark.parametrize("size", [7, 33])
def test_odd_sizes(size):
    model = scene(n=60)
    fast = render_gaussians_torch(model, CAMS[:1], size, WHITE, EXACT)
    ref = render_gaussians_reference(model, CAMS[:1], size, WHITE)
    torch.testing.assert_close(fast.image, ref.image, atol=1e-5, rtol=0)



class _RenderFast(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, cams, size):
        out = render_gaussians_torch(self.model, cams, size, torch.ones(3, dtype=torch.float64), EXACT)
        return out.image, out.alpha, out.depth


def test_fast_path_gradcheck_float64():
    """The hand-written compositing backward against finite differences (no early termination)."""
    module = _RenderFast(scene(n=4, scale=0.5, opacity=0.4, sh_degree=1).double())
    names = [f"model.{name}" for name, _ in module.model.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_() for p in module.model.parameters())
    cams = Cameras.from_angles([30.0], [20.0])

    def fn(*tensors):
        return torch.func.functional_call(module, dict(zip(names, tensors)), (cams, 5))

    assert fn(*params)[1].max() > 0.3  # the Gaussians cover the image
    assert torch.autograd.gradcheck(fn, params, eps=1e-6, atol=1e-5)
