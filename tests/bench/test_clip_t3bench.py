"""CLIP similarity and T3Bench's quality score, with a tiny random CLIP saved in tmp_path and stand-in scorers
(no download): the numbers are checked against direct transformers calls and against T3Bench's own loops."""

import importlib.util
import json
import math

import numpy as np
import pytest
import torch

from distill3d.bench.clip_eval import ClipEvalConfig, ClipScorer, clip_score_run
from distill3d.bench.t3bench import (
    FOVS_DEG,
    RADIUS,
    ImageRewardScorer,
    T3BenchConfig,
    aggregate,
    icosphere,
    icosphere_cameras,
    regional_convolution,
    regional_convolution_reference,
    t3bench_quality,
    write_t3bench,
)
from distill3d.cli.main import main
from distill3d.core.errors import UserError
from distill3d.export.ply import save_gaussians_ply
from distill3d.scene.gaussians import GaussianModel, rgb_to_sh_dc

PROMPT = "A cactus with pink flowers"


def _build_tiny_clip(dir):
    """A random 2-layer CLIP (32 px images, 16-d projection) with a one-token-per-character tokenizer."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    chars = [chr(c) for c in range(33, 127)]
    vocab = {tok: i for i, tok in enumerate(chars + [c + "</w>" for c in chars])}
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    dir.mkdir(parents=True, exist_ok=True)
    (dir / "vocab.json").write_text(json.dumps(vocab))
    (dir / "merges.txt").write_text("#version: 0.2\n")
    n = len(vocab)
    tokenizer = CLIPTokenizer(str(dir / "vocab.json"), str(dir / "merges.txt"), model_max_length=77)
    images = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    torch.manual_seed(0)
    layers = {"hidden_size": 32, "intermediate_size": 37, "num_attention_heads": 4, "num_hidden_layers": 2}
    config = CLIPConfig(text_config=dict(**layers, vocab_size=n, max_position_embeddings=77, bos_token_id=n - 2,
                                         eos_token_id=n - 1, pad_token_id=n - 1),
                        vision_config=dict(**layers, image_size=32, patch_size=8), projection_dim=16)
    CLIPModel(config).save_pretrained(dir)
    CLIPProcessor(image_processor=images, tokenizer=tokenizer).save_pretrained(dir)
    return dir


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    pytest.importorskip("transformers", reason="CLIP evaluation needs the 'sd' extra (transformers)")
    return _build_tiny_clip(tmp_path_factory.mktemp("clip") / "tiny-clip")


def _ball(scale: float = 1.0) -> GaussianModel:
    """150 opaque Gaussians in a ball of radius 0.5 * scale: green, with a pink cap on top (+z)."""
    g = torch.Generator().manual_seed(0)
    model = GaussianModel.random_in_sphere(150, radius=0.5, scale=0.1, opacity=0.9, generator=g)
    rgb = torch.tensor([0.1, 0.7, 0.2]).repeat(150, 1)
    rgb[model.means[:, 2] > 0.2] = torch.tensor([0.95, 0.5, 0.7])
    with torch.no_grad():
        model.sh_dc.copy_(rgb_to_sh_dc(rgb))
        model.means.mul_(scale)
        model.log_scales.add_(math.log(scale))
    return model


def _make_run(dir, prompt: str = PROMPT, scale: float = 1.0):
    dir.mkdir(parents=True, exist_ok=True)
    save_gaussians_ply(_ball(scale), dir / "gaussians.ply")
    (dir / "run.json").write_text(json.dumps({"prompt": prompt, "method": "sds"}))
    return dir


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return _make_run(tmp_path_factory.mktemp("runs") / "cactus")


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    return err


# ---------------------------------------------------------------- CLIP


def test_clip_similarity_equals_a_direct_transformers_computation(clip_dir):
    from PIL import Image
    from transformers import CLIPModel, CLIPProcessor

    g = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (3, 3, 40, 40), generator=g).float() / 255  # exact in 8 bits
    scorer = ClipScorer.load(str(clip_dir))
    ours = scorer(PROMPT, images)

    model = CLIPModel.from_pretrained(str(clip_dir), local_files_only=True).eval()
    processor = CLIPProcessor.from_pretrained(str(clip_dir), local_files_only=True)
    pil = [Image.fromarray((im.permute(1, 2, 0) * 255).round().byte().numpy()) for im in images]
    with torch.no_grad():
        img = model.get_image_features(**processor(images=pil, return_tensors="pt")).pooler_output
        txt = model.get_text_features(**processor(text=[PROMPT], return_tensors="pt")).pooler_output
    direct = torch.nn.functional.cosine_similarity(img, txt, dim=-1)
    assert ours.shape == (3,)
    torch.testing.assert_close(ours, direct, rtol=0, atol=1e-5)
    assert not torch.allclose(scorer("a blue sphere", images), ours, atol=1e-4)  # the text matters


def test_clip_command_scores_turntable_views_and_writes_json(clip_dir, run_dir, tmp_path, capsys):
    out = tmp_path / "clip.json"
    assert main(["bench", "clip", str(run_dir), "--clip", str(clip_dir), "--views", "4", "--size", "32",
                 "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    (run,) = result["runs"]
    assert run["prompt"] == PROMPT and run["azimuths"] == [0.0, 90.0, 180.0, 270.0]
    assert len(run["per_view"]) == 4 and result["mean"] == pytest.approx(np.mean(run["per_view"]), abs=1e-7)
    again = clip_score_run(run_dir, ClipScorer.load(str(clip_dir)), ClipEvalConfig(views=4, size=32))
    assert again.per_view == pytest.approx(run["per_view"], abs=1e-6)
    assert max(run["per_view"]) - min(run["per_view"]) > 1e-6  # the views differ (pink cap, random colours)


def test_missing_clip_weights_are_one_line_with_exit_code_1(run_dir, tmp_path, capsys, monkeypatch):
    pytest.importorskip("transformers", reason="CLIP evaluation needs the 'sd' extra (transformers)")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    missing = tmp_path / "no_clip_here"
    assert main(["bench", "clip", str(run_dir), "--clip", str(missing), "--out", str(tmp_path / "c.json")]) == 1
    err = _one_line_error(capsys)
    assert "CLIP weights not found" in err and str(missing) in err and "--clip" in err
    assert main(["bench", "clip", str(run_dir), "--clip", "openai/clip-vit-large-patch14",
                 "--out", str(tmp_path / "c.json")]) == 1  # a Hugging Face id absent from the (empty) cache
    assert "huggingface-cli download openai/clip-vit-large-patch14" in _one_line_error(capsys)
    assert not (tmp_path / "c.json").exists()


# ---------------------------------------------------------------- T3Bench cameras


def test_icosphere_is_trimeshs_level_2_icosphere():
    trimesh = pytest.importorskip("trimesh", reason="trimesh (dev extra) gives the reference icosphere")
    sphere = icosphere(2)
    ref = trimesh.creation.icosphere(subdivisions=2)
    assert sphere.vertices.shape == (162, 3) and sphere.faces.shape == (320, 3)
    torch.testing.assert_close(sphere.vertices.norm(dim=-1), torch.ones(162))
    ours = sphere.vertices.double().numpy()
    match = np.linalg.norm(ours[:, None] - ref.vertices[None], axis=-1).argmin(1)  # our vertex -> trimesh's
    assert np.allclose(ours, ref.vertices[match], atol=1e-6) and len(set(match)) == 162
    for i, ring in enumerate(sphere.neighbors()):
        assert sorted(match[ring]) == sorted(ref.vertex_neighbors[match[i]])


def test_cameras_sit_where_t3bench_puts_them_with_no_elevation_filter():
    sphere = icosphere()
    cams = icosphere_cameras(sphere, RADIUS * 0.5)
    assert len(cams) == 162 * 5
    torch.testing.assert_close(cams.fov, torch.tensor(FOVS_DEG).repeat(162))
    torch.testing.assert_close(cams.positions().norm(dim=-1), torch.full((810,), 1.1))
    el = cams.elevation[::5]
    assert (el > 1).sum() == 73 and (el < -1).sum() == 73 and (el.abs() < 1e-4).sum() == 16  # every vertex kept
    # meshrender.py's pose: forward -v, up z (or y within acos 0.99 of the poles), right = -cross(up, -v)
    rot = cams.rotations()[::5].double()  # rows: right, down, forward
    for v, r in zip(sphere.vertices.double(), rot):
        up = torch.tensor([0.0, 0, 1]) if abs(v[2]) < 0.99 else torch.tensor([0.0, 1, 0])
        right = -torch.linalg.cross(up.double(), -v)
        right = right / right.norm()
        cam_up = torch.linalg.cross(-v, -right)
        tol = 1e-5 if abs(v[2]) < 0.99 else 0.02  # the poles sit at 89 degrees, not 90
        torch.testing.assert_close(r[0], right, atol=tol, rtol=0)
        torch.testing.assert_close(r[1], -cam_up / cam_up.norm(), atol=tol, rtol=0)
        torch.testing.assert_close(r[2], -v, atol=tol, rtol=0)
    assert torch.allclose(cams.positions()[::5] / 1.1, sphere.vertices, atol=0.02)


# ---------------------------------------------------------------- T3Bench aggregation


def test_regional_convolution_matrix_equals_t3bench_loop():
    sphere = icosphere()
    scores = torch.randn(162, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    fast = regional_convolution(scores, sphere.adjacency())
    slow = regional_convolution_reference(scores.tolist(), sphere.neighbors())
    torch.testing.assert_close(fast, torch.tensor(slow, dtype=torch.float64))
    torch.testing.assert_close(regional_convolution(torch.full((162,), 0.3, dtype=torch.float64),
                                                    sphere.adjacency()), torch.full((162,), 0.3, dtype=torch.float64))


def test_aggregate_is_max_over_fovs_then_three_smoothings_then_top_times_20_plus_50():
    sphere = icosphere()
    view = torch.randn(162, 5, generator=torch.Generator().manual_seed(2))
    vertex, _, best, score = aggregate(view, sphere)
    # run_eval_quality.py, written out: a dict per vertex, max over the 5 cameras, 3 rounds of averaging
    s = {i: -114514.0 for i in range(162)}
    for i in range(162):
        for j in range(5):
            s[i] = max(s[i], float(view[i, j]))
    ring = sphere.neighbors()
    for _ in range(3):
        s = {i: (s[i] + sum(s[n] for n in ring[i])) / (len(ring[i]) + 1) for i in range(162)}
    top = max(s, key=lambda i: s[i])
    assert best == top and score == pytest.approx(s[top] * 20 + 50, abs=1e-5)
    torch.testing.assert_close(vertex, view.max(1).values)
    # a spike at one vertex is spread over its neighbourhood, so a lone good view does not win outright
    spike = torch.zeros(162, 5)
    spike[7, 2] = 1.0
    _, sm, b, sc = aggregate(spike, sphere)
    assert b == 7 and 50 < sc < 50 + 20 * 0.5 and sm.sum() < 1.0 + 1e-9


def _brightness(calls):
    def scorer(prompt, images):  # a stand-in for ImageReward: mean brightness, centred on grey
        calls.append((prompt, images.shape[0]))
        return images.mean(dim=(1, 2, 3)) * 4 - 1

    return scorer


def test_t3bench_over_a_prompt_set_with_a_stand_in_scorer(run_dir, tmp_path):
    prompts = tmp_path / "set.txt"
    prompts.write_text(f"{PROMPT}\nA rainbow-colored umbrella\n")
    calls = []
    cfg = T3BenchConfig(size=8, mesh_resolution=24, chunk=810)
    result = t3bench_quality([run_dir], _brightness(calls), cfg, prompts)
    scored, missing = result.prompts
    assert scored.status == "scored" and scored.run == str(run_dir) and len(scored.vertex_scores) == 162
    assert sum(n for p, n in calls if p == PROMPT) == 810  # every vertex x every field of view
    assert missing.status == "missing" and missing.run is None
    assert missing.score == pytest.approx(20 * (0 * 4 - 1) + 50)  # black images: brightness 0 everywhere
    assert scored.score > missing.score  # the object shows colour against T3Bench's black background
    assert 0.4 < scored.extent < 0.75 and result.quality == pytest.approx((scored.score + missing.score) / 2)
    assert scored.smoothed_scores[scored.best_vertex] == max(scored.smoothed_scores)
    # T3Bench rescales each object to max |coordinate| 1: the same ball at twice the size scores (nearly) the same
    big = _make_run(tmp_path / "big", scale=1.4)  # still inside the [-1, 1]^3 the mesh is extracted from
    resized = t3bench_quality([big], _brightness([]), cfg).prompts[0]
    assert resized.extent == pytest.approx(1.4 * scored.extent, rel=0.03)
    assert resized.score == pytest.approx(scored.score, abs=0.1)  # measured 0.01; cameras left at 2.2 x 0.63: 0.49

    write_t3bench(result, tmp_path / "out", "distill3d bench t3bench ...")
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert saved["quality"] == pytest.approx(result.quality) and len(saved["prompts"]) == 2
    md = (tmp_path / "out" / "results.md").read_text()
    assert f"| A rainbow-colored umbrella | {missing.score:.1f} | missing |" in md and "not computed" in md


def test_t3bench_rejects_runs_outside_the_prompt_set(run_dir, tmp_path):
    prompts = tmp_path / "set.txt"
    prompts.write_text("A rainbow-colored umbrella\n")
    with pytest.raises(UserError, match="not in the prompt set"):
        t3bench_quality([run_dir], _brightness([]), T3BenchConfig(size=8), prompts)


@pytest.mark.skipif(importlib.util.find_spec("ImageReward") is not None,
                    reason="image-reward is installed here, so its absence cannot be tested")
def test_t3bench_without_image_reward_is_one_line(run_dir, tmp_path, capsys):
    with pytest.raises(UserError, match="pip install image-reward") as e:
        ImageRewardScorer.load(str(tmp_path))
    assert "\n" not in str(e.value)
    assert main(["bench", "t3bench", str(run_dir), "--out", str(tmp_path / "t3")]) == 1
    assert "pip install image-reward" in _one_line_error(capsys)
    assert not (tmp_path / "t3").exists()
